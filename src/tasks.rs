//! The instance's periodic chores besides the sync engine: the idle-session sweep, the
//! `metrics:update` feed, the metrics' upkeep, and (with Redis) presence among instances and
//! following their changes.

use std::{sync::Arc, time::Duration};

use serde_json::json;
use socketioxide::{SocketIo, adapter::Adapter};
use tokio::sync::broadcast;

use crate::{
    clock::now_ms,
    core::Vocabulary,
    delivery,
    gateway::{self, rooms},
    state::AppState,
    telemetry,
};

/// How often recorded histogram samples are folded into their buckets.
const METRICS_UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Folds the histogram samples recorded since the last scrape into their buckets. The exporter
/// keeps every sample until then, so a server nobody scrapes would otherwise grow without bound.
pub async fn metrics_upkeep() {
    let mut interval = tokio::time::interval(METRICS_UPKEEP_EVERY);
    loop {
        interval.tick().await;
        telemetry::handle().run_upkeep();
    }
}

/// Removes empty sessions idle longer than `SESSION_IDLE_TIMEOUT_MS`, every `CLEANUP_INTERVAL_MS`.
pub async fn sweep_idle_sessions<A: Adapter>(app: Arc<AppState>, io: SocketIo<A>) {
    let mut interval = tokio::time::interval(Duration::from_millis(app.config.cleanup_interval_ms));
    loop {
        interval.tick().await;
        let removed = match app.store.remove_idle(now_ms(), app.config.session_idle_timeout_ms as i64).await {
            Ok(removed) => removed,
            Err(err) => {
                tracing::warn!(%err, "idle sweep failed");
                continue;
            }
        };
        for id in &removed {
            tracing::info!(session = %id, "idle session removed");
            // Under the session's lock, and only if it is still gone: a join may have created it
            // again since, and its members must not hear it destroyed.
            let _guard = app.locks.lock(id).await;
            if matches!(app.store.get(id).await, Ok(None)) {
                app.ticker.forget(id);
                let room = rooms::session(id, Vocabulary::Enhanced);
                let Some(namespace) = rooms::namespace(&io) else { return };
                namespace.to(room).emit("session:destroy", &json!({ "sessionId": id })).await.ok();
            }
        }
    }
}

/// Sends `metrics:update` to the feed's subscribers every `METRICS_INTERVAL_MS`.
pub async fn metrics_feed<A: Adapter>(app: Arc<AppState>, io: SocketIo<A>) {
    let mut interval = tokio::time::interval(Duration::from_millis(app.config.metrics_interval_ms));
    loop {
        interval.tick().await;
        // Each instance feeds its own subscribers.
        let Some(namespace) = rooms::namespace(&io) else { return };
        if namespace.clone().local().to(rooms::METRICS).sockets().is_empty() {
            continue;
        }
        let (connected, _, _) = app.connections.read();
        let update = json!({
            "avgLatency": app.sync_stats.latency(),
            "syncDrift": app.sync_stats.drift(),
            "activeSessions": app.store.count().await.unwrap_or(0),
            "connectedClients": connected,
            "lastMetricsUpdate": now_ms(),
        });
        namespace.local().to(rooms::METRICS).emit("metrics:update", &update).await.ok();
    }
}

/// How often an instance says it is alive, and how long that lasts. A dead instance's members are
/// unseated within `PRESENCE_TTL + PRESENCE_EVERY` (13 s).
const PRESENCE_EVERY: Duration = Duration::from_secs(3);
const PRESENCE_TTL: Duration = Duration::from_secs(10);

/// Keeps this instance's heartbeat fresh. A task of its own: were it to wait for the scan for
/// lost members (one read per session), a slow scan would let this instance's key expire and the
/// others would unseat its live members.
pub async fn instance_heartbeat(app: Arc<AppState>) {
    let mut interval = tokio::time::interval(PRESENCE_EVERY);
    loop {
        interval.tick().await;
        app.store.heartbeat(PRESENCE_TTL.as_millis() as u64).await;
    }
}

/// Unseats the members of instances that died, looking every `PRESENCE_EVERY`.
pub async fn unseat_members_of_lost_instances(app: Arc<AppState>) {
    let mut interval = tokio::time::interval(PRESENCE_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        evict_lost_members(&app, false).await;
    }
}

/// Unseats members whose instance is gone; with `including_own`, this instance's too (at start-up,
/// before any of its sockets can have joined).
pub async fn evict_lost_members(app: &Arc<AppState>, including_own: bool) {
    match app.store.lost_members(including_own).await {
        Ok(lost) => {
            for (session_id, sockets) in lost {
                gateway::server_changes::evict(app, &session_id, sockets, "instance lost").await;
            }
        }
        Err(err) => tracing::debug!(%err, "presence check failed"),
    }
}

/// After a Redis outage, members this instance seated in a session whose stored state refused
/// their join lose their seat (see [`crate::store::SessionStore::rewritten_sessions`]).
pub async fn check_seats_of_rewritten_sessions<A: Adapter>(app: Arc<AppState>, io: SocketIo<A>) {
    let Some(rewritten) = app.store.rewritten_sessions() else { return };
    follow(rewritten, "the sessions rewritten after the outage", |session_id| {
        gateway::server_changes::check_seats(&io, &session_id)
    })
    .await;
}

/// Streams follow the changes other instances make to the sessions this one also serves, and
/// seats held here that another instance saw taken back stop waiting.
pub async fn follow_remote_changes(app: Arc<AppState>) {
    let Some(changes) = app.store.remote_changes() else { return };
    follow(changes, "other instances' changes", |session| {
        app.ticker.track(&session);
        app.graces.settle(&session);
    })
    .await;
}

/// Members here hear the changes other instances make, in each session's revision order.
pub async fn deliver_other_instances_changes(app: Arc<AppState>) {
    let Some(announcements) = app.store.shared_announcements() else { return };
    follow(announcements, "other instances' announcements", |announcement| {
        let gap = app.deliveries.submit(&announcement);
        delivery::wait::watch(&app, &announcement.session_id, gap);
    })
    .await;
}

/// Hands each item of `feed` to `handle` until the feed closes; falling behind is logged, not fatal.
async fn follow<T: Clone>(mut feed: broadcast::Receiver<T>, what: &str, mut handle: impl FnMut(T)) {
    loop {
        match feed.recv().await {
            Ok(item) => handle(item),
            Err(broadcast::error::RecvError::Lagged(missed)) => tracing::warn!(missed, "fell behind {what}"),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

//! The instance's periodic chores besides the sync engine: the idle-session sweep and the
//! `metrics:update` feed.

use std::{sync::Arc, time::Duration};

use serde_json::json;
use socketioxide::{SocketIo, adapter::Adapter};

use crate::{clock::now_ms, core::Vocabulary, gateway::rooms, state::AppState};

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
            app.ticker.forget(id);
            tracing::info!(session = %id, "idle session removed");
            let room = rooms::session(id, Vocabulary::Enhanced);
            io.to(room).emit("session:destroy", &json!({ "sessionId": id })).await.ok();
        }
    }
}

/// Sends `metrics:update` to the feed's subscribers every `METRICS_INTERVAL_MS`.
pub async fn metrics_feed<A: Adapter>(app: Arc<AppState>, io: SocketIo<A>) {
    let mut interval = tokio::time::interval(Duration::from_millis(app.config.metrics_interval_ms));
    loop {
        interval.tick().await;
        // Each instance feeds its own subscribers.
        let subscribers = io.local().to(rooms::METRICS).sockets();
        if subscribers.is_empty() {
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
        io.local().to(rooms::METRICS).emit("metrics:update", &update).await.ok();
    }
}

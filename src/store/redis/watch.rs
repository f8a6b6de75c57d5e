//! The store's background watchers: the connection (offline on errors, back online with the
//! write-back), the change channel (other instances' changes into the cache and on to streams)
//! and the announcement channel (other instances' changes on to the members here).

use std::sync::{Arc, Weak, atomic::Ordering};

use fred::{
    clients::SubscriberClient,
    prelude::{ClientLike, EventInterface},
};
use tokio::sync::{Notify, broadcast};

use super::RedisStore;

/// How often an instance that lost Redis checks whether it answers again.
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Follows the connection: offline on errors, and back online (with the write-back) on a
/// reconnect or, for a connection that stalled without dropping, when a probe answers.
/// Every write-back runs here, one at a time: after a reconnect, after a probe that answers, and
/// when a change was logged for a session still waiting for its write-back (`write_back_wanted`).
pub(super) async fn connection(store: Weak<RedisStore>, write_back_wanted: Arc<Notify>) {
    let Some((mut errors, mut reconnects)) = store.upgrade().map(|s| (s.client.error_rx(), s.client.reconnect_rx()))
    else {
        return;
    };
    let mut probe = tokio::time::interval(PROBE_EVERY);
    loop {
        tokio::select! {
            error = errors.recv() => match (error, store.upgrade()) {
                (Ok((err, _)), Some(store)) => store.went_offline(&err.to_string()),
                (Err(broadcast::error::RecvError::Lagged(_)), Some(_)) => {}
                _ => return,
            },
            reconnect = reconnects.recv() => match (reconnect, store.upgrade()) {
                (Ok(_), Some(store)) => store.back_online().await,
                (Err(broadcast::error::RecvError::Lagged(_)), Some(_)) => {}
                _ => return,
            },
            () = write_back_wanted.notified() => {
                let Some(store) = store.upgrade() else { return };
                if store.online.load(Ordering::Relaxed) {
                    store.write_back().await;
                }
            }
            _ = probe.tick() => {
                let Some(store) = store.upgrade() else { return };
                if !store.online.load(Ordering::Relaxed) && store.client.ping::<String>(None).await.is_ok() {
                    store.back_online().await;
                }
            }
        }
    }
}

/// Refreshes the cache from changes other instances announce, and passes them on. Announcements
/// made while the subscription was down are lost, so after it comes back every cached session is
/// reloaded ([`RedisStore::resync`]).
pub(super) async fn changes(store: Weak<RedisStore>, subscriber: SubscriberClient) {
    let mut messages = subscriber.message_rx();
    let mut reconnects = subscriber.reconnect_rx();
    loop {
        let message = tokio::select! {
            message = messages.recv() => match message {
                Ok(message) => message,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let Some(store) = store.upgrade() else { return };
                    store.resync().await;
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            reconnect = reconnects.recv() => {
                if matches!(reconnect, Err(broadcast::error::RecvError::Closed)) {
                    break;
                }
                let Some(store) = store.upgrade() else { return };
                store.resync().await;
                continue;
            }
        };
        let Some(store) = store.upgrade() else { return };
        if *message.channel != store.keys.changes() {
            continue;
        }
        let Some(text) = message.value.as_string() else { continue };
        let Some((server, session_id)) = text.split_once('|') else { continue };
        // A session with changes from an outage still to write is this instance's to merge: the
        // write-back loads what the other instance wrote.
        if server == store.server_id || store.awaits_write_back(session_id) {
            continue;
        }
        let before = store.cache().get(session_id).cloned();
        match store.load(session_id).await {
            Ok((loaded, _)) => store.follow_loaded(session_id, &before, loaded),
            Err(err) => store.went_offline(&err.to_string()),
        }
    }
    drop(subscriber);
}

/// Passes other instances' announcements on to the members here, as they come. A loop of its own:
/// the change channel's loop reads each changed session from Redis, and announcements must not
/// wait behind those reads (a wait past `REORDER_WAIT_MS` would pass for a lost change). One lost
/// while the subscription was down, or by falling behind, is a gap the members' next change finds.
pub(super) async fn announcements(store: Weak<RedisStore>, subscriber: SubscriberClient) {
    let mut messages = subscriber.message_rx();
    drop(subscriber);
    loop {
        let message = match messages.recv().await {
            Ok(message) => message,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "fell behind other instances' announcements");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(store) = store.upgrade() else { return };
        if *message.channel != store.keys.announcements() {
            continue;
        }
        if let Some(text) = message.value.as_string() {
            store.received_announcement(&text);
        }
    }
}

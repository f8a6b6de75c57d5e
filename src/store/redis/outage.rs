//! Working through a Redis outage: serve the instance's sessions from its cache, remember what
//! changed, and write those sessions back when Redis answers again.

use std::sync::atomic::Ordering;

use fred::prelude::LuaInterface;

use super::{RedisStore, scripts};
use crate::{
    core::{Command, CoreError, Millis},
    store::{Applied, apply_to_slot},
    telemetry,
};

impl RedisStore {
    /// Marks Redis unreachable; logs only the transition.
    pub(super) fn went_offline(&self, why: &str) {
        telemetry::redis_connected(false);
        if self.online.swap(false, Ordering::Relaxed) {
            tracing::warn!(reason = why, "redis unreachable: serving sessions from this instance's cache");
        }
    }

    /// Applies `command` to the cached session while Redis is away, and remembers to write it back.
    pub(super) fn apply_offline(&self, id: &str, command: &Command, now: Millis) -> Result<Applied, CoreError> {
        let mut cache = self.cache();
        let mut slot = cache.get(id).cloned();
        let applied = apply_to_slot(&mut slot, id, command, now)?;
        if applied.changed {
            cache.insert(id.to_owned(), applied.session.clone());
            self.dirty.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned());
        }
        Ok(applied)
    }

    pub(super) async fn back_online(&self) {
        telemetry::redis_connected(true);
        if !self.online.swap(true, Ordering::Relaxed) {
            tracing::info!("redis reachable again");
        }
        self.write_back().await;
    }

    /// Writes back every session changed during the outage; this instance's state is the newest.
    async fn write_back(&self) {
        let dirty: Vec<String> = self.dirty.lock().unwrap_or_else(|p| p.into_inner()).drain().collect();
        let mut written = 0;
        for id in &dirty {
            let Some(session) = self.cache().get(id).cloned() else { continue };
            let Ok(json) = serde_json::to_string(&session) else { continue };
            let result: Result<i64, _> =
                self.client.eval(scripts::OVERWRITE, vec![self.keys.session(id)], vec![json]).await;
            match result.map(|_| ()) {
                Ok(()) => {
                    // Written back whole: the session may be new, so it is filed under its band too.
                    self.index(&session, true).await.ok();
                    self.announce(&session).await;
                    written += 1;
                }
                Err(err) => {
                    tracing::warn!(session = %id, %err, "write-back failed; will retry");
                    self.dirty.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone());
                }
            }
        }
        if written > 0 {
            tracing::info!(sessions = written, "changes made while redis was away written back");
        }
    }
}

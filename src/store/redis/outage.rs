//! Working through a Redis outage: serve the instance's sessions from its cache, log the changes
//! made to them, and when Redis answers again replay that log onto what Redis holds.
//!
//! Replaying, rather than writing the cached copy over the stored one, is what keeps other
//! instances' work: while this instance was cut off, another one may have changed the same session,
//! or the session may exist in Redis although this instance had never cached it (a `join_session`
//! during the outage then created a fresh, unlocked copy here). Each logged change is applied again
//! to the stored session with its original time, under the usual compare-and-set; a change the
//! stored session refuses (a passcode it did not carry, a seat taken meanwhile) is dropped and
//! logged, and the stored session is kept as it was in that respect.

use std::{collections::HashMap, sync::atomic::Ordering};

use fred::prelude::LuaInterface;

use super::{MAX_ATTEMPTS, RedisStore, scripts};
use crate::{
    core::{Command, CoreError, Millis, Session},
    store::{Applied, apply_to_slot},
    telemetry,
};

/// Changes logged per session during an outage. Beyond this (a very long outage with a busy
/// session) the log is dropped and the write-back writes the cached session over the stored one,
/// as the only record left of what the band did.
const MAX_LOGGED_CHANGES: usize = 1000;

/// A change made while Redis was unreachable, to replay when it answers again.
#[derive(Debug, Clone)]
pub(super) struct LoggedChange {
    command: Command,
    now: Millis,
}

/// What a session needs written back.
#[derive(Debug)]
pub(super) enum WriteBack {
    /// Replay these changes onto the stored session.
    Replay(Vec<LoggedChange>),
    /// Too many changes to keep: write the cached session as it is. Counts the changes made
    /// since, so that one made during the write itself is not taken as written.
    Overwrite { changes: usize },
}

impl WriteBack {
    /// How much of the log there is: what a write-back has covered once it succeeds.
    fn extent(&self) -> usize {
        match self {
            Self::Replay(log) => log.len(),
            Self::Overwrite { changes } => *changes,
        }
    }
}

/// How one session's write-back ended.
enum Merged {
    /// Written, with the changes the stored session refused.
    Written { session: Session, refused: Vec<CoreError> },
    /// Every change was refused or changed nothing: Redis keeps what it holds.
    Unchanged { stored: Option<Session>, refused: Vec<CoreError> },
}

impl RedisStore {
    /// Marks Redis unreachable; logs only the transition.
    pub(super) fn went_offline(&self, why: &str) {
        telemetry::redis_connected(false);
        if self.online.swap(false, Ordering::Relaxed) {
            tracing::warn!(reason = why, "redis unreachable: serving sessions from this instance's cache");
        }
    }

    /// Applies `command` to the cached session while Redis is away, and logs it for the write-back.
    pub(super) fn apply_offline(&self, id: &str, command: &Command, now: Millis) -> Result<Applied, CoreError> {
        let mut cache = self.cache();
        let mut slot = cache.get(id).cloned();
        let applied = apply_to_slot(&mut slot, id, command, now)?;
        if applied.changed {
            cache.insert(id.to_owned(), applied.session.clone());
            let mut pending = self.pending();
            let write_back = pending.entry(id.to_owned()).or_insert_with(|| WriteBack::Replay(Vec::new()));
            match write_back {
                WriteBack::Replay(log) if log.len() < MAX_LOGGED_CHANGES => {
                    log.push(LoggedChange { command: command.clone(), now });
                }
                WriteBack::Replay(log) => {
                    tracing::warn!(
                        session = %id,
                        "too many changes during the outage to replay; the cached session will be written back whole"
                    );
                    *write_back = WriteBack::Overwrite { changes: log.len() + 1 };
                }
                WriteBack::Overwrite { changes } => *changes += 1,
            }
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

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, WriteBack>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sessions whose changes from an outage are not in Redis yet.
    pub fn pending_write_backs(&self) -> usize {
        self.pending().len()
    }

    /// Writes back every session changed during the outage. A session leaves the list only once
    /// its changes are in Redis; after a failure the instance counts as offline again, so further
    /// changes are logged too and the write-back is retried when Redis next answers.
    async fn write_back(&self) {
        let ids: Vec<String> = self.pending().keys().cloned().collect();
        let mut written = 0;
        for id in ids {
            let (log, extent) = match self.pending().get(&id) {
                Some(WriteBack::Replay(log)) => (Some(log.clone()), log.len()),
                Some(overwrite) => (None, overwrite.extent()),
                None => continue,
            };
            let result = match &log {
                Some(log) => self.replay(&id, log).await,
                None => self.overwrite(&id).await,
            };
            let merged = match result {
                Ok(merged) => merged,
                Err(err) => {
                    tracing::warn!(session = %id, %err, "write-back failed; will retry");
                    self.went_offline(&err.to_string());
                    continue;
                }
            };
            self.settle(&id, extent);
            match merged {
                Merged::Written { session, refused } => {
                    written += 1;
                    self.report_refused(&id, &refused);
                    self.follow_merged(session);
                }
                Merged::Unchanged { stored, refused } => {
                    self.report_refused(&id, &refused);
                    match stored {
                        Some(stored) => self.follow_merged(stored),
                        None => {
                            self.cache().remove(&id);
                        }
                    }
                }
            }
        }
        if written > 0 {
            tracing::info!(sessions = written, "changes made while redis was away written back");
        }
    }

    /// Takes the first `extent` changes of `id` off the list: they are in Redis. Changes logged
    /// during the write-back (Redis went away again) stay for the next one.
    fn settle(&self, id: &str, extent: usize) {
        let mut pending = self.pending();
        let Some(write_back) = pending.get_mut(id) else { return };
        if write_back.extent() <= extent {
            pending.remove(id);
        } else if let WriteBack::Replay(log) = write_back {
            log.drain(..extent);
        } else {
            *write_back = WriteBack::Overwrite { changes: write_back.extent() - extent };
        }
    }

    /// Applies `log` to the stored session under compare-and-set, redoing it if another instance
    /// writes first.
    async fn replay(&self, id: &str, log: &[LoggedChange]) -> Result<Merged, fred::error::Error> {
        for _ in 0..MAX_ATTEMPTS {
            let (stored, rev) = self.load(id).await?;
            let mut slot = stored.clone();
            let mut refused = Vec::new();
            for change in log {
                if let Err(err) = apply_to_slot(&mut slot, id, &change.command, change.now) {
                    refused.push(err);
                }
            }
            let Some(merged) = slot.filter(|merged| Some(merged) != stored.as_ref()) else {
                return Ok(Merged::Unchanged { stored, refused });
            };
            let Ok(json) = serde_json::to_string(&merged) else {
                return Ok(Merged::Unchanged { stored, refused });
            };
            let written: i64 = self
                .client
                .eval(scripts::COMPARE_AND_SET, vec![self.keys.session(id)], vec![rev.clone(), json])
                .await?;
            if written == 1 {
                self.index_written(&merged, rev == "0").await;
                return Ok(Merged::Written { session: merged, refused });
            }
        }
        tracing::error!(session = %id, "write-back kept conflicting; the cached session is written whole");
        self.overwrite(id).await
    }

    /// Writes the cached session over whatever Redis holds.
    async fn overwrite(&self, id: &str) -> Result<Merged, fred::error::Error> {
        let Some(session) = self.cache().get(id).cloned() else {
            return Ok(Merged::Unchanged { stored: None, refused: Vec::new() });
        };
        let Ok(json) = serde_json::to_string(&session) else {
            return Ok(Merged::Unchanged { stored: None, refused: Vec::new() });
        };
        let _: i64 = self.client.eval(scripts::OVERWRITE, vec![self.keys.session(id)], vec![json]).await?;
        // Written whole: the session may be new, so it is filed under its band too.
        self.index_written(&session, true).await;
        Ok(Merged::Written { session, refused: Vec::new() })
    }

    /// Indexes and announces a session the write-back stored. The session itself is written by
    /// then, so a failure here must not have the changes replayed a second time: it is logged (the
    /// activity index catches up at the session's next change; a band listing would miss it).
    async fn index_written(&self, session: &Session, new: bool) {
        if let Err(err) = self.index(session, new).await {
            tracing::warn!(session = %session.id, %err, "written back, but not indexed");
        }
        self.announce(session).await;
    }

    fn report_refused(&self, id: &str, refused: &[CoreError]) {
        if !refused.is_empty() {
            let reasons: Vec<String> = refused.iter().map(ToString::to_string).collect();
            tracing::warn!(
                session = %id,
                refused = refused.len(),
                reasons = %reasons.join("; "),
                "changes made during the outage that the stored session refused were dropped"
            );
        }
    }

    /// The session as merged becomes this instance's copy, and its streams follow it. Changes
    /// logged since the write-back began (Redis went away again) are applied on top.
    fn follow_merged(&self, mut session: Session) {
        match self.pending().get(&session.id) {
            Some(WriteBack::Replay(newer)) => {
                let mut slot = Some(session.clone());
                for change in newer {
                    apply_to_slot(&mut slot, &session.id, &change.command, change.now).ok();
                }
                session = slot.unwrap_or(session);
            }
            // The cached copy is the only record of those changes: it stays.
            Some(WriteBack::Overwrite { .. }) => return,
            None => {}
        }
        let differs = self.cache().get(&session.id) != Some(&session);
        self.cache().insert(session.id.clone(), session.clone());
        if differs {
            self.changes.send(session).ok();
        }
    }
}

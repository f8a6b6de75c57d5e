//! Working through a Redis outage: serve the instance's sessions from its cache, log the changes
//! made to them, and when Redis answers again replay that log onto what Redis holds.
//!
//! Replaying, rather than writing the cached copy over the stored one, keeps other instances'
//! work: while this instance was cut off, another one may have changed the same session, or the
//! session may exist in Redis although this instance had never cached it (a `join_session` during
//! the outage then created a fresh, open copy here). Each logged change is applied again, with its
//! original time, on top of the stored session under the usual compare-and-set, so where both
//! sides set the same field the change from the outage, applied last, wins. A change the stored
//! session refuses (a passcode it carries, a seat taken meanwhile) is dropped and logged, and the
//! session is announced as rewritten so the gateway can unseat whoever that leaves without a seat.
//!
//! Until its log is in Redis, a session stays on the offline path even with Redis back: its
//! changes go to the cache and the log, so they keep their order behind the outage's, and a
//! member seated during the outage is not refused by Redis before its join is replayed. The
//! write-back itself runs in the connection watcher ([`super::watch::connection`]), one at a time.

use std::{collections::HashMap, sync::atomic::Ordering};

use fred::{
    error::ErrorKind,
    prelude::{HashesInterface, LuaInterface},
};

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
    /// Replay these changes onto the stored session; `unanswered` is a replay sent without an
    /// answer coming back.
    Replay { log: Vec<LoggedChange>, unanswered: Option<Attempt> },
    /// Too many changes to keep: write the cached session as it is. Counts the changes made to
    /// it, so that one made during the write itself is not taken as written.
    Overwrite { changes: usize },
}

/// A replay sent to Redis whose answer was lost (a timeout, a dropped connection): Redis may have
/// written it. Replaying the same changes again on top of them could undo what another instance
/// changed since, so the next pass first asks Redis whether the session carries this token.
#[derive(Debug, Clone)]
pub(super) struct Attempt {
    token: String,
    /// The changes of the log it covered.
    extent: usize,
}

impl WriteBack {
    /// How much of the log there is: what a write-back has covered once it succeeds.
    fn extent(&self) -> usize {
        match self {
            Self::Replay { log, .. } => log.len(),
            Self::Overwrite { changes } => *changes,
        }
    }
}

/// How one session's write-back ended.
enum Merged {
    /// Written; `refused` holds why the stored session refused some changes.
    Written { session: Session, refused: Vec<CoreError> },
    /// Every change was refused or changed nothing: Redis keeps what it holds.
    Unchanged { stored: Option<Session>, refused: Vec<CoreError> },
    /// Other instances kept writing first: the next pass writes the cached session whole.
    Conflicting,
}

/// Whether Redis refused the command itself, so that sending it again cannot help (a key of the
/// wrong type, a script it cannot run). Anything else (a lost connection, a timeout, and the
/// server's passing states: `LOADING` after a restart, `READONLY` after a failover, `BUSY`, `OOM`)
/// is retried once Redis answers again.
fn is_permanent(err: &fred::error::Error) -> bool {
    matches!(err.kind(), ErrorKind::InvalidArgument | ErrorKind::InvalidCommand | ErrorKind::Parse)
}

/// Adds `command` to `id`'s write-back log; returns the session's entry. Callers hold the cache
/// lock while they take `pending`'s (cache, then log).
fn log_change<'a>(
    pending: &'a mut HashMap<String, WriteBack>,
    id: &str,
    command: &Command,
    now: Millis,
) -> &'a mut WriteBack {
    let write_back =
        pending.entry(id.to_owned()).or_insert_with(|| WriteBack::Replay { log: Vec::new(), unanswered: None });
    match write_back {
        WriteBack::Replay { log, .. } if log.len() < MAX_LOGGED_CHANGES => {
            log.push(LoggedChange { command: command.clone(), now });
        }
        WriteBack::Replay { log, .. } => {
            tracing::warn!(
                session = %id,
                "too many changes during the outage to replay; the cached session will be written back whole"
            );
            *write_back = WriteBack::Overwrite { changes: log.len() + 1 };
        }
        WriteBack::Overwrite { changes } => *changes += 1,
    }
    write_back
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
            log_change(&mut self.pending(), id, command, now);
        }
        Ok(applied)
    }

    /// A change whose write was sent but never answered: Redis may hold it or not. It becomes this
    /// instance's copy, as the sender was told, and is logged like an outage's change with the
    /// write's token, so the write-back finds it written or writes it, never both.
    pub(super) fn record_unconfirmed(
        &self,
        id: &str,
        command: &Command,
        now: Millis,
        applied: &Applied,
        token: String,
    ) {
        let mut cache = self.cache();
        cache.insert(id.to_owned(), applied.session.clone());
        if let WriteBack::Replay { log, unanswered } = log_change(&mut self.pending(), id, command, now) {
            // The token covers this change alone: only when it is the log's first, as it is
            // (a session waiting for its write-back never reaches a write of its own).
            debug_assert_eq!(log.len(), 1, "an unconfirmed write to a session awaiting its write-back");
            if log.len() == 1 {
                *unanswered = Some(Attempt { token, extent: 1 });
            }
        }
    }

    pub(super) async fn back_online(&self) {
        telemetry::redis_connected(true);
        if !self.online.swap(true, Ordering::Relaxed) {
            tracing::info!("redis reachable again");
        }
        self.write_back().await;
        if self.online.load(Ordering::Relaxed) {
            self.resync().await;
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, WriteBack>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sessions whose changes from an outage are not in Redis yet.
    pub fn pending_write_backs(&self) -> usize {
        self.pending().len()
    }

    /// Whether `id` has changes from an outage still to write: until then it is served offline.
    pub(super) fn awaits_write_back(&self, id: &str) -> bool {
        self.pending().contains_key(id)
    }

    /// Writes back every session changed during the outage, including changes made to them while
    /// this runs, until none is left or Redis goes away again (then it resumes at the reconnect).
    /// Only the connection watcher calls it, so one runs at a time.
    pub(super) async fn write_back(&self) {
        let mut written = 0;
        'passes: while self.online.load(Ordering::Relaxed) {
            let ids: Vec<String> = self.pending().keys().cloned().collect();
            if ids.is_empty() {
                break;
            }
            for id in ids {
                match self.write_back_session(&id).await {
                    Ok(true) => written += 1,
                    Ok(false) => {}
                    Err(err) if !is_permanent(&err) => {
                        tracing::warn!(session = %id, %err, "write-back interrupted; it resumes when redis answers");
                        self.went_offline(&err.to_string());
                        break 'passes;
                    }
                    Err(err) => {
                        // Redis refused the command itself (a key of the wrong type): retrying
                        // cannot help. This instance keeps its copy, Redis keeps its own.
                        tracing::error!(session = %id, %err, "write-back refused by redis; the outage's changes stay local");
                        self.pending().remove(&id);
                    }
                }
            }
        }
        if written > 0 {
            tracing::info!(sessions = written, "changes made while redis was away written back");
        }
    }

    /// Writes back one session's changes; true when Redis was changed. The session leaves the
    /// list only once its changes are in Redis.
    async fn write_back_session(&self, id: &str) -> Result<bool, fred::error::Error> {
        let unanswered = match self.pending().get(id) {
            Some(WriteBack::Replay { unanswered, .. }) => unanswered.clone(),
            _ => None,
        };
        if let Some(attempt) = unanswered {
            let written: Option<String> = self.client.hget(self.keys.session(id), scripts::TOKENS_FIELD).await?;
            if written.is_some_and(|tokens| tokens.split_whitespace().any(|token| token == attempt.token)) {
                // It was written: those changes are done, the rest (if any) goes in the next pass.
                // Its index and announcement may not have followed: they do now. Settled only
                // then, with nothing awaited between, so no write from here slips in between.
                let (stored, _) = self.load(id).await?;
                if let Some(stored) = &stored {
                    self.index_written(stored, true).await;
                }
                self.settle(id, attempt.extent);
                self.follow_merged(id, stored, false);
                return Ok(true);
            }
        }
        // The changes to replay with this attempt's token, or `None` to write the cache whole.
        let (replay, extent) = {
            let mut pending = self.pending();
            match pending.get_mut(id) {
                Some(WriteBack::Replay { log, unanswered }) => {
                    let token = self.write_token();
                    // Kept until the answer comes: if it is lost, the next pass asks first.
                    *unanswered = Some(Attempt { token: token.clone(), extent: log.len() });
                    (Some((log.clone(), token)), log.len())
                }
                Some(overwrite) => (None, overwrite.extent()),
                None => return Ok(false),
            }
        };
        let merged = match &replay {
            Some((log, token)) => self.replay(id, log, token).await?,
            None => self.overwrite(id).await?,
        };
        let (session, refused, written) = match merged {
            Merged::Written { session, refused } => (Some(session), refused, true),
            Merged::Unchanged { stored, refused } => (stored, refused, false),
            Merged::Conflicting => {
                tracing::error!(session = %id, "write-back kept conflicting; the cached session will be written whole");
                if let Some(write_back) = self.pending().get_mut(id) {
                    *write_back = WriteBack::Overwrite { changes: write_back.extent() };
                }
                return Ok(false);
            }
        };
        self.settle(id, extent);
        if !refused.is_empty() {
            let reasons: Vec<String> = refused.iter().map(ToString::to_string).collect();
            tracing::warn!(
                session = %id,
                refused = refused.len(),
                reasons = %reasons.join("; "),
                "changes made during the outage that the stored session refused were dropped"
            );
        }
        self.follow_merged(id, session, !refused.is_empty());
        Ok(written)
    }

    /// Takes the first `extent` changes of `id` off the list: they are in Redis. Changes logged
    /// during the write-back stay for its next pass.
    fn settle(&self, id: &str, extent: usize) {
        let mut pending = self.pending();
        let Some(write_back) = pending.get_mut(id) else { return };
        if write_back.extent() <= extent {
            pending.remove(id);
        } else if let WriteBack::Replay { log, unanswered } = write_back {
            log.drain(..extent);
            *unanswered = None;
        } else {
            *write_back = WriteBack::Overwrite { changes: write_back.extent() - extent };
        }
    }

    /// Applies `log` to the stored session under compare-and-set, redoing it if another instance
    /// writes first.
    async fn replay(&self, id: &str, log: &[LoggedChange], token: &str) -> Result<Merged, fred::error::Error> {
        for _ in 0..MAX_ATTEMPTS {
            let (stored, rev) = self.load(id).await?;
            let mut slot = stored.clone();
            let mut refused = Vec::new();
            for change in log {
                if let Err(err) = apply_to_slot(&mut slot, id, &change.command, change.now) {
                    refused.push(err);
                }
            }
            let Some(mut merged) = slot.filter(|merged| Some(merged) != stored.as_ref()) else {
                return Ok(Merged::Unchanged { stored, refused });
            };
            // Replayed changes carry their own, older times: activity does not go back.
            if let Some(stored) = &stored {
                merged.last_active_at = merged.last_active_at.max(stored.last_active_at);
            }
            let Ok(json) = serde_json::to_string(&merged) else {
                return Ok(Merged::Unchanged { stored, refused });
            };
            let written: i64 = self
                .client
                .eval(
                    scripts::COMPARE_AND_SET,
                    vec![self.keys.session(id)],
                    scripts::compare_and_set_args(rev.clone(), json, token.to_owned()),
                )
                .await?;
            if written == 1 {
                self.index_written(&merged, rev == "0").await;
                return Ok(Merged::Written { session: merged, refused });
            }
        }
        Ok(Merged::Conflicting)
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

    /// Reloads every cached session that is not waiting for its write-back, so this instance's
    /// copy and streams catch up with changes it did not hear of: announcements are lost while the
    /// subscription is down, and while this instance is cut off. A session that lacks members this
    /// instance's copy had (another instance unseated them meanwhile) is announced as rewritten,
    /// for the gateway to check their seats.
    pub(super) async fn resync(&self) {
        let ids: Vec<String> = self.cache().keys().cloned().collect();
        for id in ids {
            if self.awaits_write_back(&id) {
                continue;
            }
            let before = self.cache().get(&id).cloned();
            match self.load(&id).await {
                Ok((stored, _)) => self.follow_loaded(&id, &before, stored),
                Err(err) => {
                    self.went_offline(&err.to_string());
                    return;
                }
            }
        }
    }

    /// A session read from Redis becomes this instance's copy, unless the copy changed while it
    /// was being read: a write from here got in between, and its result is newer than the read.
    /// A session still waiting for its write-back is left to the write-back.
    pub(super) fn follow_loaded(&self, id: &str, before: &Option<Session>, loaded: Option<Session>) {
        let cache = self.cache();
        if cache.get(id) != before.as_ref() || self.awaits_write_back(id) {
            return;
        }
        self.install(cache, id, loaded, false);
    }

    /// The session as merged (`None`: Redis has none) becomes this instance's copy, with any
    /// changes logged since the write-back began on top, and its streams follow it
    /// ([`Self::install`]); `some_refused` when the stored session refused some of the changes.
    fn follow_merged(&self, id: &str, merged: Option<Session>, some_refused: bool) {
        // Cache, then log: the order `apply_offline` takes them in.
        let cache = self.cache();
        let pending = self.pending();
        let mut slot = merged;
        match pending.get(id) {
            Some(WriteBack::Replay { log: newer, .. }) => {
                for change in newer {
                    apply_to_slot(&mut slot, id, &change.command, change.now).ok();
                }
            }
            // The cached copy is the only record of those changes: it stays.
            Some(WriteBack::Overwrite { .. }) => return,
            None => {}
        }
        drop(pending);
        self.install(cache, id, slot, some_refused);
    }

    /// Makes `session` this instance's copy of `id` (under the cache lock the caller took) and
    /// tells the streams when it differs. When the stored session refused some of this instance's
    /// changes, or lacks members of this instance that the copy had (another instance unseated
    /// them meanwhile), the gateway hears the session was rewritten, to check their seats.
    fn install(
        &self,
        mut cache: std::sync::MutexGuard<'_, HashMap<String, Session>>,
        id: &str,
        session: Option<Session>,
        some_refused: bool,
    ) {
        let differs = cache.get(id) != session.as_ref();
        let lost_own_members = cache.get(id).is_some_and(|cached| {
            cached.members.iter().any(|member| {
                member.instance.as_deref() == Some(self.server_id.as_str())
                    && session.as_ref().is_none_or(|now| now.member(&member.socket_id).is_none())
            })
        });
        match &session {
            Some(session) => cache.insert(id.to_owned(), session.clone()),
            None => cache.remove(id),
        };
        drop(cache);
        if let Some(session) = session.filter(|_| differs) {
            self.changes.send(session).ok();
        }
        if some_refused || lost_own_members {
            self.rewritten.send(id.to_owned()).ok();
        }
    }
}

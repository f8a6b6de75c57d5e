//! Where sessions live. The embedded [`MemoryStore`] is the default; every store applies core
//! commands atomically, so two members changing one session never lose each other's change.

mod memory;
pub mod redis;

use async_trait::async_trait;
use tokio::sync::broadcast;

pub use memory::MemoryStore;
pub use redis::RedisStore;

/// Where sessions live, as `/health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded in-memory store: nothing to reach.
    Embedded,
    /// Redis, answering.
    Connected,
    /// Redis, unreachable: the instance serves its sessions from its cache.
    Disconnected,
}

use std::sync::Arc;

use crate::{
    core::{self, Command, CoreError, Millis, Outcome, Session},
    delivery::Announcement,
};

/// A command's effect: what to announce, and the session as it now is.
#[derive(Debug, Clone)]
pub struct Applied {
    pub outcomes: Vec<Outcome>,
    pub session: Session,
    /// False when the command changed nothing (a chat line, a position report): nothing was
    /// written, and nobody else needs to hear of the state.
    pub changed: bool,
    /// The session's revision this change made: one more than the change before it, on every
    /// instance. `None` when nothing was written, or when it was written to this instance's
    /// cache alone during a Redis outage (no other instance can order it).
    pub revision: Option<u64>,
}

/// Applies `command` to the session in `slot` (see [`core::apply`]) and says whether it changed.
/// Every store's update goes through here, inside whatever makes it atomic for that store.
pub(crate) fn apply_to_slot(
    slot: &mut Option<Session>,
    session_id: &str,
    command: &Command,
    now: Millis,
) -> Result<Applied, CoreError> {
    let before = slot.clone();
    let outcomes = core::apply(slot, session_id, command, now)?;
    let session = slot.clone().ok_or(CoreError::Internal)?;
    Ok(Applied { outcomes, changed: *slot != before, session, revision: None })
}

#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Applies `command` to session `session_id` atomically; a refused command changes nothing.
    async fn apply(&self, session_id: &str, command: &Command, now: Millis) -> Result<Applied, CoreError>;

    async fn get(&self, session_id: &str) -> Result<Option<Session>, CoreError>;

    /// The session with its revision, as every instance sees it; `Ok(None)` when there is no
    /// such session, `Err` when the revision cannot be known (Redis unreachable).
    async fn get_revised(&self, session_id: &str) -> Result<Option<(Session, u64)>, CoreError>;

    /// Every session, oldest first, for the sessions API.
    async fn all_sessions(&self) -> Result<Vec<Session>, CoreError>;

    /// The sessions of one band, for discovery.
    async fn sessions_of_band(&self, band_id: &str) -> Result<Vec<Session>, CoreError>;

    /// Number of sessions, seated or not.
    async fn count(&self) -> Result<usize, CoreError>;

    /// Removes empty sessions idle for at least `idle_timeout` and returns their ids.
    async fn remove_idle(&self, now: Millis, idle_timeout: Millis) -> Result<Vec<String>, CoreError>;

    fn backend(&self) -> Backend {
        Backend::Embedded
    }

    /// Sessions other instances changed, as they change; `None` when no other instance can.
    fn remote_changes(&self) -> Option<broadcast::Receiver<Session>> {
        None
    }

    /// Tells the other instances what a change says to their members.
    async fn share(&self, _announcement: &Announcement) {}

    /// What the other instances' changes say to this instance's members, as they arrive; `None`
    /// when no other instance can change a session.
    fn shared_announcements(&self) -> Option<broadcast::Receiver<Arc<Announcement>>> {
        None
    }

    /// Sessions whose stored state, once this instance was back in touch with the others, refused
    /// changes it made while cut off (a join to a session that turned out to be locked or full) or
    /// lacks members seated through it (another instance unseated them meanwhile): their local
    /// members must check their seats. `None` when the store cannot be cut off.
    fn rewritten_sessions(&self) -> Option<broadcast::Receiver<String>> {
        None
    }

    /// Members held by instances that died: `(session id, socket ids)`; with `including_own`, also
    /// this instance's members from before a restart.
    async fn lost_members(&self, _including_own: bool) -> Result<Vec<(String, Vec<String>)>, CoreError> {
        Ok(Vec::new())
    }

    /// Tells the other instances this one is alive for the next `ttl_ms`.
    async fn heartbeat(&self, _ttl_ms: u64) {}
}

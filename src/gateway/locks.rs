//! Per-session ordering of changes and their announcements on this instance.
//!
//! A change is applied to the store and announced while holding its session's lock, so members
//! hear the changes of one session in the order they were applied. Locks are striped: a fixed
//! set shared by hash, so nothing needs cleaning up when sessions come and go.

use std::hash::{BuildHasher, RandomState};

use tokio::sync::{Mutex, MutexGuard};

const STRIPES: usize = 256;

pub struct SessionLocks {
    stripes: Vec<Mutex<()>>,
    hasher: RandomState,
}

impl Default for SessionLocks {
    fn default() -> Self {
        Self { stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(), hasher: RandomState::new() }
    }
}

impl SessionLocks {
    pub async fn lock(&self, session_id: &str) -> MutexGuard<'_, ()> {
        let index = self.hasher.hash_one(session_id) as usize % STRIPES;
        self.stripes[index].lock().await
    }
}

impl SessionLocks {
    /// The lock, if nobody holds it now.
    pub fn try_lock(&self, session_id: &str) -> Result<MutexGuard<'_, ()>, tokio::sync::TryLockError> {
        let index = self.hasher.hash_one(session_id) as usize % STRIPES;
        self.stripes[index].try_lock()
    }
}

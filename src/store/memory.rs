//! The embedded store: sessions in a map behind one lock, held only for the pure core call.

use std::{collections::HashMap, sync::Mutex};

use async_trait::async_trait;

use super::{Applied, SessionStore, apply_to_slot};
use crate::core::{Command, CoreError, Millis, Session};

#[derive(Debug, Default)]
pub struct MemoryStore {
    sessions: Mutex<HashMap<String, Stored>>,
}

/// A session and how many changes it has had.
#[derive(Debug)]
struct Stored {
    session: Session,
    revision: u64,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Stored>> {
        // The core never panics halfway through a change (it works on a copy), so a poisoned lock
        // still guards consistent data.
        self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn apply(&self, session_id: &str, command: &Command, now: Millis) -> Result<Applied, CoreError> {
        let mut sessions = self.lock();
        let stored = sessions.remove(session_id);
        let revision = stored.as_ref().map_or(0, |s| s.revision);
        let mut slot = stored.map(|s| s.session);
        let result = apply_to_slot(&mut slot, session_id, command, now);
        let changed = result.as_ref().is_ok_and(|applied| applied.changed);
        let revision = if changed { revision + 1 } else { revision };
        if let Some(session) = slot {
            sessions.insert(session_id.to_owned(), Stored { session, revision });
        }
        result.map(|applied| Applied { revision: changed.then_some(revision), ..applied })
    }

    async fn get(&self, session_id: &str) -> Result<Option<Session>, CoreError> {
        Ok(self.lock().get(session_id).map(|s| s.session.clone()))
    }

    async fn get_revised(&self, session_id: &str) -> Result<Option<(Session, u64)>, CoreError> {
        Ok(self.lock().get(session_id).map(|s| (s.session.clone(), s.revision)))
    }

    async fn all_sessions(&self) -> Result<Vec<Session>, CoreError> {
        let mut sessions: Vec<Session> = self.lock().values().map(|s| s.session.clone()).collect();
        sessions.sort_by_key(|s| s.created_at);
        Ok(sessions)
    }

    async fn sessions_of_band(&self, band_id: &str) -> Result<Vec<Session>, CoreError> {
        let mut sessions: Vec<Session> = self
            .lock()
            .values()
            .map(|s| &s.session)
            .filter(|s| s.band_id.as_deref() == Some(band_id))
            .cloned()
            .collect();
        sessions.sort_by_key(|s| s.created_at);
        Ok(sessions)
    }

    async fn count(&self) -> Result<usize, CoreError> {
        Ok(self.lock().len())
    }

    async fn remove_idle(&self, now: Millis, idle_timeout: Millis) -> Result<Vec<String>, CoreError> {
        let mut sessions = self.lock();
        let idle: Vec<String> = sessions
            .values()
            .map(|s| &s.session)
            .filter(|s| s.is_idle(now, idle_timeout))
            .map(|s| s.id.clone())
            .collect();
        for id in &idle {
            sessions.remove(id);
        }
        Ok(idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Action, Creation, Joiner, LeaveCause, SessionSetup, Vocabulary};

    fn join(by: &str) -> Command {
        let joiner = Joiner { display_name: Some(by.into()), vocabulary: Vocabulary::Legacy, ..Joiner::default() };
        let creation = Creation::IfMissing(SessionSetup::with_max_members(2));
        Command { by: by.into(), action: Action::Join { joiner: joiner.into(), wants_lead: false, creation } }
    }

    #[tokio::test]
    async fn a_refused_command_leaves_the_stored_session_as_it_was() {
        let store = MemoryStore::new();
        store.apply("s", &join("a"), 0).await.unwrap();
        store.apply("s", &join("b"), 0).await.unwrap();
        let before = store.get("s").await.unwrap();
        assert!(matches!(store.apply("s", &join("c"), 1).await, Err(CoreError::SessionFull { max: 2 })));
        assert_eq!(store.get("s").await.unwrap(), before);
        assert!(matches!(
            store.apply("nope", &Command { by: "a".into(), action: Action::Stop { reset: true } }, 1).await,
            Err(CoreError::SessionNotFound)
        ));
        assert_eq!(store.count().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn each_change_is_the_next_revision_and_what_changes_nothing_has_none() {
        let store = MemoryStore::new();
        assert_eq!(store.apply("s", &join("a"), 0).await.unwrap().revision, Some(1));
        assert_eq!(store.apply("s", &join("b"), 0).await.unwrap().revision, Some(2));
        let chat = Command { by: "a".into(), action: Action::Chat { message: "hi".into(), username: None } };
        assert_eq!(store.apply("s", &chat, 1).await.unwrap().revision, None);
        assert!(store.apply("s", &join("c"), 1).await.is_err());
        let (session, revision) = store.get_revised("s").await.unwrap().unwrap();
        assert_eq!((session.members.len(), revision), (2, 2));
    }

    #[tokio::test]
    async fn the_sweep_removes_only_empty_sessions_idle_long_enough() {
        let store = MemoryStore::new();
        store.apply("busy", &join("a"), 0).await.unwrap();
        store.apply("empty", &join("b"), 0).await.unwrap();
        store.apply("empty", &Command { by: "b".into(), action: Action::Leave(LeaveCause::Left) }, 100).await.unwrap();
        assert!(store.remove_idle(500, 1_000).await.unwrap().is_empty(), "not idle long enough yet");
        assert_eq!(store.remove_idle(1_100, 1_000).await.unwrap(), vec!["empty".to_string()]);
        assert!(store.get("busy").await.unwrap().is_some());
        assert!(store.get("empty").await.unwrap().is_none());
    }
}

//! The Redis store: sessions shared by every instance, surviving restarts.
//!
//! Every update is a compare-and-set on the session's revision ([`scripts`]), so concurrent
//! changes from different instances (joins under the seat limit, leader changes) never lose one
//! another. Each instance keeps the sessions it touched in a cache: when Redis is unreachable the
//! instance keeps serving its sessions from there, logs what changed, and replays those changes
//! onto the stored sessions once Redis answers again ([`outage`]). After each change the instance
//! announces the session on a channel, so the others refresh their caches and streams at once.

mod connect;
mod keys;
mod outage;
mod presence;
mod scripts;
mod watch;

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use async_trait::async_trait;
use fred::prelude::{
    Client, ClientLike, HashesInterface, LuaInterface, PubsubInterface, SetsInterface, SortedSetsInterface,
};
use futures_util::{StreamExt, stream};
use tokio::sync::{Notify, broadcast};

pub use connect::{CONNECT_TIMEOUT, builder, fred_config, init};
pub use keys::Keys;

use super::{Applied, Backend, SessionStore, apply_to_slot};
use crate::{
    config::Config,
    core::{Command, CoreError, Millis, Session},
    delivery::Announcement,
    telemetry,
};

/// Compare-and-set attempts before an update gives up (only under extreme contention).
const MAX_ATTEMPTS: usize = 32;

/// Session reads in flight at once when listing every session.
const LOADS_IN_FLIGHT: usize = 32;

pub struct RedisStore {
    client: Client,
    keys: Keys,
    server_id: String,
    /// The sessions this instance touched, as last seen.
    cache: Mutex<HashMap<String, Session>>,
    /// Sessions changed while Redis was unreachable, with what to write back when it returns.
    pending: Mutex<HashMap<String, outage::WriteBack>>,
    online: AtomicBool,
    /// Numbers writes, from a random start so that a restarted instance does not repeat the
    /// tokens of its previous life (see [`scripts`]).
    writes: AtomicU64,
    /// Wakes the connection watcher to write back changes logged while Redis answers (see
    /// [`outage`]): the write-back runs there, never on a socket's request.
    write_back_wanted: Arc<Notify>,
    changes: broadcast::Sender<Session>,
    /// Sessions whose stored state, merged or reloaded after an outage, refused some of this
    /// instance's changes or lacks some of its members.
    rewritten: broadcast::Sender<String>,
    /// Other instances' announcements to the members here.
    announcements: broadcast::Sender<Arc<Announcement>>,
}

fn unavailable(err: fred::error::Error) -> CoreError {
    tracing::debug!(%err, "redis command failed");
    CoreError::Internal
}

impl RedisStore {
    /// Connects to the Redis `config` names, or fails with the reason within a few seconds.
    pub async fn connect(config: &Config, server_id: &str) -> anyhow::Result<Arc<Self>> {
        let (fred, place) = connect::fred_config(config)?;
        let client = connect::builder(fred.clone()).build()?;
        connect::init(&client, &place).await?;
        let subscriber = connect::builder(fred).build_subscriber_client()?;
        connect::init(&subscriber, &place).await?;
        let keys = Keys::new(&config.redis_key_prefix);
        subscriber.subscribe(vec![keys.changes(), keys.announcements()]).await?;
        // From now on the subscription comes back by itself after a reconnect.
        subscriber.manage_subscriptions();
        let (changes, _) = broadcast::channel(1024);
        let (rewritten, _) = broadcast::channel(256);
        let (announcements, _) = broadcast::channel(4096);
        let store = Arc::new(Self {
            client,
            keys,
            server_id: server_id.to_owned(),
            cache: Mutex::default(),
            pending: Mutex::default(),
            online: AtomicBool::new(true),
            writes: AtomicU64::new(RandomState::new().hash_one(std::time::SystemTime::now())),
            write_back_wanted: Arc::default(),
            changes,
            rewritten,
            announcements,
        });
        telemetry::redis_connected(true);
        tokio::spawn(watch::connection(Arc::downgrade(&store), store.write_back_wanted.clone()));
        tokio::spawn(watch::announcements(Arc::downgrade(&store), subscriber.clone()));
        tokio::spawn(watch::changes(Arc::downgrade(&store), subscriber));
        tracing::info!(redis = %place, "sessions are kept in Redis");
        Ok(store)
    }

    /// A token no other write of any instance carries.
    fn write_token(&self) -> String {
        format!("{}/{:x}", self.server_id, self.writes.fetch_add(1, Ordering::Relaxed))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_online(&self) -> bool {
        self.online.load(Ordering::Relaxed) && self.client.is_connected()
    }

    /// The session and its revision, from Redis.
    async fn load(&self, id: &str) -> Result<(Option<Session>, String), fred::error::Error> {
        let (rev, state): (Option<String>, Option<String>) =
            self.client.hmget(self.keys.session(id), vec!["rev", "state"]).await?;
        let session = state.and_then(|json| match serde_json::from_str::<Session>(&json) {
            Ok(session) => Some(session),
            Err(err) => {
                tracing::error!(session = %id, %err, "unreadable session in redis; treating it as missing");
                None
            }
        });
        Ok((session, rev.unwrap_or_else(|| "0".into())))
    }

    /// One compare-and-set round: `Ok(None)` when another instance wrote first.
    async fn try_apply(&self, id: &str, command: &Command, now: Millis) -> Result<Option<Applied>, ApplyFailure> {
        let (mut slot, rev) = self.load(id).await.map_err(ApplyFailure::Redis)?;
        let applied = apply_to_slot(&mut slot, id, command, now).map_err(ApplyFailure::Refused)?;
        if !applied.changed {
            return Ok(Some(applied));
        }
        let created = rev == "0";
        // The script writes `rev + 1`: the revision every instance orders this change by.
        let revision = rev.parse::<u64>().map(|rev| rev + 1).ok();
        let json = serde_json::to_string(&applied.session).map_err(|_| ApplyFailure::Refused(CoreError::Internal))?;
        let token = self.write_token();
        let written: i64 = match self
            .client
            .eval(
                scripts::COMPARE_AND_SET,
                vec![self.keys.session(id)],
                scripts::compare_and_set_args(rev, json, token.clone()),
            )
            .await
        {
            Ok(written) => written,
            Err(err) => return Err(ApplyFailure::Unconfirmed { err, applied: Box::new(applied), token }),
        };
        if written == 0 {
            return Ok(None);
        }
        // The change is stored: a failed index must not make it look refused, nor have it
        // applied again offline. The activity index catches up at the session's next change.
        if let Err(err) = self.index(&applied.session, created).await {
            tracing::warn!(session = %id, %err, "written, but not indexed");
        }
        Ok(Some(Applied { revision, ..applied }))
    }

    /// Keeps the activity index in step with a written session, and files a new session under its
    /// band (a session's band never changes after it is created).
    async fn index(&self, session: &Session, new: bool) -> Result<(), fred::error::Error> {
        let _: () = self
            .client
            .zadd(self.keys.sessions(), None, None, false, false, (session.last_active_at as f64, session.id.as_str()))
            .await?;
        if let Some(band) = session.band_id.as_ref().filter(|_| new) {
            let _: () = self.client.sadd(self.keys.band(band), session.id.as_str()).await?;
        }
        Ok(())
    }

    /// Passes another instance's announcement on to the members here (this instance's own come
    /// back on the channel too, and were delivered when made).
    fn received_announcement(&self, text: &str) {
        match serde_json::from_str::<Announcement>(text) {
            Ok(announcement) if announcement.origin != self.server_id => {
                self.announcements.send(Arc::new(announcement)).ok();
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "unreadable announcement from another instance"),
        }
    }

    async fn announce(&self, session: &Session) {
        let message = format!("{}|{}", self.server_id, session.id);
        let result: Result<(), _> = self.client.publish(self.keys.changes(), message).await;
        if let Err(err) = result {
            tracing::debug!(%err, "change announcement failed");
        }
    }
}

enum ApplyFailure {
    Refused(CoreError),
    /// Redis did not answer before the write was sent.
    Redis(fred::error::Error),
    /// The write was sent and not answered: it may have happened.
    Unconfirmed {
        err: fred::error::Error,
        applied: Box<Applied>,
        token: String,
    },
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn apply(&self, session_id: &str, command: &Command, now: Millis) -> Result<Applied, CoreError> {
        if !self.is_online() {
            return self.apply_offline(session_id, command, now);
        }
        if self.awaits_write_back(session_id) {
            // Behind the outage's changes, in their log; written with them.
            let applied = self.apply_offline(session_id, command, now)?;
            self.write_back_wanted.notify_one();
            return Ok(applied);
        }
        for _ in 0..MAX_ATTEMPTS {
            let started = std::time::Instant::now();
            let attempt = self.try_apply(session_id, command, now).await;
            let redis_ok = !matches!(attempt, Err(ApplyFailure::Redis(_) | ApplyFailure::Unconfirmed { .. }));
            telemetry::redis_command("update", started.elapsed().as_secs_f64(), redis_ok);
            match attempt {
                Ok(Some(applied)) => {
                    if applied.changed {
                        self.cache().insert(session_id.to_owned(), applied.session.clone());
                        self.announce(&applied.session).await;
                    }
                    return Ok(applied);
                }
                Ok(None) => continue,
                Err(ApplyFailure::Refused(err)) => return Err(err),
                Err(ApplyFailure::Redis(err)) => {
                    self.went_offline(&err.to_string());
                    return self.apply_offline(session_id, command, now);
                }
                Err(ApplyFailure::Unconfirmed { err, applied, token }) => {
                    self.went_offline(&err.to_string());
                    self.record_unconfirmed(session_id, command, now, &applied, token);
                    return Ok(*applied);
                }
            }
        }
        tracing::error!(session = %session_id, "update kept conflicting; gave up");
        Err(CoreError::Internal)
    }

    async fn get(&self, session_id: &str) -> Result<Option<Session>, CoreError> {
        if self.is_online() && !self.awaits_write_back(session_id) {
            let started = std::time::Instant::now();
            let loaded = self.load(session_id).await;
            telemetry::redis_command("read", started.elapsed().as_secs_f64(), loaded.is_ok());
            match loaded {
                Ok((session, _)) => return Ok(session),
                Err(err) => self.went_offline(&err.to_string()),
            }
        }
        Ok(self.cache().get(session_id).cloned())
    }

    async fn get_revised(&self, session_id: &str) -> Result<Option<(Session, u64)>, CoreError> {
        if !self.is_online() || self.awaits_write_back(session_id) {
            return Err(CoreError::Internal);
        }
        let (session, rev) = self.load(session_id).await.map_err(unavailable)?;
        let rev = rev.parse::<u64>().map_err(|_| CoreError::Internal)?;
        Ok(session.map(|session| (session, rev)))
    }

    async fn all_sessions(&self) -> Result<Vec<Session>, CoreError> {
        if !self.is_online() {
            let mut sessions: Vec<Session> = self.cache().values().cloned().collect();
            sessions.sort_by_key(|s| s.created_at);
            return Ok(sessions);
        }
        let ids: Vec<String> =
            self.client.zrange(self.keys.sessions(), 0, -1, None, false, None, false).await.map_err(unavailable)?;
        // Read a few dozen at a time over the one connection (fred pipelines them), not one round
        // trip after the other: `/metrics` reads them all at every scrape.
        let loads: Vec<_> =
            stream::iter(ids).map(|id| async move { self.load(&id).await }).buffered(LOADS_IN_FLIGHT).collect().await;
        let mut sessions = Vec::new();
        for loaded in loads {
            if let (Some(session), _) = loaded.map_err(unavailable)? {
                sessions.push(session);
            }
        }
        sessions.sort_by_key(|s| s.created_at);
        Ok(sessions)
    }

    async fn sessions_of_band(&self, band_id: &str) -> Result<Vec<Session>, CoreError> {
        if !self.is_online() {
            let cache = self.cache();
            return Ok(cache.values().filter(|s| s.band_id.as_deref() == Some(band_id)).cloned().collect());
        }
        let ids: Vec<String> = self.client.smembers(self.keys.band(band_id)).await.map_err(unavailable)?;
        let mut sessions = Vec::new();
        for id in ids {
            match self.load(&id).await.map_err(unavailable)? {
                (Some(session), _) => sessions.push(session),
                (None, _) => {
                    let _: Result<(), _> = self.client.srem(self.keys.band(band_id), id.as_str()).await;
                }
            }
        }
        sessions.sort_by_key(|s| s.created_at);
        Ok(sessions)
    }

    async fn count(&self) -> Result<usize, CoreError> {
        if !self.is_online() {
            return Ok(self.cache().len());
        }
        self.client.zcard(self.keys.sessions()).await.map_err(unavailable)
    }

    async fn remove_idle(&self, now: Millis, idle_timeout: Millis) -> Result<Vec<String>, CoreError> {
        if !self.is_online() {
            return Ok(Vec::new());
        }
        let cutoff = (now - idle_timeout) as f64;
        let candidates: Vec<String> =
            self.client.zrangebyscore(self.keys.sessions(), "-inf", cutoff, false, None).await.map_err(unavailable)?;
        let mut removed = Vec::new();
        for id in candidates {
            let (session, rev) = self.load(&id).await.map_err(unavailable)?;
            let Some(session) = session else {
                let _: Result<(), _> = self.client.zrem(self.keys.sessions(), id.as_str()).await;
                continue;
            };
            if !session.is_idle(now, idle_timeout) {
                continue;
            }
            let deleted: i64 = self
                .client
                .eval(scripts::COMPARE_AND_DELETE, vec![self.keys.session(&id)], vec![rev])
                .await
                .map_err(unavailable)?;
            if deleted == 1 {
                let _: Result<(), _> = self.client.zrem(self.keys.sessions(), id.as_str()).await;
                if let Some(band) = &session.band_id {
                    let _: Result<(), _> = self.client.srem(self.keys.band(band), id.as_str()).await;
                }
                self.cache().remove(&id);
                removed.push(id);
            }
        }
        Ok(removed)
    }

    fn backend(&self) -> Backend {
        if self.is_online() { Backend::Connected } else { Backend::Disconnected }
    }

    fn remote_changes(&self) -> Option<broadcast::Receiver<Session>> {
        Some(self.changes.subscribe())
    }

    async fn share(&self, announcement: &Announcement) {
        let Ok(text) = serde_json::to_string(announcement) else { return };
        let result: Result<(), _> = self.client.publish(self.keys.announcements(), text).await;
        if let Err(err) = result {
            // Members elsewhere miss this change: the next one finds the gap and sends the state.
            tracing::debug!(%err, "announcement not shared");
        }
    }

    fn shared_announcements(&self) -> Option<broadcast::Receiver<Arc<Announcement>>> {
        Some(self.announcements.subscribe())
    }

    fn rewritten_sessions(&self) -> Option<broadcast::Receiver<String>> {
        Some(self.rewritten.subscribe())
    }

    async fn lost_members(&self, including_own: bool) -> Result<Vec<(String, Vec<String>)>, CoreError> {
        presence::lost_members(self, including_own).await
    }

    async fn heartbeat(&self, ttl_ms: u64) {
        presence::heartbeat(self, ttl_ms).await;
    }
}

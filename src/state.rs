//! What every part of a running instance shares.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Instant,
};

use crate::{
    config::Config,
    gateway::{admission::Admission, locks::SessionLocks, throttle::RateLimits},
    protocol::Limits,
    stats::SyncStats,
    store::SessionStore,
    sync::Ticker,
};

/// The shared parts of one server instance.
pub struct AppState {
    pub config: Config,
    pub server_id: String,
    pub store: Arc<dyn SessionStore>,
    pub locks: SessionLocks,
    pub ticker: Ticker,
    pub connections: ConnectionCounts,
    pub sync_stats: SyncStats,
    pub limits: Limits,
    pub rate_limits: RateLimits,
    pub admission: Arc<Admission>,
    pub started_at: Instant,
    /// Set once shutdown begins: readiness fails and new work is refused.
    pub draining: AtomicBool,
}

impl AppState {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// Socket.IO connections: now, at most at once, and since start.
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    current: AtomicU64,
    peak: AtomicU64,
    total: AtomicU64,
}

impl ConnectionCounts {
    pub fn opened(&self) {
        let now = self.current.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    pub fn closed(&self) {
        self.current.fetch_sub(1, Ordering::Relaxed);
    }

    /// `(current, peak, total)`.
    pub fn read(&self) -> (u64, u64, u64) {
        (self.current.load(Ordering::Relaxed), self.peak.load(Ordering::Relaxed), self.total.load(Ordering::Relaxed))
    }
}

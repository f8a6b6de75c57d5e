//! What every part of a running instance shares.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use tokio::sync::watch;

use crate::{
    config::Config,
    delivery::Deliveries,
    gateway::{admission::Admission, grace::Graces, locks::SessionLocks, throttle::RateLimits},
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
    /// Seats held for members whose connection dropped, waiting for them to come back.
    pub graces: Graces,
    /// Who on this instance hears each session's changes, in revision order.
    pub deliveries: Deliveries,
    /// Set once shutdown begins: readiness fails, new work is refused, held seats end.
    pub draining: watch::Sender<bool>,
}

impl AppState {
    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Marks the start of shutdown.
    pub fn begin_draining(&self) {
        self.draining.send_replace(true);
    }

    /// Completes once shutdown has begun.
    pub async fn drained(&self) {
        // The sender lives as long as `self`, so the wait cannot fail.
        self.draining.subscribe().wait_for(|draining| *draining).await.ok();
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

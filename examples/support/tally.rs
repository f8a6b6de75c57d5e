//! Event counts shared by every connection of a run: an exact total and a per-name table.
//!
//! Each connection counts names on its own and adds them to the shared table about once a second,
//! so thousands of connections receiving thousands of events a second do not queue on one lock.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use super::lock;

/// How often a connection adds its per-name counts to the shared table.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Counts shared by every connection of a run.
#[derive(Debug, Default)]
pub struct Tally {
    events: AtomicU64,
    connected: AtomicI64,
    by_name: Mutex<HashMap<String, u64>>,
}

impl Tally {
    /// Events received so far by all connections (exact, updated per event).
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Connections past the Socket.IO connect whose task is still running.
    pub fn connected(&self) -> i64 {
        self.connected.load(Ordering::Relaxed)
    }

    /// Events by name, most frequent first; up to a second behind for connections still open.
    pub fn by_name(&self) -> Vec<(String, u64)> {
        let mut names: Vec<_> = lock(&self.by_name).iter().map(|(name, n)| (name.clone(), *n)).collect();
        names.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        names
    }
}

/// One connection's counts: counted in on creation, handed in and counted out when dropped.
pub struct ConnectionCounts {
    tally: Arc<Tally>,
    // A handful of names per connection: a linear scan beats hashing here.
    names: Vec<(Box<str>, u64)>,
    flushed_at: Instant,
}

impl ConnectionCounts {
    pub fn new(tally: Arc<Tally>) -> Self {
        tally.connected.fetch_add(1, Ordering::Relaxed);
        Self { tally, names: Vec::new(), flushed_at: Instant::now() }
    }

    pub fn add(&mut self, name: &str) {
        self.tally.events.fetch_add(1, Ordering::Relaxed);
        match self.names.iter_mut().find(|(known, _)| **known == *name) {
            Some((_, n)) => *n += 1,
            None => self.names.push((name.into(), 1)),
        }
        if self.flushed_at.elapsed() >= FLUSH_EVERY {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.flushed_at = Instant::now();
        let mut table = lock(&self.tally.by_name);
        for (name, n) in self.names.iter_mut().filter(|(_, n)| *n > 0) {
            *table.entry(name.to_string()).or_default() += std::mem::take(n);
        }
    }
}

impl Drop for ConnectionCounts {
    fn drop(&mut self) {
        self.flush();
        self.tally.connected.fetch_sub(1, Ordering::Relaxed);
    }
}

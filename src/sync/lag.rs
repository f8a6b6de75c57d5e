//! Tick lag: how late each scheduler tick ran compared with when it was due.

use std::{collections::VecDeque, sync::Mutex, time::Duration};

use serde_json::{Value, json};

/// Ticks remembered for the percentiles: the last 10 s at 80 Hz.
const WINDOW: usize = 800;

#[derive(Debug, Default)]
pub struct LagStats {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    recent_us: VecDeque<u64>,
    ticks: u64,
    max_us: u64,
}

impl LagStats {
    pub fn record(&self, lag: Duration) {
        let micros = lag.as_micros().min(u64::MAX as u128) as u64;
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.recent_us.len() == WINDOW {
            inner.recent_us.pop_front();
        }
        inner.recent_us.push_back(micros);
        inner.ticks += 1;
        inner.max_us = inner.max_us.max(micros);
    }

    /// Ticks recorded since start.
    pub fn ticks(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).ticks
    }

    /// `{ticks, window, p50Ms, p95Ms, p99Ms, maxMs}` over the recent window (max over all time).
    pub fn report(&self) -> Value {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut sorted: Vec<u64> = inner.recent_us.iter().copied().collect();
        sorted.sort_unstable();
        let pick = |q: f64| -> f64 {
            if sorted.is_empty() {
                return 0.0;
            }
            let index = ((sorted.len() - 1) as f64 * q).round() as usize;
            sorted[index] as f64 / 1_000.0
        };
        json!({
            "ticks": inner.ticks,
            "window": sorted.len(),
            "p50Ms": pick(0.50),
            "p95Ms": pick(0.95),
            "p99Ms": pick(0.99),
            "maxMs": inner.max_us as f64 / 1_000.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_recorded_lags() {
        let stats = LagStats::default();
        for ms in 1..=100 {
            stats.record(Duration::from_millis(ms));
        }
        let report = stats.report();
        assert_eq!(report["ticks"], 100);
        assert_eq!(report["p50Ms"], 51.0);
        assert_eq!(report["p99Ms"], 99.0);
        assert_eq!(report["maxMs"], 100.0);
    }
}

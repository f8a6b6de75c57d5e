//! Latency histograms in microseconds, shared by many connection tasks, and their one-line summary.

use std::{sync::Mutex, time::Duration};

use hdrhistogram::Histogram;

use super::lock;

/// Highest value kept: one minute, in microseconds; larger ones are clamped to it.
const HIGHEST_US: u64 = 60_000_000;

/// A histogram behind a mutex: recording takes the lock for a few tens of nanoseconds, cheap next
/// to decoding the packet that produced the sample.
#[derive(Debug)]
pub struct Recorder(Mutex<Histogram<u64>>);

impl Default for Recorder {
    fn default() -> Self {
        // 3 significant digits from 1 µs to a minute: fixed, known-good bounds.
        Self(Mutex::new(Histogram::new_with_bounds(1, HIGHEST_US, 3).expect("valid histogram bounds")))
    }
}

impl Recorder {
    fn record_us(&self, us: u64) {
        lock(&self.0).saturating_record(us);
    }

    pub fn record(&self, elapsed: Duration) {
        self.record_us(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    /// Records a delay given in (fractional) milliseconds; negative ones (clock rounding) count as 0.
    pub fn record_ms(&self, ms: f64) {
        self.record_us((ms * 1000.0).max(0.0) as u64);
    }

    /// `p50 0.412 ms  p99 1.234 ms  p99.9 3.210 ms  max 5.001 ms  (n 12345)`.
    pub fn summary(&self) -> String {
        let histogram = lock(&self.0);
        if histogram.is_empty() {
            return "no samples".to_owned();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        format!(
            "p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  (n {})",
            ms(histogram.value_at_quantile(0.5)),
            ms(histogram.value_at_quantile(0.99)),
            ms(histogram.value_at_quantile(0.999)),
            ms(histogram.max()),
            histogram.len()
        )
    }
}

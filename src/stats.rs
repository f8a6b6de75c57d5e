//! Running figures the `metrics:update` feed reports: latency from the app-level pings and drift
//! from members' position reports.

use std::sync::Mutex;

/// Weight of the newest sample in the moving averages: about the last 20 samples count.
const SMOOTHING: f64 = 0.1;
/// Largest drift a position report counts with. A report further off than this is a member
/// elsewhere in the song (or a made-up position), which one sample must not let dominate the
/// average for minutes.
const MAX_DRIFT_SAMPLE_MS: f64 = 60_000.0;

#[derive(Debug, Default)]
pub struct SyncStats {
    latency_ms: Mutex<Option<f64>>,
    drift_ms: Mutex<Option<f64>>,
}

fn blend(slot: &Mutex<Option<f64>>, sample: f64) {
    let mut value = slot.lock().unwrap_or_else(|p| p.into_inner());
    *value = Some(match *value {
        Some(average) => average + SMOOTHING * (sample - average),
        None => sample,
    });
}

impl SyncStats {
    /// A round trip of the app-level `ping`/`pong`.
    pub fn record_latency(&self, latency_ms: f64) {
        blend(&self.latency_ms, latency_ms);
    }

    /// How far a member's reported position was from the timeline (the sign is ignored).
    pub fn record_drift(&self, drift_ms: f64) {
        blend(&self.drift_ms, drift_ms.abs().min(MAX_DRIFT_SAMPLE_MS));
    }

    /// Average latency in ms, 0 before the first sample.
    pub fn latency(&self) -> f64 {
        self.latency_ms.lock().unwrap_or_else(|p| p.into_inner()).unwrap_or(0.0)
    }

    /// Average absolute drift in ms, 0 before the first report.
    pub fn drift(&self) -> f64 {
        self.drift_ms.lock().unwrap_or_else(|p| p.into_inner()).unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_start_at_the_first_sample_and_move_toward_new_ones() {
        let stats = SyncStats::default();
        assert_eq!(stats.latency(), 0.0);
        stats.record_latency(40.0);
        assert_eq!(stats.latency(), 40.0);
        stats.record_latency(140.0);
        assert!((stats.latency() - 50.0).abs() < 1e-9);
        stats.record_drift(-30.0);
        assert_eq!(stats.drift(), 30.0);
        // A report a day off moves the average by one bounded sample, not by hours.
        stats.record_drift(86_400_000.0);
        assert!((stats.drift() - (30.0 + 0.1 * (60_000.0 - 30.0))).abs() < 1e-9);
    }
}

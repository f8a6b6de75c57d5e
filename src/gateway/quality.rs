//! Connection quality from the application-level `ping`/`pong` events.

use serde_json::{Value, json};

use crate::core::Millis;

/// Ping and pong counts of one socket.
#[derive(Debug, Clone)]
pub struct Quality {
    connected_at: Millis,
    ping_count: u64,
    pong_count: u64,
    /// Pings still unanswered when the next one was sent.
    timeouts: u64,
    awaiting_pong: bool,
    latency: Option<f64>,
}

/// Every this many pongs the sender gets a `connection_quality` report.
const REPORT_EVERY_PONGS: u64 = 5;

impl Quality {
    pub fn new(connected_at: Millis) -> Self {
        Self { connected_at, ping_count: 0, pong_count: 0, timeouts: 0, awaiting_pong: false, latency: None }
    }

    pub fn ping_sent(&mut self) {
        if self.awaiting_pong {
            self.timeouts += 1;
        }
        self.ping_count += 1;
        self.awaiting_pong = true;
    }

    /// Records a pong echoing `timestamp`; true when a report is due.
    pub fn pong_received(&mut self, timestamp: f64, now: Millis) -> bool {
        self.latency = Some((now as f64 - timestamp).max(0.0));
        self.pong_count += 1;
        self.awaiting_pong = false;
        self.pong_count.is_multiple_of(REPORT_EVERY_PONGS)
    }

    pub fn latency(&self) -> Option<f64> {
        self.latency
    }

    /// Percent of pings without a pong, to 2 decimals.
    fn packet_loss(&self) -> f64 {
        if self.ping_count == 0 {
            return 0.0;
        }
        let lost = self.ping_count.saturating_sub(self.pong_count) as f64;
        (lost / self.ping_count as f64 * 10_000.0).round() / 100.0
    }

    fn label(&self) -> &'static str {
        let Some(latency) = self.latency else { return "unknown" };
        let loss = self.packet_loss();
        match () {
            _ if latency <= 50.0 && loss <= 1.0 => "excellent",
            _ if latency <= 100.0 && loss <= 2.0 => "good",
            _ if latency <= 200.0 && loss <= 5.0 => "fair",
            _ => "poor",
        }
    }

    pub fn report(&self, socket_id: &str, now: Millis) -> Value {
        json!({
            "socketId": socket_id,
            "latency": self.latency,
            "packetLoss": self.packet_loss(),
            "connectionDuration": now - self.connected_at,
            "pingCount": self.ping_count,
            "pongCount": self.pong_count,
            "timeouts": self.timeouts,
            "quality": self.label(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_until_a_pong_then_graded_by_latency_and_loss() {
        let mut q = Quality::new(0);
        assert_eq!(q.report("s", 10)["quality"], "unknown");
        q.ping_sent();
        assert!(!q.pong_received(1_000.0, 1_030));
        assert_eq!(q.report("s", 2_000)["quality"], "excellent");
        q.ping_sent();
        q.ping_sent(); // the previous one went unanswered
        q.pong_received(2_000.0, 2_150);
        let report = q.report("s", 3_000);
        assert_eq!(report["timeouts"], 1);
        assert_eq!(report["packetLoss"], 33.33);
        assert_eq!(report["quality"], "poor");
        assert_eq!(report["connectionDuration"], 3_000);
    }

    #[test]
    fn every_fifth_pong_asks_for_a_report() {
        let mut q = Quality::new(0);
        let due: Vec<bool> = (0..10).map(|i| q.pong_received(i as f64, i)).collect();
        assert_eq!(due.iter().filter(|d| **d).count(), 2);
        assert!(due[4] && due[9]);
    }
}

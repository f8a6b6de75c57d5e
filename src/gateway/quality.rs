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
    /// When the ping still unanswered was sent.
    awaiting_pong: Option<Millis>,
    latency: Option<f64>,
}

/// Every this many pongs the sender gets a `connection_quality` report.
const REPORT_EVERY_PONGS: u64 = 5;

impl Quality {
    pub fn new(connected_at: Millis) -> Self {
        Self { connected_at, ping_count: 0, pong_count: 0, timeouts: 0, awaiting_pong: None, latency: None }
    }

    pub fn ping_sent(&mut self, now: Millis) {
        if self.awaiting_pong.is_some() {
            self.timeouts += 1;
        }
        self.ping_count += 1;
        self.awaiting_pong = Some(now);
    }

    /// Records the pong to the ping in flight: the round trip is timed from when the server sent
    /// that ping, not from the timestamp the client echoes, which the client could make up. A pong
    /// with no ping in flight is ignored. `Some(report_due)` when counted.
    pub fn pong_received(&mut self, now: Millis) -> Option<bool> {
        let sent_at = self.awaiting_pong.take()?;
        self.latency = Some((now - sent_at).max(0) as f64);
        self.pong_count += 1;
        Some(self.pong_count.is_multiple_of(REPORT_EVERY_PONGS))
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
        q.ping_sent(1_000);
        assert_eq!(q.pong_received(1_030), Some(false));
        assert_eq!(q.report("s", 2_000)["latency"], 30.0);
        assert_eq!(q.report("s", 2_000)["quality"], "excellent");
        q.ping_sent(2_000);
        q.ping_sent(2_000); // the previous one went unanswered
        q.pong_received(2_150);
        let report = q.report("s", 3_000);
        assert_eq!(report["timeouts"], 1);
        assert_eq!(report["packetLoss"], 33.33);
        assert_eq!(report["quality"], "poor");
        assert_eq!(report["connectionDuration"], 3_000);
    }

    #[test]
    fn a_pong_without_a_ping_in_flight_counts_for_nothing() {
        let mut q = Quality::new(0);
        assert_eq!(q.pong_received(5_000), None);
        q.ping_sent(6_000);
        assert!(q.pong_received(6_040).is_some());
        assert_eq!(q.pong_received(6_050), None, "one pong per ping");
        let report = q.report("s", 7_000);
        assert_eq!((report["pongCount"].as_u64(), report["latency"].as_f64()), (Some(1), Some(40.0)));
    }

    #[test]
    fn every_fifth_pong_asks_for_a_report() {
        let mut q = Quality::new(0);
        let due: Vec<bool> = (0..10)
            .map(|i| {
                q.ping_sent(i * 100);
                q.pong_received(i * 100 + 5).expect("a ping is in flight")
            })
            .collect();
        assert_eq!(due.iter().filter(|d| **d).count(), 2);
        assert!(due[4] && due[9]);
    }
}

//! Connection quality from the application-level `ping`/`pong` events.

use std::collections::VecDeque;

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
    /// When the pings still unanswered were sent (the timestamps they carried), oldest first.
    unanswered: VecDeque<Millis>,
    latency: Option<f64>,
}

/// Every this many pongs the sender gets a `connection_quality` report.
const REPORT_EVERY_PONGS: u64 = 5;
/// Unanswered pings remembered, so that a late pong (after the next ping went out) is still
/// matched to its own ping.
const UNANSWERED_KEPT: usize = 4;

impl Quality {
    pub fn new(connected_at: Millis) -> Self {
        Self { connected_at, ping_count: 0, pong_count: 0, timeouts: 0, unanswered: VecDeque::new(), latency: None }
    }

    /// A ping goes out carrying `now` as its timestamp.
    pub fn ping_sent(&mut self, now: Millis) {
        if !self.unanswered.is_empty() {
            self.timeouts += 1;
        }
        self.ping_count += 1;
        if self.unanswered.len() == UNANSWERED_KEPT {
            self.unanswered.pop_front();
        }
        self.unanswered.push_back(now);
    }

    /// Records a pong echoing `timestamp`. It counts only when it echoes a ping the server sent
    /// and that is still unanswered; the round trip is then timed from the server's own record of
    /// that ping, so a client cannot make it up. `Some(report_due)` when counted.
    pub fn pong_received(&mut self, timestamp: f64, now: Millis) -> Option<bool> {
        let answered = self.unanswered.iter().position(|&sent| sent as f64 == timestamp)?;
        let sent_at = self.unanswered[answered];
        // Older pings are past answering: their timeouts were counted when the next one went out.
        self.unanswered.drain(..=answered);
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
        assert_eq!(q.pong_received(1_000.0, 1_030), Some(false));
        assert_eq!(q.report("s", 2_000)["latency"], 30.0);
        assert_eq!(q.report("s", 2_000)["quality"], "excellent");
        q.ping_sent(2_000);
        q.ping_sent(2_100); // the previous one went unanswered
        q.pong_received(2_100.0, 2_250);
        let report = q.report("s", 3_000);
        assert_eq!(report["timeouts"], 1);
        assert_eq!(report["packetLoss"], 33.33);
        assert_eq!(report["quality"], "poor");
        assert_eq!(report["connectionDuration"], 3_000);
    }

    #[test]
    fn a_pong_counts_only_for_a_ping_the_server_sent() {
        let mut q = Quality::new(0);
        assert_eq!(q.pong_received(5_000.0, 5_000), None, "no ping sent");
        q.ping_sent(6_000);
        assert_eq!(q.pong_received(-1e308, 6_010), None, "a made-up timestamp");
        assert!(q.pong_received(6_000.0, 6_040).is_some());
        assert_eq!(q.pong_received(6_000.0, 6_050), None, "one pong per ping");
        let report = q.report("s", 7_000);
        assert_eq!((report["pongCount"].as_u64(), report["latency"].as_f64()), (Some(1), Some(40.0)));
    }

    #[test]
    fn a_late_pong_is_timed_from_its_own_ping() {
        let mut q = Quality::new(0);
        q.ping_sent(10_000);
        q.ping_sent(15_000);
        // The answer to the first ping arrives after the second went out.
        assert!(q.pong_received(10_000.0, 16_000).is_some());
        assert_eq!(q.report("s", 16_000)["latency"], 6_000.0);
        // The second one's answer still counts.
        assert!(q.pong_received(15_000.0, 16_100).is_some());
        assert_eq!(q.report("s", 16_100)["latency"], 1_100.0);
    }

    #[test]
    fn every_fifth_pong_asks_for_a_report() {
        let mut q = Quality::new(0);
        let due: Vec<bool> = (0..10)
            .map(|i| {
                q.ping_sent(i * 100);
                q.pong_received((i * 100) as f64, i * 100 + 5).expect("a ping is in flight")
            })
            .collect();
        assert_eq!(due.iter().filter(|d| **d).count(), 2);
        assert!(due[4] && due[9]);
    }
}

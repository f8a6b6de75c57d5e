//! Prometheus metrics: names, labels and the recorder `/metrics` renders.
//!
//! Names follow Prometheus conventions (base units, `_total` counters). Label values come from
//! closed sets only (known event names, error codes, transports): never a session id, socket id or
//! anything a user typed, so a hostile client cannot blow up the number of series.

use std::sync::OnceLock;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::{
    core::Vocabulary,
    gateway::throttle::EventClass,
    protocol::{enhanced, legacy},
};

/// Latency buckets in seconds: 50 µs to 2.5 s.
const SECONDS_BUCKETS: &[f64] =
    &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// The process-wide recorder; installed on first use, shared by every instance in the process.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .expect("buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (an embedding application's); keep it.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics shows only what this one records");
        }
        describe();
        process_collector().describe();
        start_at_zero();
        handle
    })
}

/// The standard process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes` …),
/// read from the operating system at each scrape.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// Reads the process metrics now, for the scrape being answered.
pub fn collect_process() {
    process_collector().collect();
}

/// Counters and gauges of a closed set of labels exist from start-up at 0: a dashboard shows 0
/// rather than no data, and `rate()` counts the first event, which it cannot when the series
/// appears with it.
fn start_at_zero() {
    for class in EventClass::ALL {
        counter!("bandsync_rate_limited_total", "class" => class.as_str()).absolute(0);
        if class.coalesces() {
            counter!("bandsync_coalesced_total", "class" => class.as_str()).absolute(0);
        }
    }
    counter!("bandsync_rate_limited_total", "class" => "queue").absolute(0);
    for op in REDIS_OPS {
        counter!("bandsync_redis_errors_total", "op" => op).absolute(0);
    }
    for transport in ["websocket", "polling"] {
        gauge!("bandsync_connections", "transport" => transport).increment(0.0);
        counter!("bandsync_connections_total", "transport" => transport).absolute(0);
    }
    for vocabulary in [Vocabulary::Legacy, Vocabulary::Enhanced] {
        gauge!("bandsync_members", "vocabulary" => vocabulary.as_str()).increment(0.0);
    }
    gauge!("bandsync_members_reconnecting").increment(0.0);
    for outcome in GAP_OUTCOMES {
        counter!("bandsync_delivery_gaps_total", "outcome" => outcome).absolute(0);
    }
    gauge!("bandsync_sessions_mixed").increment(0.0);
    counter!("bandsync_legacy_warnings_total").absolute(0);
}

/// The Redis operations timed by [`redis_command`].
pub const REDIS_OPS: [&str; 2] = ["read", "update"];

/// HELP text and units, so dashboards and `promtool` know what each metric means.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("bandsync_build_info", "Version and server id of this instance (always 1)");
    describe_gauge!("bandsync_connections", Unit::Count, "Socket.IO connections open now, by transport at connect");
    describe_counter!(
        "bandsync_connections_total",
        Unit::Count,
        "Socket.IO connections opened, by transport at connect"
    );
    describe_gauge!("bandsync_sessions", Unit::Count, "Sessions in the store, seated or not");
    describe_gauge!(
        "bandsync_sessions_mixed",
        Unit::Count,
        "Sessions in the store seating members of both vocabularies, legacy and enhanced"
    );
    describe_gauge!("bandsync_connections_max", Unit::Count, "MAX_CONNECTIONS of this instance (0: unlimited)");
    describe_counter!(
        "bandsync_legacy_warnings_total",
        Unit::Count,
        "Connections that used legacy events while LEGACY_EVENTS=warn (one each)"
    );
    describe_gauge!(
        "bandsync_sessions_playing",
        Unit::Count,
        "Sessions this instance streams to (playing, with members)"
    );
    describe_gauge!(
        "bandsync_members",
        Unit::Count,
        "Members seated through this instance with a live connection, by the vocabulary they joined with"
    );
    describe_gauge!(
        "bandsync_members_reconnecting",
        Unit::Count,
        "Seats this instance holds for members whose connection dropped (RESUME_GRACE_MS)"
    );
    describe_counter!(
        "bandsync_events_received_total",
        Unit::Count,
        "Client events handled, by event name, result and vocabulary (legacy, enhanced; other for unknown names)"
    );
    describe_histogram!("bandsync_event_duration_seconds", Unit::Seconds, "Time to handle one client event");
    describe_counter!(
        "bandsync_events_emitted_total",
        Unit::Count,
        "Events sent (one per broadcast or send), by event name"
    );
    describe_counter!(
        "bandsync_connections_refused_total",
        Unit::Count,
        "Socket.IO connections refused at connect (bad token or a connection cap), by reason"
    );
    describe_counter!(
        "bandsync_rate_limited_total",
        Unit::Count,
        "Events refused or dropped by a socket's rate limits (by event class) or its full queue (class \"queue\")"
    );
    describe_counter!(
        "bandsync_coalesced_total",
        Unit::Count,
        "State-setting events (tempo, seek, message) over budget that a newer one of the same state replaced before they were applied, by class"
    );
    describe_counter!(
        "bandsync_delivery_gaps_total",
        Unit::Count,
        "Changes from other instances that waited for an earlier revision, by outcome: filled (it came within REORDER_WAIT_MS) or replaced (members got the current state instead)"
    );
    describe_histogram!("bandsync_tick_lag_seconds", Unit::Seconds, "How late the sync engine's ticks ran");
    describe_histogram!(
        "bandsync_clock_sync_rtt_seconds",
        Unit::Seconds,
        "Round trips of clock:sync as clients report them"
    );
    describe_histogram!("bandsync_redis_command_duration_seconds", Unit::Seconds, "Time of Redis operations");
    describe_counter!("bandsync_redis_errors_total", Unit::Count, "Redis operations that failed");
    describe_gauge!("bandsync_redis_connected", "1 while Redis answers, 0 during an outage");
}

/// The label for an event name: itself when the protocol knows it, `other` otherwise.
pub fn event_label(event: &str) -> &'static str {
    known_event(event).map_or("other", |(name, _)| name)
}

/// The protocol's own name for `event`, and the vocabulary that knows it.
fn known_event(event: &str) -> Option<(&'static str, Vocabulary)> {
    let find = |names: &[&'static str]| names.iter().find(|known| **known == event).copied();
    find(legacy::EVENTS)
        .map(|name| (name, Vocabulary::Legacy))
        .or_else(|| find(enhanced::EVENTS).map(|name| (name, Vocabulary::Enhanced)))
}

pub fn build_info(server_id: &str) {
    gauge!("bandsync_build_info", "version" => env!("CARGO_PKG_VERSION"), "server_id" => server_id.to_owned()).set(1.0);
}

pub fn connection_opened(transport: &'static str) {
    gauge!("bandsync_connections", "transport" => transport).increment(1.0);
    counter!("bandsync_connections_total", "transport" => transport).increment(1);
}

pub fn connection_closed(transport: &'static str) {
    gauge!("bandsync_connections", "transport" => transport).decrement(1.0);
}

/// One event handled: its name and vocabulary, `ok` (`ignored`) or the error code, and how long it took.
pub fn event_handled(event: &str, result: &'static str, seconds: f64) {
    let (event, vocabulary) = known_event(event).map_or(("other", "other"), |(e, v)| (e, v.as_str()));
    counter!("bandsync_events_received_total", "event" => event, "result" => result, "vocabulary" => vocabulary)
        .increment(1);
    histogram!("bandsync_event_duration_seconds", "event" => event).record(seconds);
}

pub fn event_emitted(event: &'static str) {
    counter!("bandsync_events_emitted_total", "event" => event).increment(1);
}

/// The emitted-events counters of the sync engine's streams, looked up once: the engine counts
/// on every tick, and a lookup by name and label builds and hashes a key each time.
pub struct StreamCounters {
    pub position_sync: metrics::Counter,
    pub metronome_beat: metrics::Counter,
    pub scroll_tick: metrics::Counter,
}

impl Default for StreamCounters {
    fn default() -> Self {
        let emitted = |event: &'static str| counter!("bandsync_events_emitted_total", "event" => event);
        Self {
            position_sync: emitted("position:sync"),
            metronome_beat: emitted("metronome:beat"),
            scroll_tick: emitted("scroll_tick"),
        }
    }
}

/// A Socket.IO connection refused at connect, by reason.
/// How a wait for a missing revision ended: `filled` or `replaced`.
pub const GAP_OUTCOMES: [&str; 2] = ["filled", "replaced"];

/// A wait for a missing revision ended with `outcome` (one of [`GAP_OUTCOMES`]).
pub fn delivery_gap(outcome: &'static str) {
    counter!("bandsync_delivery_gaps_total", "outcome" => outcome).increment(1);
}

pub fn connection_refused(reason: &'static str) {
    counter!("bandsync_connections_refused_total", "reason" => reason).increment(1);
}

/// An event dropped; `class` is its rate-limit class, or `queue` when the socket's queue was full.
pub fn rate_limited(class: &'static str) {
    counter!("bandsync_rate_limited_total", "class" => class).increment(1);
}

/// A state-setting event that waited past its budget and was replaced by a newer one of the same
/// state before it was applied, by class.
pub fn coalesced(class: &'static str) {
    counter!("bandsync_coalesced_total", "class" => class).increment(1);
}

/// A member seated (`delta` 1) or unseated (-1) through this instance, by the vocabulary it joined with.
pub fn member_seated(vocabulary: Vocabulary, delta: f64) {
    gauge!("bandsync_members", "vocabulary" => vocabulary.as_str()).increment(delta);
}

/// A seat held for a member whose connection dropped (`delta` 1), or no longer held (-1).
pub fn member_reconnecting(delta: f64) {
    gauge!("bandsync_members_reconnecting").increment(delta);
}

/// Sessions in the store, those this instance streams to, and those seating both vocabularies.
pub fn sessions(active: usize, playing: usize, mixed: usize) {
    gauge!("bandsync_sessions").set(active as f64);
    gauge!("bandsync_sessions_playing").set(playing as f64);
    gauge!("bandsync_sessions_mixed").set(mixed as f64);
}

/// `MAX_CONNECTIONS`, so dashboards and alerts can compare connections with it (0: unlimited).
pub fn connections_max(max: u32) {
    gauge!("bandsync_connections_max").set(f64::from(max));
}

/// A legacy connection warned about under `LEGACY_EVENTS=warn`.
pub fn legacy_warned() {
    counter!("bandsync_legacy_warnings_total").increment(1);
}

pub fn tick_lag(seconds: f64) {
    histogram!("bandsync_tick_lag_seconds").record(seconds);
}

/// A client's own measure of its last `clock:sync` round trip, when it reports one.
pub fn clock_sync_rtt(seconds: f64) {
    histogram!("bandsync_clock_sync_rtt_seconds").record(seconds);
}

pub fn redis_command(op: &'static str, seconds: f64, ok: bool) {
    histogram!("bandsync_redis_command_duration_seconds", "op" => op).record(seconds);
    if !ok {
        counter!("bandsync_redis_errors_total", "op" => op).increment(1);
    }
}

pub fn redis_connected(connected: bool) {
    gauge!("bandsync_redis_connected").set(if connected { 1.0 } else { 0.0 });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_event_names_share_one_label() {
        assert_eq!(event_label("join_session"), "join_session");
        assert_eq!(event_label("clock:sync"), "clock:sync");
        assert_eq!(event_label("session-1234-user-text"), "other");
    }
}

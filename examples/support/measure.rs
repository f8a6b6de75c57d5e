//! What the load generator measures on each connection, and the leaders' tempo changes it times.
//!
//! Stream packets: the delay from the server time they carry to their receipt (same machine, same
//! wall clock) and gaps in their arrival. Tempo changes: the delay from the leader's send to each
//! other member's receipt, matched through a table of send instants keyed by (session, tempo).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bandsync_server::core::timeline::{MAX_TEMPO, MIN_TEMPO};
use tokio::time::{MissedTickBehavior, interval_at};

use super::{
    Rng,
    client::Client,
    latency::Recorder,
    lock, now_ms,
    session::{self, ErrorCodes, Vocabulary},
    wire::Fields,
};

/// Tempo changes cycle through whole tempos strictly inside the range the server accepts, so
/// within a session each value is unique for hundreds of changes and a receipt identifies its send.
const TEMPO_LOW: u32 = MIN_TEMPO as u32 + 1;
const TEMPO_SPAN: u32 = (MAX_TEMPO - MIN_TEMPO) as u32 - 1;

/// What the connection tasks record, shared by all of them.
#[derive(Debug, Default)]
pub struct Measures {
    /// Set during the measured window only.
    pub recording: AtomicBool,
    /// When each tempo change was sent, by (session index, tempo).
    pub sent: Mutex<HashMap<(usize, u32), Instant>>,
    pub control: Recorder,
    pub stream: Recorder,
    pub stream_packets: AtomicU64,
    /// Arrivals more than 1.5 periods after the previous one (late or missing packets).
    pub gaps: AtomicU64,
    /// Packets never received: a jump of more than 1.5 periods in the stream's server times.
    pub missing: AtomicU64,
    pub unmatched: AtomicU64,
    pub errors: ErrorCodes,
}

/// The per-connection event handler: stream latency and gaps, tempo receipt delays, error codes.
/// `index` is the session's; `control`: whether this member's tempo receipts count (not the
/// leader's, which sent them).
pub fn member_handler(
    measures: Arc<Measures>,
    vocabulary: Vocabulary,
    index: usize,
    control: bool,
) -> impl FnMut(&str, &Fields) + Send + 'static {
    let stream_event = vocabulary.stream_event();
    let period_ms = vocabulary.stream_period_ms();
    let gap = Duration::from_secs_f64(1.5 * period_ms / 1000.0);
    let (mut first_stream, mut last_stream, mut last_tempo) = (None::<Instant>, None::<Instant>, None::<u32>);
    let mut last_server_time = None::<f64>;
    move |name: &str, fields: &Fields| {
        let recording = measures.recording.load(Ordering::Relaxed);
        if name == stream_event {
            let now = Instant::now();
            let first = *first_stream.get_or_insert(now);
            let previous = last_stream.replace(now);
            if !recording {
                return;
            }
            measures.stream_packets.fetch_add(1, Ordering::Relaxed);
            let server_time = fields.server_time.or(fields.server_timestamp);
            if let Some(sent_ms) = server_time {
                measures.stream.record_ms(now_ms() - sent_ms);
            }
            // A stream's first second is left out: a start may take a tick or two to settle.
            let settled = now.duration_since(first) > Duration::from_secs(1);
            if let Some(previous) = previous
                && settled
                && now.duration_since(previous) > gap
            {
                measures.gaps.fetch_add(1, Ordering::Relaxed);
            }
            // Missing packets are told by the server's own times, which a late arrival leaves alone.
            if let (Some(sent_ms), Some(previous_ms)) = (server_time, last_server_time)
                && settled
                && sent_ms - previous_ms > 1.5 * period_ms
            {
                let periods = ((sent_ms - previous_ms) / period_ms).round() as u64;
                measures.missing.fetch_add(periods.saturating_sub(1), Ordering::Relaxed);
            }
            if server_time.is_some() {
                last_server_time = server_time;
            }
        } else if let Some(tempo) = vocabulary.announced_tempo(name, fields) {
            let tempo = tempo.round() as u32;
            // Only a change counts: legacy members get the same tempo in every other snapshot.
            let changed = last_tempo.replace(tempo) != Some(tempo);
            if changed && control && recording {
                let sent = lock(&measures.sent).get(&(index, tempo)).copied();
                match sent {
                    Some(at) => measures.control.record(at.elapsed()),
                    None => {
                        measures.unmatched.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        } else {
            measures.errors.count_event(name, fields);
        }
    }
}

/// A leader's tempo changes, every `every`, each sent after its send instant is on record.
pub async fn change_tempo(
    measures: Arc<Measures>,
    leader: Client,
    vocabulary: Vocabulary,
    index: usize,
    id: String,
    every: Duration,
) {
    // Sessions are spread over the period instead of all changing at once.
    let offset = every.mul_f64(Rng::new(index as u64).unit());
    let mut ticks = interval_at(tokio::time::Instant::now() + offset, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut step: u32 = 100;
    while !leader.is_closed() {
        ticks.tick().await;
        step += 1;
        let tempo = TEMPO_LOW + step % TEMPO_SPAN;
        lock(&measures.sent).insert((index, tempo), Instant::now());
        session::set_tempo(&leader, vocabulary, &id, tempo);
    }
}

//! The sync engine: one scheduler per instance streams every playing session's positions and beats.
//!
//! Every `SYNC_RATE_MS` (80 Hz by default) it sends each playing session's enhanced members a
//! `position:sync` and, when a beat has come, a `metronome:beat`; every `LEGACY_TICK_MS` its
//! legacy members get a `scroll_tick`. Everything is computed from the session timeline at send
//! time, never accumulated, and each packet carries the server time its position is for, so a
//! client that receives it late still places it exactly. Sessions register here only while they
//! play, so a stopped session costs nothing, and one loop serves them all instead of a timer task
//! per session.
//!
//! Stream packets go through each socket's one ordered queue, like every other event: a change
//! (a stop, a seek, a tempo change) is never overtaken by a tick computed before it. socketioxide's
//! volatile packets travel apart from that queue, so a tick still waiting there was written after
//! a `metronome:stop` sent just after it; and the queue costs less per packet than the volatile
//! slot (BENCHMARKS.md, "Streams before control"). A client too slow to read its stream stalls
//! its own queue only, and the queue holds more than the Engine.IO heartbeat lets a silent client
//! fall behind by (`server::socket_buffer_packets`): the heartbeat cuts a stalled client, and its
//! seat is held for its reconnection, before anything is dropped from its queue.
//!
//! Sessions are spread over [`SLOTS_PER_PERIOD`] slots of each period, each session always in the
//! same one: every member still gets its update once a period, but the writes of one moment are
//! an eighth of the whole, so they leave in a short burst instead of queueing behind every other
//! session's.

use std::{collections::HashMap, sync::Arc, sync::Mutex, time::Duration};

use socketioxide::{SocketIo, adapter::Adapter};
use tokio::time::Instant;

use super::lag::LagStats;
use crate::{
    clock::now_ms,
    core::{Millis, Session, Vocabulary, timeline::Timeline},
    gateway::rooms,
    protocol::{enhanced_render, legacy_render},
    state::AppState,
    telemetry::{self, StreamCounters},
};

/// With debug output on, a summary line every this many ticks (5 s at 80 Hz, 8 slots).
const SUMMARY_EVERY_TICKS: u64 = 3_200;

/// Slots each period is divided into; a session streams in one of them.
pub const SLOTS_PER_PERIOD: u32 = 8;

/// What the engine needs of one playing session.
#[derive(Debug, Clone)]
struct Playing {
    timeline: Timeline,
    beats_per_bar: u8,
    has_legacy: bool,
    has_enhanced: bool,
    /// The last beat count a `metronome:beat` went out for.
    last_beat: i64,
    /// When the next `scroll_tick` is due.
    next_scroll_tick: Millis,
    /// The slot of the period this session streams in.
    slot: u32,
}

#[derive(Default)]
pub struct Ticker {
    /// Keyed by shared ids, so each tick lists the sessions without copying their names.
    playing: Mutex<HashMap<Arc<str>, Playing>>,
    pub lag: LagStats,
    /// Wakes the scheduler, which sleeps while nothing plays.
    wake: tokio::sync::Notify,
}

impl Ticker {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Playing>> {
        self.playing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follows `session` after a change: streams while it plays with members seated.
    pub fn track(&self, session: &Session) {
        let mut playing = self.lock();
        if !session.timeline.is_playing || session.members.is_empty() {
            if playing.remove(session.id.as_str()).is_some() {
                tracing::debug!(session = %session.id, "streams stopped");
            }
            return;
        }
        if !playing.contains_key(session.id.as_str()) {
            tracing::debug!(session = %session.id, starts = session.timeline.started_at(), "streams started");
            self.wake.notify_one();
        }
        let now = now_ms();
        let previous = playing.get(session.id.as_str());
        let last_beat = match previous {
            // Moving on (a tempo change, a seek): beats before now count as sent, and a beat
            // already sent is never repeated.
            Some(p) => {
                let passed = session.timeline.beat_at(now).ceil() as i64 - 1;
                if passed >= p.last_beat - 1 { passed.max(p.last_beat) } else { passed }
            }
            // Newly playing here (a start, or one another instance made a moment ago): the first
            // beat due is the one at the start, even when the news arrives just after it.
            None => session.timeline.beat_at(session.timeline.started_at()).ceil() as i64 - 1,
        };
        let next_scroll_tick = previous.map_or(now, |p| p.next_scroll_tick);
        let slot = previous.map_or_else(|| least_used_slot(&playing), |p| p.slot);
        let entry = Playing {
            timeline: session.timeline.clone(),
            beats_per_bar: session.time_signature.beats_per_bar,
            has_legacy: session.seats(Vocabulary::Legacy),
            has_enhanced: session.seats(Vocabulary::Enhanced),
            last_beat,
            next_scroll_tick,
            slot,
        };
        playing.insert(Arc::from(session.id.as_str()), entry);
    }

    pub fn forget(&self, session_id: &str) {
        self.lock().remove(session_id);
    }

    pub fn playing_count(&self) -> usize {
        self.lock().len()
    }

    /// Runs the scheduler until the task is dropped.
    pub async fn run<A: Adapter>(app: Arc<AppState>, io: SocketIo<A>) {
        let slot_length = Duration::from_secs_f64(app.config.sync_rate_ms / 1_000.0) / SLOTS_PER_PERIOD;
        let mut grid = Grid::new(Instant::now(), slot_length);
        // Reused every tick: listing the playing sessions allocates nothing once it has grown.
        let mut session_ids: Vec<Arc<str>> = Vec::new();
        let mut busy: Vec<Arc<str>> = Vec::new();
        let counters = StreamCounters::default();
        loop {
            if app.ticker.playing_count() == 0 {
                // Nothing plays: no wake-ups at all until something starts (a start that lands
                // between the check and the wait leaves a permit, so it is not missed).
                app.ticker.wake.notified().await;
                grid = Grid::new(Instant::now(), slot_length);
            }
            let due = grid.due();
            tokio::time::sleep_until(due).await;
            let lag = Instant::now().saturating_duration_since(due);
            app.ticker.lag.record(lag);
            telemetry::tick_lag(lag.as_secs_f64());
            let slot = grid.slot();
            session_ids.clear();
            session_ids.extend(app.ticker.lock().iter().filter(|(_, p)| p.slot == slot).map(|(id, _)| id.clone()));
            busy.clear();
            for session_id in &session_ids {
                // A change in progress holds the lock: its session comes last, once the change
                // has been announced, so the update cannot overtake a `pause` or `stop`.
                let Ok(guard) = app.locks.try_lock(session_id) else {
                    busy.push(session_id.clone());
                    continue;
                };
                send_streams(&app, &io, &counters, session_id).await;
                drop(guard);
                // Let the sockets just handed this session's packets write them before the next
                // session's are stamped: a packet then waits for its own session's writes, not
                // for the whole slot's.
                tokio::task::yield_now().await;
            }
            for session_id in &busy {
                // A change that takes longer than a slot (a slow store) costs its session this
                // update rather than holding up the next slot.
                if let Ok(_guard) = tokio::time::timeout(slot_length, app.locks.lock(session_id)).await {
                    send_streams(&app, &io, &counters, session_id).await;
                }
            }
            grid.advance(Instant::now());
            if tracing::enabled!(tracing::Level::DEBUG) && app.ticker.lag.ticks().is_multiple_of(SUMMARY_EVERY_TICKS) {
                tracing::debug!(sessions = app.ticker.playing_count(), lag = %app.ticker.lag.report(), "sync engine");
            }
        }
    }
}

/// The slot with the fewest playing sessions, for a session that starts playing.
fn least_used_slot(playing: &HashMap<Arc<str>, Playing>) -> u32 {
    let mut used = [0usize; SLOTS_PER_PERIOD as usize];
    for entry in playing.values() {
        used[entry.slot as usize] += 1;
    }
    (0..SLOTS_PER_PERIOD).min_by_key(|&slot| used[slot as usize]).unwrap_or(0)
}

/// The scheduler's ticks: one per slot, on a fixed grid from `origin`.
#[derive(Debug, Clone, Copy)]
struct Grid {
    origin: Instant,
    slot_length: Duration,
    /// The number of the next tick since `origin`.
    index: u64,
}

impl Grid {
    fn new(origin: Instant, slot_length: Duration) -> Self {
        Self { origin, slot_length, index: 0 }
    }

    fn due(&self) -> Instant {
        self.origin + self.slot_length.mul_f64(self.index as f64)
    }

    /// The slot the next tick serves.
    fn slot(&self) -> u32 {
        (self.index % u64::from(SLOTS_PER_PERIOD)) as u32
    }

    /// Moves to the next tick. Late ticks keep the grid, so the rate stays exact: a slot is short
    /// (1.6 ms at 80 Hz), timers wake up to a millisecond late, and every slot must still come round
    /// once a period. Only after a stall of more than a whole period are whole periods skipped, not
    /// bunched; each slot keeps its place on the grid.
    fn advance(&mut self, now: Instant) {
        let slots = u64::from(SLOTS_PER_PERIOD);
        let elapsed = now.saturating_duration_since(self.origin).as_nanos();
        let current = (elapsed / self.slot_length.as_nanos().max(1)) as u64;
        let next = self.index + 1;
        let behind = current.saturating_sub(next);
        self.index = if behind >= slots { next + behind / slots * slots } else { next };
    }
}

/// One scheduler tick for one session.
async fn send_streams<A: Adapter>(app: &AppState, io: &SocketIo<A>, counters: &StreamCounters, session_id: &str) {
    let now = now_ms();
    let legacy_tick_ms = app.config.legacy_tick_ms as Millis;
    let (playing, beat_due, scroll_due) = {
        let mut registry = app.ticker.lock();
        let Some(entry) = registry.get_mut(session_id) else { return };
        let current_beat = entry.timeline.beat_at(now).floor() as i64;
        let beat_due = (now >= entry.timeline.started_at() && current_beat > entry.last_beat).then_some(current_beat);
        if let Some(beat) = beat_due {
            entry.last_beat = beat;
        }
        let scroll_due = now >= entry.next_scroll_tick;
        if scroll_due {
            // Due times advance on the clock's grid; after a stall, start again from now.
            entry.next_scroll_tick = (entry.next_scroll_tick + legacy_tick_ms).max(now + 1);
        }
        (entry.clone(), beat_due, scroll_due)
    };
    let timeline = &playing.timeline;
    let Some(namespace) = rooms::namespace(io) else { return };
    if playing.has_enhanced {
        let room = rooms::session(session_id, Vocabulary::Enhanced);
        let sync = enhanced_render::position_sync(session_id, timeline, playing.beats_per_bar, now);
        namespace.clone().local().to(room.clone()).emit("position:sync", &sync).await.ok();
        counters.position_sync.increment(1);
        if let Some(beat) = beat_due {
            let data = enhanced_render::metronome_beat(session_id, timeline, playing.beats_per_bar, beat);
            namespace.clone().local().to(room).emit("metronome:beat", &data).await.ok();
            counters.metronome_beat.increment(1);
        }
    }
    if playing.has_legacy && scroll_due {
        let room = rooms::session(session_id, Vocabulary::Legacy);
        let tick = legacy_render::scroll_tick(session_id, timeline.position_at(now), timeline.tempo_at(now), now);
        namespace.local().to(room).emit("scroll_tick", &tick).await.ok();
        counters.scroll_tick.increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Action, Command, Creation, Joiner, SessionSetup};

    #[test]
    fn late_ticks_keep_the_grid_and_stalls_skip_to_the_next_slot() {
        let start = Instant::now();
        let slot_length = Duration::from_millis(1);
        let mut grid = Grid::new(start, slot_length);
        assert_eq!((grid.due(), grid.slot()), (start, 0));
        // 3 ms late, within a period: the next slot still comes, late, in its turn.
        grid.advance(start + Duration::from_millis(3));
        assert_eq!((grid.due(), grid.slot()), (start + slot_length, 1));
        // A 30.5 ms stall, over three periods of 8 ms: three whole periods are skipped, and the
        // next tick serves slot 2, as it would have.
        grid.advance(start + Duration::from_micros(30_500));
        assert_eq!((grid.due(), grid.slot()), (start + slot_length * 26, 2));
    }

    #[test]
    fn sessions_are_spread_evenly_over_the_slots() {
        let ticker = Ticker::default();
        for i in 0..(SLOTS_PER_PERIOD * 3) {
            let joiner = Joiner { vocabulary: Vocabulary::Enhanced, ..Joiner::default() };
            let creation = Creation::IfMissing(SessionSetup::with_max_members(8));
            let join = Command {
                by: format!("m{i}"),
                action: Action::Join { joiner: joiner.into(), wants_lead: true, creation },
            };
            let mut slot = None;
            crate::core::apply(&mut slot, &format!("s{i}"), &join, 0).unwrap();
            let mut session = slot.unwrap();
            session.timeline.play(0);
            ticker.track(&session);
            // A change to a playing session keeps its slot.
            ticker.track(&session);
        }
        let mut per_slot = [0; SLOTS_PER_PERIOD as usize];
        for entry in ticker.lock().values() {
            per_slot[entry.slot as usize] += 1;
        }
        assert_eq!(per_slot, [3; SLOTS_PER_PERIOD as usize]);
    }
}

//! Per-socket rate limits, one token bucket per class of event.
//!
//! Each class has its own budget so that a client streaming position reports at full speed can
//! still join, chat and sync its clock. Checks happen as packets arrive, before an event is
//! queued, so a flood costs the server a bucket check per packet and nothing more.
//!
//! What happens past a budget depends on the class:
//! - State-setting classes ([`EventClass::coalesces`]: tempo, seek, message) are never refused:
//!   the sender's latest value waits in its queue and is applied when the bucket allows
//!   ([`Throttle::take_when_ready`]; see `gateway::queue`).
//! - Unknown events ([`EventClass::Other`]) are ignored anyway, so past their budget they are
//!   dropped unseen.
//! - Any other event is refused. The sender hears about it at most once a second (an answer to
//!   an acknowledgement it asked for is always sent), and a socket that keeps flooding without a
//!   second's pause for `RATE_LIMIT_DISCONNECT_AFTER_MS` is disconnected.

use std::{
    num::NonZeroU32,
    sync::Mutex,
    time::{Duration, Instant},
};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter, clock::Clock};

use crate::{
    config::{Budget, RateLimitSettings},
    protocol::{enhanced, legacy},
};

/// How long a socket must stay within its limits for a flood to count as over.
const FLOOD_PAUSE: Duration = Duration::from_secs(1);

/// The shortest time between two `RATE_LIMITED` notices to one socket.
const NOTICE_EVERY: Duration = Duration::from_secs(1);

/// Classes of events, each with a budget of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventClass {
    Join,
    /// Tempo changes: coalesced.
    Tempo,
    /// Position changes (seeks, the leader's position reports): coalesced.
    Seek,
    /// The session's message line: coalesced.
    Message,
    Beat,
    /// Members' position reports (`position:sync`).
    Position,
    Chat,
    Clock,
    /// Playback and role control, leaves and queries.
    Control,
    /// Events the server does not know, and replies it needs nothing from (`heartbeat_response`).
    Other,
}

/// How many classes there are: one bucket each.
const CLASSES: usize = EventClass::ALL.len();

impl EventClass {
    pub const ALL: [EventClass; 10] = [
        EventClass::Join,
        EventClass::Tempo,
        EventClass::Seek,
        EventClass::Message,
        EventClass::Beat,
        EventClass::Position,
        EventClass::Chat,
        EventClass::Clock,
        EventClass::Control,
        EventClass::Other,
    ];

    pub fn of(event: &str) -> Self {
        match event {
            "join_session" | "session:create" | "session:join" => EventClass::Join,
            "set_tempo" | "tempo_change" | "tempo_changed" | "tempo:change" => EventClass::Tempo,
            "seek" | "position:seek" | "position_sync" => EventClass::Seek,
            "update_message" => EventClass::Message,
            "beat_sync" => EventClass::Beat,
            "position:sync" => EventClass::Position,
            "chat_message" | "chat:message" => EventClass::Chat,
            "clock:sync" | "latency_probe" | "latency:probe" | "sync_request" | "heartbeat" | "pong"
            | "connection_quality" => EventClass::Clock,
            _ if legacy::EVENTS.contains(&event) || enhanced::EVENTS.contains(&event) => EventClass::Control,
            _ => EventClass::Other,
        }
    }

    /// True for the state-setting classes: past the budget their latest value waits instead of
    /// being refused, so the band always ends on what the sender sent last.
    pub fn coalesces(self) -> bool {
        matches!(self, EventClass::Tempo | EventClass::Seek | EventClass::Message)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventClass::Join => "join",
            EventClass::Tempo => "tempo",
            EventClass::Seek => "seek",
            EventClass::Message => "message",
            EventClass::Beat => "beat",
            EventClass::Position => "position",
            EventClass::Chat => "chat",
            EventClass::Clock => "clock",
            EventClass::Control => "control",
            EventClass::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn budget(self, s: &RateLimitSettings) -> Budget {
        let (per_sec, burst) = match self {
            EventClass::Join => (s.joins_per_sec, s.joins_burst),
            EventClass::Tempo => (s.tempo_per_sec, s.tempo_burst),
            EventClass::Seek => (s.seeks_per_sec, s.seeks_burst),
            EventClass::Message => (s.messages_per_sec, s.messages_burst),
            EventClass::Beat => (s.beats_per_sec, s.beats_burst),
            EventClass::Position => (s.positions_per_sec, s.positions_burst),
            EventClass::Chat => (s.chat_per_sec, s.chat_burst),
            EventClass::Clock => (s.clock_sync_per_sec, s.clock_sync_burst),
            EventClass::Control => (s.control_per_sec, s.control_burst),
            EventClass::Other => (s.other_per_sec, s.other_burst),
        };
        Budget { per_sec, burst }
    }
}

/// The limits of every socket, from the settings.
#[derive(Debug, Clone)]
pub struct RateLimits {
    /// The quota of each class (indexed by [`EventClass::index`]); `None` is unlimited.
    quotas: [Option<Quota>; CLASSES],
    disconnect_after: Option<Duration>,
}

impl RateLimits {
    pub fn from_settings(settings: &RateLimitSettings) -> Self {
        let quota = |class: EventClass| {
            let Budget { per_sec, burst } = class.budget(settings);
            let per_sec = NonZeroU32::new(per_sec)?;
            Some(Quota::per_second(per_sec).allow_burst(NonZeroU32::new(burst).unwrap_or(per_sec)))
        };
        let disconnect_after = Some(Duration::from_millis(settings.disconnect_after_ms)).filter(|d| !d.is_zero());
        Self { quotas: EventClass::ALL.map(quota), disconnect_after }
    }
}

/// What to do with an event refused past its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Tell the sender: it had no notice in the last second.
    pub notify: bool,
    /// The socket has flooded for too long.
    pub disconnect: bool,
}

/// The limits of one socket, kept in its extensions.
pub struct Throttle {
    buckets: [Option<DefaultDirectRateLimiter>; CLASSES],
    disconnect_after: Option<Duration>,
    flood: Mutex<Flood>,
}

#[derive(Default)]
struct Flood {
    started: Option<Instant>,
    last_refusal: Option<Instant>,
    last_notice: Option<Instant>,
    /// Set once a disconnect has been asked for, so it is asked for once.
    cut_off: bool,
}

impl Throttle {
    pub fn new(limits: &RateLimits) -> Self {
        let buckets = limits.quotas.map(|quota| quota.map(RateLimiter::direct));
        Self { buckets, disconnect_after: limits.disconnect_after, flood: Mutex::default() }
    }

    /// Takes one event of `class` from the socket's budget; false when the bucket is empty.
    pub fn try_take(&self, class: EventClass) -> bool {
        self.buckets[class.index()].as_ref().is_none_or(|bucket| bucket.check().is_ok())
    }

    /// Waits until the bucket of `class` has room, and takes one event from it: how an event
    /// that waited past its budget gets applied.
    pub async fn take_when_ready(&self, class: EventClass) {
        let Some(bucket) = &self.buckets[class.index()] else { return };
        while let Err(not_until) = bucket.check() {
            tokio::time::sleep(not_until.wait_time_from(bucket.clock().now())).await;
        }
    }

    /// Records an event refused past its budget: whether to tell the sender, and whether the
    /// socket has flooded long enough to be disconnected.
    pub fn refused(&self) -> Refusal {
        self.refused_at(Instant::now())
    }

    fn refused_at(&self, now: Instant) -> Refusal {
        let mut flood = self.flood.lock().expect("throttle lock");
        let paused = flood.last_refusal.is_none_or(|last| now.duration_since(last) >= FLOOD_PAUSE);
        if paused {
            flood.started = Some(now);
        }
        flood.last_refusal = Some(now);
        let notify = flood.last_notice.is_none_or(|last| now.duration_since(last) >= NOTICE_EVERY);
        if notify {
            flood.last_notice = Some(now);
        }
        let flooding_for = flood.started.map_or(Duration::ZERO, |started| now.duration_since(started));
        let disconnect = !flood.cut_off && self.disconnect_after.is_some_and(|limit| flooding_for >= limit);
        flood.cut_off |= disconnect;
        Refusal { notify, disconnect }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn limits(per_sec: u32, burst: u32, disconnect_after_ms: u64) -> RateLimits {
        let mut config = Config::for_tests();
        config.rate_limits.chat_per_sec = per_sec;
        config.rate_limits.chat_burst = burst;
        config.rate_limits.disconnect_after_ms = disconnect_after_ms;
        RateLimits::from_settings(&config.rate_limits)
    }

    #[test]
    fn a_burst_passes_then_events_are_refused() {
        let throttle = Throttle::new(&limits(5, 8, 0));
        let taken: Vec<_> = (0..10).map(|_| throttle.try_take(EventClass::Chat)).collect();
        assert_eq!(taken, [true, true, true, true, true, true, true, true, false, false]);
    }

    #[test]
    fn classes_have_budgets_of_their_own() {
        let throttle = Throttle::new(&limits(1, 1, 0));
        assert!(throttle.try_take(EventClass::Chat));
        assert!(!throttle.try_take(EventClass::Chat));
        assert!(throttle.try_take(EventClass::Position));
        assert!(throttle.try_take(EventClass::Join));
    }

    #[test]
    fn zero_means_unlimited() {
        let throttle = Throttle::new(&limits(0, 1, 0));
        assert!((0..10_000).all(|_| throttle.try_take(EventClass::Chat)));
    }

    #[test]
    fn state_setting_and_unknown_events_have_classes_of_their_own() {
        for event in ["set_tempo", "tempo_change", "tempo_changed", "tempo:change"] {
            assert_eq!(EventClass::of(event), EventClass::Tempo, "{event}");
        }
        for event in ["seek", "position:seek", "position_sync"] {
            assert_eq!(EventClass::of(event), EventClass::Seek, "{event}");
        }
        assert_eq!(EventClass::of("update_message"), EventClass::Message);
        assert!(EventClass::ALL.iter().filter(|c| c.coalesces()).count() == 3);
        assert_eq!(EventClass::of("heartbeat_response"), EventClass::Other);
        assert_eq!(EventClass::of("some_future_event"), EventClass::Other);
        assert_eq!(EventClass::of("play"), EventClass::Control);
        assert_eq!(EventClass::of("metronome:start"), EventClass::Control);
    }

    #[tokio::test]
    async fn a_waiting_event_is_let_through_when_the_bucket_refills() {
        let throttle = Throttle::new(&limits(0, 1, 0));
        throttle.take_when_ready(EventClass::Chat).await; // unlimited: at once
        let mut config = Config::for_tests();
        config.rate_limits.tempo_per_sec = 10;
        config.rate_limits.tempo_burst = 1;
        let throttle = Throttle::new(&RateLimits::from_settings(&config.rate_limits));
        assert!(throttle.try_take(EventClass::Tempo));
        assert!(!throttle.try_take(EventClass::Tempo));
        let started = std::time::Instant::now();
        throttle.take_when_ready(EventClass::Tempo).await;
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(80), "waited {waited:?}");
        assert!(!throttle.try_take(EventClass::Tempo), "the wait took the token");
    }

    #[test]
    fn notices_come_at_most_once_a_second_and_a_long_flood_disconnects() {
        let throttle = Throttle::new(&limits(1, 1, 3_000));
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let notices: Vec<_> =
            (0..=2_900).step_by(100).map(|ms| throttle.refused_at(at(ms))).filter(|r| r.notify).collect();
        assert_eq!(notices.len(), 3, "one notice per second over 2.9 s");
        assert!(notices.iter().all(|r| !r.disconnect));
        assert!(throttle.refused_at(at(3_000)).disconnect);
        assert!(!throttle.refused_at(at(3_100)).disconnect, "asked once");
    }

    #[test]
    fn a_pause_of_a_second_ends_the_flood() {
        let throttle = Throttle::new(&limits(1, 1, 2_000));
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        for ms in (0..=1_500).step_by(100) {
            throttle.refused_at(at(ms));
        }
        // Within its limits from 1.5 s to 2.6 s: the next refusal starts a new flood.
        for ms in (2_600..=4_500).step_by(100) {
            assert!(!throttle.refused_at(at(ms)).disconnect, "at {ms} ms");
        }
        assert!(throttle.refused_at(at(4_600)).disconnect);
    }
}

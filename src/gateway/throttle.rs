//! Per-socket rate limits, one token bucket per class of event.
//!
//! Each class has its own budget so that a client streaming position reports at full speed can
//! still join, chat and sync its clock. Checks happen as packets arrive, before an event is
//! queued, so a flood costs the server a bucket check per packet and nothing more.
//!
//! A refused event is dropped. The sender hears about it at most once a second (an answer to an
//! acknowledgement it asked for is always sent), and a socket that keeps flooding without a
//! second's pause for `RATE_LIMIT_DISCONNECT_AFTER_MS` is disconnected.

use std::{
    num::NonZeroU32,
    sync::Mutex,
    time::{Duration, Instant},
};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::Config;

/// How long a socket must stay within its limits for a flood to count as over.
const FLOOD_PAUSE: Duration = Duration::from_secs(1);

/// The shortest time between two `RATE_LIMITED` notices to one socket.
const NOTICE_EVERY: Duration = Duration::from_secs(1);

/// Classes of events, each with a budget of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventClass {
    Join,
    Tempo,
    Beat,
    Position,
    Chat,
    Clock,
    /// Playback and role control, queries, and any event the server does not know.
    Control,
}

/// How many classes there are: one bucket each.
const CLASSES: usize = EventClass::ALL.len();

impl EventClass {
    const ALL: [EventClass; 7] = [
        EventClass::Join,
        EventClass::Tempo,
        EventClass::Beat,
        EventClass::Position,
        EventClass::Chat,
        EventClass::Clock,
        EventClass::Control,
    ];

    pub fn of(event: &str) -> Self {
        match event {
            "join_session" | "session:create" | "session:join" => EventClass::Join,
            "set_tempo" | "tempo_change" | "tempo_changed" | "tempo:change" => EventClass::Tempo,
            "beat_sync" => EventClass::Beat,
            "position_sync" | "position:sync" => EventClass::Position,
            "chat_message" | "chat:message" | "update_message" => EventClass::Chat,
            "clock:sync" | "latency_probe" | "latency:probe" | "sync_request" | "heartbeat" | "pong"
            | "connection_quality" => EventClass::Clock,
            _ => EventClass::Control,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventClass::Join => "join",
            EventClass::Tempo => "tempo",
            EventClass::Beat => "beat",
            EventClass::Position => "position",
            EventClass::Chat => "chat",
            EventClass::Clock => "clock",
            EventClass::Control => "control",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The limits of every socket, from the settings.
#[derive(Debug, Clone)]
pub struct RateLimits {
    /// Events per second by class (indexed by [`EventClass::index`]); `None` is unlimited.
    per_second: [Option<NonZeroU32>; CLASSES],
    disconnect_after: Option<Duration>,
}

impl RateLimits {
    pub fn from_config(config: &Config) -> Self {
        let rate = |class: EventClass| {
            NonZeroU32::new(match class {
                EventClass::Join => config.rate_limit_joins_per_sec,
                EventClass::Tempo => config.rate_limit_tempo_per_sec,
                EventClass::Beat => config.rate_limit_beats_per_sec,
                EventClass::Position => config.rate_limit_positions_per_sec,
                EventClass::Chat => config.rate_limit_chat_per_sec,
                EventClass::Clock => config.rate_limit_clock_sync_per_sec,
                EventClass::Control => config.rate_limit_control_per_sec,
            })
        };
        let disconnect_after =
            Some(Duration::from_millis(config.rate_limit_disconnect_after_ms)).filter(|d| !d.is_zero());
        Self { per_second: EventClass::ALL.map(rate), disconnect_after }
    }
}

/// What to do with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Drop the event; `notify`: tell the sender (no notice in the last second); `disconnect`: the
    /// socket has flooded for too long.
    Refused {
        notify: bool,
        disconnect: bool,
    },
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
        // A bucket holds one second's worth, so a client may spend its second's budget at once.
        let buckets = limits.per_second.map(|rate| rate.map(|r| RateLimiter::direct(Quota::per_second(r))));
        Self { buckets, disconnect_after: limits.disconnect_after, flood: Mutex::default() }
    }

    /// Takes one event of `class` from the socket's budget.
    pub fn check(&self, class: EventClass) -> Verdict {
        let within = self.buckets[class.index()].as_ref().is_none_or(|bucket| bucket.check().is_ok());
        if within {
            return Verdict::Allowed;
        }
        self.refused_at(Instant::now())
    }

    fn refused_at(&self, now: Instant) -> Verdict {
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
        Verdict::Refused { notify, disconnect }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_second: u32, disconnect_after_ms: u64) -> RateLimits {
        let mut config = Config::for_tests();
        config.rate_limit_chat_per_sec = per_second;
        config.rate_limit_disconnect_after_ms = disconnect_after_ms;
        RateLimits::from_config(&config)
    }

    #[test]
    fn a_second_of_budget_passes_then_events_are_refused() {
        let throttle = Throttle::new(&limits(5, 0));
        let verdicts: Vec<_> = (0..8).map(|_| throttle.check(EventClass::Chat)).collect();
        assert!(verdicts[..5].iter().all(|v| *v == Verdict::Allowed), "{verdicts:?}");
        assert_eq!(verdicts[5], Verdict::Refused { notify: true, disconnect: false });
        assert_eq!(verdicts[6], Verdict::Refused { notify: false, disconnect: false });
    }

    #[test]
    fn classes_have_budgets_of_their_own() {
        let throttle = Throttle::new(&limits(1, 0));
        assert_eq!(throttle.check(EventClass::Chat), Verdict::Allowed);
        assert!(matches!(throttle.check(EventClass::Chat), Verdict::Refused { .. }));
        assert_eq!(throttle.check(EventClass::Position), Verdict::Allowed);
        assert_eq!(throttle.check(EventClass::Join), Verdict::Allowed);
    }

    #[test]
    fn zero_means_unlimited() {
        let throttle = Throttle::new(&limits(0, 0));
        assert!((0..10_000).all(|_| throttle.check(EventClass::Chat) == Verdict::Allowed));
    }

    #[test]
    fn notices_come_at_most_once_a_second_and_a_long_flood_disconnects() {
        let throttle = Throttle::new(&limits(1, 3_000));
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let notices: Vec<_> = (0..=2_900)
            .step_by(100)
            .map(|ms| throttle.refused_at(at(ms)))
            .filter(|v| matches!(v, Verdict::Refused { notify: true, .. }))
            .collect();
        assert_eq!(notices.len(), 3, "one notice per second over 2.9 s");
        assert!(notices.iter().all(|v| matches!(v, Verdict::Refused { disconnect: false, .. })));
        assert!(matches!(throttle.refused_at(at(3_000)), Verdict::Refused { disconnect: true, .. }));
        assert!(matches!(throttle.refused_at(at(3_100)), Verdict::Refused { disconnect: false, .. }), "asked once");
    }

    #[test]
    fn a_pause_of_a_second_ends_the_flood() {
        let throttle = Throttle::new(&limits(1, 2_000));
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        for ms in (0..=1_500).step_by(100) {
            throttle.refused_at(at(ms));
        }
        // Within its limits from 1.5 s to 2.6 s: the next refusal starts a new flood.
        for ms in (2_600..=4_500).step_by(100) {
            assert!(matches!(throttle.refused_at(at(ms)), Verdict::Refused { disconnect: false, .. }), "at {ms} ms");
        }
        assert!(matches!(throttle.refused_at(at(4_600)), Verdict::Refused { disconnect: true, .. }));
    }
}

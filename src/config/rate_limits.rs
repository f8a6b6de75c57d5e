//! The per-socket event budgets: a rate and a burst for each class of event.
//!
//! A class's bucket holds `burst` events and refills at `per_sec`. The defaults come from what
//! real clients send (the README's settings table gives the reason for each): a burst covers what
//! one gesture or one reconnect produces, the rate what a person can keep up. State-setting
//! classes (tempo, seek, message) are never refused past their budget: the sender's latest value
//! waits and is applied when the budget allows (see `gateway::queue`).

use clap::Args;

/// A rate and the burst its bucket holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Events per second the bucket refills with; 0 = unlimited.
    pub per_sec: u32,
    /// Events the bucket holds: what may pass at once.
    pub burst: u32,
}

/// Event budgets per socket, by class. Each pair is `RATE_LIMIT_<CLASS>_PER_SEC` (0 = unlimited)
/// and `RATE_LIMIT_<CLASS>_BURST`.
#[derive(Debug, Clone, Args)]
pub struct RateLimitSettings {
    /// Joins per second (`join_session`, `session:create`, `session:join`).
    #[arg(long = "rate-limit-joins-per-sec", env = "RATE_LIMIT_JOINS_PER_SEC", default_value_t = 2)]
    pub joins_per_sec: u32,
    /// Joins that may come at once: a reconnect loop's re-joins, a user trying session names.
    #[arg(long = "rate-limit-joins-burst", env = "RATE_LIMIT_JOINS_BURST", default_value_t = 10, value_parser = burst())]
    pub joins_burst: u32,

    /// Tempo changes per second (`set_tempo`, `tempo_change(d)`, `tempo:change`); coalesced past it.
    #[arg(long = "rate-limit-tempo-per-sec", env = "RATE_LIMIT_TEMPO_PER_SEC", default_value_t = 20)]
    pub tempo_per_sec: u32,
    /// Tempo changes applied one by one at once: a slider drag's first second, a scripted burst.
    #[arg(long = "rate-limit-tempo-burst", env = "RATE_LIMIT_TEMPO_BURST", default_value_t = 60, value_parser = burst())]
    pub tempo_burst: u32,

    /// Position changes per second (`seek`, `position:seek`, `position_sync`); coalesced past it.
    #[arg(long = "rate-limit-seeks-per-sec", env = "RATE_LIMIT_SEEKS_PER_SEC", default_value_t = 20)]
    pub seeks_per_sec: u32,
    /// Position changes applied one by one at once: a scrub's first second.
    #[arg(long = "rate-limit-seeks-burst", env = "RATE_LIMIT_SEEKS_BURST", default_value_t = 60, value_parser = burst())]
    pub seeks_burst: u32,

    /// Session message changes per second (`update_message`); coalesced past it.
    #[arg(long = "rate-limit-messages-per-sec", env = "RATE_LIMIT_MESSAGES_PER_SEC", default_value_t = 5)]
    pub messages_per_sec: u32,
    /// Session message changes applied one by one at once: a message typed key by key.
    #[arg(long = "rate-limit-messages-burst", env = "RATE_LIMIT_MESSAGES_BURST", default_value_t = 20, value_parser = burst())]
    pub messages_burst: u32,

    /// Beat reports per second (`beat_sync`).
    #[arg(long = "rate-limit-beats-per-sec", env = "RATE_LIMIT_BEATS_PER_SEC", default_value_t = 20)]
    pub beats_per_sec: u32,
    #[arg(long = "rate-limit-beats-burst", env = "RATE_LIMIT_BEATS_BURST", default_value_t = 20, value_parser = burst())]
    pub beats_burst: u32,

    /// Position reports per second (`position:sync`).
    #[arg(long = "rate-limit-positions-per-sec", env = "RATE_LIMIT_POSITIONS_PER_SEC", default_value_t = 50)]
    pub positions_per_sec: u32,
    #[arg(long = "rate-limit-positions-burst", env = "RATE_LIMIT_POSITIONS_BURST", default_value_t = 50, value_parser = burst())]
    pub positions_burst: u32,

    /// Chat lines per second (`chat_message`, `chat:message`).
    #[arg(long = "rate-limit-chat-per-sec", env = "RATE_LIMIT_CHAT_PER_SEC", default_value_t = 5)]
    pub chat_per_sec: u32,
    #[arg(long = "rate-limit-chat-burst", env = "RATE_LIMIT_CHAT_BURST", default_value_t = 10, value_parser = burst())]
    pub chat_burst: u32,

    /// Clock samples and probes per second (`clock:sync`, latency probes, `heartbeat`, `pong`,
    /// `connection_quality`, `sync_request`).
    #[arg(long = "rate-limit-clock-sync-per-sec", env = "RATE_LIMIT_CLOCK_SYNC_PER_SEC", default_value_t = 64)]
    pub clock_sync_per_sec: u32,
    /// The browser clock sends a burst of 32 samples on connect.
    #[arg(long = "rate-limit-clock-sync-burst", env = "RATE_LIMIT_CLOCK_SYNC_BURST", default_value_t = 64, value_parser = burst())]
    pub clock_sync_burst: u32,

    /// Playback, roles, leaves and queries per second.
    #[arg(long = "rate-limit-control-per-sec", env = "RATE_LIMIT_CONTROL_PER_SEC", default_value_t = 20)]
    pub control_per_sec: u32,
    #[arg(long = "rate-limit-control-burst", env = "RATE_LIMIT_CONTROL_BURST", default_value_t = 20, value_parser = burst())]
    pub control_burst: u32,

    /// Events the server does not know (and `heartbeat_response`) per second; they are ignored,
    /// and past this dropped unseen.
    #[arg(long = "rate-limit-other-per-sec", env = "RATE_LIMIT_OTHER_PER_SEC", default_value_t = 20)]
    pub other_per_sec: u32,
    #[arg(long = "rate-limit-other-burst", env = "RATE_LIMIT_OTHER_BURST", default_value_t = 50, value_parser = burst())]
    pub other_burst: u32,

    /// A socket whose refused events keep coming for this long (no pause of a second) is
    /// disconnected; 0 = never. Coalesced and ignored events never count.
    #[arg(long = "rate-limit-disconnect-after-ms", env = "RATE_LIMIT_DISCONNECT_AFTER_MS",
          default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub disconnect_after_ms: u64,
}

fn burst() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(1..=1_000_000)
}

//! Every setting of the server: its environment name, default and bounds.
//!
//! Settings come from the process environment, then from a `.env` file in the working directory
//! (loaded by `main` before parsing), then from the defaults below. A value that does not parse or
//! falls outside its bounds stops start-up with a message naming the setting. The rate-limit
//! settings, one pair per class of event, live in [`rate_limits`].

mod rate_limits;

use clap::{Parser, ValueEnum};

pub use rate_limits::{Budget, RateLimitSettings};

/// Default interval of the legacy `scroll_tick` stream, in ms (`LEGACY_TICK_MS`).
pub const DEFAULT_LEGACY_TICK_MS: u64 = 100;
/// Default lead of an enhanced start, in ms (`START_LEAD_MS`).
pub const DEFAULT_START_LEAD_MS: u64 = 250;
/// Default interval of the enhanced `position:sync` stream, in ms (`SYNC_RATE_MS`): 80 Hz.
pub const DEFAULT_SYNC_RATE_MS: f64 = 12.5;

/// Who may take the lead with `set_role {role: "leader"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LeaderPolicy {
    /// Legacy behaviour: `set_role` takes the lead at once.
    Open,
    /// `set_role` becomes a request the current leader must approve.
    Approval,
}

/// What becomes of the legacy vocabulary, for retiring it once every client speaks enhanced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LegacyEvents {
    /// Served as ever.
    On,
    /// Served, and each connection using them logged (rate limited) and counted.
    Warn,
    /// A legacy join is refused with `LEGACY_DISABLED`.
    Off,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Server settings. Each field is also a command-line flag (`--port`), mostly useful in tests.
#[derive(Debug, Clone, Parser)]
#[command(name = "bandsync-server", version, about)]
pub struct Config {
    /// TCP port to listen on (0 picks a free port).
    #[arg(long, env = "PORT", value_name = "PORT", default_value_t = 3001)]
    pub port: u16,

    /// Address or host name to bind.
    #[arg(long, env = "HOST", value_name = "HOST", default_value = "0.0.0.0")]
    pub host: String,

    /// Name of this instance in logs, `/health` and Redis; `<host name>:<port>` when unset.
    #[arg(long, env = "SERVER_ID", value_name = "SERVER_ID", value_parser = parse_name)]
    pub server_id: Option<String>,

    /// Allowed browser origins: `*` or a comma-separated list.
    #[arg(long, env = "CORS_ORIGIN", value_name = "CORS_ORIGIN", default_value = "*")]
    pub cors_origin: String,

    /// Seats in one session.
    #[arg(long, env = "MAX_SESSION_MEMBERS", value_name = "MAX_SESSION_MEMBERS",
          default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub max_session_members: u16,

    /// Interval of the legacy `scroll_tick` stream while a session plays.
    #[arg(long, env = "LEGACY_TICK_MS", value_name = "LEGACY_TICK_MS",
          default_value_t = DEFAULT_LEGACY_TICK_MS, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    pub legacy_tick_ms: u64,

    /// Interval of the enhanced `position:sync` stream while a session plays (12.5 = 80 Hz).
    #[arg(long, env = "SYNC_RATE_MS", value_name = "SYNC_RATE_MS", default_value_t = DEFAULT_SYNC_RATE_MS, value_parser = parse_sync_rate)]
    pub sync_rate_ms: f64,

    /// How far ahead of now an enhanced start schedules the first beat, so every device hears of
    /// the start before it and begins on it. 250 ms covers mobile one-way delays (BENCHMARKS.md,
    /// "Scheduled starts"); a legacy `play` always starts at once.
    #[arg(long, env = "START_LEAD_MS", value_name = "START_LEAD_MS",
          default_value_t = DEFAULT_START_LEAD_MS, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub start_lead_ms: u64,

    /// A member whose reported position is further than this from the timeline gets `position:correction`.
    #[arg(long, env = "DRIFT_THRESHOLD_MS", value_name = "DRIFT_THRESHOLD_MS",
          default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub drift_threshold_ms: u64,

    /// Interval of the `metrics:update` feed to its subscribers.
    #[arg(long, env = "METRICS_INTERVAL_MS", value_name = "METRICS_INTERVAL_MS",
          default_value_t = 5000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub metrics_interval_ms: u64,

    /// Interval of the application-level `ping` event; 0 turns it off.
    #[arg(long, env = "LEGACY_PING_INTERVAL_MS", value_name = "LEGACY_PING_INTERVAL_MS",
          default_value_t = 5000, value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub legacy_ping_interval_ms: u64,

    /// An empty session is removed this long after its last activity.
    #[arg(long, env = "SESSION_IDLE_TIMEOUT_MS", value_name = "SESSION_IDLE_TIMEOUT_MS",
          default_value_t = 1_800_000, value_parser = clap::value_parser!(u64).range(100..=604_800_000))]
    pub session_idle_timeout_ms: u64,

    /// How often the idle-session sweep runs.
    #[arg(long, env = "CLEANUP_INTERVAL_MS", value_name = "CLEANUP_INTERVAL_MS",
          default_value_t = 300_000, value_parser = clap::value_parser!(u64).range(50..=86_400_000))]
    pub cleanup_interval_ms: u64,

    /// Engine.IO heartbeat interval.
    #[arg(long, env = "SOCKET_PING_INTERVAL_MS", value_name = "SOCKET_PING_INTERVAL_MS",
          default_value_t = 25_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub socket_ping_interval_ms: u64,

    /// Engine.IO heartbeat timeout: a client silent this long after a ping is dropped.
    #[arg(long, env = "SOCKET_PING_TIMEOUT_MS", value_name = "SOCKET_PING_TIMEOUT_MS",
          default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub socket_ping_timeout_ms: u64,

    /// Largest Engine.IO packet accepted; a larger one closes the sender's connection.
    #[arg(long, env = "SOCKET_MAX_PAYLOAD_BYTES", value_name = "SOCKET_MAX_PAYLOAD_BYTES",
          default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1024..=100_000_000))]
    pub socket_max_payload_bytes: u64,

    /// A client must send a request's headers, and its body, within this time, or the connection
    /// is closed (half-open and slow-sending connections).
    #[arg(long, env = "HTTP_READ_TIMEOUT_MS", value_name = "HTTP_READ_TIMEOUT_MS",
          default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub http_read_timeout_ms: u64,

    /// How long a member whose connection dropped (transport close or error, ping timeout) keeps
    /// its seat and lead for it to come back; 0 turns the grace off.
    #[arg(long, env = "RESUME_GRACE_MS", value_name = "RESUME_GRACE_MS",
          default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub resume_grace_ms: u64,

    /// How long a change from another instance waits for an earlier one still on its way before
    /// the members here are sent the session's current state instead of the missing change.
    #[arg(long, env = "REORDER_WAIT_MS", value_name = "REORDER_WAIT_MS",
          default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub reorder_wait_ms: u64,

    /// Events queued for one socket before further ones are refused with `RATE_LIMITED`.
    #[arg(long, env = "MAX_QUEUED_EVENTS", value_name = "MAX_QUEUED_EVENTS",
          default_value_t = 1024, value_parser = clap::value_parser!(u64).range(16..=1_000_000))]
    pub max_queued_events: u64,

    /// Per-socket event budgets by class, and the flood disconnect.
    #[command(flatten)]
    pub rate_limits: RateLimitSettings,

    /// Socket.IO connections this instance holds at once; 0 = unlimited.
    #[arg(long, env = "MAX_CONNECTIONS", value_name = "MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: u32,

    /// Socket.IO connections from one address at once; 0 = unlimited.
    #[arg(long, env = "MAX_CONNECTIONS_PER_IP", value_name = "MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: u32,

    /// Sessions that may exist at once (across instances with Redis); 0 = unlimited.
    #[arg(long, env = "MAX_SESSIONS", value_name = "MAX_SESSIONS", default_value_t = 0)]
    pub max_sessions: u32,

    /// Take a client's address from the last `X-Forwarded-For` entry, the one the proxy in front
    /// added (set only behind such a proxy, like the bundled nginx): otherwise every client shares
    /// the proxy's address for `MAX_CONNECTIONS_PER_IP`.
    #[arg(long, env = "TRUST_PROXY", value_name = "TRUST_PROXY", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub trust_proxy: bool,

    /// A shared secret every client must give to connect (handshake `auth: {token}` or `?token=`);
    /// unset: anyone may connect.
    #[arg(long, env = "AUTH_TOKEN", value_name = "AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,

    /// Longest session id, display name or user name, in characters.
    #[arg(long, env = "MAX_NAME_LENGTH", value_name = "MAX_NAME_LENGTH",
          default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub max_name_length: u64,

    /// Longest session message or chat line, in characters.
    #[arg(long, env = "MAX_MESSAGE_LENGTH", value_name = "MAX_MESSAGE_LENGTH",
          default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_message_length: u64,

    /// Redis to share sessions through, e.g. `redis://:password@host:6379/0`. Unset (with no
    /// `REDIS_HOST` or `REDIS_CLUSTER_NODES`): the embedded in-memory store.
    #[arg(long, env = "REDIS_URL", value_name = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Redis host, when not given as `REDIS_URL`.
    #[arg(long, env = "REDIS_HOST", value_name = "REDIS_HOST")]
    pub redis_host: Option<String>,

    #[arg(long, env = "REDIS_PORT", value_name = "REDIS_PORT", default_value_t = 6379)]
    pub redis_port: u16,

    #[arg(long, env = "REDIS_PASSWORD", value_name = "REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,

    #[arg(long, env = "REDIS_DB", value_name = "REDIS_DB",
          default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=15))]
    pub redis_db: u8,

    /// Prefix of every key and channel this server uses in Redis.
    #[arg(long, env = "REDIS_KEY_PREFIX", value_name = "REDIS_KEY_PREFIX", default_value = "bandsync:")]
    pub redis_key_prefix: String,

    /// Redis Cluster nodes, `host:port` comma-separated; takes precedence over the other Redis settings.
    #[arg(long, env = "REDIS_CLUSTER_NODES", value_name = "REDIS_CLUSTER_NODES", value_parser = parse_nodes)]
    pub redis_cluster_nodes: Option<Nodes>,

    /// Serve `/metrics` on this port alone (same `HOST`) instead of the main one.
    #[arg(long, env = "METRICS_PORT", value_name = "METRICS_PORT")]
    pub metrics_port: Option<u16>,

    /// Serve the browser client at `/demo`.
    #[arg(long, env = "DEMO_PAGE", value_name = "DEMO_PAGE", default_value_t = true, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub demo_page: bool,

    /// Serve the legacy events (`on`), serve and report them (`warn`), or refuse legacy joins (`off`).
    #[arg(long, env = "LEGACY_EVENTS", value_name = "LEGACY_EVENTS", value_enum, default_value_t = LegacyEvents::On)]
    pub legacy_events: LegacyEvents,

    /// Who may take the lead with `set_role`.
    #[arg(long, env = "LEADER_POLICY", value_name = "LEADER_POLICY", value_enum, default_value_t = LeaderPolicy::Open)]
    pub leader_policy: LeaderPolicy,

    /// Debug output of the sync engine (scheduling, streams), whatever `RUST_LOG` says.
    #[arg(long, env = "DEBUG_SYNC_ENGINE", value_name = "DEBUG_SYNC_ENGINE", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub debug_sync_engine: bool,

    /// Debug output of the Redis layer (store, adapter, client), whatever `RUST_LOG` says.
    #[arg(long, env = "DEBUG_REDIS_EVENTS", value_name = "DEBUG_REDIS_EVENTS", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub debug_redis_events: bool,

    /// `text` for people, `json` for log collectors (one object per line).
    #[arg(long, env = "LOG_FORMAT", value_name = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

fn parse_sync_rate(raw: &str) -> Result<f64, String> {
    let rate: f64 = raw.trim().parse().map_err(|_| format!("not a number: {raw}"))?;
    if !(1.0..=1_000.0).contains(&rate) {
        return Err("must be from 1 to 1000 ms".into());
    }
    Ok(rate)
}

/// Redis Cluster seed nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nodes(pub Vec<(String, u16)>);

fn parse_nodes(raw: &str) -> Result<Nodes, String> {
    let nodes = raw
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|node| {
            let (host, port) = node.rsplit_once(':').ok_or_else(|| format!("{node}: expected host:port"))?;
            let port = port.parse().map_err(|_| format!("{node}: bad port"))?;
            Ok((host.to_owned(), port))
        })
        .collect::<Result<Vec<_>, String>>()?;
    if nodes.is_empty() {
        return Err("expected at least one host:port".into());
    }
    Ok(Nodes(nodes))
}

fn parse_name(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() || trimmed.len() > 128 {
        return Err("must be 1 to 128 characters".into());
    }
    Ok(trimmed.to_owned())
}

impl Config {
    /// Settings from the environment only (no command line), for embedding and tests.
    pub fn from_env() -> Result<Self, clap::Error> {
        Self::try_parse_from(["bandsync-server"]).map(Self::without_empty_values)
    }

    /// Settings left empty in a `.env` (`REDIS_HOST=`) mean unset, as they did for the Node server.
    fn without_empty_values(mut self) -> Self {
        for value in [
            &mut self.server_id,
            &mut self.redis_url,
            &mut self.redis_host,
            &mut self.redis_password,
            &mut self.auth_token,
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                *value = None;
            }
        }
        self
    }

    /// The defaults, as if no variable were set, with the port chosen by the OS.
    pub fn for_tests() -> Self {
        let mut config =
            Self::try_parse_from(["bandsync-server", "--port", "0", "--host", "127.0.0.1"]).expect("defaults parse");
        // An inherited variable must not change what a test sees.
        config.server_id = None;
        config.redis_url = None;
        config.redis_host = None;
        config.redis_cluster_nodes = None;
        config.auth_token = None;
        config
    }

    /// True when a Redis setting is given: sessions then live in Redis.
    pub fn redis_enabled(&self) -> bool {
        self.redis_url.is_some() || self.redis_host.is_some() || self.redis_cluster_nodes.is_some()
    }

    /// Allowed origins, or `None` for any.
    pub fn cors_origins(&self) -> Option<Vec<String>> {
        let raw = self.cors_origin.trim();
        if raw == "*" {
            return None;
        }
        Some(raw.split(',').map(|o| o.trim().to_owned()).filter(|o| !o.is_empty()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_values() {
        let config = Config::try_parse_from(["x"]).unwrap();
        assert_eq!(config.port, 3001);
        assert_eq!(config.max_session_members, 8);
        assert_eq!(config.legacy_tick_ms, 100);
        assert_eq!(config.leader_policy, LeaderPolicy::Open);
        assert_eq!(config.resume_grace_ms, 15_000);
        assert_eq!(config.reorder_wait_ms, 250);
        assert_eq!(config.start_lead_ms, 250);
        assert_eq!((config.rate_limits.tempo_per_sec, config.rate_limits.tempo_burst), (20, 60));
        assert_eq!((config.rate_limits.joins_per_sec, config.rate_limits.joins_burst), (2, 10));
    }

    #[test]
    fn out_of_range_value_names_the_setting() {
        let err = Config::try_parse_from(["x", "--max-session-members", "0"]).unwrap_err();
        assert!(err.to_string().contains("MAX_SESSION_MEMBERS"), "{err}");
    }

    #[test]
    fn empty_values_mean_unset_and_yes_no_words_are_understood() {
        let config = Config::try_parse_from(["x", "--redis-host", "", "--demo-page", "no", "--debug-sync-engine", "1"])
            .unwrap()
            .without_empty_values();
        assert!(!config.redis_enabled());
        assert!(!config.demo_page);
        assert!(config.debug_sync_engine);
    }

    #[test]
    fn cors_list_is_split_on_commas() {
        let config = Config::try_parse_from(["x", "--cors-origin", "https://a.example, https://b.example"]).unwrap();
        assert_eq!(config.cors_origins().unwrap(), vec!["https://a.example", "https://b.example"]);
        assert!(Config::for_tests().cors_origins().is_none());
    }
}

//! Shared by the load tools (`loadgen`, `soak`): a raw Socket.IO client over websocket that scales
//! to thousands of connections per process (`wire`, `client`, `tally`), the BandSync requests they
//! send (`session`), what the load generator measures (`measure`, `latency`), the soak's churning
//! sessions (`churn`), and `/proc` readings of the server's and the generator's CPU and memory
//! (`proc_stats`).

// Each example uses its own part of these helpers.
#![allow(dead_code)]

pub mod churn;
pub mod client;
pub mod latency;
pub mod measure;
pub mod proc_stats;
pub mod session;
pub mod tally;
pub mod wire;

use std::{
    sync::{Mutex, MutexGuard},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::bail;

/// Locks a mutex, ignoring poisoning: a panicking connection task must not hide the results of the
/// thousands of others.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One line of a tool's report: the label in a column of its own, then the figures.
pub fn report_line(label: &str, figures: impl std::fmt::Display) {
    println!("{label:<20}{figures}");
}

/// The error codes of a run for a report line: `none`, or each code with its count.
pub fn describe_codes(codes: &std::collections::BTreeMap<String, u64>) -> String {
    if codes.is_empty() { "none".to_owned() } else { format!("{codes:?}") }
}

/// Wall-clock time in Unix epoch milliseconds, with sub-millisecond precision: the clock the
/// server's `serverTime` / `serverTimestamp` fields use (same machine, so directly comparable).
pub fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |since| since.as_secs_f64() * 1000.0)
}

/// The websocket URL of the Socket.IO endpoint behind a server URL such as `http://127.0.0.1:3001`.
pub fn endpoint(url: &str) -> anyhow::Result<String> {
    let url = url.trim_end_matches('/');
    let rest = if let Some(rest) = url.strip_prefix("http://") {
        rest
    } else if let Some(rest) = url.strip_prefix("ws://") {
        rest
    } else if url.starts_with("https://") || url.starts_with("wss://") {
        bail!("TLS is not supported by the load tools: run them against the server's plain port");
    } else {
        url
    };
    Ok(format!("ws://{rest}/socket.io/?EIO=4&transport=websocket"))
}

/// A hint when a connect failed for lack of file descriptors or local ports, else `None`.
pub fn resource_hint(err: &anyhow::Error) -> Option<&'static str> {
    use tokio_tungstenite::tungstenite;
    // EMFILE 24, ENFILE 23, EADDRNOTAVAIL 99 (Linux numbering).
    let code = err.chain().find_map(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .or_else(|| match cause.downcast_ref::<tungstenite::Error>() {
                Some(tungstenite::Error::Io(io)) => Some(io),
                _ => None,
            })
            .and_then(std::io::Error::raw_os_error)
    })?;
    match code {
        24 => Some(
            "too many open files (EMFILE): raise the limit in this shell and the server's, e.g. `ulimit -n 65536`, \
             then start both again",
        ),
        23 => Some("the system-wide file table is full (ENFILE): raise fs.file-max (sysctl -w fs.file-max=…)"),
        99 => Some("out of local ports (EADDRNOTAVAIL): widen net.ipv4.ip_local_port_range or connect fewer sockets"),
        _ => None,
    }
}

/// Warns up front when `sockets` connections will not fit under this process's open-file limit.
pub fn warn_if_fd_limit_low(sockets: usize) {
    // Sockets, plus a margin for the runtime, stdio and /proc reads.
    let needed = sockets as u64 + 64;
    if let Some((Some(soft), hard)) = proc_stats::open_files_limit()
        && soft < needed
    {
        let hard = hard.map_or("unlimited".to_owned(), |hard| hard.to_string());
        eprintln!(
            "warning: {sockets} sockets need about {needed} file descriptors but the soft limit is {soft} \
             (hard {hard}); run `ulimit -n {}` in this shell (and the server's) first",
            needed.max(65536)
        );
    }
}

/// A small, fast pseudo-random generator (SplitMix64): churn timing needs spread, not secrecy, and
/// this keeps the examples free of another dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from the clock and `salt`, so parallel tasks get different sequences.
    pub fn new(salt: u64) -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_nanos() as u64);
        Self(nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[low, high)`.
    pub fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// The server and the bands to open on it: shared by the load generator and the soak program.
#[derive(Debug, clap::Args)]
pub struct Bands {
    /// Server URL (plain HTTP; the websocket endpoint is derived from it).
    #[arg(long, default_value = "http://127.0.0.1:3001")]
    pub url: String,
    #[arg(long, default_value_t = 100)]
    pub sessions: usize,
    /// Members per session, the leader included.
    #[arg(long, default_value_t = 8)]
    pub members: usize,
}

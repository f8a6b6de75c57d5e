//! Soak test: sessions playing for a long time under constant churn, watching the server's memory.
//!
//! ```sh
//! cargo run --release --example soak -- --url http://127.0.0.1:3001 --sessions 100 --members 8 \
//!     --minutes 30 --server-pid "$(pgrep -n bandsync-server)" --report-every-seconds 60
//! ```
//!
//! Every session plays while, all the time, members leave and rejoin, disconnect and reconnect,
//! leaders change the tempo, and sessions stop and start again. A line every report interval gives
//! the server's RSS and CPU, deliveries per second, errors received by code, reconnects and
//! connected sockets; the summary says whether RSS stayed flat over the last third of the run. The
//! exit code is nonzero when an error code not allowed by `--allow-codes` arrived, a join failed,
//! or the server dropped a connection.

#[path = "support/mod.rs"]
mod support;

use std::{
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use clap::Parser;
use tokio::{
    task::JoinSet,
    time::{Instant, sleep},
};

use support::{
    churn::{Churn, Mode, Plan, session_task},
    proc_stats::Process,
    session,
};

#[derive(Debug, Parser)]
#[command(about = "BandSync soak test: playing sessions under constant churn, watching server memory")]
struct Args {
    #[command(flatten)]
    band: support::Bands,
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// The server's process id, to read its CPU time and memory from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    #[arg(long, default_value_t = 60)]
    report_every_seconds: u64,
    #[arg(long, value_enum, default_value_t = Mode::Mix)]
    vocabulary: Mode,
    /// Mean time between two churn actions (leave/rejoin or disconnect/reconnect) of one member.
    #[arg(long, default_value_t = 30.0)]
    churn_every_seconds: f64,
    /// Mean time between two tempo changes of one leader.
    #[arg(long, default_value_t = 5.0)]
    tempo_every_seconds: f64,
    /// Mean time between two stop-and-restart cycles of one session.
    #[arg(long, default_value_t = 60.0)]
    restart_every_seconds: f64,
    /// Error codes that do not fail the run, comma-separated.
    #[arg(long, value_delimiter = ',')]
    allow_codes: Vec<String>,
    #[arg(long, default_value_t = 100)]
    connect_concurrency: usize,
    /// Largest RSS growth over the last third of the run still called flat, in KiB per minute.
    #[arg(long, default_value_t = 64.0)]
    flat_kib_per_min: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    support::warn_if_fd_limit_low(args.band.sessions * args.band.members);
    let server = args.server_pid.map(Process::pid);
    let endpoint = support::endpoint(&args.band.url)?;
    let plan = Plan {
        mode: args.vocabulary,
        members: args.band.members,
        churn_every_seconds: args.churn_every_seconds,
        tempo_every_seconds: args.tempo_every_seconds,
        restart_every_seconds: args.restart_every_seconds,
    };
    println!(
        "soak: {} sessions × {} members ({:?}) for {} min against {endpoint}",
        args.band.sessions, args.band.members, args.vocabulary, args.minutes
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.minutes * 60.0);
    let churn = Arc::new(Churn::new(plan, endpoint, deadline, args.connect_concurrency));
    let mut sessions = JoinSet::new();
    for index in 0..args.band.sessions {
        sessions.spawn(session_task(churn.clone(), index));
    }
    let report_every = Duration::from_secs(args.report_every_seconds.max(1));
    let rss_samples = report_until_deadline(&churn, server.as_ref(), started, report_every).await;
    // Tasks end at the deadline; one in the middle of a join may need its timeout.
    let drain = async { while sessions.join_next().await.is_some() {} };
    if tokio::time::timeout(session::TIMEOUT + Duration::from_secs(5), drain).await.is_err() {
        eprintln!("some tasks were still busy after the deadline; summarising anyway");
    }
    Ok(summary(&args, &churn, &rss_samples, started.elapsed()))
}

/// Prints a line every `report_every` until the deadline; returns the server's RSS samples
/// (minutes since the start, KiB), taken more often than the lines for the trend over the run.
async fn report_until_deadline(
    churn: &Churn,
    server: Option<&Process>,
    started: Instant,
    report_every: Duration,
) -> Vec<(f64, f64)> {
    println!(
        "{:>8} {:>9} {:>7} {:>10} {:>7} {:>10} {:>9}  errors by code",
        "elapsed", "rss MiB", "cpu %", "deliv/s", "errors", "reconnects", "connected"
    );
    let sample_every = report_every.min(Duration::from_secs(5));
    let mut rss_samples = Vec::new();
    let (mut last_events, mut last_report) = (churn.tally.events(), Instant::now());
    let mut last_cpu = server.and_then(|server| server.sample().ok());
    let mut next_report = started + report_every;
    loop {
        sleep(sample_every.min(churn.deadline.saturating_duration_since(Instant::now()))).await;
        let now = Instant::now();
        let minutes = now.duration_since(started).as_secs_f64() / 60.0;
        let rss = server.and_then(|server| server.rss_bytes().ok());
        if let Some(rss) = rss {
            rss_samples.push((minutes, rss as f64 / 1024.0));
        }
        if now >= next_report || now >= churn.deadline {
            let cpu = server.and_then(|server| server.sample().ok());
            let cpu_percent = cpu.zip(last_cpu).map_or(f64::NAN, |(cpu, last)| cpu.percent_since(&last));
            let events = churn.tally.events();
            let rate = (events - last_events) as f64 / now.duration_since(last_report).as_secs_f64().max(1e-3);
            let errors = churn.errors();
            println!(
                "{minutes:>7.1}m {:>9.1} {cpu_percent:>7.1} {rate:>10.0} {:>7} {:>10} {:>9}  {}",
                rss.map_or(f64::NAN, |rss| rss as f64 / (1024.0 * 1024.0)),
                errors.values().sum::<u64>(),
                churn.reconnects.load(Ordering::Relaxed),
                churn.tally.connected(),
                if errors.is_empty() { "-".to_owned() } else { format!("{errors:?}") }
            );
            (last_events, last_report, last_cpu) = (events, now, cpu);
            next_report += report_every;
        }
        if now >= churn.deadline {
            return rss_samples;
        }
    }
}

/// Prints the summary and decides the exit code.
fn summary(args: &Args, churn: &Churn, rss: &[(f64, f64)], elapsed: Duration) -> ExitCode {
    let line = support::report_line;
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    println!();
    println!(
        "== soak summary: {:.1} min, {} sessions × {} members ({:?}) ==",
        elapsed.as_secs_f64() / 60.0,
        args.band.sessions,
        args.band.members,
        args.vocabulary
    );
    if let (Some(first), Some(last)) = (rss.first(), rss.last()) {
        let (min, max) = rss.iter().fold((f64::MAX, f64::MIN), |(min, max), &(_, kib)| (min.min(kib), max.max(kib)));
        let mib = |kib: f64| kib / 1024.0;
        line(
            "server RSS",
            format!("first {:.1} MiB, min {:.1}, max {:.1}, last {:.1}", mib(first.1), mib(min), mib(max), mib(last.1)),
        );
        let from = last.0 * 2.0 / 3.0;
        let tail: Vec<(f64, f64)> = rss.iter().copied().filter(|&(minute, _)| minute >= from).collect();
        match slope(&tail) {
            Some(slope) => {
                let verdict = if slope <= args.flat_kib_per_min { "flat" } else { "GROWING" };
                line(
                    "last third",
                    format!(
                        "{slope:+.1} KiB/min over {} samples: {verdict} (limit {} KiB/min)",
                        tail.len(),
                        args.flat_kib_per_min
                    ),
                );
            }
            None => line("last third", "too few samples for a trend".to_owned()),
        }
    }
    let deliveries = churn.tally.events();
    line(
        "deliveries",
        format!("{deliveries} ({:.0}/s on average)", deliveries as f64 / elapsed.as_secs_f64().max(1e-3)),
    );
    line(
        "churn",
        format!(
            "{} reconnects, {} rejoins, {} restarts, {} tempo changes",
            load(&churn.reconnects),
            load(&churn.rejoins),
            load(&churn.restarts),
            load(&churn.tempo_changes)
        ),
    );
    let (drops, join_failures) = (load(&churn.drops), load(&churn.join_failures));
    line("failures", format!("{drops} connections dropped by the server, {join_failures} joins failed"));
    let errors = churn.errors();
    line("errors", support::describe_codes(&errors));
    let unexpected: Vec<&String> = errors.keys().filter(|code| !args.allow_codes.contains(*code)).collect();
    if unexpected.is_empty() && drops == 0 && join_failures == 0 {
        line("result", "pass".to_owned());
        ExitCode::SUCCESS
    } else {
        line("result", format!("FAIL: unexpected codes {unexpected:?}, {drops} drops, {join_failures} failed joins"));
        ExitCode::FAILURE
    }
}

/// Least-squares slope of y over x; `None` with fewer than 3 points or no spread in x.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let (mean_x, mean_y) = points.iter().fold((0.0, 0.0), |(x, y), p| (x + p.0 / n, y + p.1 / n));
    let (mut covariance, mut variance) = (0.0, 0.0);
    for &(x, y) in points {
        covariance += (x - mean_x) * (y - mean_y);
        variance += (x - mean_x) * (x - mean_x);
    }
    if variance > 0.0 { Some(covariance / variance) } else { None }
}

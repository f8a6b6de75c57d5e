//! Load generator: S sessions × M members over raw Socket.IO websockets, measured from one process
//! with one clock.
//!
//! ```sh
//! cargo run --release --example loadgen -- --url http://127.0.0.1:3001 --sessions 100 --members 8 \
//!     --vocabulary enhanced --seconds 20 --server-pid "$(pgrep -n bandsync-server)"
//! ```
//!
//! Everyone connects and joins (each session's first member creates it and leads), the leaders
//! start playback, and after a warm-up the window measures: deliveries per second, the delay from
//! each stream packet's server time to its receipt, stream gaps, the delay from a leader's tempo
//! change to its receipt by the other members, and the server's CPU and memory per delivery and per
//! socket. `--idle` connects and joins without playing: the idle-socket memory test.

#[path = "support/mod.rs"]
mod support;

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::bail;
use clap::Parser;
use tokio::{sync::Semaphore, task::JoinSet};

use support::{
    client::{Client, Options},
    latency::Recorder,
    measure::{Measures, change_tempo, member_handler},
    proc_stats::Process,
    session::{self, Vocabulary},
    tally::Tally,
};

#[derive(Debug, Parser)]
#[command(about = "BandSync load generator: sessions × members over raw Socket.IO websockets")]
struct Args {
    #[command(flatten)]
    band: support::Bands,
    #[arg(long, value_enum, default_value_t = Vocabulary::Enhanced)]
    vocabulary: Vocabulary,
    /// Length of the measured window, in seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Time between joining (and starting playback) and the measured window, in seconds.
    #[arg(long, default_value_t = 3)]
    warmup_seconds: u64,
    /// The server's process id, to read its CPU time and memory from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Connect and join, never play: for the idle-socket memory test (e.g. 1250 sessions × 8).
    #[arg(long)]
    idle: bool,
    /// Connects (each with its join) in flight at once.
    #[arg(long, default_value_t = 100)]
    connect_concurrency: usize,
    /// How often each leader changes the tempo, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    tempo_every_ms: u64,
}

struct Ctx {
    endpoint: String,
    vocabulary: Vocabulary,
    run: String,
    tally: Arc<Tally>,
    measures: Arc<Measures>,
    permits: Semaphore,
    joins: Recorder,
}

struct Opened {
    index: usize,
    id: String,
    /// The leader first.
    clients: Vec<Client>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sockets = args.band.sessions * args.band.members;
    support::warn_if_fd_limit_low(sockets);
    let server = args.server_pid.map(Process::pid);
    let rss_before = server.as_ref().map(Process::rss_bytes).transpose()?;
    let ctx = Arc::new(Ctx {
        endpoint: support::endpoint(&args.band.url)?,
        vocabulary: args.vocabulary,
        run: format!("{:x}", support::now_ms() as u64),
        tally: Arc::default(),
        measures: Arc::default(),
        permits: Semaphore::new(args.connect_concurrency.max(1)),
        joins: Recorder::default(),
    });
    println!(
        "connecting {sockets} sockets ({} × {}, {}) to {}",
        args.band.sessions,
        args.band.members,
        args.vocabulary.as_str(),
        ctx.endpoint
    );

    let connect_started = Instant::now();
    let mut tasks = JoinSet::new();
    for index in 0..args.band.sessions {
        tasks.spawn(open_session(ctx.clone(), index, args.band.members));
    }
    let mut sessions: Vec<Opened> = Vec::new();
    let mut failures: Vec<anyhow::Error> = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (opened, errors) = done?;
        sessions.extend(opened);
        failures.extend(errors);
    }
    let connect_time = connect_started.elapsed();
    let joined: usize = sessions.iter().map(|opened| opened.clients.len()).sum();
    report_failures(&failures);
    if sessions.is_empty() {
        bail!("no session could be opened");
    }

    let mut tempo_tasks = Vec::new();
    if !args.idle {
        let every = Duration::from_millis(args.tempo_every_ms.max(1));
        for opened in &sessions {
            session::start(&opened.clients[0], args.vocabulary, &opened.id);
            let (measures, leader) = (ctx.measures.clone(), opened.clients[0].clone());
            let task = change_tempo(measures, leader, args.vocabulary, opened.index, opened.id.clone(), every);
            tempo_tasks.push(tokio::spawn(task));
        }
    }
    tokio::time::sleep(Duration::from_secs(args.warmup_seconds)).await;

    let own = Process::current();
    let (events_start, own_start) = (ctx.tally.events(), own.sample()?);
    let server_start = server.as_ref().map(Process::sample).transpose()?;
    ctx.measures.recording.store(true, Ordering::Relaxed);
    let window_end = Instant::now() + Duration::from_secs(args.seconds);
    let mut rss_peak: u64 = 0;
    while Instant::now() < window_end {
        tokio::time::sleep(window_end.saturating_duration_since(Instant::now()).min(Duration::from_secs(1))).await;
        if let Some(server) = &server {
            rss_peak = rss_peak.max(server.rss_bytes()?);
        }
    }
    ctx.measures.recording.store(false, Ordering::Relaxed);
    let (events_end, own_end) = (ctx.tally.events(), own.sample()?);
    let server_end = server.as_ref().map(Process::sample).transpose()?;
    let rss_end = server.as_ref().map(Process::rss_bytes).transpose()?;
    let connected = ctx.tally.connected();

    let window = own_end.at.duration_since(own_start.at).as_secs_f64();
    let deliveries = events_end - events_start;
    let m = &ctx.measures;
    let stream_event = args.vocabulary.stream_event();
    let period = args.vocabulary.stream_period_ms();
    let line = support::report_line;
    println!();
    println!(
        "== bandsync loadgen: {} {} × {}, {window:.1} s window after {} s warm-up{} ==",
        args.vocabulary.as_str(),
        args.band.sessions,
        args.band.members,
        args.warmup_seconds,
        if args.idle { ", idle" } else { "" }
    );
    line("sockets", format!("{joined} of {sockets} joined, {connected} connected at the end"));
    line("connect + join", format!("all in {:.3} s; per client {}", connect_time.as_secs_f64(), ctx.joins.summary()));
    line("deliveries", format!("{deliveries} events = {:.0}/s", deliveries as f64 / window));
    if !args.idle {
        let packets = m.stream_packets.load(Ordering::Relaxed);
        let (gaps, missing) = (m.gaps.load(Ordering::Relaxed), m.missing.load(Ordering::Relaxed));
        let rate = packets as f64 / window / joined.max(1) as f64;
        line("stream rate", format!("{stream_event} {rate:.1}/s per client (period {period} ms)"));
        line("stream latency", m.stream.summary());
        let lost = 100.0 * missing as f64 / (packets + missing).max(1) as f64;
        line("stream missing", format!("{missing} packets ({lost:.4} %), by the server times received"));
        line("stream gaps", format!("{gaps} arrivals over {:.2} ms after the previous one", 1.5 * period));
        line("control latency", m.control.summary());
        line("", format!("{} receipts matched no send", m.unmatched.load(Ordering::Relaxed)));
    }
    let errors = m.errors.snapshot();
    line("errors", support::describe_codes(&errors));
    if let (Some(start), Some(end)) = (server_start, server_end) {
        let cpu = end.cpu_since(&start);
        let per_million = if deliveries > 0 { format!("{:.2} s", cpu * 1e6 / deliveries as f64) } else { "-".into() };
        let percent = end.percent_since(&start);
        line("server CPU", format!("{cpu:.2} s = {percent:.1} % of a core; {per_million} per million deliveries"));
    }
    if let (Some(before), Some(end)) = (rss_before, rss_end) {
        let per_socket = (end as f64 - before as f64) / connected.max(1) as f64 / 1024.0;
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        line(
            "server RSS",
            format!(
                "{:.1} MiB before connecting, {:.1} MiB at the end (peak {:.1}): {per_socket:.1} KiB per socket",
                mib(before),
                mib(end),
                mib(rss_peak.max(end))
            ),
        );
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let own_percent = own_end.percent_since(&own_start);
    line("generator CPU", format!("{own_percent:.1} % of a core ({cores} cores)"));
    let server_percent = server_start.zip(server_end).map_or(0.0, |(start, end)| end.percent_since(&start));
    if own_percent + server_percent > 90.0 * cores as f64 {
        line("", "machine CPU-bound: delays include waits for a core; results are a lower bound".to_owned());
    }

    for task in &tempo_tasks {
        task.abort();
    }
    for client in sessions.iter().flat_map(|opened| &opened.clients) {
        client.close();
    }
    // Lets the close frames go out, so the server sees clean disconnects, and each connection add
    // its last per-name counts to the table.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let names: Vec<String> = ctx.tally.by_name().into_iter().take(10).map(|(name, n)| format!("{name} {n}")).collect();
    line("events by name", format!("{} (whole run)", names.join(", ")));
    Ok(())
}

/// Opens one session: its leader first, then the other members at once.
async fn open_session(ctx: Arc<Ctx>, index: usize, members: usize) -> (Option<Opened>, Vec<anyhow::Error>) {
    let (leader, id) = match join_one(&ctx, index, 0, None).await {
        Ok(joined) => joined,
        Err(err) => return (None, vec![err.context(format!("session {index}: leader"))]),
    };
    // Each member on its own task, as independent clients would be.
    let joins: Vec<_> = (1..members)
        .map(|member| {
            let (ctx, id) = (ctx.clone(), id.clone());
            tokio::spawn(async move { join_one(&ctx, index, member, Some(&id)).await })
        })
        .collect();
    let mut clients = vec![leader];
    let mut failures = Vec::new();
    for (member, joined) in (1..).zip(joins) {
        match joined.await {
            Ok(Ok((client, _))) => clients.push(client),
            Ok(Err(err)) => failures.push(err.context(format!("session {index}: member {member}"))),
            Err(panicked) => {
                failures.push(anyhow::Error::new(panicked).context(format!("session {index}: member {member}")))
            }
        }
    }
    (Some(Opened { index, id, clients }), failures)
}

/// Connects one member and joins (or, with no session id, creates) its session.
async fn join_one(
    ctx: &Ctx,
    index: usize,
    member: usize,
    session_id: Option<&str>,
) -> anyhow::Result<(Client, String)> {
    let _permit = ctx.permits.acquire().await?;
    let started = Instant::now();
    let handler = member_handler(ctx.measures.clone(), ctx.vocabulary, index, member > 0);
    let client =
        Client::connect(&ctx.endpoint, ctx.tally.clone(), Options { answer_legacy_ping: true }, handler).await?;
    let name = format!("s{index}m{member}");
    let id = match session_id {
        None => session::open(&client, ctx.vocabulary, &format!("load-{}-{index}", ctx.run), &name).await?,
        Some(id) => {
            session::join(&client, ctx.vocabulary, id, &name).await?;
            id.to_owned()
        }
    };
    ctx.joins.record(started.elapsed());
    Ok((client, id))
}

/// Prints how many connects or joins failed, the first few reasons, and a hint for resource limits.
fn report_failures(failures: &[anyhow::Error]) {
    if failures.is_empty() {
        return;
    }
    eprintln!("{} connects or joins failed (a failed leader also leaves its members out); first:", failures.len());
    for err in failures.iter().take(3) {
        eprintln!("  {err:#}");
    }
    if let Some(hint) = failures.iter().find_map(support::resource_hint) {
        eprintln!("hint: {hint}");
    }
}

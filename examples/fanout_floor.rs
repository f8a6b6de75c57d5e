//! The floor under any server on this machine: what one small websocket frame written to one TCP
//! connection costs, with nothing else in the way.
//!
//! ```sh
//! cargo run --release --example fanout_floor -- --sockets 800 --rate 80 --seconds 15
//! ```
//!
//! A single thread writes a ready-made websocket frame, the size of a `position:sync`, to each of N
//! loopback connections at the given rate: one `write` per delivery, spread over eight slots of
//! each period as the server's ticker spreads its sessions. A child process reads and discards.
//! There is no Socket.IO, no channel, no task and no serialisation, so the writer thread's CPU per
//! million deliveries is the least any server could spend on this machine with one write per
//! delivery. Put it beside `loadgen`'s "server CPU per million deliveries".
//!
//! On loopback the kernel processes the receiving side in the sender's context, and charges the
//! sending thread for some of it (how much depends on its interrupt-time accounting). It does the
//! same for the server under `loadgen`, so the two figures compare; a real network card moves that
//! part to the client's machine.

#[path = "support/mod.rs"]
mod support;

use std::{
    io::Write,
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Parser;
use tokio::io::AsyncReadExt;

use support::proc_stats::Process;

/// The ticker's slots per period: each session streams in one of them.
const SLOTS_PER_PERIOD: usize = 8;
/// Members per session: connections in one session share a slot.
const MEMBERS_PER_SESSION: usize = 8;
/// Time for the connections to settle before the measured window.
const WARM_UP: Duration = Duration::from_secs(2);

#[derive(Debug, Parser)]
#[command(about = "The kernel's floor: one ready-made websocket frame written per delivery, nothing else")]
struct Args {
    /// Connections to write to.
    #[arg(long, default_value_t = 800)]
    sockets: usize,
    /// Frames a second to each connection.
    #[arg(long, default_value_t = 80.0)]
    rate: f64,
    /// Length of the measured window.
    #[arg(long, default_value_t = 15.0)]
    seconds: f64,
    /// Payload bytes per frame (a `position:sync` packet is about 150).
    #[arg(long, default_value_t = 150)]
    bytes: usize,
    /// Internal: run as the reading side, connecting this many times to this address.
    #[arg(long, num_args = 2, value_names = ["ADDR", "COUNT"], hide = true)]
    sink: Option<Vec<String>>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(sink) = &args.sink {
        return run_sink(&sink[0], sink[1].parse().context("sink count")?);
    }
    if args.sockets == 0 || args.rate <= 0.0 || args.seconds <= 0.0 {
        bail!("--sockets, --rate and --seconds must be positive");
    }
    support::warn_if_fd_limit_low(args.sockets * 2);

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?.to_string();
    let mut sink = SinkProcess::start(&addr, args.sockets)?;
    let mut connections = Vec::with_capacity(args.sockets);
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while connections.len() < args.sockets {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                if let Some(status) = sink.child.try_wait()? {
                    bail!("the reader process ended ({status}) after {} connections", connections.len());
                }
                if Instant::now() > deadline {
                    bail!("only {} of {} connections within 30 s", connections.len(), args.sockets);
                }
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(err) => return Err(err.into()),
        };
        stream.set_nonblocking(false)?;
        // As the server's listener sets it.
        stream.set_nodelay(true)?;
        connections.push(stream);
    }
    let frame = websocket_text_frame(args.bytes);
    let report = write_for(&connections, &frame, args.rate, Duration::from_secs_f64(args.seconds))?;
    let sink_cpu = Process::pid(sink.child.id()).cpu_seconds()?;
    drop(connections);
    sink.stop();

    println!(
        "\n== fanout floor: {} connections × {} Hz, {}-byte frames, {:.1} s window (wall) ==",
        args.sockets,
        args.rate,
        frame.len(),
        report.wall.as_secs_f64()
    );
    let per_second = report.deliveries as f64 / report.wall.as_secs_f64();
    let line = support::report_line;
    line("deliveries", format!("{} = {per_second:.0}/s", report.deliveries));
    let (user, system) = report.cpu;
    let share = 100.0 * (user + system) / report.wall.as_secs_f64();
    line("writer thread", format!("user {user:.2} s + system {system:.2} s = {share:.1} % of a core"));
    let millions = report.deliveries as f64 / 1e6;
    line(
        "per million",
        format!(
            "user {:.2} s + system {:.2} s = {:.2} s of CPU per million deliveries",
            user / millions,
            system / millions,
            (user + system) / millions
        ),
    );
    line("late slots", format!("{} of {} started over 1 ms late", report.late_slots, report.slots));
    line("reader process", format!("{sink_cpu:.2} s of CPU in all"));
    Ok(())
}

/// What the writer measured over its window.
struct Report {
    deliveries: u64,
    wall: Duration,
    /// The writer thread's user and system CPU seconds.
    cpu: (f64, f64),
    slots: u64,
    late_slots: u64,
}

/// Writes `frame` to every connection `rate` times a second for `window` after the warm-up.
fn write_for(connections: &[TcpStream], frame: &[u8], rate: f64, window: Duration) -> anyhow::Result<Report> {
    let thread = Process::current_thread();
    let slot_length = Duration::from_secs_f64(1.0 / rate / SLOTS_PER_PERIOD as f64);
    let start = Instant::now();
    let measure_from = start + WARM_UP;
    let end = measure_from + window;
    // The writer's CPU and the instant when the window opened.
    let mut measuring: Option<((f64, f64), Instant)> = None;
    let (mut deliveries, mut slots, mut late_slots) = (0u64, 0u64, 0u64);
    for slot_index in 0u64.. {
        let due = start + slot_length * slot_index as u32;
        if due >= end {
            break;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if measuring.is_none() && due >= measure_from {
            measuring = Some((thread.user_and_system_seconds()?, Instant::now()));
        }
        let slot = (slot_index % SLOTS_PER_PERIOD as u64) as usize;
        for (index, mut connection) in connections.iter().enumerate() {
            if (index / MEMBERS_PER_SESSION) % SLOTS_PER_PERIOD == slot {
                connection.write_all(frame).context("a reader connection closed")?;
                if measuring.is_some() {
                    deliveries += 1;
                }
            }
        }
        if measuring.is_some() {
            slots += 1;
            late_slots += u64::from(Instant::now().saturating_duration_since(due) > Duration::from_millis(1));
        }
    }
    let ((user_before, system_before), opened) = measuring.context("the window never started")?;
    let (user, system) = thread.user_and_system_seconds()?;
    // To the window's end, or later when the writer could not keep up.
    let wall = Instant::now().max(end).duration_since(opened);
    Ok(Report { deliveries, wall, cpu: (user - user_before, system - system_before), slots, late_slots })
}

/// An unmasked server-to-client text frame carrying `payload_bytes` of JSON-looking text.
fn websocket_text_frame(payload_bytes: usize) -> Vec<u8> {
    let mut payload = br#"42["position:sync",{"sessionId":"floor","positionMs":0,"serverTime":0,"pad":""#.to_vec();
    payload.resize(payload_bytes.saturating_sub(3).max(payload.len()), b'x');
    payload.extend_from_slice(br#""}]"#);
    let mut frame = vec![0x81];
    match payload.len() {
        len @ 0..=125 => frame.push(len as u8),
        len @ 126..=65535 => {
            frame.push(126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&payload);
    frame
}

/// The reading side, in a process of its own so its CPU is not the writer's.
struct SinkProcess {
    child: Child,
}

impl SinkProcess {
    fn start(addr: &str, count: usize) -> anyhow::Result<Self> {
        let child = Command::new(std::env::current_exe()?)
            .args(["--sink", addr, &count.to_string()])
            .stdin(Stdio::null())
            .spawn()
            .context("starting the reader process")?;
        Ok(Self { child })
    }

    fn stop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Drop for SinkProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Connects `count` times to `addr` and reads everything until each connection closes.
fn run_sink(addr: &str, count: usize) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut readers = tokio::task::JoinSet::new();
        for _ in 0..count {
            let mut stream = tokio::net::TcpStream::connect(addr).await?;
            readers.spawn(async move {
                let mut buffer = [0u8; 4096];
                while matches!(stream.read(&mut buffer).await, Ok(read) if read > 0) {}
            });
        }
        while readers.join_next().await.is_some() {}
        Ok(())
    })
}

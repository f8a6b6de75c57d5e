//! CPU time and resident memory of a process, read from Linux's `/proc`.
//!
//! The load tools measure the server from outside (it runs as its own process, perhaps started by
//! someone else), and their own CPU so that a saturated generator shows in the results instead of
//! passing for a slow server.

use std::{fs, io, time::Instant};

/// `sysconf(_SC_CLK_TCK)`: the unit of the times in `/proc/<pid>/stat`. Linux fixes USER_HZ at 100
/// on every architecture it exposes to user space, so no libc call is needed to learn it.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// A process to read figures of: this one, or another by pid.
#[derive(Debug, Clone)]
pub struct Process {
    dir: String,
}

impl Process {
    pub fn current() -> Self {
        Self { dir: "/proc/self".to_owned() }
    }

    pub fn pid(pid: u32) -> Self {
        Self { dir: format!("/proc/{pid}") }
    }

    /// The calling thread alone, for a measurement that other threads of this process must not blur.
    pub fn current_thread() -> Self {
        Self { dir: "/proc/thread-self".to_owned() }
    }

    /// User plus system CPU time consumed so far, in seconds.
    pub fn cpu_seconds(&self) -> io::Result<f64> {
        let (user, system) = self.user_and_system_seconds()?;
        Ok(user + system)
    }

    /// User and system CPU time consumed so far, apart, in seconds.
    pub fn user_and_system_seconds(&self) -> io::Result<(f64, f64)> {
        let stat = fs::read_to_string(format!("{}/stat", self.dir))?;
        // The command name (field 2) is in parentheses and may hold spaces or parentheses itself,
        // so fields are counted from the last ')': the next one is field 3 (state).
        let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).ok_or_else(|| invalid("no ')' in stat"))?;
        let mut fields = after_name.split_whitespace().skip(14 - 3);
        let mut ticks = || -> io::Result<u64> {
            fields.next().and_then(|field| field.parse().ok()).ok_or_else(|| invalid("short stat"))
        };
        let (utime, stime) = (ticks()?, ticks()?);
        Ok((utime as f64 / CLOCK_TICKS_PER_SECOND, stime as f64 / CLOCK_TICKS_PER_SECOND))
    }

    /// Resident set size (`VmRSS`), in bytes.
    pub fn rss_bytes(&self) -> io::Result<u64> {
        let status = fs::read_to_string(format!("{}/status", self.dir))?;
        let line = status.lines().find_map(|line| line.strip_prefix("VmRSS:")).ok_or_else(|| invalid("no VmRSS"))?;
        let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().map_err(|_| invalid("bad VmRSS"))?;
        Ok(kib * 1024)
    }

    /// CPU time and the instant it was read, for rates over an interval.
    pub fn sample(&self) -> io::Result<CpuSample> {
        Ok(CpuSample { at: Instant::now(), cpu_seconds: self.cpu_seconds()? })
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// CPU seconds consumed up to an instant.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    pub at: Instant,
    pub cpu_seconds: f64,
}

impl CpuSample {
    /// CPU seconds used between `earlier` and this sample.
    pub fn cpu_since(&self, earlier: &CpuSample) -> f64 {
        self.cpu_seconds - earlier.cpu_seconds
    }

    /// CPU use between `earlier` and this sample, in percent of one core.
    pub fn percent_since(&self, earlier: &CpuSample) -> f64 {
        let wall = self.at.duration_since(earlier.at).as_secs_f64();
        if wall > 0.0 { 100.0 * self.cpu_since(earlier) / wall } else { 0.0 }
    }
}

/// The soft and hard limits on open files of this process (`None` = unlimited).
pub fn open_files_limit() -> Option<(Option<u64>, Option<u64>)> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find_map(|line| line.strip_prefix("Max open files"))?;
    let mut values = line.split_whitespace().map(|value| value.parse().ok());
    Some((values.next()?, values.next()?))
}

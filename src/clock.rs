//! The server's one clock: milliseconds since the Unix epoch, read from a monotonic source.
//!
//! The wall clock is read once, at first use; every later reading adds the monotonic time elapsed
//! since. Readings therefore never jump when the system clock is stepped, and timestamps taken
//! anywhere in the server (event receipt, beat times, acks) are on the same scale.

use std::{
    sync::OnceLock,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use crate::core::Millis;

struct Anchor {
    wall_ms: f64,
    instant: Instant,
}

fn anchor() -> &'static Anchor {
    static ANCHOR: OnceLock<Anchor> = OnceLock::new();
    ANCHOR.get_or_init(|| Anchor {
        wall_ms: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1_000.0).unwrap_or(0.0),
        instant: Instant::now(),
    })
}

/// Now, in fractional milliseconds since the Unix epoch (for clock sync).
pub fn precise_now_ms() -> f64 {
    let anchor = anchor();
    anchor.wall_ms + anchor.instant.elapsed().as_secs_f64() * 1_000.0
}

/// Now, in whole milliseconds since the Unix epoch (`Date.now()` style).
pub fn now_ms() -> Millis {
    precise_now_ms().floor() as Millis
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_monotonic_and_close_to_the_wall_clock() {
        let first = precise_now_ms();
        let second = precise_now_ms();
        assert!(second >= first);
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as f64;
        assert!((wall - now_ms() as f64).abs() < 1_000.0);
    }
}

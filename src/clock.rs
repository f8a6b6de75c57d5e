//! The server's one clock: milliseconds since the Unix epoch, as `Date.now()` reads them, never
//! going backwards.
//!
//! Every device in a band compares our timestamps with its own wall clock, and several instances
//! sharing Redis compute positions from timestamps another instance wrote. So the clock follows
//! the system wall clock on every reading, as the Node server's `Date.now()` did; a clock anchored
//! once to a monotonic source drifts away from it over a long run (a VM pause, a clock discipline
//! that slews the two differently) and every device then disagrees with us by that drift.
//!
//! What the wall clock may do that a timeline must not is go backwards. A reading is therefore
//! never earlier than the last one handed out: when the system clock is stepped back by up to
//! [`BACKWARD_HOLD_MS`], the clock holds until the wall clock catches up, so no timestamp is ever
//! older than one already sent. A larger step back is a deliberate correction (an operator or
//! NTP setting the time), and is followed, with a warning in the log.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use crate::core::Millis;

/// The largest backward step of the system clock that is held rather than followed.
const BACKWARD_HOLD_MS: f64 = 1_000.0;

/// The last reading handed out, as `f64` bits. Positive floats order like their bits, so the
/// bits compare as the readings do.
static LAST_READING: AtomicU64 = AtomicU64::new(0);

/// Now, in fractional milliseconds since the Unix epoch (for clock sync).
pub fn precise_now_ms() -> f64 {
    let wall = wall_ms();
    let last = f64::from_bits(LAST_READING.fetch_max(wall.to_bits(), Ordering::Relaxed));
    let reading = next_reading(last, wall);
    if reading < last {
        LAST_READING.store(reading.to_bits(), Ordering::Relaxed);
        tracing::warn!(from_ms = last, to_ms = reading, "the system clock was stepped back; following it");
    }
    reading
}

/// Now, in whole milliseconds since the Unix epoch (`Date.now()` style).
pub fn now_ms() -> Millis {
    precise_now_ms().floor() as Millis
}

fn wall_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1_000.0).unwrap_or(0.0)
}

/// The reading that follows `last` when the wall clock says `wall`: the wall clock, unless it is
/// behind `last` by no more than [`BACKWARD_HOLD_MS`], in which case the clock holds at `last`.
fn next_reading(last: f64, wall: f64) -> f64 {
    if wall >= last || last - wall > BACKWARD_HOLD_MS { wall } else { last }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_monotonic_and_agree_with_the_wall_clock() {
        let first = precise_now_ms();
        let second = precise_now_ms();
        assert!(second >= first);
        let before = wall_ms();
        let reading = precise_now_ms();
        let after = wall_ms();
        assert!(reading >= before && reading <= after, "{before} <= {reading} <= {after}");
    }

    #[test]
    fn the_clock_follows_the_wall_clock_forward_including_a_step() {
        assert_eq!(next_reading(1_000.0, 1_000.5), 1_000.5);
        assert_eq!(next_reading(1_000.0, 61_000.0), 61_000.0);
    }

    #[test]
    fn a_small_step_back_holds_the_clock_until_the_wall_clock_catches_up() {
        let last = 10_000.0;
        assert_eq!(next_reading(last, last - 300.0), last);
        assert_eq!(next_reading(last, last - BACKWARD_HOLD_MS), last);
        assert_eq!(next_reading(last, last + 0.25), last + 0.25);
    }

    #[test]
    fn a_large_step_back_is_followed() {
        let last = 10_000.0;
        let wall = last - BACKWARD_HOLD_MS - 1.0;
        assert_eq!(next_reading(last, wall), wall);
    }
}

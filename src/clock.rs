//! The server's one clock: wall-clock milliseconds since the Unix epoch.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::core::Millis;

/// Now, in whole milliseconds since the Unix epoch (`Date.now()` style).
pub fn now_ms() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as Millis).unwrap_or(0)
}

//! `LEGACY_EVENTS`: retiring the legacy vocabulary once every client speaks the enhanced one.
//!
//! `on` serves legacy events as ever. `warn` serves them too, and reports each connection that
//! uses them: a counter (`bandsync_legacy_warnings_total`) and a log line, at most one a second
//! for the whole instance so a room full of old apps cannot flood the log. `off` refuses a legacy
//! join with `LEGACY_DISABLED`, naming the enhanced event to use; nothing else changes (a socket
//! that cannot join has no session for its other legacy events to act on).

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::{config::LegacyEvents, core::CoreError, telemetry};

/// The shortest time between two warnings in the log.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// What to tell a client whose legacy join is refused.
const INSTEAD_OF_JOIN: &str = "session:join (or session:create)";

/// Whether `event`, a legacy event, may be handled under `policy`. `first_use` is true for a
/// connection's first legacy event, which `warn` reports.
pub fn check(policy: LegacyEvents, event: &str, first_use: bool, socket_id: &str) -> Result<(), CoreError> {
    match policy {
        LegacyEvents::On => Ok(()),
        LegacyEvents::Warn => {
            if first_use {
                telemetry::legacy_warned();
                WARNINGS.note(Instant::now(), socket_id, event);
            }
            Ok(())
        }
        LegacyEvents::Off if event == "join_session" => Err(CoreError::LegacyDisabled(INSTEAD_OF_JOIN)),
        LegacyEvents::Off => Ok(()),
    }
}

static WARNINGS: Warnings = Warnings(Mutex::new(None));

/// When the last warning was logged, and how many connections were not logged since.
struct Warnings(Mutex<Option<(Instant, u64)>>);

impl Warnings {
    /// Logs this connection's warning unless one was logged less than a second ago; then it is
    /// counted into the next line. Returns whether it was logged.
    fn note(&self, now: Instant, socket_id: &str, event: &str) -> bool {
        let mut last = self.0.lock().expect("legacy warnings lock");
        match &mut *last {
            Some((at, skipped)) if now.duration_since(*at) < LOG_EVERY => {
                *skipped += 1;
                false
            }
            _ => {
                let also = last.map_or(0, |(_, skipped)| skipped);
                tracing::warn!(
                    socket = %socket_id,
                    event = %telemetry::event_label(event),
                    also_since_last_line = also,
                    "a client uses legacy events (LEGACY_EVENTS=warn); move it to the enhanced ones"
                );
                *last = Some((now, 0));
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_refuses_legacy_joins_only_and_names_the_event_to_use() {
        let err = check(LegacyEvents::Off, "join_session", true, "s").unwrap_err();
        assert_eq!(err.code(), "LEGACY_DISABLED");
        assert!(err.to_string().contains("session:join"), "{err}");
        assert!(check(LegacyEvents::Off, "sync_request", true, "s").is_ok());
        assert!(check(LegacyEvents::On, "join_session", true, "s").is_ok());
        assert!(check(LegacyEvents::Warn, "join_session", true, "s").is_ok());
    }

    #[test]
    fn warnings_are_logged_at_most_once_a_second() {
        let warnings = Warnings(Mutex::new(None));
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let logged: Vec<bool> =
            [0, 10, 500, 999, 1_000, 1_500, 2_100].iter().map(|&ms| warnings.note(at(ms), "s", "play")).collect();
        assert_eq!(logged, [true, false, false, false, true, false, true]);
    }
}

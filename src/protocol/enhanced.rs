//! Parsing the enhanced (colon-style) events into requests.
//!
//! The enhanced protocol is the richer one for new clients: acknowledgements, band discovery,
//! scheduled starts, tempo ramps and clock sync. Its changes become the same core actions as
//! their legacy twins.

use serde_json::Value;

use super::{Limits, validate::Fields};
use crate::core::{Action, CoreError, Joiner, Role, TempoAnnouncement, TimeSignature, Vocabulary};

/// A parsed enhanced event.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Create {
        setup: CreateRequest,
        joiner: Joiner,
    },
    Join {
        session_id: String,
        joiner: Joiner,
        create: bool,
        /// A seat's resume token: the join takes that seat back.
        resume_token: Option<String>,
    },
    Leave {
        session_id: String,
    },
    SessionList {
        band_id: String,
    },
    /// Any other change to a session the sender sits in.
    Session {
        session_id: String,
        action: Action,
    },
    ClockSync {
        t0: f64,
    },
    LatencyProbe {
        timestamp: f64,
    },
    MetricsSubscribe,
    MetricsUnsubscribe,
}

/// The longest resume token accepted; the server's own are 32 characters.
const MAX_RESUME_TOKEN: usize = 128;

/// `session:create` settings, before the instance's limits are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateRequest {
    pub band_id: String,
    pub session_name: String,
    pub tempo: Option<f64>,
    pub time_signature: Option<TimeSignature>,
    pub max_members: Option<usize>,
}

pub const EVENTS: &[&str] = &[
    "session:create",
    "session:join",
    "session:leave",
    "band:session_list",
    "metronome:start",
    "metronome:stop",
    "tempo:change",
    "position:seek",
    "position:sync",
    "role:transfer",
    "clock:sync",
    "latency:probe",
    "chat:message",
    "metrics:subscribe",
    "metrics:unsubscribe",
];

/// Parses `event` with `payload`; `None` when the event is not an enhanced one.
pub fn parse(event: &str, payload: &Value, limits: Limits) -> Option<Result<Request, CoreError>> {
    let parsed = match event {
        "metrics:subscribe" => Ok(Request::MetricsSubscribe),
        "metrics:unsubscribe" => Ok(Request::MetricsUnsubscribe),
        // A bare number is the short form of a probe.
        "latency:probe" if payload.is_number() => {
            Ok(Request::LatencyProbe { timestamp: payload.as_f64().unwrap_or(0.0) })
        }
        _ if EVENTS.contains(&event) => Fields::of(payload, limits).and_then(|fields| parse_fields(event, &fields)),
        _ => return None,
    };
    Some(parsed)
}

fn parse_fields(event: &str, f: &Fields<'_>) -> Result<Request, CoreError> {
    let session =
        |action: Action| -> Result<Request, CoreError> { Ok(Request::Session { session_id: f.session_id()?, action }) };
    match event {
        "session:create" => Ok(Request::Create {
            setup: CreateRequest {
                band_id: f.name("bandId")?,
                session_name: f.name("sessionName")?,
                tempo: f.optional_number("tempo")?.map(|_| f.tempo("tempo")).transpose()?,
                time_signature: time_signature(f)?,
                max_members: max_members(f)?,
            },
            joiner: joiner(f)?,
        }),
        "session:join" => Ok(Request::Join {
            session_id: f.session_id()?,
            joiner: joiner(f)?,
            create: f.optional_bool("create")?.unwrap_or(false),
            resume_token: f.optional_string("resumeToken", MAX_RESUME_TOKEN)?,
        }),
        "session:leave" => Ok(Request::Leave { session_id: f.session_id()? }),
        "band:session_list" => Ok(Request::SessionList { band_id: f.name("bandId")? }),
        "metronome:start" => session(Action::Start {
            tempo: f.optional_number("tempo")?.map(|_| f.tempo("tempo")).transpose()?,
            time_signature: time_signature(f)?,
            lead_ms: 0,
        }),
        "metronome:stop" => session(Action::Stop { reset: f.optional_bool("reset")?.unwrap_or(false) }),
        "tempo:change" => session(Action::SetTempo {
            tempo: f.tempo("newTempo")?,
            announcement: TempoAnnouncement::Changed,
            ramp_ms: f.fade_time("rampDurationMs")?,
        }),
        "position:seek" => session(Action::Seek { position: f.position("positionMs")? }),
        "position:sync" => session(Action::PositionReport {
            position: f.position("positionMs")?,
            client_time: f.number("clientTime")?,
            threshold_ms: 0.0,
        }),
        "role:transfer" => session(Action::Transfer { to: f.name("toSocketId")? }),
        "chat:message" => {
            let message = f.message("message")?;
            if message.trim().is_empty() {
                return Err(CoreError::Validation("message must not be empty".into()));
            }
            session(Action::Chat { message, username: None })
        }
        "clock:sync" => Ok(Request::ClockSync { t0: f.number("t0")? }),
        "latency:probe" => Ok(Request::LatencyProbe { timestamp: f.number("timestamp")? }),
        other => unreachable!("{other} is listed in EVENTS but has no parser"),
    }
}

/// What a joining client says about itself. The gateway adds the instance holding it.
fn joiner(f: &Fields<'_>) -> Result<Joiner, CoreError> {
    let preferred_role = match f.role("preferredRole")? {
        Some(true) => Some(Role::Leader),
        Some(false) => Some(Role::Follower),
        None => None,
    };
    Ok(Joiner {
        display_name: f.optional_name("displayName")?,
        vocabulary: Vocabulary::Enhanced,
        user_id: f.optional_name("userId")?,
        instrument: f.optional_name("instrument")?,
        preferred_role,
        instance: None,
        passcode: f.passcode()?,
        resume_digest: None,
        resume_claim: None,
    })
}

fn time_signature(f: &Fields<'_>) -> Result<Option<TimeSignature>, CoreError> {
    let Some(text) = f.optional_string("timeSignature", 8)? else { return Ok(None) };
    text.parse().map(Some).map_err(CoreError::Validation)
}

fn max_members(f: &Fields<'_>) -> Result<Option<usize>, CoreError> {
    match f.optional_number("maxMembers")? {
        None => Ok(None),
        Some(n) if n >= 1.0 && n.fract() == 0.0 && n <= 1000.0 => Ok(Some(n as usize)),
        Some(n) => Err(CoreError::Validation(format!("maxMembers must be a whole number from 1, got {n}"))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse_ok(event: &str, payload: Value) -> Request {
        parse(event, &payload, Limits::default()).unwrap().unwrap()
    }

    #[test]
    fn every_listed_event_parses_with_a_good_payload() {
        let good = json!({
            "sessionId": "s", "bandId": "b", "sessionName": "n", "newTempo": 100, "positionMs": 5,
            "clientTime": 1, "toSocketId": "x", "t0": 1.5, "timestamp": 2, "message": "hi"
        });
        for event in EVENTS {
            assert!(parse(event, &good, Limits::default()).unwrap().is_ok(), "{event}");
        }
    }

    #[test]
    fn create_reads_tempo_signature_and_seats() {
        let request = parse_ok(
            "session:create",
            json!({"bandId": "b", "sessionName": "Gig", "tempo": 90, "timeSignature": "6/8", "maxMembers": 4}),
        );
        let Request::Create { setup, .. } = request else { panic!("not a create") };
        assert_eq!(setup.tempo, Some(90.0));
        assert_eq!(setup.time_signature.unwrap().to_string(), "6/8");
        assert_eq!(setup.max_members, Some(4));
        for bad in [
            json!({"bandId": "b"}),
            json!({"bandId": "b", "sessionName": "n", "tempo": 500}),
            json!({"bandId": "b", "sessionName": "n", "timeSignature": "4"}),
            json!({"bandId": "b", "sessionName": "n", "maxMembers": 2.5}),
        ] {
            assert!(parse("session:create", &bad, Limits::default()).unwrap().is_err(), "{bad}");
        }
    }

    #[test]
    fn latency_probe_takes_a_number_or_an_object() {
        assert_eq!(parse_ok("latency:probe", json!(12.5)), Request::LatencyProbe { timestamp: 12.5 });
        assert_eq!(parse_ok("latency:probe", json!({"timestamp": 3})), Request::LatencyProbe { timestamp: 3.0 });
    }

    #[test]
    fn legacy_events_are_not_enhanced() {
        assert!(parse("join_session", &json!({}), Limits::default()).is_none());
    }
}

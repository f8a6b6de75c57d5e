//! Parsing the legacy (snake_case) and roles events into requests.
//!
//! Each event name maps to one [`Request`]; the payload is validated completely here, so a request
//! that reaches the core is well formed.

use serde_json::Value;

use super::{Limits, validate::Fields};
use crate::core::{Action, CoreError, Passcode, TempoAnnouncement};

/// A parsed legacy event.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Join {
        session_id: String,
        display_name: Option<String>,
        wants_lead: bool,
        passcode: Option<Passcode>,
    },
    Leave {
        session_id: String,
    },
    /// Any other change to a session the sender sits in.
    Session {
        session_id: String,
        action: Action,
    },
    SyncRequest {
        session_id: String,
    },
    LatencyProbe {
        timestamp: f64,
    },
    Heartbeat {
        timestamp: f64,
    },
    Pong {
        timestamp: f64,
    },
    ConnectionQuality,
    /// A client reporting its own error: logged, nothing else.
    ClientError(Value),
}

/// Every event name this vocabulary knows.
pub const EVENTS: &[&str] = &[
    "join_session",
    "leave_session",
    "set_role",
    "set_tempo",
    "play",
    "pause",
    "stop",
    "seek",
    "tempo_change",
    "tempo_changed",
    "beat_sync",
    "position_sync",
    "update_message",
    "chat_message",
    "role_changed",
    "sync_request",
    "latency_probe",
    "heartbeat",
    "pong",
    "connection_quality",
    "error",
    "request_leader",
    "approve_leader_request",
    "deny_leader_request",
];

/// The `_result` event answering a roles event, if `event` is one.
pub fn result_event(event: &str) -> Option<&'static str> {
    match event {
        "request_leader" => Some("request_leader_result"),
        "approve_leader_request" => Some("approve_leader_request_result"),
        "deny_leader_request" => Some("deny_leader_request_result"),
        _ => None,
    }
}

/// Parses `event` with `payload`; `None` when the event is not a legacy one.
pub fn parse(event: &str, payload: &Value, limits: Limits) -> Option<Result<Request, CoreError>> {
    let parsed = match event {
        "connection_quality" => Ok(Request::ConnectionQuality),
        "error" => Ok(Request::ClientError(payload.clone())),
        _ if EVENTS.contains(&event) => Fields::of(payload, limits).and_then(|fields| parse_fields(event, &fields)),
        _ => return None,
    };
    Some(parsed)
}

fn parse_fields(event: &str, f: &Fields<'_>) -> Result<Request, CoreError> {
    let limits = f.limits();
    let session =
        |action: Action| -> Result<Request, CoreError> { Ok(Request::Session { session_id: f.session_id()?, action }) };
    match event {
        "join_session" => Ok(Request::Join {
            session_id: f.session_id()?,
            display_name: f.optional_name("displayName")?,
            wants_lead: f.role("role")?.unwrap_or(false),
            passcode: f.passcode()?,
        }),
        "leave_session" => Ok(Request::Leave { session_id: f.session_id()? }),
        "set_role" => {
            let wants_lead = f.role("role")?.ok_or_else(|| CoreError::Validation("role is required".into()))?;
            session(Action::SetRole { wants_lead })
        }
        "set_tempo" => session(Action::SetTempo {
            tempo: f.tempo("tempo")?,
            announcement: TempoAnnouncement::Silent,
            ramp_ms: 0.0,
        }),
        "tempo_change" | "tempo_changed" => session(Action::SetTempo {
            tempo: f.tempo("tempo")?,
            announcement: if event == "tempo_change" { TempoAnnouncement::Change } else { TempoAnnouncement::Changed },
            ramp_ms: f.fade_time("fadeTime")?,
        }),
        "play" => session(Action::Start { tempo: None, time_signature: None, lead_ms: 0 }),
        "pause" => session(Action::Stop { reset: false }),
        "stop" => session(Action::Stop { reset: true }),
        "seek" => session(Action::Seek { position: f.position("position")? }),
        "beat_sync" => session(Action::BeatSync {
            beat_position: f.position("beatPosition")?,
            master_time: f.number("masterTime")?,
        }),
        "position_sync" => session(Action::PositionSync {
            position: f.position("positionMs")?,
            client_timestamp: f.number("timestamp")?,
        }),
        "update_message" => session(Action::UpdateMessage { message: f.message("message")? }),
        "chat_message" => {
            let message = f.message("message")?;
            if message.trim().is_empty() {
                return Err(CoreError::Validation("message must not be empty".into()));
            }
            session(Action::Chat { message, username: f.optional_name("username")? })
        }
        "role_changed" => session(Action::RoleNotice {
            role: f.string("role", limits.max_name)?,
            previous_role: f.string("previousRole", limits.max_name)?,
        }),
        "sync_request" => Ok(Request::SyncRequest { session_id: f.session_id()? }),
        "latency_probe" => Ok(Request::LatencyProbe { timestamp: f.number("timestamp")? }),
        "heartbeat" => Ok(Request::Heartbeat { timestamp: f.number("timestamp")? }),
        "pong" => Ok(Request::Pong { timestamp: f.number("timestamp")? }),
        "request_leader" => session(Action::RequestLead),
        "approve_leader_request" => session(Action::ApproveLead { requester: f.name("requesterId")? }),
        "deny_leader_request" => session(Action::DenyLead { requester: f.name("requesterId")? }),
        other => unreachable!("{other} is listed in EVENTS but has no parser"),
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
            "sessionId": "demo", "role": "leader", "tempo": 100, "position": 5, "beatPosition": 1,
            "masterTime": 1, "positionMs": 3, "timestamp": 9, "message": "hi", "previousRole": "follower",
            "requesterId": "abc"
        });
        for event in EVENTS {
            assert!(parse(event, &good, Limits::default()).unwrap().is_ok(), "{event}");
        }
    }

    #[test]
    fn unknown_events_are_not_legacy() {
        assert!(parse("session:join", &json!({}), Limits::default()).is_none());
    }

    #[test]
    fn join_defaults_and_role() {
        assert_eq!(
            parse_ok("join_session", json!({"sessionId": "demo", "role": "leader"})),
            Request::Join { session_id: "demo".into(), display_name: None, wants_lead: true, passcode: None }
        );
        assert!(
            parse("join_session", &json!({"sessionId": "demo", "role": "boss"}), Limits::default()).unwrap().is_err()
        );
    }

    #[test]
    fn roles_events_are_answered_with_their_result_event() {
        assert_eq!(result_event("request_leader"), Some("request_leader_result"));
        assert_eq!(result_event("approve_leader_request"), Some("approve_leader_request_result"));
        assert_eq!(result_event("set_role"), None);
    }
}

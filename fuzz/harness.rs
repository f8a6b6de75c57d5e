//! The bodies of the fuzz targets, shared with `tests/fuzz_corpus.rs`, which replays the kept
//! corpus and every past crash through them on stable Rust as part of `cargo test`.
//!
//! - [`payload`]: any bytes as the payload of any known event, through both parsers. Whatever
//!   validation lets through must be within the documented bounds.
//! - [`session_ops`]: bytes as a sequence of requests by up to eight sockets against one session,
//!   the request values going through the real parsers, then the core's `apply` and the rendering
//!   of its outcomes. After every request the session's invariants must hold, and a refused request
//!   must leave the session exactly as it was. Seats are held for members whose connection
//!   dropped and taken back with resume tokens; a token takes back its seat exactly while that
//!   seat is there and held (or connected), and is refused otherwise.

use bandsync_server::{
    core::{
        Action, Command, Creation, Joiner, LeaveCause, Millis, Passcode, Session, SessionSetup, Vocabulary, apply,
        invariants::violations,
        resume::token_digest,
        timeline::{MAX_TEMPO, MIN_TEMPO},
    },
    protocol::{
        self, Limits, Scene, enhanced, legacy,
        validate::{MAX_FADE_MS, MAX_POSITION_MS},
    },
};
use serde_json::{Value, json};

/// The first byte picks an event; the rest is its payload (JSON, or else a string).
pub fn payload(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else { return };
    let events: Vec<&str> = legacy::EVENTS.iter().chain(enhanced::EVENTS).copied().collect();
    let event = events[pick as usize % events.len()];
    let payload = serde_json::from_slice(rest).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(rest).into()));
    let limits = Limits::default();
    if let Some(Ok(request)) = legacy::parse(event, &payload, limits) {
        match request {
            legacy::Request::Join { session_id, display_name, .. } => {
                check_name(&session_id, limits);
                display_name.inspect(|n| check_name(n, limits));
            }
            legacy::Request::Session { session_id, action } => {
                check_name(&session_id, limits);
                check_action(&action, limits);
            }
            _ => {}
        }
    }
    if let Some(Ok(request)) = enhanced::parse(event, &payload, limits) {
        match request {
            enhanced::Request::Create { setup, joiner } => {
                check_name(&setup.band_id, limits);
                setup.tempo.inspect(|t| check_tempo(*t));
                joiner.display_name.inspect(|n| check_name(n, limits));
            }
            enhanced::Request::Join { session_id, .. } => check_name(&session_id, limits),
            enhanced::Request::Session { session_id, action } => {
                check_name(&session_id, limits);
                check_action(&action, limits);
            }
            _ => {}
        }
    }
}

fn check_name(name: &str, limits: Limits) {
    assert!(!name.trim().is_empty() && name.chars().count() <= limits.max_name, "name {name:?} passed validation");
}

fn check_tempo(tempo: f64) {
    assert!((MIN_TEMPO..=MAX_TEMPO).contains(&tempo), "tempo {tempo} passed validation");
}

fn check_action(action: &Action, limits: Limits) {
    match action {
        Action::SetTempo { tempo, ramp_ms, .. } => {
            check_tempo(*tempo);
            assert!((0.0..=MAX_FADE_MS).contains(ramp_ms), "ramp {ramp_ms} passed validation");
        }
        Action::Start { tempo, .. } => tempo.iter().for_each(|t| check_tempo(*t)),
        Action::Seek { position } | Action::PositionSync { position, .. } | Action::PositionReport { position, .. } => {
            assert!((0.0..=MAX_POSITION_MS).contains(position), "position {position} passed validation");
        }
        Action::UpdateMessage { message } | Action::Chat { message, .. } => {
            assert!(message.chars().count() <= limits.max_message, "message of {} chars", message.chars().count());
        }
        _ => {}
    }
}

/// Reads fuzz bytes as small numbers, running dry as zeros.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&first, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        first
    }

    /// A number: small and friendly most of the time, any finite double now and then.
    fn number(&mut self) -> f64 {
        match self.byte() % 4 {
            0 => f64::from(self.byte()) * 3.0,
            1 => f64::from(u16::from_le_bytes([self.byte(), self.byte()])) - 1_000.0,
            2 => f64::from_bits(u64::from_le_bytes(std::array::from_fn(|_| self.byte()))),
            _ => f64::from(self.byte()) / 4.0 + 20.0,
        }
    }
}

/// A sequence of requests against one session; see the module docs.
pub fn session_ops(data: &[u8]) {
    let mut bytes = Bytes(data);
    let sockets: Vec<String> = (0..8).map(|i| format!("sock{i}")).collect();
    let limits = Limits::default();
    let mut slot = None;
    let mut now: i64 = 1_700_000_000_000;
    let mut steps = 0;
    // Every resume token handed out so far, as digests: the n-th join gets the n-th.
    let mut tokens: Vec<String> = Vec::new();
    while !bytes.0.is_empty() && steps < 256 {
        steps += 1;
        // Instances' clocks differ a little, so time may step back as well as forward.
        now += i64::from(bytes.byte()) * 7 - 60;
        let by = sockets[bytes.byte() as usize % sockets.len()].clone();
        let Some(action) = next_action(&mut bytes, &sockets, limits) else { continue };
        // What the gateway fills in in the server: a scheduled start, a grace's end, the tokens.
        let action = match action {
            Action::Start { tempo, time_signature, .. } => {
                Action::Start { tempo, time_signature, lead_ms: i64::from(bytes.byte()) * 10 }
            }
            Action::Suspend { until } => Action::Suspend { until: now + until },
            Action::Join { mut joiner, wants_lead, creation } => {
                tokens.push(token_digest("fuzz", &format!("token {}", tokens.len())));
                joiner.resume_digest = tokens.last().cloned();
                if joiner.resume_claim.is_some() {
                    joiner.resume_claim = Some(tokens[bytes.byte() as usize % tokens.len()].clone());
                }
                Action::Join { joiner, wants_lead, creation }
            }
            other => other,
        };
        let before = slot.clone();
        let command = Command { by: by.clone(), action };
        let result = apply(&mut slot, "fuzz", &command, now);
        check_reclaim(before.as_ref(), &command, now, result.is_ok());
        match result {
            Err(_) => assert_eq!(slot, before, "a refused {command:?} changed the session"),
            Ok(outcomes) => {
                if let Some(session) = &slot {
                    for vocabulary in [Vocabulary::Legacy, Vocabulary::Enhanced] {
                        let scene = Scene { session, by: &by, sender_vocabulary: vocabulary, now };
                        protocol::render(&outcomes, &scene);
                    }
                }
            }
        }
        if let Some(session) = &slot {
            let broken = violations(session, now);
            assert!(broken.is_empty(), "after {command:?} at {now}: {broken:?}\n{session:#?}");
        }
    }
}

/// A join with a resume token by a socket not yet seated succeeds exactly when the token's seat
/// is there and held (not past its grace) or connected: a token of a seat that ended, or whose
/// grace is over, is refused.
fn check_reclaim(before: Option<&Session>, command: &Command, now: Millis, succeeded: bool) {
    let Action::Join { joiner, .. } = &command.action else { return };
    let Some(claim) = &joiner.resume_claim else { return };
    let Some(session) = before.filter(|s| s.member(&command.by).is_none()) else { return };
    let seat = session.members.iter().find(|m| m.resume_digest.as_ref() == Some(claim));
    let takes_back = seat.is_some_and(|m| m.reconnecting_until.is_none_or(|until| now < until));
    assert_eq!(succeeded, takes_back, "{command:?} at {now}, seat {seat:?}");
}

/// The next request: a join or an eviction built directly, anything else parsed from a payload
/// with fuzzed values, as a client would send it.
fn next_action(bytes: &mut Bytes<'_>, sockets: &[String], limits: Limits) -> Option<Action> {
    let kind = bytes.byte() % 22;
    let other = sockets[bytes.byte() as usize % sockets.len()].clone();
    let session = json!("fuzz");
    let (event, payload) = match kind {
        0 | 1 => {
            let passcode = match bytes.byte() % 4 {
                0 => Some(Passcode::new("violet")),
                1 => Some(Passcode::new("blue")),
                _ => None,
            };
            let user_id = bytes.byte().is_multiple_of(3).then(|| format!("user{}", bytes.byte() % 3));
            let joiner = Joiner { passcode, user_id, vocabulary: Vocabulary::Enhanced, ..Joiner::default() };
            let setup = SessionSetup::with_max_members(1 + bytes.byte() as usize % 8);
            let creation = match bytes.byte() % 4 {
                0 => Creation::MustExist,
                1 => Creation::AtCapacity { max_sessions: 1 },
                _ => Creation::IfMissing(setup),
            };
            return Some(Action::Join { joiner: joiner.into(), wants_lead: bytes.byte().is_multiple_of(3), creation });
        }
        2 if bytes.byte().is_multiple_of(2) => return Some(Action::Leave(LeaveCause::Left)),
        2 => return Some(Action::Leave(LeaveCause::Disconnected("transport close".into()))),
        // The connection dropped: the seat is held for a while (filled in from now by the caller).
        20 => return Some(Action::Suspend { until: i64::from(bytes.byte()) * 10 }),
        // A join from a new connection with a resume token (picked by the caller).
        21 => {
            let joiner =
                Joiner { resume_claim: Some(String::new()), vocabulary: Vocabulary::Enhanced, ..Joiner::default() };
            let creation = Creation::MustExist;
            return Some(Action::Join { joiner: joiner.into(), wants_lead: false, creation });
        }
        3 => {
            let evicted = sockets.iter().filter(|_| bytes.byte().is_multiple_of(3)).cloned().collect();
            return Some(Action::Evict { sockets: evicted, reason: "server lost".into() });
        }
        4 => ("set_tempo", json!({ "sessionId": session, "tempo": bytes.number() })),
        5 => (
            "tempo:change",
            json!({ "sessionId": session, "newTempo": bytes.number(), "rampDurationMs": bytes.number() }),
        ),
        6 => ("tempo_change", json!({ "sessionId": session, "tempo": bytes.number(), "fadeTime": bytes.number() })),
        7 => ("play", json!({ "sessionId": session })),
        8 => ("metronome:start", json!({ "sessionId": session, "tempo": bytes.number() })),
        9 => ("pause", json!({ "sessionId": session })),
        10 => ("metronome:stop", json!({ "sessionId": session, "reset": bytes.byte().is_multiple_of(2) })),
        11 => ("seek", json!({ "sessionId": session, "position": bytes.number() })),
        12 => (
            "position_sync",
            json!({ "sessionId": session, "positionMs": bytes.number(), "timestamp": bytes.number() }),
        ),
        13 => (
            "position:sync",
            json!({ "sessionId": session, "positionMs": bytes.number(), "clientTime": bytes.number() }),
        ),
        14 => (
            "set_role",
            json!({ "sessionId": session, "role": if bytes.byte().is_multiple_of(2) { "leader" } else { "follower" } }),
        ),
        15 => ("request_leader", json!({ "sessionId": session })),
        16 => ("approve_leader_request", json!({ "sessionId": session, "requesterId": other })),
        17 => ("deny_leader_request", json!({ "sessionId": session, "requesterId": other })),
        18 => ("role:transfer", json!({ "sessionId": session, "toSocketId": other })),
        _ => {
            ("beat_sync", json!({ "sessionId": session, "beatPosition": bytes.number(), "masterTime": bytes.number() }))
        }
    };
    let legacy = legacy::parse(event, &payload, limits).and_then(Result::ok).and_then(|request| match request {
        legacy::Request::Session { action, .. } => Some(action),
        _ => None,
    });
    legacy.or_else(|| match enhanced::parse(event, &payload, limits)?.ok()? {
        enhanced::Request::Session { action, .. } => Some(action),
        _ => None,
    })
}

//! Rendering core outcomes as the enhanced (colon-style) events.
//!
//! Enhanced members hear of a start, stop or seek through `metronome:start`, `metronome:stop` and
//! `position:seek` alone, and of a plain member change through `session:member_update` alone;
//! every other state change also brings a `session:state_sync`.

use serde::Serialize;
use serde_json::json;

use super::{Emission, Scene, Target, payload};
use crate::core::{Millis, Outcome, Vocabulary, timeline::Timeline};

pub fn render(outcomes: &[Outcome], scene: &Scene<'_>) -> Vec<Emission> {
    let led_changed = outcomes.iter().any(|o| matches!(o, Outcome::LeadChanged { .. }));
    let told_otherwise = outcomes.iter().any(|o| {
        o.is_transport()
            || matches!(
                o,
                Outcome::Joined { .. } | Outcome::Left { .. } | Outcome::Reconnecting { .. } | Outcome::Resumed { .. }
            )
    });
    let sync_state = led_changed || !told_otherwise;
    let mut out = Vec::new();
    for outcome in outcomes {
        render_one(outcome, scene, sync_state, &mut out);
    }
    out
}

fn render_one(outcome: &Outcome, scene: &Scene<'_>, sync_state: bool, out: &mut Vec<Emission>) {
    let Scene { session, by, now, sender_vocabulary } = *scene;
    let id = &session.id;
    let room =
        |out: &mut Vec<Emission>, event, data| out.push(Emission::new(Target::Room(Vocabulary::Enhanced), event, data));
    match outcome {
        Outcome::Snapshot if sync_state => room(out, "session:state_sync", payload::state_sync(session, now)),
        Outcome::SnapshotToSender if sender_vocabulary == Vocabulary::Enhanced => {
            out.push(Emission::new(Target::Sender, "session:state_sync", payload::state_sync(session, now)))
        }
        Outcome::Joined { member } => room(
            out,
            "session:member_update",
            json!({
                "sessionId": id, "action": "joined", "member": payload::enhanced_member(member),
                "memberCount": session.members.len(),
            }),
        ),
        Outcome::Left { socket_id, .. } => room(
            out,
            "session:member_update",
            json!({ "sessionId": id, "action": "left", "socketId": socket_id, "memberCount": session.members.len() }),
        ),
        Outcome::Reconnecting { socket_id, until } => room(
            out,
            "session:member_update",
            json!({
                "sessionId": id, "action": "reconnecting", "socketId": socket_id,
                "reconnectingUntil": until, "memberCount": session.members.len(),
            }),
        ),
        Outcome::Resumed { previous, member, .. } => {
            room(
                out,
                "session:member_update",
                json!({
                    "sessionId": id, "action": "reconnected", "socketId": member.socket_id,
                    "previousSocketId": previous, "member": payload::enhanced_member(member),
                    "memberCount": session.members.len(),
                }),
            );
            // Clients know the leader by socket id: the leader's new connection is announced.
            if session.is_leader(&member.socket_id) {
                room(
                    out,
                    "leader:election",
                    json!({ "sessionId": id, "oldLeader": previous, "newLeader": member.socket_id, "reason": "resumed" }),
                );
            }
        }
        Outcome::LeadChanged { previous, new, reason } => room(
            out,
            "leader:election",
            json!({ "sessionId": id, "oldLeader": previous, "newLeader": new, "reason": reason.as_str() }),
        ),
        Outcome::Started { position, tempo, start_time } => room(
            out,
            "metronome:start",
            json!({
                "sessionId": id, "tempo": tempo, "timeSignature": session.time_signature.to_string(),
                "startTime": start_time, "positionMs": position,
            }),
        ),
        Outcome::Paused { position } => {
            room(out, "metronome:stop", json!({ "sessionId": id, "stopTime": now, "positionMs": position }))
        }
        Outcome::Stopped => room(out, "metronome:stop", json!({ "sessionId": id, "stopTime": now, "positionMs": 0 })),
        Outcome::Seeked { position } | Outcome::PositionSynced { position, .. } => {
            room(out, "position:seek", json!({ "sessionId": id, "positionMs": position, "serverTime": now }))
        }
        Outcome::TempoAnnounced { old, new, ramp_ms, .. } => room(
            out,
            "tempo:change",
            json!({
                "sessionId": id, "oldTempo": old, "newTempo": new, "effectiveTimestamp": now,
                "rampDurationMs": ramp_ms,
            }),
        ),
        Outcome::PositionChecked { reported, expected, drift, needs_correction: true } => out.push(Emission::new(
            Target::Sender,
            "position:correction",
            json!({
                "sessionId": id, "correctPosition": expected, "reportedPosition": reported, "drift": drift,
                "serverTime": now,
            }),
        )),
        Outcome::Chat { message, display_name, .. } => room(
            out,
            "chat:message",
            json!({ "sessionId": id, "message": message, "displayName": display_name, "socketId": by, "timestamp": now }),
        ),
        // Legacy-only notices, or nothing to say.
        Outcome::Snapshot
        | Outcome::SnapshotToSender
        | Outcome::HandOverSettled { .. }
        | Outcome::BeatSynced { .. }
        | Outcome::PositionChecked { .. }
        | Outcome::RoleNotice { .. }
        | Outcome::LeadRequested { .. }
        | Outcome::LeadDenied { .. } => {}
    }
}

/// Beat (1-based within the bar), bar (1-based) and progress into the beat, for a beat count.
fn beat_in_bar(beats: f64, beats_per_bar: u8) -> (i64, i64, f64) {
    let whole = beats.floor() as i64;
    let per_bar = i64::from(beats_per_bar.max(1));
    (whole.rem_euclid(per_bar) + 1, whole.div_euclid(per_bar) + 1, beats - beats.floor())
}

/// `position:sync`, the enhanced position stream. A typed payload, not a JSON tree: it is built
/// 80 times a second per playing session and serialised straight into the packet.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PositionSync<'a> {
    session_id: &'a str,
    position_ms: f64,
    server_time: Millis,
    beat: i64,
    bar: i64,
    beat_progress: f64,
    tempo: f64,
}

pub fn position_sync<'a>(session_id: &'a str, timeline: &Timeline, beats_per_bar: u8, now: Millis) -> PositionSync<'a> {
    let (beat, bar, beat_progress) = beat_in_bar(timeline.beat_at(now), beats_per_bar);
    PositionSync {
        session_id,
        position_ms: timeline.position_at(now),
        server_time: now,
        beat,
        bar,
        beat_progress,
        tempo: timeline.tempo_at(now),
    }
}

/// `metronome:beat`: one beat, with the server time it falls on.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetronomeBeat<'a> {
    session_id: &'a str,
    beat: i64,
    bar: i64,
    beat_time: f64,
    tempo: f64,
}

/// `metronome:beat` for beat count `beat`.
pub fn metronome_beat<'a>(session_id: &'a str, timeline: &Timeline, beats_per_bar: u8, beat: i64) -> MetronomeBeat<'a> {
    let (in_bar, bar, _) = beat_in_bar(beat as f64, beats_per_bar);
    let beat_time = timeline.time_of_beat(beat as f64).unwrap_or_default();
    MetronomeBeat { session_id, beat: in_bar, bar, beat_time, tempo: timeline.tempo_at(beat_time.floor() as Millis) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Action, Command, Creation, Joiner, Session, SessionSetup, TempoAnnouncement, apply};

    fn join(slot: &mut Option<Session>, by: &str, vocabulary: Vocabulary) -> Vec<Outcome> {
        let joiner = Joiner { display_name: Some(by.into()), vocabulary, ..Joiner::default() };
        let creation = Creation::IfMissing(SessionSetup::with_max_members(8));
        let command =
            Command { by: by.into(), action: Action::Join { joiner: joiner.into(), wants_lead: false, creation } };
        apply(slot, "mix", &command, 0).unwrap()
    }

    fn rendered(
        outcomes: &[Outcome],
        session: &Session,
        by: &str,
        vocabulary: Vocabulary,
    ) -> Vec<(Target, &'static str)> {
        let scene = Scene { session, by, now: 10, sender_vocabulary: vocabulary };
        super::super::render(outcomes, &scene).into_iter().map(|e| (e.target, e.event)).collect()
    }

    #[test]
    fn beats_count_from_one_within_the_bar() {
        assert_eq!(beat_in_bar(0.0, 4), (1, 1, 0.0));
        assert_eq!(beat_in_bar(3.5, 4), (4, 1, 0.5));
        assert_eq!(beat_in_bar(4.0, 4), (1, 2, 0.0));
        assert_eq!(beat_in_bar(7.0, 3), (2, 3, 0.0));
    }

    #[test]
    fn each_vocabulary_hears_a_start_once_in_its_own_words() {
        let mut slot = None;
        join(&mut slot, "old", Vocabulary::Legacy);
        join(&mut slot, "new", Vocabulary::Enhanced);
        let start = Action::Start { tempo: None, time_signature: None, lead_ms: 0 };
        let outcomes = apply(&mut slot, "mix", &Command { by: "old".into(), action: start }, 5).unwrap();
        let events = rendered(&outcomes, slot.as_ref().unwrap(), "old", Vocabulary::Legacy);
        let legacy = Target::Room(Vocabulary::Legacy);
        let enhanced = Target::Room(Vocabulary::Enhanced);
        assert_eq!(events, vec![(legacy.clone(), "snapshot"), (legacy, "play"), (enhanced, "metronome:start")]);
    }

    #[test]
    fn an_enhanced_tempo_change_reaches_legacy_members_as_tempo_changed() {
        let mut slot = None;
        join(&mut slot, "new", Vocabulary::Enhanced);
        join(&mut slot, "old", Vocabulary::Legacy);
        let change = Action::SetTempo { tempo: 90.0, announcement: TempoAnnouncement::Changed, ramp_ms: 0.0 };
        let outcomes = apply(&mut slot, "mix", &Command { by: "new".into(), action: change }, 5).unwrap();
        let events: Vec<&str> = rendered(&outcomes, slot.as_ref().unwrap(), "new", Vocabulary::Enhanced)
            .into_iter()
            .map(|(_, event)| event)
            .collect();
        assert_eq!(events, ["tempo_changed", "snapshot", "tempo:change", "session:state_sync"]);
    }

    #[test]
    fn a_join_answers_the_joiner_in_its_own_vocabulary_only() {
        let mut slot = None;
        join(&mut slot, "old", Vocabulary::Legacy);
        let outcomes = join(&mut slot, "new", Vocabulary::Enhanced);
        let events = rendered(&outcomes, slot.as_ref().unwrap(), "new", Vocabulary::Enhanced);
        assert_eq!(
            events,
            vec![
                (Target::Room(Vocabulary::Legacy), "room_stats"),
                (Target::Room(Vocabulary::Legacy), "user_joined"),
                (Target::Sender, "session:state_sync"),
                (Target::Room(Vocabulary::Enhanced), "session:member_update"),
            ]
        );
    }
}

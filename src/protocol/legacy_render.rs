//! Rendering core outcomes as the legacy events existing clients listen for.

use serde_json::{Value, json};

use super::{Emission, Scene, Target, payload};
use crate::core::{
    LeadChange, LeaveCause, Millis, Outcome, Session, TempoAnnouncement, Vocabulary, session::default_display_name,
};

/// All emissions for `outcomes`, in order.
pub fn render(outcomes: &[Outcome], scene: &Scene<'_>) -> Vec<Emission> {
    let mut out = Vec::new();
    for outcome in outcomes {
        render_one(outcome, scene, &mut out);
    }
    out
}

fn render_one(outcome: &Outcome, scene: &Scene<'_>, out: &mut Vec<Emission>) {
    let Scene { session, by, now, sender_vocabulary } = *scene;
    let id = &session.id;
    let room =
        |out: &mut Vec<Emission>, event, data| out.push(Emission::new(Target::Room(Vocabulary::Legacy), event, data));
    match outcome {
        Outcome::Snapshot => room(out, "snapshot", payload::snapshot(session, now)),
        Outcome::SnapshotToSender if sender_vocabulary == Vocabulary::Legacy => {
            out.push(Emission::new(Target::Sender, "snapshot", payload::snapshot(session, now)))
        }
        Outcome::SnapshotToSender => {}
        Outcome::Joined { member } => {
            room(out, "room_stats", payload::room_stats(session, now));
            room(
                out,
                "user_joined",
                json!({ "member": payload::member(member), "memberCount": session.members.len() }),
            );
        }
        Outcome::Left { socket_id, new_leader, cause } => {
            room(out, "room_stats", payload::room_stats(session, now));
            let mut data = json!({
                "socketId": socket_id,
                "memberCount": session.members.len(),
                "newLeader": new_leader,
                "timestamp": now,
            });
            if let LeaveCause::Disconnected(reason) = cause {
                data["disconnectReason"] = Value::from(reason.as_str());
            }
            room(out, "user_left", data);
        }
        // Legacy members see no change while a seat is held; a seat taken back has a new socket id.
        Outcome::Reconnecting { .. } => {}
        // The member who came back has its snapshot as the join's answer: one is enough.
        Outcome::Resumed { .. } => {
            out.push(Emission::new(Target::Others(Vocabulary::Legacy), "snapshot", payload::snapshot(session, now)))
        }
        Outcome::LeadChanged { previous, new, reason } => match reason {
            LeadChange::LeaderDisconnected | LeadChange::LeaderLeft | LeadChange::Transferred => {
                let reason = reason.as_str();
                room(
                    out,
                    "role_changed",
                    json!({
                        "socketId": new, "role": "leader", "previousRole": "follower",
                        "reason": reason, "timestamp": now,
                    }),
                );
            }
            LeadChange::HandedOver | LeadChange::Granted => {
                let new_id = new.as_deref().unwrap_or_default();
                room(
                    out,
                    "leader_changed",
                    json!({
                        "sessionId": id, "newLeaderId": new, "newLeaderInfo": payload::member_info(session, new_id),
                        "previousLeader": previous,
                    }),
                );
            }
            // Legacy clients learn of these from the snapshot or user_joined that follows.
            LeadChange::Joined | LeadChange::TakenOver | LeadChange::SteppedDown => {}
        },
        Outcome::HandOverSettled { previous, new, denied } => {
            let to = |socket: &str| Target::Socket(socket.to_owned());
            out.push(Emission::new(
                to(previous),
                "leader_handoff_completed",
                json!({ "sessionId": id, "newLeaderId": new }),
            ));
            out.push(Emission::new(
                to(new),
                "leader_request_approved",
                json!({ "sessionId": id, "approvedBy": previous }),
            ));
            for requester in denied {
                let data = json!({ "sessionId": id, "reason": "Another member's request was approved" });
                out.push(Emission::new(to(requester), "leader_request_denied", data));
            }
        }
        // `position` is the song position at `serverTimestamp`: the moment playback starts, which
        // an enhanced start in a mixed session schedules ahead (a legacy `play` starts now).
        Outcome::Started { position, tempo, start_time } => room(
            out,
            "play",
            json!({
                "sessionId": id, "tempoBpm": tempo, "position": payload::whole_ms(*position),
                "serverTimestamp": start_time,
            }),
        ),
        Outcome::Paused { position } => room(
            out,
            "pause",
            json!({ "sessionId": id, "position": payload::whole_ms(*position), "serverTimestamp": now }),
        ),
        Outcome::Stopped => room(out, "stop", json!({ "sessionId": id, "serverTimestamp": now })),
        Outcome::Seeked { position } => room(
            out,
            "seek",
            json!({ "sessionId": id, "position": payload::whole_ms(*position), "serverTimestamp": now }),
        ),
        Outcome::TempoAnnounced { old, new, ramp_ms: fade_time, announcement } => {
            let mut data = json!({
                "sessionId": id, "oldTempo": old, "newTempo": new, "changeTime": now,
                "fadeTime": fade_time, "serverTimestamp": now,
            });
            let event = match announcement {
                TempoAnnouncement::Silent => return,
                TempoAnnouncement::Change => "tempo_change",
                TempoAnnouncement::Changed => {
                    data["isRealTime"] = Value::Bool(true);
                    "tempo_changed"
                }
            };
            room(out, event, data);
        }
        Outcome::BeatSynced { beat_position, master_time, tempo } => room(
            out,
            "beat_sync",
            json!({
                "sessionId": id, "masterTime": now, "beatPosition": beat_position, "tempo": tempo,
                "drift": now as f64 - master_time,
            }),
        ),
        Outcome::PositionSynced { position, client_timestamp } => room(
            out,
            "position_sync",
            json!({
                "sessionId": id, "positionMs": payload::whole_ms(*position), "serverTime": now,
                "clientTimestamp": client_timestamp,
            }),
        ),
        Outcome::Chat { message, username, .. } => {
            let username = username.clone().unwrap_or_else(|| default_display_name(by));
            let data =
                json!({ "sessionId": id, "message": message, "username": username, "timestamp": now, "socketId": by });
            room(out, "chat_message", data);
        }
        // A member's own position report concerns that member only, in the enhanced vocabulary.
        Outcome::PositionChecked { .. } => {}
        Outcome::RoleNotice { role, previous_role } => room(
            out,
            "role_changed",
            json!({ "socketId": by, "role": role, "previousRole": previous_role, "timestamp": now }),
        ),
        Outcome::LeadRequested { leader, requester } => {
            let info = json!({ "displayName": requester.display_name, "joinedAt": requester.joined_at });
            let data = json!({ "sessionId": id, "requesterId": requester.socket_id, "requesterInfo": info });
            out.push(Emission::new(Target::Socket(leader.clone()), "leader_handoff_request", data));
            out.push(Emission::new(
                Target::Sender,
                "leader_request_sent",
                json!({ "sessionId": id, "currentLeader": leader }),
            ));
        }
        Outcome::LeadDenied { requester } => out.push(Emission::new(
            Target::Socket(requester.clone()),
            "leader_request_denied",
            json!({ "sessionId": id, "reason": "The leader denied the request" }),
        )),
    }
}

/// `sync_response` for `sync_request`.
pub fn sync_response(session: &Session, now: Millis) -> Value {
    json!({
        "sessionId": session.id,
        "positionMs": payload::whole_ms(session.timeline.position_at(now)),
        "tempoBpm": session.timeline.tempo,
        "isPlaying": session.timeline.is_playing,
        "serverTime": now,
    })
}

/// `scroll_tick`, the legacy position stream.
pub fn scroll_tick(session_id: &str, position: f64, tempo: f64, now: Millis) -> ScrollTick<'_> {
    ScrollTick { session_id, position_ms: payload::whole_ms(position), tempo_bpm: tempo, server_timestamp: now }
}

/// `scroll_tick`'s payload, typed so each tick is serialised once, straight into the packet.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScrollTick<'a> {
    session_id: &'a str,
    position_ms: i64,
    tempo_bpm: f64,
    server_timestamp: Millis,
}

/// `error {message, code}`.
pub fn error(err: &crate::core::CoreError) -> Value {
    json!({ "message": err.to_string(), "code": err.code() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Action, Command, Creation, Joiner, LeaveCause, SessionSetup, Vocabulary, apply};

    fn join(by: &str) -> Command {
        let joiner = Joiner { display_name: Some(by.into()), vocabulary: Vocabulary::Legacy, ..Joiner::default() };
        let creation = Creation::IfMissing(SessionSetup::with_max_members(8));
        Command { by: by.into(), action: Action::Join { joiner: joiner.into(), wants_lead: false, creation } }
    }

    fn scene<'a>(session: &'a Session, by: &'a str, now: Millis) -> Scene<'a> {
        Scene { session, by, now, sender_vocabulary: Vocabulary::Legacy }
    }

    fn trio() -> Option<Session> {
        let mut slot = None;
        for (i, by) in ["a", "b", "c"].iter().enumerate() {
            apply(&mut slot, "demo", &join(by), i as i64).unwrap();
        }
        slot
    }

    fn events(emissions: &[Emission]) -> Vec<&str> {
        emissions.iter().map(|e| e.event).collect()
    }

    #[test]
    fn leader_disconnect_renders_role_changed_snapshot_room_stats_user_left() {
        let mut slot = trio();
        let command =
            Command { by: "a".into(), action: Action::Leave(LeaveCause::Disconnected("transport close".into())) };
        let outcomes = apply(&mut slot, "demo", &command, 100).unwrap();
        let session = slot.unwrap();
        let emissions = render(&outcomes, &scene(&session, "a", 100));
        assert_eq!(events(&emissions), ["role_changed", "snapshot", "room_stats", "user_left"]);
        assert_eq!(emissions[0].data["socketId"], "b");
        assert_eq!(emissions[3].data["newLeader"], "b");
        assert_eq!(emissions[3].data["disconnectReason"], "transport close");
        assert!(emissions.iter().all(|e| e.target == Target::Room(Vocabulary::Legacy)));
    }

    #[test]
    fn join_renders_snapshot_to_sender_then_room_stats_and_user_joined() {
        let mut slot = trio();
        let outcomes = apply(&mut slot, "demo", &join("d"), 5).unwrap();
        let session = slot.unwrap();
        let emissions = render(&outcomes, &scene(&session, "d", 5));
        assert_eq!(events(&emissions), ["snapshot", "room_stats", "user_joined"]);
        assert_eq!(emissions[0].target, Target::Sender);
        assert_eq!(emissions[2].data["memberCount"], 4);
        assert_eq!(emissions[0].data["members"].as_array().unwrap().len(), 4);
    }
}

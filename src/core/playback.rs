//! The leader's transport controls and the session's shared text: tempo, play, pause, stop,
//! seek, position and beat reports, the message line and chat.

use super::{Action, Millis, Outcome, Session, TempoAnnouncement, session::default_display_name};

pub(super) fn apply(session: &mut Session, by: &str, action: &Action, now: Millis) -> Vec<Outcome> {
    let timeline = &mut session.timeline;
    match action {
        Action::SetTempo { tempo, announcement, fade_time } => {
            let old = timeline.tempo;
            timeline.set_tempo(*tempo, now);
            match announcement {
                TempoAnnouncement::Silent => vec![Outcome::Snapshot],
                _ => vec![
                    Outcome::TempoAnnounced { old, new: *tempo, fade_time: *fade_time, announcement: *announcement },
                    Outcome::Snapshot,
                ],
            }
        }
        Action::Play => {
            timeline.play(now);
            vec![Outcome::Snapshot, Outcome::Started { position: timeline.position_at(now), tempo: timeline.tempo }]
        }
        Action::Pause => {
            timeline.pause(now);
            vec![Outcome::Snapshot, Outcome::Paused { position: timeline.position_at(now) }]
        }
        Action::Stop => {
            timeline.stop(now);
            vec![Outcome::Snapshot, Outcome::Stopped]
        }
        Action::Seek { position } => {
            timeline.seek(*position, now);
            vec![Outcome::Snapshot, Outcome::Seeked { position: *position }]
        }
        Action::BeatSync { beat_position, master_time } => {
            vec![Outcome::BeatSynced {
                beat_position: *beat_position,
                master_time: *master_time,
                tempo: timeline.tempo,
            }]
        }
        Action::PositionSync { position, client_timestamp } => {
            timeline.seek(*position, now);
            vec![Outcome::PositionSynced { position: *position, client_timestamp: *client_timestamp }]
        }
        Action::UpdateMessage { message } => {
            session.message = message.clone();
            vec![Outcome::Snapshot]
        }
        Action::Chat { message, username } => {
            let username = username.clone().unwrap_or_else(|| default_display_name(by));
            vec![Outcome::Chat { message: message.clone(), username }]
        }
        Action::RoleNotice { role, previous_role } => {
            vec![Outcome::RoleNotice { role: role.clone(), previous_role: previous_role.clone() }]
        }
        other => unreachable!("not a playback action: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use crate::core::test_support::{join_at, run};
    use crate::core::{Action, CoreError, Outcome, Session, TempoAnnouncement};

    fn duo() -> Option<Session> {
        let mut slot = None;
        join_at(&mut slot, "lead", "Lead", false, 0).unwrap();
        join_at(&mut slot, "fan", "Fan", false, 1).unwrap();
        slot
    }

    #[test]
    fn followers_cannot_touch_the_transport() {
        let mut slot = duo();
        let before = slot.clone();
        for action in [Action::Play, Action::Pause, Action::Stop, Action::Seek { position: 5.0 }] {
            assert_eq!(run(&mut slot, "fan", action, 10), Err(CoreError::NotLeader));
        }
        let tempo = Action::SetTempo { tempo: 90.0, announcement: TempoAnnouncement::Silent, fade_time: 0.0 };
        assert_eq!(run(&mut slot, "fan", tempo, 10), Err(CoreError::NotLeader));
        assert_eq!(slot, before);
    }

    #[test]
    fn play_announces_snapshot_then_play_with_the_position() {
        let mut slot = duo();
        run(&mut slot, "lead", Action::Seek { position: 2_000.0 }, 5).unwrap();
        let outcomes = run(&mut slot, "lead", Action::Play, 10).unwrap();
        assert_eq!(outcomes, vec![Outcome::Snapshot, Outcome::Started { position: 2_000.0, tempo: 120.0 }]);
        let outcomes = run(&mut slot, "lead", Action::Pause, 510).unwrap();
        assert_eq!(outcomes[1], Outcome::Paused { position: 2_500.0 });
    }

    #[test]
    fn announced_tempo_changes_come_before_the_snapshot() {
        let mut slot = duo();
        let change = Action::SetTempo { tempo: 90.0, announcement: TempoAnnouncement::Change, fade_time: 250.0 };
        let outcomes = run(&mut slot, "lead", change, 10).unwrap();
        assert_eq!(
            outcomes[0],
            Outcome::TempoAnnounced {
                old: 120.0,
                new: 90.0,
                fade_time: 250.0,
                announcement: TempoAnnouncement::Change
            }
        );
        assert_eq!(outcomes[1], Outcome::Snapshot);
        assert_eq!(slot.unwrap().timeline.tempo, 90.0);
    }

    #[test]
    fn the_last_tempo_sent_wins() {
        let mut slot = duo();
        for (i, tempo) in [90.0, 100.0].into_iter().enumerate() {
            let action = Action::SetTempo { tempo, announcement: TempoAnnouncement::Silent, fade_time: 0.0 };
            run(&mut slot, "lead", action, i as i64).unwrap();
        }
        assert_eq!(slot.unwrap().timeline.tempo, 100.0);
    }

    #[test]
    fn chat_defaults_the_username_from_the_socket_id() {
        let mut slot = duo();
        let chat = Action::Chat { message: "hi".into(), username: None };
        let outcomes = run(&mut slot, "fan", chat, 10).unwrap();
        assert_eq!(outcomes, vec![Outcome::Chat { message: "hi".into(), username: "User fan".into() }]);
    }
}

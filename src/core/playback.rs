//! The leader's transport controls and the session's shared text: tempo, start, stop, seek,
//! position and beat reports, and the message line.

use super::{Action, Millis, Outcome, Session};

pub(super) fn apply(session: &mut Session, action: &Action, now: Millis) -> Vec<Outcome> {
    let timeline = &mut session.timeline;
    match action {
        Action::SetTempo { tempo, announcement, ramp_ms } => {
            let old = timeline.tempo_at(now);
            timeline.ramp_tempo(*tempo, *ramp_ms, now);
            vec![
                Outcome::TempoAnnounced { old, new: *tempo, ramp_ms: *ramp_ms, announcement: *announcement },
                Outcome::Snapshot,
            ]
        }
        Action::Start { tempo, time_signature, lead_ms } => {
            if let Some(signature) = time_signature {
                session.time_signature = *signature;
            }
            if let Some(tempo) = tempo {
                timeline.set_tempo(*tempo, now);
            }
            timeline.play_at(now + lead_ms, now);
            let start_time = timeline.started_at();
            let position = timeline.position_at(start_time);
            vec![Outcome::Snapshot, Outcome::Started { position, tempo: timeline.tempo, start_time }]
        }
        Action::Stop { reset: false } => {
            timeline.pause(now);
            vec![Outcome::Snapshot, Outcome::Paused { position: timeline.position_at(now) }]
        }
        Action::Stop { reset: true } => {
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
            timeline.correct_position(*position, now);
            vec![Outcome::PositionSynced { position: *position, client_timestamp: *client_timestamp }]
        }
        Action::PositionReport { position, client_time, threshold_ms } => {
            let expected = timeline.position_at(report_time(*client_time, now));
            let drift = position - expected;
            let needs_correction = timeline.is_playing && drift.abs() > *threshold_ms;
            vec![Outcome::PositionChecked { reported: *position, expected, drift, needs_correction }]
        }
        Action::UpdateMessage { message } => {
            session.message = message.clone();
            session.message_by_band = true;
            vec![Outcome::Snapshot]
        }
        Action::RoleNotice { role, previous_role } => {
            vec![Outcome::RoleNotice { role: role.clone(), previous_role: previous_role.clone() }]
        }
        other => unreachable!("not a playback action: {other:?}"),
    }
}

/// How far a report's own timestamp may be from the server's clock and still be trusted. A synced
/// client stamps its report in server time, which removes the report's transit time from the
/// comparison; an unsynced one is compared at the moment the report arrived.
const TRUSTED_CLIENT_CLOCK_MS: f64 = 1_000.0;

fn report_time(client_time: f64, now: Millis) -> Millis {
    if (client_time - now as f64).abs() <= TRUSTED_CLIENT_CLOCK_MS { client_time.round() as Millis } else { now }
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

    fn start() -> Action {
        Action::Start { tempo: None, time_signature: None, lead_ms: 0 }
    }

    fn tempo(tempo: f64, announcement: TempoAnnouncement, ramp_ms: f64) -> Action {
        Action::SetTempo { tempo, announcement, ramp_ms }
    }

    #[test]
    fn followers_cannot_touch_the_transport() {
        let mut slot = duo();
        let before = slot.clone();
        for action in [
            start(),
            Action::Stop { reset: false },
            Action::Stop { reset: true },
            Action::Seek { position: 5.0 },
            tempo(90.0, TempoAnnouncement::Silent, 0.0),
            Action::Transfer { to: "fan".into() },
        ] {
            assert_eq!(run(&mut slot, "fan", action, 10), Err(CoreError::NotLeader));
        }
        assert_eq!(slot, before);
    }

    #[test]
    fn start_announces_snapshot_then_start_with_the_position() {
        let mut slot = duo();
        run(&mut slot, "lead", Action::Seek { position: 2_000.0 }, 5).unwrap();
        let outcomes = run(&mut slot, "lead", start(), 10).unwrap();
        assert_eq!(
            outcomes,
            vec![Outcome::Snapshot, Outcome::Started { position: 2_000.0, tempo: 120.0, start_time: 10 }]
        );
        let outcomes = run(&mut slot, "lead", Action::Stop { reset: false }, 510).unwrap();
        assert_eq!(outcomes[1], Outcome::Paused { position: 2_500.0 });
    }

    #[test]
    fn a_start_lead_schedules_the_first_beat_ahead() {
        let mut slot = duo();
        let action = Action::Start { tempo: Some(100.0), time_signature: Some("3/4".parse().unwrap()), lead_ms: 150 };
        let outcomes = run(&mut slot, "lead", action, 1_000).unwrap();
        assert_eq!(outcomes[1], Outcome::Started { position: 0.0, tempo: 100.0, start_time: 1_150 });
        let session = slot.unwrap();
        assert_eq!(session.time_signature.beats_per_bar, 3);
        assert_eq!(session.timeline.position_at(1_100), 0.0);
    }

    #[test]
    fn every_tempo_change_is_announced_before_the_snapshot() {
        let mut slot = duo();
        let outcomes = run(&mut slot, "lead", tempo(90.0, TempoAnnouncement::Change, 250.0), 10).unwrap();
        assert_eq!(
            outcomes[0],
            Outcome::TempoAnnounced { old: 120.0, new: 90.0, ramp_ms: 250.0, announcement: TempoAnnouncement::Change }
        );
        assert_eq!(outcomes[1], Outcome::Snapshot);
        assert_eq!(slot.unwrap().timeline.tempo, 90.0);
    }

    #[test]
    fn the_last_tempo_sent_wins() {
        let mut slot = duo();
        for (i, bpm) in [90.0, 100.0].into_iter().enumerate() {
            run(&mut slot, "lead", tempo(bpm, TempoAnnouncement::Silent, 0.0), i as i64).unwrap();
        }
        assert_eq!(slot.unwrap().timeline.tempo, 100.0);
    }

    #[test]
    fn position_reports_are_corrected_only_beyond_the_threshold() {
        let mut slot = duo();
        run(&mut slot, "lead", start(), 1_000).unwrap();
        let report = |position: f64| Action::PositionReport { position, client_time: 2_000.0, threshold_ms: 25.0 };
        let outcomes = run(&mut slot, "fan", report(1_010.0), 2_020).unwrap();
        assert_eq!(
            outcomes,
            vec![Outcome::PositionChecked {
                reported: 1_010.0,
                expected: 1_000.0,
                drift: 10.0,
                needs_correction: false
            }]
        );
        let outcomes = run(&mut slot, "fan", report(1_100.0), 2_020).unwrap();
        assert!(
            matches!(outcomes[0], Outcome::PositionChecked { drift, needs_correction: true, .. } if drift == 100.0)
        );
        let outcomes = run(&mut slot, "fan", report(975.0), 2_020).unwrap();
        assert!(matches!(outcomes[0], Outcome::PositionChecked { needs_correction: false, .. }), "25 ms is within");
    }

    #[test]
    fn reports_and_chat_leave_the_session_untouched() {
        let mut slot = duo();
        run(&mut slot, "lead", start(), 10).unwrap();
        let before = slot.clone();
        let report = Action::PositionReport { position: 900.0, client_time: 1_000.0, threshold_ms: 25.0 };
        run(&mut slot, "fan", report, 1_000).unwrap();
        run(&mut slot, "fan", Action::Chat { message: "hi".into(), username: None }, 1_001).unwrap();
        assert_eq!(slot, before, "not even last_active_at moves");
        run(&mut slot, "lead", Action::Seek { position: 5.0 }, 1_002).unwrap();
        assert_eq!(slot.unwrap().last_active_at, 1_002);
    }

    #[test]
    fn an_unsynced_clock_is_compared_at_arrival() {
        let mut slot = duo();
        run(&mut slot, "lead", start(), 0).unwrap();
        let far_clock = Action::PositionReport { position: 5_000.0, client_time: 99_999_999.0, threshold_ms: 25.0 };
        let outcomes = run(&mut slot, "fan", far_clock, 5_000).unwrap();
        assert!(matches!(outcomes[0], Outcome::PositionChecked { drift, .. } if drift == 0.0));
    }
}

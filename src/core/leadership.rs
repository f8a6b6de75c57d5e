//! Who leads: taking the lead, stepping down, and the request–approve hand-over.

use super::{CoreError, LeadChange, Millis, Outcome, Session};

/// `set_role`: take the lead at once, or step down.
pub(super) fn set_role(session: &mut Session, by: &str, wants_lead: bool) -> Vec<Outcome> {
    let leads = session.is_leader(by);
    if wants_lead == leads {
        return vec![Outcome::Snapshot];
    }
    let previous = session.leader.clone();
    if wants_lead {
        session.set_leader(Some(by));
        session.announce("Leader connected".to_owned());
        vec![
            Outcome::LeadChanged { previous, new: Some(by.to_owned()), reason: LeadChange::TakenOver },
            Outcome::Snapshot,
        ]
    } else {
        session.set_leader(None);
        vec![Outcome::LeadChanged { previous, new: None, reason: LeadChange::SteppedDown }, Outcome::Snapshot]
    }
}

/// `request_leader`: granted at once when nobody leads, otherwise forwarded to the leader.
pub(super) fn request(session: &mut Session, by: &str) -> Vec<Outcome> {
    let Some(leader) = session.leader.clone() else {
        session.set_leader(Some(by));
        let name = session.member(by).map(|m| m.display_name.clone()).unwrap_or_default();
        session.announce(format!("{name} is leading"));
        return vec![
            Outcome::LeadChanged { previous: None, new: Some(by.to_owned()), reason: LeadChange::Granted },
            Outcome::Snapshot,
        ];
    };
    if leader == by {
        return Vec::new();
    }
    if !session.pending_leader_requests.iter().any(|r| r == by) {
        session.pending_leader_requests.push(by.to_owned());
    }
    let requester = session.member(by).cloned().expect("membership checked");
    vec![Outcome::LeadRequested { leader, requester }]
}

/// `approve_leader_request`: the leader hands over; playback stops and other requests are denied.
pub(super) fn approve(
    session: &mut Session,
    by: &str,
    requester: &str,
    now: Millis,
) -> Result<Vec<Outcome>, CoreError> {
    let denied: Vec<String> = session.pending_leader_requests.iter().filter(|r| *r != requester).cloned().collect();
    let mut outcomes = hand_over(session, by, requester, "requesterId", LeadChange::HandedOver, now)?;
    outcomes.push(Outcome::HandOverSettled { previous: by.to_owned(), new: requester.to_owned(), denied });
    Ok(outcomes)
}

/// `role:transfer`: the leader gives the lead to another member, as an approved request would.
pub(super) fn transfer(session: &mut Session, by: &str, to: &str, now: Millis) -> Result<Vec<Outcome>, CoreError> {
    hand_over(session, by, to, "toSocketId", LeadChange::Transferred, now)
}

/// Moves the lead from `by` to `to`. A hand-over stops playback, so the new leader starts it.
fn hand_over(
    session: &mut Session,
    by: &str,
    to: &str,
    field: &str,
    reason: LeadChange,
    now: Millis,
) -> Result<Vec<Outcome>, CoreError> {
    if to == by {
        return Err(CoreError::Validation("You already lead this session".into()));
    }
    let name = match session.member(to) {
        Some(member) => member.display_name.clone(),
        None => return Err(CoreError::Validation(format!("{field} is not a member of this session"))),
    };
    session.pending_leader_requests.clear();
    session.set_leader(Some(to));
    session.timeline.pause(now);
    session.announce(format!("{name} is leading"));
    Ok(vec![
        Outcome::LeadChanged { previous: Some(by.to_owned()), new: Some(to.to_owned()), reason },
        Outcome::Snapshot,
    ])
}

/// `deny_leader_request`: only a pending request can be denied.
pub(super) fn deny(session: &mut Session, requester: &str) -> Result<Vec<Outcome>, CoreError> {
    let before = session.pending_leader_requests.len();
    session.pending_leader_requests.retain(|r| r != requester);
    if session.pending_leader_requests.len() == before {
        return Err(CoreError::Validation("No pending leader request from that member".into()));
    }
    Ok(vec![Outcome::LeadDenied { requester: requester.to_owned() }])
}

#[cfg(test)]
mod tests {
    use crate::core::test_support::{join_at, run};
    use crate::core::{Action, CoreError, LeadChange, Outcome, Role, Session};

    fn band() -> Option<Session> {
        let mut slot = None;
        for (i, name) in ["lead", "ann", "ben"].iter().enumerate() {
            join_at(&mut slot, name, name, false, i as i64).unwrap();
        }
        slot
    }

    #[test]
    fn set_role_takes_the_lead_at_once_and_demotes_the_old_leader() {
        let mut slot = band();
        run(&mut slot, "ann", Action::SetRole { wants_lead: true }, 10).unwrap();
        let session = slot.unwrap();
        assert_eq!(session.leader.as_deref(), Some("ann"));
        assert_eq!(session.member("lead").unwrap().role, Role::Follower);
        assert_eq!(session.message, "Leader connected");
    }

    #[test]
    fn a_leader_stepping_down_leaves_the_session_leaderless_until_someone_asks() {
        let mut slot = band();
        run(&mut slot, "lead", Action::SetRole { wants_lead: false }, 10).unwrap();
        assert_eq!(slot.as_ref().unwrap().leader, None);
        let outcomes = run(&mut slot, "ben", Action::RequestLead, 20).unwrap();
        assert!(matches!(outcomes[0], Outcome::LeadChanged { reason: LeadChange::Granted, .. }));
        assert_eq!(slot.unwrap().leader.as_deref(), Some("ben"));
    }

    #[test]
    fn requests_go_to_the_leader_and_approval_hands_over_and_denies_the_rest() {
        let mut slot = band();
        run(&mut slot, "lead", Action::Start { tempo: None, time_signature: None, lead_ms: 0 }, 5).unwrap();
        let outcomes = run(&mut slot, "ann", Action::RequestLead, 10).unwrap();
        assert!(matches!(&outcomes[0], Outcome::LeadRequested { leader, .. } if leader == "lead"));
        run(&mut slot, "ben", Action::RequestLead, 11).unwrap();
        assert_eq!(slot.as_ref().unwrap().leader.as_deref(), Some("lead"), "a request alone changes nothing");

        let outcomes = run(&mut slot, "lead", Action::ApproveLead { requester: "ann".into() }, 20).unwrap();
        let session = slot.as_ref().unwrap();
        assert_eq!(session.leader.as_deref(), Some("ann"));
        assert!(!session.timeline.is_playing, "a hand-over stops playback");
        assert!(session.pending_leader_requests.is_empty());
        assert!(matches!(&outcomes[2], Outcome::HandOverSettled { denied, .. } if denied == &vec!["ben".to_string()]));
    }

    #[test]
    fn only_the_leader_answers_requests_and_only_pending_ones_can_be_denied() {
        let mut slot = band();
        run(&mut slot, "ann", Action::RequestLead, 10).unwrap();
        let before = slot.clone();
        assert_eq!(
            run(&mut slot, "ben", Action::ApproveLead { requester: "ann".into() }, 11),
            Err(CoreError::NotLeader)
        );
        assert!(matches!(
            run(&mut slot, "lead", Action::DenyLead { requester: "ben".into() }, 12),
            Err(CoreError::Validation(_))
        ));
        assert_eq!(slot, before);
        let outcomes = run(&mut slot, "lead", Action::DenyLead { requester: "ann".into() }, 13).unwrap();
        assert_eq!(outcomes, vec![Outcome::LeadDenied { requester: "ann".into() }]);
        assert!(slot.unwrap().pending_leader_requests.is_empty());
    }
}

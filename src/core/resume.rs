//! Seats held across a dropped connection, and taken back.
//!
//! Phones on a stage lose Wi-Fi for a few seconds all the time. When a member's connection drops
//! (not when it leaves), the gateway suspends its seat: the member stays seated, lead included,
//! and playback goes on, until the grace the gateway gives it ends with the usual leave. Within
//! it, a join from a new connection takes the seat back:
//!
//! - with the seat's resume token (handed out with every enhanced join): the token alone is
//!   proof, even of a seat whose old connection the server has not yet seen drop;
//! - with the same `userId`, while the seat is held (a `userId` is no secret: it shows in member
//!   records, so it takes back only a seat that is waiting, and a locked session still wants its
//!   passcode).
//!
//! A legacy client has no identity to come back with. When a legacy join finds the session full
//! and a legacy seat held, the joiner takes that seat back: in a full session the likeliest owner
//! of a held seat is the client joining, and a returning leader that got a new seat instead, or
//! none, would cost the band its lead and its playback when the grace ended. Followers' seats go
//! first, the longest held first; the leader's only when no follower's is held. In a session with
//! room, a legacy joiner gets a new seat, and a returning leader takes the lead back with
//! `set_role`.

use super::{
    CoreError, Joiner, Millis, Outcome, Session, Vocabulary,
    passcode::{salted_digest, same_secret},
};

/// The digest of a resume token, as a seat of `session_id` keeps it.
pub fn token_digest(session_id: &str, token: &str) -> String {
    salted_digest(session_id, token)
}

/// `Suspend`: holds `by`'s seat until `until`.
pub(super) fn suspend(session: &mut Session, by: &str, until: Millis) -> Vec<Outcome> {
    let member = session.member_mut(by).expect("membership checked");
    member.reconnecting_until = Some(until);
    vec![Outcome::Reconnecting { socket_id: by.to_owned(), until }]
}

/// The seat (its index in `members`) a join takes back, if any. A resume token that matches no
/// seat of this session, or a seat whose grace is over, is refused.
pub(super) fn reclaimed_seat(session: &Session, joiner: &Joiner, now: Millis) -> Result<Option<usize>, CoreError> {
    let held = |until: Option<Millis>| until.is_none_or(|until| now < until);
    if let Some(claim) = &joiner.resume_claim {
        let seat = session.members.iter().position(|m| {
            m.resume_digest.as_deref().is_some_and(|digest| same_secret(claim, digest)) && held(m.reconnecting_until)
        });
        return seat.map(Some).ok_or(CoreError::Unauthorized("Invalid or expired resume token"));
    }
    let Some(user_id) = &joiner.user_id else { return Ok(None) };
    Ok(session
        .members
        .iter()
        .position(|m| m.user_id.as_ref() == Some(user_id) && m.reconnecting_until.is_some_and(|until| now < until)))
}

/// The held legacy seat a legacy joiner takes back in a full session: a follower's before the
/// leader's, the longest held first.
pub(super) fn legacy_seat_for(session: &Session, joiner: &Joiner) -> Option<usize> {
    if joiner.vocabulary != Vocabulary::Legacy {
        return None;
    }
    session
        .members
        .iter()
        .enumerate()
        .filter(|(_, m)| m.vocabulary == Vocabulary::Legacy)
        .filter_map(|(i, m)| m.reconnecting_until.map(|until| (session.is_leader(&m.socket_id), until, i)))
        .min()
        .map(|(_, _, i)| i)
}

/// Seats `by` in the seat at `index`, as it was: role, lead, place in the join order, profile.
pub(super) fn resume(session: &mut Session, index: usize, by: &str, joiner: &Joiner, now: Millis) -> Vec<Outcome> {
    let member = &mut session.members[index];
    let previous = std::mem::replace(&mut member.socket_id, by.to_owned());
    let was_held = member.reconnecting_until.take().is_some();
    member.last_ping_at = now;
    member.vocabulary = joiner.vocabulary;
    member.instance = joiner.instance.clone();
    // A fresh token: the one that was given (or could have been) is spent.
    member.resume_digest = joiner.resume_digest.clone();
    let member = member.clone();
    let follow = |id: &mut String| {
        if *id == previous {
            *id = by.to_owned();
        }
    };
    session.leader.iter_mut().for_each(follow);
    session.creator_id.iter_mut().for_each(follow);
    session.pending_leader_requests.iter_mut().for_each(follow);
    vec![Outcome::SnapshotToSender, Outcome::Resumed { previous, member, was_held }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{
        Action, Command, Creation, LeadChange, LeaveCause, Passcode, Role, SessionSetup, apply,
        test_support::{join_at, run},
    };

    fn enhanced(user_id: Option<&str>, token: Option<&str>, claim: Option<&str>) -> Joiner {
        Joiner {
            vocabulary: Vocabulary::Enhanced,
            user_id: user_id.map(str::to_owned),
            resume_digest: token.map(|t| token_digest("demo", t)),
            resume_claim: claim.map(|t| token_digest("demo", t)),
            ..Joiner::default()
        }
    }

    fn join_as(slot: &mut Option<Session>, by: &str, joiner: Joiner, now: Millis) -> Result<Vec<Outcome>, CoreError> {
        let creation = Creation::IfMissing(SessionSetup::with_max_members(3));
        apply(
            slot,
            "demo",
            &Command { by: by.into(), action: Action::Join { joiner: joiner.into(), wants_lead: false, creation } },
            now,
        )
    }

    /// alice (leading, token "t-alice", user "u-alice") and bob, playing; alice's connection drops at 100.
    fn band_with_alice_dropped() -> Option<Session> {
        let mut slot = None;
        join_as(&mut slot, "alice", enhanced(Some("u-alice"), Some("t-alice"), None), 0).unwrap();
        join_as(&mut slot, "bob", enhanced(Some("u-bob"), Some("t-bob"), None), 1).unwrap();
        run(&mut slot, "alice", Action::Start { tempo: None, time_signature: None, lead_ms: 0 }, 10).unwrap();
        let outcomes = run(&mut slot, "alice", Action::Suspend { until: 15_100 }, 100).unwrap();
        assert_eq!(outcomes, vec![Outcome::Reconnecting { socket_id: "alice".into(), until: 15_100 }]);
        slot
    }

    #[test]
    fn a_held_seat_keeps_the_lead_and_playback_and_counts_as_a_seat() {
        let slot = band_with_alice_dropped();
        let session = slot.as_ref().unwrap();
        assert_eq!(session.leader.as_deref(), Some("alice"));
        assert!(session.timeline.is_playing);
        assert_eq!(session.members.len(), 2);
        assert_eq!(session.connected_count(), 1);
    }

    #[test]
    fn the_same_user_id_takes_the_seat_back_lead_included() {
        let mut slot = band_with_alice_dropped();
        let outcomes = join_as(&mut slot, "alice-2", enhanced(Some("u-alice"), Some("t-new"), None), 5_000).unwrap();
        let session = slot.unwrap();
        assert_eq!(session.leader.as_deref(), Some("alice-2"));
        assert!(session.timeline.is_playing, "playback never stopped");
        assert_eq!(session.members.len(), 2);
        let member = session.member("alice-2").unwrap();
        assert_eq!((member.role, member.joined_at, member.is_reconnecting()), (Role::Leader, 0, false));
        assert_eq!(session.members[0].socket_id, "alice-2", "keeps its place in the join order");
        assert!(matches!(&outcomes[1], Outcome::Resumed { previous, was_held: true, .. } if previous == "alice"));
        assert!(session.member("alice").is_none());
    }

    #[test]
    fn the_resume_token_takes_the_seat_back_and_is_spent() {
        let mut slot = band_with_alice_dropped();
        join_as(&mut slot, "alice-2", enhanced(None, Some("t-next"), Some("t-alice")), 5_000).unwrap();
        assert!(slot.as_ref().unwrap().is_leader("alice-2"));
        // The old token is spent; the new one works, even on a seat whose connection is up.
        let before = slot.clone();
        let err = join_as(&mut slot, "thief", enhanced(None, None, Some("t-alice")), 6_000).unwrap_err();
        assert_eq!(err, CoreError::Unauthorized("Invalid or expired resume token"));
        assert_eq!(slot, before);
        join_as(&mut slot, "alice-3", enhanced(None, None, Some("t-next")), 7_000).unwrap();
        assert!(slot.unwrap().is_leader("alice-3"));
    }

    #[test]
    fn a_token_of_another_seat_session_or_time_is_refused_and_changes_nothing() {
        let mut slot = band_with_alice_dropped();
        let before = slot.clone();
        for (claim, at) in [("made-up", 5_000), ("t-alice", 15_100)] {
            let err = join_as(&mut slot, "mallory", enhanced(None, None, Some(claim)), at).unwrap_err();
            assert_eq!(err, CoreError::Unauthorized("Invalid or expired resume token"), "{claim} at {at}");
            assert_eq!(slot, before);
        }
        // Another session's digest of the same token does not match.
        let mut joiner = enhanced(None, None, None);
        joiner.resume_claim = Some(token_digest("elsewhere", "t-alice"));
        assert!(join_as(&mut slot, "mallory", joiner, 5_000).is_err());
    }

    #[test]
    fn a_user_id_takes_back_only_a_held_seat_and_needs_the_passcode() {
        let mut slot = None;
        let mut creator = enhanced(Some("u-alice"), None, None);
        creator.passcode = Some(Passcode::new("violet"));
        join_as(&mut slot, "alice", creator, 0).unwrap();
        // Connected: the same user id is another seat.
        let mut twin = enhanced(Some("u-alice"), None, None);
        twin.passcode = Some(Passcode::new("violet"));
        join_as(&mut slot, "alice-phone", twin, 1).unwrap();
        assert_eq!(slot.as_ref().unwrap().members.len(), 2);
        run(&mut slot, "alice", Action::Suspend { until: 1_000 }, 2).unwrap();
        let err = join_as(&mut slot, "x", enhanced(Some("u-alice"), None, None), 3).unwrap_err();
        assert_eq!(err, CoreError::Unauthorized("This session needs a passcode"));
        // After the grace: no seat to take back, so a new one (the session has room).
        let mut late = enhanced(Some("u-alice"), None, None);
        late.passcode = Some(Passcode::new("violet"));
        let outcomes = join_as(&mut slot, "alice-late", late, 1_000).unwrap();
        assert!(outcomes.iter().any(|o| matches!(o, Outcome::Joined { .. })));
        assert_eq!(slot.unwrap().members.len(), 3);
    }

    #[test]
    fn a_held_seat_ends_with_the_usual_leave() {
        let mut slot = band_with_alice_dropped();
        let cause = LeaveCause::Disconnected("transport close".into());
        let outcomes = run(&mut slot, "alice", Action::Leave(cause), 15_100).unwrap();
        let session = slot.unwrap();
        assert_eq!(session.leader.as_deref(), Some("bob"));
        assert!(!session.timeline.is_playing);
        assert!(
            outcomes.iter().any(|o| matches!(o, Outcome::LeadChanged { reason: LeadChange::LeaderDisconnected, .. }))
        );
    }

    #[test]
    fn a_legacy_joiner_of_a_full_session_takes_a_held_legacy_seat_back_a_followers_first() {
        let mut slot = None;
        for (i, name) in ["lead", "f1", "f2"].iter().enumerate() {
            join_at(&mut slot, name, name, false, i as i64).unwrap();
        }
        // join_at seats with room for 8: make it full at 3.
        slot.as_mut().unwrap().max_members = 3;
        run(&mut slot, "lead", Action::Start { tempo: None, time_signature: None, lead_ms: 0 }, 5).unwrap();
        run(&mut slot, "lead", Action::Suspend { until: 9_000 }, 10).unwrap();
        run(&mut slot, "f2", Action::Suspend { until: 8_000 }, 11).unwrap();
        let outcomes = join_at(&mut slot, "f2-again", "f2", false, 20).unwrap();
        assert!(matches!(&outcomes[1], Outcome::Resumed { previous, .. } if previous == "f2"));
        // Only the leader's seat is held now: the next legacy joiner takes it, lead and playback.
        join_at(&mut slot, "lead-again", "lead", false, 30).unwrap();
        let session = slot.as_ref().unwrap();
        assert!(session.is_leader("lead-again"));
        assert!(session.timeline.is_playing, "the band never stopped");
        assert_eq!(session.members.len(), 3);
        assert_eq!(session.connected_count(), 3);
        // Nothing held: the session is full, for legacy and enhanced joiners alike.
        let err = join_at(&mut slot, "stranger", "X", false, 40).unwrap_err();
        assert_eq!(err, CoreError::SessionFull { max: 3 });
        let err = join_as(&mut slot, "e", enhanced(Some("u-e"), None, None), 50).unwrap_err();
        assert_eq!(err, CoreError::SessionFull { max: 3 });
    }
}

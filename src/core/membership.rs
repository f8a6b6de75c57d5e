//! Joining, leaving and re-electing a leader when the leader goes.

use super::{
    CoreError, LeadChange, LeaveCause, Member, Millis, Outcome, Role, Session,
    command::{Creation, Joiner, SessionSetup},
    resume,
    session::default_display_name,
};

/// Finds or creates the session a join is for, as `creation` allows.
pub(super) fn session_for_join<'a>(
    slot: &'a mut Option<Session>,
    session_id: &str,
    by: &str,
    joiner: &Joiner,
    creation: &Creation,
    now: Millis,
) -> Result<&'a mut Session, CoreError> {
    let setup = match (creation, slot.is_some()) {
        // A fresh id that is already taken: the id generator failed us.
        (Creation::New(_), true) => return Err(CoreError::Internal),
        (Creation::MustExist, false) => return Err(CoreError::SessionNotFound),
        (Creation::AtCapacity { max_sessions }, false) => {
            return Err(CoreError::TooManySessions { max: *max_sessions });
        }
        (Creation::New(setup) | Creation::IfMissing(setup), false) => Some(setup),
        (_, true) => None,
    };
    if let Some(setup) = setup {
        let creator = matches!(creation, Creation::New(_)).then_some(by);
        let mut session = new_session(session_id, setup, creator, now);
        session.passcode_digest = joiner.passcode.as_ref().map(|p| p.digest(session_id));
        *slot = Some(session);
    }
    Ok(slot.as_mut().expect("found or created"))
}

fn new_session(id: &str, setup: &SessionSetup, creator: Option<&str>, now: Millis) -> Session {
    let mut session = Session::new(id, setup.max_members, now);
    session.band_id = setup.band_id.clone();
    session.session_name = setup.session_name.clone();
    session.creator_id = creator.map(str::to_owned);
    if let Some(tempo) = setup.tempo {
        session.timeline.set_tempo(tempo, now);
    }
    if let Some(signature) = setup.time_signature {
        session.time_signature = signature;
    }
    session
}

/// Where a join seats its joiner.
enum Seat {
    /// A new seat.
    New,
    /// The held seat at this index, taken back (see [`resume`]).
    Reclaimed(usize),
}

/// The seat `joiner` takes in the session as it stands: a resume token takes its own seat back;
/// a newcomer (or a `userId` taking back a held seat) needs the passcode of a locked session; a
/// newcomer needs a free seat.
fn seat_for(session: &Session, joiner: &Joiner, now: Millis) -> Result<Seat, CoreError> {
    let reclaimed = resume::reclaimed_seat(session, joiner, now)?;
    if let Some(index) = reclaimed.filter(|_| joiner.resume_claim.is_some()) {
        return Ok(Seat::Reclaimed(index));
    }
    if let Some(stored) = &session.passcode_digest {
        match &joiner.passcode {
            None => return Err(CoreError::Unauthorized("This session needs a passcode")),
            Some(offered) if !offered.unlocks(&session.id, stored) => {
                return Err(CoreError::Unauthorized("Wrong passcode"));
            }
            Some(_) => {}
        }
    }
    if let Some(index) = reclaimed {
        return Ok(Seat::Reclaimed(index));
    }
    if session.is_full() {
        return resume::legacy_seat_for(session, joiner)
            .map(Seat::Reclaimed)
            .ok_or(CoreError::SessionFull { max: session.max_members });
    }
    Ok(Seat::New)
}

pub(super) fn join(
    session: &mut Session,
    by: &str,
    joiner: &Joiner,
    wants_lead: bool,
    now: Millis,
) -> Result<Vec<Outcome>, CoreError> {
    if let Some(member) = session.member_mut(by) {
        // Joining again changes nothing but the resume token: the join's answer carries a new one.
        if joiner.resume_digest.is_some() {
            member.resume_digest = joiner.resume_digest.clone();
        }
        return Ok(vec![Outcome::SnapshotToSender]);
    }
    if let Seat::Reclaimed(index) = seat_for(session, joiner, now)? {
        return Ok(resume::resume(session, index, by, joiner, now));
    }
    let display_name = joiner.display_name.clone().unwrap_or_else(|| default_display_name(by));
    let display_name = display_name.as_str();
    session.members.push(Member {
        socket_id: by.to_owned(),
        display_name: display_name.to_owned(),
        role: Role::Follower,
        joined_at: now,
        last_ping_at: now,
        vocabulary: joiner.vocabulary,
        user_id: joiner.user_id.clone(),
        instrument: joiner.instrument.clone(),
        preferred_role: joiner.preferred_role,
        instance: joiner.instance.clone(),
        reconnecting_until: None,
        resume_digest: joiner.resume_digest.clone(),
    });
    let previous = session.leader.clone();
    let takes_lead = previous.is_none() || wants_lead;
    if takes_lead {
        session.set_leader(Some(by));
        // A band returning to its session (after a restart) finds its message as it left it.
        if wants_lead || !session.message_by_band {
            session.announce(format!("{display_name} is leading"));
        }
    }
    let member = session.member(by).cloned().expect("just seated");
    let mut outcomes = vec![Outcome::SnapshotToSender, Outcome::Joined { member }];
    if takes_lead {
        outcomes.push(Outcome::LeadChanged { previous, new: Some(by.to_owned()), reason: LeadChange::Joined });
    }
    Ok(outcomes)
}

/// Unseats `by`. When the leader goes and members remain, the earliest-joined member leads and
/// playback stops, so nobody is left following a metronome no one controls.
pub(super) fn leave(session: &mut Session, by: &str, cause: LeaveCause, now: Millis) -> Vec<Outcome> {
    let was_leader = session.is_leader(by);
    session.members.retain(|m| m.socket_id != by);
    session.pending_leader_requests.retain(|r| r != by);

    let mut outcomes = Vec::new();
    let mut new_leader = None;
    if was_leader {
        let successor = session.members.first().map(|m| (m.socket_id.clone(), m.display_name.clone()));
        session.set_leader(successor.as_ref().map(|(id, _)| id.as_str()));
        if let Some((id, name)) = successor {
            session.timeline.pause(now);
            session.announce(format!("{name} is now leading"));
            let reason = match cause {
                LeaveCause::Left => LeadChange::LeaderLeft,
                LeaveCause::Disconnected(_) => LeadChange::LeaderDisconnected,
            };
            outcomes.push(Outcome::LeadChanged { previous: Some(by.to_owned()), new: Some(id.clone()), reason });
            outcomes.push(Outcome::Snapshot);
            new_leader = Some(id);
        }
    }
    if matches!(cause, LeaveCause::Disconnected(_)) && !outcomes.contains(&Outcome::Snapshot) {
        outcomes.push(Outcome::Snapshot);
    }
    outcomes.push(Outcome::Left { socket_id: by.to_owned(), new_leader, cause });
    outcomes
}

/// Unseats members whose server is gone, all at once. The lead moves (and playback stops) only when
/// someone remains to take it; a session its whole band lost keeps playing, so the band finds it
/// as it was when they reconnect.
pub(super) fn evict(session: &mut Session, sockets: &[String], reason: &str, now: Millis) -> Vec<Outcome> {
    let leaving: Vec<String> = sockets.iter().filter(|s| session.member(s).is_some()).cloned().collect();
    let old_leader = session.leader.clone();
    session.members.retain(|m| !leaving.contains(&m.socket_id));
    session.pending_leader_requests.retain(|r| !leaving.contains(r));
    let mut outcomes = Vec::new();
    let mut new_leader = None;
    if let Some(old) = old_leader.filter(|l| leaving.contains(l)) {
        let successor = session.members.first().map(|m| (m.socket_id.clone(), m.display_name.clone()));
        session.set_leader(successor.as_ref().map(|(id, _)| id.as_str()));
        if let Some((id, name)) = successor {
            session.timeline.pause(now);
            session.announce(format!("{name} is now leading"));
            let reason = LeadChange::LeaderDisconnected;
            outcomes.push(Outcome::LeadChanged { previous: Some(old), new: Some(id.clone()), reason });
            new_leader = Some(id);
        }
    }
    if !leaving.is_empty() {
        outcomes.push(Outcome::Snapshot);
    }
    for socket_id in leaving {
        let cause = LeaveCause::Disconnected(reason.to_owned());
        outcomes.push(Outcome::Left { socket_id, new_leader: new_leader.clone(), cause });
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use crate::core::test_support::{join, join_at, run};
    use crate::core::{
        Action, Command, CoreError, Creation, Joiner, LeadChange, LeaveCause, Outcome, Passcode, Role, Session,
        SessionSetup, Vocabulary, apply,
    };

    fn start() -> Action {
        Action::Start { tempo: None, time_signature: None, lead_ms: 0 }
    }

    fn seated(names: &[&str]) -> Option<Session> {
        let mut slot = None;
        for (i, name) in names.iter().enumerate() {
            join_at(&mut slot, name, name, false, i as i64).unwrap();
        }
        slot
    }

    #[test]
    fn first_member_leads_and_the_message_says_so() {
        let slot = seated(&["alice", "bob"]);
        let session = slot.unwrap();
        assert_eq!(session.leader.as_deref(), Some("alice"));
        assert_eq!(session.member("bob").unwrap().role, Role::Follower);
        assert_eq!(session.message, "alice is leading");
    }

    #[test]
    fn the_first_back_in_an_emptied_session_leads_and_keeps_the_message() {
        let mut slot = seated(&["alice"]);
        run(&mut slot, "alice", Action::UpdateMessage { message: "Verse 2 from the top".into() }, 5).unwrap();
        run(&mut slot, "alice", Action::Leave(LeaveCause::Disconnected("x".into())), 6).unwrap();
        join_at(&mut slot, "alice-again", "alice", false, 7).unwrap();
        let session = slot.unwrap();
        assert_eq!(session.leader.as_deref(), Some("alice-again"));
        assert_eq!(session.message, "Verse 2 from the top");
    }

    #[test]
    fn the_first_back_in_an_emptied_session_is_announced_over_a_server_message() {
        let mut slot = seated(&["alice"]);
        run(&mut slot, "alice", Action::Leave(LeaveCause::Left), 6).unwrap();
        join_at(&mut slot, "bob", "Bob", false, 7).unwrap();
        assert_eq!(slot.unwrap().message, "Bob is leading");
    }

    #[test]
    fn a_joiner_without_a_name_is_named_after_its_socket() {
        let mut slot = None;
        let joiner = Joiner { vocabulary: Vocabulary::Enhanced, ..Joiner::default() };
        let action = Action::Join {
            joiner: joiner.into(),
            wants_lead: false,
            creation: Creation::IfMissing(SessionSetup::with_max_members(8)),
        };
        apply(&mut slot, "demo", &Command { by: "abcd1234".into(), action }, 0).unwrap();
        let session = slot.unwrap();
        assert_eq!(session.member("abcd1234").unwrap().display_name, "User 1234");
        assert_eq!(session.message, "User 1234 is leading");
    }

    fn join_with(
        slot: &mut Option<Session>,
        by: &str,
        passcode: Option<&str>,
        creation: Creation,
    ) -> Result<(), CoreError> {
        let joiner = Joiner { passcode: passcode.map(Passcode::new), ..Joiner::default() };
        let action = Action::Join { joiner: joiner.into(), wants_lead: false, creation };
        apply(slot, "demo", &Command { by: by.into(), action }, 0).map(|_| ())
    }

    #[test]
    fn a_session_created_with_a_passcode_admits_only_joiners_who_give_it() {
        let if_missing = || Creation::IfMissing(SessionSetup::with_max_members(8));
        let mut slot = None;
        join_with(&mut slot, "alice", Some("violet"), if_missing()).unwrap();
        let before = slot.clone();
        assert_eq!(
            join_with(&mut slot, "bob", None, if_missing()),
            Err(CoreError::Unauthorized("This session needs a passcode"))
        );
        assert_eq!(
            join_with(&mut slot, "bob", Some("Violet"), Creation::MustExist),
            Err(CoreError::Unauthorized("Wrong passcode"))
        );
        assert_eq!(slot, before, "a refused join changes nothing");
        join_with(&mut slot, "bob", Some("violet"), Creation::MustExist).unwrap();
        join_with(&mut slot, "bob", None, Creation::MustExist).expect("a seated member re-joining needs nothing");
        assert_eq!(slot.unwrap().members.len(), 2);
    }

    #[test]
    fn at_capacity_a_join_may_seat_but_not_create() {
        let mut slot = None;
        let at_capacity = || Creation::AtCapacity { max_sessions: 3 };
        assert_eq!(join_with(&mut slot, "alice", None, at_capacity()), Err(CoreError::TooManySessions { max: 3 }));
        assert!(slot.is_none());
        join_with(&mut slot, "alice", None, Creation::IfMissing(SessionSetup::with_max_members(8))).unwrap();
        join_with(&mut slot, "bob", None, at_capacity()).unwrap();
        assert_eq!(slot.unwrap().members.len(), 2);
    }

    #[test]
    fn joining_as_leader_takes_the_lead() {
        let mut slot = seated(&["alice"]);
        let outcomes = join(&mut slot, "bob", "Bob", true).unwrap();
        let session = slot.unwrap();
        assert_eq!(session.leader.as_deref(), Some("bob"));
        assert_eq!(session.member("alice").unwrap().role, Role::Follower);
        assert_eq!(session.message, "Bob is leading");
        assert!(outcomes.iter().any(|o| matches!(o, Outcome::LeadChanged { reason: LeadChange::Joined, .. })));
    }

    #[test]
    fn capacity_refuses_the_ninth_and_changes_nothing() {
        let names: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut slot = seated(&refs);
        let before = slot.clone();
        let err = join(&mut slot, "ninth", "Ninth", true).unwrap_err();
        assert_eq!(err, CoreError::SessionFull { max: 8 });
        assert_eq!(err.to_string(), "Session at capacity (8 members)");
        assert_eq!(slot, before);
    }

    #[test]
    fn rejoining_is_idempotent() {
        let mut slot = seated(&["alice"]);
        let outcomes = join(&mut slot, "alice", "alice", false).unwrap();
        assert_eq!(outcomes, vec![Outcome::SnapshotToSender]);
        assert_eq!(slot.unwrap().members.len(), 1);
    }

    #[test]
    fn leader_disconnect_elects_the_earliest_remaining_and_stops_playback() {
        let mut slot = seated(&["alice", "bob", "carol"]);
        run(&mut slot, "alice", start(), 10).unwrap();
        let outcomes =
            run(&mut slot, "alice", Action::Leave(LeaveCause::Disconnected("transport close".into())), 1_010).unwrap();
        let session = slot.as_ref().unwrap();
        assert_eq!(session.leader.as_deref(), Some("bob"));
        assert!(!session.timeline.is_playing);
        assert_eq!(session.timeline.position_at(5_000), 1_000.0, "paused where it was");
        assert_eq!(session.message, "bob is now leading");
        assert!(
            matches!(&outcomes[0], Outcome::LeadChanged { new: Some(n), reason: LeadChange::LeaderDisconnected, .. } if n == "bob")
        );
        assert_eq!(outcomes[1], Outcome::Snapshot);
        assert!(matches!(&outcomes[2], Outcome::Left { new_leader: Some(n), .. } if n == "bob"));
    }

    #[test]
    fn re_election_follows_join_order_not_names() {
        let mut slot = seated(&["zed", "yan", "xia"]);
        run(&mut slot, "zed", Action::Leave(LeaveCause::Left), 50).unwrap();
        assert_eq!(slot.as_ref().unwrap().leader.as_deref(), Some("yan"));
        run(&mut slot, "yan", Action::Leave(LeaveCause::Left), 60).unwrap();
        assert_eq!(slot.as_ref().unwrap().leader.as_deref(), Some("xia"));
    }

    #[test]
    fn follower_disconnect_keeps_the_leader_and_still_sends_a_snapshot() {
        let mut slot = seated(&["alice", "bob"]);
        let outcomes = run(&mut slot, "bob", Action::Leave(LeaveCause::Disconnected("x".into())), 5).unwrap();
        assert_eq!(slot.as_ref().unwrap().leader.as_deref(), Some("alice"));
        assert_eq!(outcomes[0], Outcome::Snapshot);
        assert!(matches!(&outcomes[1], Outcome::Left { new_leader: None, .. }));
    }

    #[test]
    fn last_member_leaving_keeps_an_empty_session_for_the_sweep() {
        let mut slot = seated(&["alice"]);
        run(&mut slot, "alice", Action::Leave(LeaveCause::Left), 100).unwrap();
        let session = slot.unwrap();
        assert!(session.members.is_empty());
        assert_eq!(session.leader, None);
        assert!(!session.is_idle(100 + 999, 1_000));
        assert!(session.is_idle(100 + 1_000, 1_000));
    }

    #[test]
    fn evicting_a_whole_band_keeps_the_session_playing_for_their_return() {
        let mut slot = seated(&["alice", "bob"]);
        run(&mut slot, "alice", start(), 10).unwrap();
        let gone = vec!["alice".to_string(), "bob".to_string()];
        let outcomes =
            run(&mut slot, "server", Action::Evict { sockets: gone, reason: "instance lost".into() }, 500).unwrap();
        let session = slot.unwrap();
        assert!(session.members.is_empty());
        assert!(session.timeline.is_playing, "nobody left to stop for");
        assert_eq!(session.leader, None);
        assert_eq!(outcomes.iter().filter(|o| matches!(o, Outcome::Left { .. })).count(), 2);
    }

    #[test]
    fn evicting_the_leader_alone_re_elects_and_stops() {
        let mut slot = seated(&["alice", "bob", "carol"]);
        run(&mut slot, "alice", start(), 10).unwrap();
        let gone = vec!["alice".to_string(), "ghost".to_string()];
        let outcomes =
            run(&mut slot, "server", Action::Evict { sockets: gone, reason: "instance lost".into() }, 500).unwrap();
        let session = slot.unwrap();
        assert_eq!(session.leader.as_deref(), Some("bob"));
        assert!(!session.timeline.is_playing);
        assert!(matches!(&outcomes[0], Outcome::LeadChanged { new: Some(n), .. } if n == "bob"));
        assert_eq!(outcomes.iter().filter(|o| matches!(o, Outcome::Left { .. })).count(), 1, "unknown ids are ignored");
    }

    #[test]
    fn events_from_strangers_are_refused() {
        let mut slot = seated(&["alice"]);
        assert_eq!(run(&mut slot, "mallory", start(), 1), Err(CoreError::NotAMember));
        let mut empty = None;
        assert_eq!(run(&mut empty, "alice", start(), 1), Err(CoreError::SessionNotFound));
        assert!(empty.is_none(), "a refused event creates nothing");
    }
}

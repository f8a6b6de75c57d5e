//! What must hold of every session, whatever sequence of requests made it.
//!
//! Checked by the core's tests and by the fuzz targets after every request: a violation is a bug
//! in the core, never in the client.

use super::{
    Millis, Role, Session,
    timeline::{MAX_TEMPO, MIN_TEMPO},
};

/// The broken rules of `session` at `now`; empty when it is sound.
pub fn violations(session: &Session, now: Millis) -> Vec<String> {
    let mut broken = Vec::new();
    let mut fail = |rule: String| broken.push(rule);
    if session.members.len() > session.max_members {
        fail(format!("{} members in {} seats", session.members.len(), session.max_members));
    }
    for (i, member) in session.members.iter().enumerate() {
        if session.members[..i].iter().any(|m| m.socket_id == member.socket_id) {
            fail(format!("{} is seated twice", member.socket_id));
        }
        // A token takes back one seat: two seats with one token would make it take either.
        if member.resume_digest.is_some()
            && session.members[..i].iter().any(|m| m.resume_digest == member.resume_digest)
        {
            fail(format!("{} shares its resume token with another seat", member.socket_id));
        }
    }
    let leaders: Vec<&str> =
        session.members.iter().filter(|m| m.role == Role::Leader).map(|m| m.socket_id.as_str()).collect();
    if leaders.len() > 1 {
        fail(format!("{} leaders: {leaders:?}", leaders.len()));
    }
    if leaders.first().copied() != session.leader.as_deref() {
        fail(format!("the leader is {:?} but members marked leader are {leaders:?}", session.leader));
    }
    for requester in &session.pending_leader_requests {
        if session.member(requester).is_none() || session.is_leader(requester) {
            fail(format!("pending lead request of {requester}, who is not a seated follower"));
        }
    }
    let position = session.timeline.position_at(now);
    if !(position.is_finite() && position >= 0.0) {
        fail(format!("position {position} at {now}"));
    }
    let tempo = session.timeline.tempo_at(now);
    if !(MIN_TEMPO..=MAX_TEMPO).contains(&tempo) {
        fail(format!("tempo {tempo} at {now}"));
    }
    if !session.timeline.beat_at(now).is_finite() {
        fail(format!("beat not finite at {now}"));
    }
    broken
}

//! The session core: pure rules, no I/O and no clock of its own.
//!
//! [`apply`] takes a session slot, a [`Command`] and the current time, and either returns the
//! [`Outcome`]s to announce or a [`CoreError`] with the slot untouched. Stores call it inside
//! whatever makes the update atomic for them; protocol adapters render the outcomes.

pub mod command;
pub mod error;
pub mod invariants;
mod leadership;
pub mod membership;
pub mod outcome;
pub mod passcode;
mod playback;
pub mod resume;
pub mod seat;
pub mod session;
pub mod timeline;

pub use command::{Action, Command, Creation, Joiner, LeaveCause, SessionSetup, TempoAnnouncement};
pub use error::CoreError;
pub use outcome::{LeadChange, Outcome};
pub use passcode::Passcode;
pub use session::{Member, Role, Session, TimeSignature, Vocabulary};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// Applies `command` to the session in `slot` (created by a join when empty) at time `now`.
///
/// All or nothing: on error `slot` is exactly as it was. A request that changes nothing leaves it
/// untouched too, `last_active_at` included.
pub fn apply(
    slot: &mut Option<Session>,
    session_id: &str,
    command: &Command,
    now: Millis,
) -> Result<Vec<Outcome>, CoreError> {
    let mut draft = slot.clone();
    let outcomes = match &command.action {
        Action::Join { joiner, wants_lead, creation } => {
            let session = membership::session_for_join(&mut draft, session_id, &command.by, joiner, creation, now)?;
            membership::join(session, &command.by, joiner, *wants_lead, now)?
        }
        Action::Evict { sockets, reason } => {
            let session = draft.as_mut().ok_or(CoreError::SessionNotFound)?;
            membership::evict(session, sockets, reason, now)
        }
        action => {
            let session = draft.as_mut().ok_or(CoreError::SessionNotFound)?;
            if session.member(&command.by).is_none() {
                return Err(CoreError::NotAMember);
            }
            if action.needs_lead() && !session.is_leader(&command.by) {
                return Err(CoreError::NotLeader);
            }
            apply_as_member(session, &command.by, action, now)?
        }
    };
    // Activity is a change: a request that changes nothing (a chat line, a position report, a
    // re-join) leaves the session exactly as it was, so stores need not write it.
    if draft != *slot
        && let Some(session) = draft.as_mut()
    {
        session.last_active_at = now;
    }
    *slot = draft;
    Ok(outcomes)
}

/// The actions of a member already seated, with membership and lead already checked.
fn apply_as_member(session: &mut Session, by: &str, action: &Action, now: Millis) -> Result<Vec<Outcome>, CoreError> {
    match action {
        Action::Join { .. } | Action::Evict { .. } => unreachable!("handled before membership checks"),
        Action::Leave(cause) => Ok(membership::leave(session, by, cause.clone(), now)),
        Action::Suspend { until } => Ok(resume::suspend(session, by, *until)),
        Action::Heartbeat => {
            if let Some(member) = session.member_mut(by) {
                member.last_ping_at = now;
            }
            Ok(Vec::new())
        }
        Action::SetRole { wants_lead } => Ok(leadership::set_role(session, by, *wants_lead)),
        Action::RequestLead => Ok(leadership::request(session, by)),
        Action::ApproveLead { requester } => leadership::approve(session, by, requester, now),
        Action::Transfer { to } => leadership::transfer(session, by, to, now),
        Action::DenyLead { requester } => leadership::deny(session, requester),
        Action::Chat { message, username } => {
            let member = session.member(by).expect("membership checked");
            let display_name = member.display_name.clone();
            // Enhanced members have no separate chat name: legacy members see their display name.
            // A legacy chat without a name keeps the legacy "User xxxx" default.
            let username = match member.vocabulary {
                Vocabulary::Enhanced => username.clone().or_else(|| Some(display_name.clone())),
                Vocabulary::Legacy => username.clone(),
            };
            Ok(vec![Outcome::Chat { message: message.clone(), username, display_name }])
        }
        _ => Ok(playback::apply(session, action, now)),
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub fn join(slot: &mut Option<Session>, by: &str, name: &str, wants_lead: bool) -> Result<Vec<Outcome>, CoreError> {
        join_at(slot, by, name, wants_lead, 0)
    }

    pub fn join_at(
        slot: &mut Option<Session>,
        by: &str,
        name: &str,
        wants_lead: bool,
        now: Millis,
    ) -> Result<Vec<Outcome>, CoreError> {
        let joiner = Joiner { display_name: Some(name.into()), vocabulary: Vocabulary::Legacy, ..Joiner::default() };
        let action = Action::Join {
            joiner: joiner.into(),
            wants_lead,
            creation: Creation::IfMissing(SessionSetup::with_max_members(8)),
        };
        apply(slot, "demo", &Command { by: by.into(), action }, now)
    }

    pub fn run(slot: &mut Option<Session>, by: &str, action: Action, now: Millis) -> Result<Vec<Outcome>, CoreError> {
        apply(slot, "demo", &Command { by: by.into(), action }, now)
    }
}

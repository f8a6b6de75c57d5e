//! A seat held across a dropped connection: what the worker of a socket whose transport dropped
//! does, and the resume tokens that let a new connection take the seat back.
//!
//! A transport drop (close, error, ping timeout) suspends the seat in the session core: the member
//! stays seated, lead included, and playback goes on. The socket's worker then waits out
//! `RESUME_GRACE_MS`, and ends the seat with the usual leave, unless a join from a new connection
//! took the seat back meanwhile, on this instance or another. Explicit leaves (the client's own
//! disconnect, `leave_session`, a kick, a shutdown) end the seat at once, as before.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use socketioxide::{adapter::Adapter, socket::DisconnectReason};
use tokio::sync::Notify;

use super::{
    reason_text,
    worker::{Seat, Worker},
};
use crate::{
    clock::now_ms,
    core::{Action, Command, CoreError, LeaveCause, Session},
    telemetry,
};

/// True when a connection ended without its client meaning to leave: the network closed it, or
/// the heartbeat gave up on it. (A client's own disconnect, the server's, and a shutdown are
/// leaves.)
fn dropped(reason: DisconnectReason) -> bool {
    matches!(
        reason,
        DisconnectReason::TransportClose
            | DisconnectReason::TransportError
            | DisconnectReason::MultipleHttpPollingError
            | DisconnectReason::HeartbeatTimeout
    )
}

/// Seats this instance holds, by the socket id they were held for (with their session): a join
/// that takes one back wakes its worker, which then has nothing left to end.
#[derive(Default)]
pub struct Graces(Mutex<HashMap<String, Held>>);

struct Held {
    session_id: String,
    woken: Arc<Notify>,
}

impl Graces {
    fn hold(&self, socket_id: &str, session_id: &str) -> Arc<Notify> {
        let woken = Arc::new(Notify::new());
        let held = Held { session_id: session_id.to_owned(), woken: woken.clone() };
        self.0.lock().expect("graces lock").insert(socket_id.to_owned(), held);
        woken
    }

    fn release(&self, socket_id: &str) {
        self.0.lock().expect("graces lock").remove(socket_id);
    }

    /// Seats held now.
    pub fn count(&self) -> usize {
        self.0.lock().expect("graces lock").len()
    }

    /// The seat held for `socket_id` was taken back: its wait is over.
    pub fn taken_back(&self, socket_id: &str) {
        if let Some(held) = self.0.lock().expect("graces lock").get(socket_id) {
            // Kept for the worker if it is not waiting yet.
            held.woken.notify_one();
        }
    }

    /// Another instance changed `session`: seats held here that it no longer lists (taken back
    /// there under a new socket id, or ended) stop waiting. A seat still listed keeps waiting,
    /// even as connected: that can only be an older state arriving late.
    pub fn settle(&self, session: &Session) {
        for (socket_id, held) in self.0.lock().expect("graces lock").iter() {
            if held.session_id == session.id && session.member(socket_id).is_none() {
                held.woken.notify_one();
            }
        }
    }
}

/// A new resume token: 128 bits from the operating system's random source, in hex.
pub fn new_resume_token() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl<A: Adapter> Worker<A> {
    /// The connection closed with `reason`: the seat is held for the grace when the connection
    /// dropped, ended at once otherwise.
    pub(super) async fn end_connection(&mut self, reason: DisconnectReason) {
        let grace_ms = self.app.config.resume_grace_ms;
        let text = reason_text(reason);
        let held = grace_ms > 0 && dropped(reason) && !self.app.is_draining();
        if let Some(seat) = self.seat.clone().filter(|_| held)
            && self.hold_seat(&seat, text, grace_ms).await
        {
            return;
        }
        self.unseat(LeaveCause::Disconnected(text.to_owned())).await;
    }

    /// Suspends the seat, waits out the grace, then ends the seat unless it was taken back.
    /// False when the seat could not be suspended (the store no longer lists it).
    async fn hold_seat(&mut self, seat: &Seat, reason: &'static str, grace_ms: u64) -> bool {
        // Registered before the seat is suspended: a new connection may take it back as soon as
        // the suspension is stored, and must find this wait to wake.
        let taken_back = self.app.graces.hold(&self.socket_id, &seat.session_id);
        let until = now_ms() + grace_ms as i64;
        let suspend = Command { by: self.socket_id.clone(), action: Action::Suspend { until } };
        if self.apply_and_announce(&seat.session_id, suspend, None, |_, _| Value::Null).await.is_err() {
            self.app.graces.release(&self.socket_id);
            return false;
        }
        // The seat is no longer this connection's: the worker only keeps its place in line.
        self.seat = None;
        self.app.deliveries.unseat(&seat.session_id, &self.socket_id);
        telemetry::member_seated(seat.vocabulary, -1.0);
        telemetry::member_reconnecting(1.0);
        tracing::info!(socket = %self.socket_id, session = %seat.session_id, reason, grace_ms, "connection dropped; seat held");
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(grace_ms)) => {}
            _ = taken_back.notified() => {}
            // A shutdown ends held seats as it ends connected ones.
            _ = self.app.drained() => {}
        }
        telemetry::member_reconnecting(-1.0);
        // The usual leave. A seat taken back meanwhile, here or on another instance, is under the
        // new connection's socket id: the store no longer lists this one and refuses the leave.
        let leave =
            Command { by: self.socket_id.clone(), action: Action::Leave(LeaveCause::Disconnected(reason.into())) };
        match self.apply_and_announce(&seat.session_id, leave, None, |_, _| Value::Null).await {
            Ok(_) => tracing::info!(socket = %self.socket_id, session = %seat.session_id, "seat's grace ended; left"),
            Err((CoreError::NotAMember | CoreError::SessionNotFound, _)) => {
                tracing::info!(socket = %self.socket_id, session = %seat.session_id, "seat taken back by a new connection")
            }
            Err((err, _)) => {
                tracing::warn!(socket = %self.socket_id, session = %seat.session_id, %err, "held seat could not be ended")
            }
        }
        // Only now: shutdown waits for the held seats to be ended, their leaves stored.
        self.app.graces.release(&self.socket_id);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_distinct() {
        let tokens: Vec<String> = (0..100).map(|_| new_resume_token()).collect();
        assert!(tokens.iter().all(|t| t.len() == 32 && t.chars().all(|c| c.is_ascii_hexdigit())));
        let mut unique = tokens.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), tokens.len());
    }

    #[tokio::test]
    async fn a_seat_taken_back_before_its_worker_waits_still_wakes_it() {
        let graces = Graces::default();
        let woken = graces.hold("old", "s");
        graces.taken_back("old");
        graces.taken_back("someone else");
        tokio::time::timeout(Duration::from_secs(1), woken.notified()).await.expect("woken");
        graces.release("old");
        assert!(graces.0.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn another_instances_change_wakes_only_seats_it_no_longer_holds() {
        use crate::core::{Action, Command, Creation, Joiner, SessionSetup, apply};
        let mut slot = None;
        for by in ["held", "late"] {
            let creation = Creation::IfMissing(SessionSetup::with_max_members(8));
            let action = Action::Join { joiner: Joiner::default().into(), wants_lead: false, creation };
            apply(&mut slot, "s", &Command { by: by.into(), action }, 0).unwrap();
        }
        apply(&mut slot, "s", &Command { by: "held".into(), action: Action::Suspend { until: 100 } }, 1).unwrap();
        let graces = Graces::default();
        let still_held = graces.hold("held", "s");
        let taken = graces.hold("taken", "s");
        let late = graces.hold("late", "s");
        let other_session = graces.hold("elsewhere", "t");
        graces.settle(slot.as_ref().unwrap());
        let woken =
            |n: Arc<Notify>| async move { tokio::time::timeout(Duration::from_millis(50), n.notified()).await.is_ok() };
        assert!(woken(taken).await, "no longer held there: woken");
        assert!(!woken(still_held).await, "still held: keeps waiting");
        assert!(!woken(late).await, "listed as connected: an older state arriving late");
        assert!(!woken(other_session).await, "another session's seat is not touched");
    }
}

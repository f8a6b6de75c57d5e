//! Handling the legacy and roles events.

use serde_json::{Value, json};
use socketioxide::adapter::Adapter;

use super::{respond::Responder, worker::Worker};
use crate::{
    clock::now_ms,
    config::LeaderPolicy,
    core::{Action, CoreError, Creation, Joiner, LeaveCause, Millis, Session, SessionSetup, Vocabulary},
    protocol::{legacy::Request, legacy_render},
};

impl<A: Adapter> Worker<A> {
    pub(super) async fn handle_legacy(&mut self, request: Request, responder: Responder<A>) {
        let now = now_ms();
        match request {
            Request::Join { session_id, display_name, wants_lead, passcode } => {
                let joiner = Joiner { display_name, passcode, vocabulary: Vocabulary::Legacy, ..Joiner::default() };
                self.join_legacy(session_id, joiner, wants_lead, responder).await
            }
            Request::Leave { session_id } => {
                self.execute(&session_id, Action::Leave(LeaveCause::Left), responder, |_, _| Value::Null).await;
            }
            Request::Session { session_id, action } => {
                let (action, responder) = self.apply_leader_policy(&session_id, action, responder);
                if action == Action::RequestLead {
                    let answer = lead_request_answer(self.socket_id.clone());
                    self.execute(&session_id, action, responder, answer).await;
                } else {
                    self.execute(&session_id, action, responder, |_, _| Value::Null).await;
                }
            }
            Request::SyncRequest { session_id } => match self.app.store.get(&session_id).await {
                Ok(Some(session)) => self.emit("sync_response", &legacy_render::sync_response(&session, now)),
                Ok(None) => self.refuse(responder, &CoreError::SessionNotFound),
                Err(err) => self.refuse(responder, &err),
            },
            Request::LatencyProbe { timestamp } => {
                self.emit("latency_response", &json!({ "clientTimestamp": timestamp, "serverTimestamp": now }));
            }
            Request::Heartbeat { timestamp } => {
                if let Some(seat) = self.seat.clone() {
                    self.execute(&seat.session_id, Action::Heartbeat, responder, |_, _| Value::Null).await;
                }
                self.emit("heartbeat_response", &json!({ "timestamp": timestamp, "serverTimestamp": now }));
            }
            Request::Pong { timestamp } => {
                let Some(report_due) = self.quality.pong_received(timestamp, now) else { return };
                if report_due {
                    self.emit("connection_quality", &self.quality.report(&self.socket_id, now));
                }
                if let Some(latency) = self.quality.latency() {
                    self.app.sync_stats.record_latency(latency);
                }
            }
            Request::ConnectionQuality => self.emit("connection_quality", &self.quality.report(&self.socket_id, now)),
            Request::ClientError(report) => {
                let report: String = report.to_string().chars().take(500).collect();
                tracing::info!(socket = %self.socket_id, %report, "client reported an error");
            }
        }
    }

    /// `join_session`: leaves the current session first when it is another one.
    async fn join_legacy(&mut self, session_id: String, joiner: Joiner, wants_lead: bool, responder: Responder<A>) {
        let approval_needed = wants_lead && self.app.config.leader_policy == LeaderPolicy::Approval;
        let joiner = Joiner { instance: Some(self.app.server_id.clone()), ..joiner };
        let creation =
            Creation::IfMissing(SessionSetup::with_max_members(self.app.config.max_session_members as usize));
        let action = Action::Join { joiner: joiner.into(), wants_lead: wants_lead && !approval_needed, creation };
        let joined = self.join(&session_id, action, responder, |_, _| Value::Null).await;
        if joined.is_some_and(|session| !session.is_leader(&self.socket_id)) && approval_needed {
            let responder = request_leader_responder(&session_id);
            let answer = lead_request_answer(self.socket_id.clone());
            self.execute(&session_id, Action::RequestLead, responder, answer).await;
        }
    }

    /// Under `LEADER_POLICY=approval`, taking the lead with `set_role` becomes a request, and is
    /// answered as one (`request_leader_result`).
    fn apply_leader_policy(&self, session_id: &str, action: Action, responder: Responder<A>) -> (Action, Responder<A>) {
        match action {
            Action::SetRole { wants_lead: true } if self.app.config.leader_policy == LeaderPolicy::Approval => {
                (Action::RequestLead, request_leader_responder(session_id))
            }
            other => (other, responder),
        }
    }
}

/// Answers a lead request made on the sender's behalf as `request_leader` itself is answered.
fn request_leader_responder<A: Adapter>(session_id: &str) -> Responder<A> {
    Responder::legacy("request_leader", &json!({ "sessionId": session_id }))
}

/// `request_leader_result` adds `pending: true` while the leader has still to answer the request.
fn lead_request_answer(requester: String) -> impl FnOnce(&Session, Millis) -> Value {
    move |session, _| if session.is_leader(&requester) { Value::Null } else { json!({ "pending": true }) }
}

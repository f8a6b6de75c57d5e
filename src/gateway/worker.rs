//! The worker of one socket: handles its events one at a time, in the order they arrived.
//!
//! It owns the socket's connection state (its seat, its ping statistics), so none of that needs
//! locking, and it sends the application-level `ping` on its own timer.

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};
use socketioxide::extract::{AckSender, SocketRef};
use tokio::{sync::mpsc, time::MissedTickBehavior};

use super::{deliver::deliver, inbox::Inbound, quality::Quality, rooms};
use crate::{
    clock::now_ms,
    config::LeaderPolicy,
    core::{
        Action, Command, CoreError, LeaveCause, Outcome, Vocabulary,
        seat::{SeatChange, plan_join},
        session::default_display_name,
    },
    protocol::{
        Emission, Target,
        legacy::{self, Reply, Request},
        legacy_render::{self, Scene},
    },
    state::AppState,
};

struct Worker {
    socket: SocketRef,
    socket_id: String,
    app: Arc<AppState>,
    /// The session this socket sits in, if any.
    seat: Option<String>,
    quality: Quality,
}

pub async fn run(
    socket: SocketRef,
    mut events: mpsc::Receiver<Inbound<socketioxide::adapter::LocalAdapter>>,
    app: Arc<AppState>,
) {
    let ping_every = app.config.legacy_ping_interval_ms;
    let mut pings = tokio::time::interval(Duration::from_millis(ping_every.max(1)));
    pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
    pings.tick().await; // the first tick is immediate; the first ping goes one interval after connecting
    let socket_id = socket.id.to_string();
    let mut worker = Worker { socket, socket_id, app, seat: None, quality: Quality::new(now_ms()) };
    loop {
        tokio::select! {
            biased;
            event = events.recv() => match event {
                Some(Inbound::Event { name, data, ack }) => worker.handle(&name, data, ack).await,
                Some(Inbound::Disconnected(reason)) => {
                    worker.unseat(LeaveCause::Disconnected(reason.to_owned())).await;
                    worker.app.connections.closed();
                    break;
                }
                None => break,
            },
            _ = pings.tick(), if ping_every > 0 => worker.ping(),
        }
    }
}

impl Worker {
    async fn handle(&mut self, event: &str, data: Value, _ack: Option<AckSender>) {
        let request = match legacy::parse(event, &data, self.app.limits) {
            Some(Ok(request)) => request,
            Some(Err(err)) => return self.refuse(event, &data, &err),
            None => return self.refuse(event, &data, &CoreError::Validation(format!("Unknown event: {event}"))),
        };
        let now = now_ms();
        match request {
            Request::Join { session_id, display_name, wants_lead } => {
                self.join(session_id, display_name, wants_lead).await
            }
            Request::Leave { session_id } => {
                if let Err(err) = self.execute(&session_id, Action::Leave(LeaveCause::Left), Reply::None).await {
                    self.refuse(event, &data, &err);
                }
            }
            Request::Session { session_id, action, reply } => {
                let action = self.apply_leader_policy(action);
                if let Err(err) = self.execute(&session_id, action, reply).await {
                    self.refuse(event, &data, &err);
                }
            }
            Request::SyncRequest { session_id } => match self.app.store.get(&session_id).await {
                Ok(Some(session)) => self.emit("sync_response", &legacy_render::sync_response(&session, now)),
                Ok(None) => self.refuse(event, &data, &CoreError::SessionNotFound),
                Err(err) => self.refuse(event, &data, &err),
            },
            Request::LatencyProbe { timestamp } => {
                self.emit("latency_response", &json!({ "clientTimestamp": timestamp, "serverTimestamp": now }));
            }
            Request::Heartbeat { timestamp } => {
                if let Some(session_id) = self.seat.clone() {
                    self.execute(&session_id, Action::Heartbeat, Reply::None).await.ok();
                }
                self.emit("heartbeat_response", &json!({ "timestamp": timestamp, "serverTimestamp": now }));
            }
            Request::Pong { timestamp } => {
                if self.quality.pong_received(timestamp, now) {
                    self.emit("connection_quality", &self.quality.report(&self.socket_id, now));
                }
            }
            Request::ConnectionQuality => self.emit("connection_quality", &self.quality.report(&self.socket_id, now)),
            Request::ClientError(report) => {
                tracing::info!(socket = %self.socket_id, report = %truncate(&report.to_string(), 500), "client reported an error");
            }
        }
    }

    /// `join_session`: leaves the current session first when it is another one.
    async fn join(&mut self, session_id: String, display_name: Option<String>, wants_lead: bool) {
        if let SeatChange::Move { leave } = plan_join(self.seat.as_deref(), &session_id) {
            self.execute(&leave, Action::Leave(LeaveCause::Left), Reply::None).await.ok();
        }
        let approval_needed = wants_lead && self.app.config.leader_policy == LeaderPolicy::Approval;
        let action = Action::Join {
            display_name: display_name.unwrap_or_else(|| default_display_name(&self.socket_id)),
            wants_lead: wants_lead && !approval_needed,
            vocabulary: Vocabulary::Legacy,
            max_members: self.app.config.max_session_members as usize,
        };
        let payload = json!({ "sessionId": session_id });
        if let Err(err) = self.execute(&session_id, action, Reply::None).await {
            return self.refuse("join_session", &payload, &err);
        }
        if approval_needed {
            let reply = Reply::Result("request_leader_result");
            if let Err(err) = self.execute(&session_id, Action::RequestLead, reply).await {
                self.refuse("request_leader", &payload, &err);
            }
        }
    }

    /// Under `LEADER_POLICY=approval`, taking the lead with `set_role` becomes a request.
    fn apply_leader_policy(&self, action: Action) -> Action {
        match action {
            Action::SetRole { wants_lead: true } if self.app.config.leader_policy == LeaderPolicy::Approval => {
                Action::RequestLead
            }
            other => other,
        }
    }

    /// Leaves the current session, if any (on disconnect).
    async fn unseat(&mut self, cause: LeaveCause) {
        let Some(session_id) = self.seat.clone() else { return };
        if let Err(err) = self.execute(&session_id, Action::Leave(cause), Reply::None).await {
            tracing::warn!(socket = %self.socket_id, session = %session_id, %err, "leaving on disconnect failed");
        }
    }

    /// Applies `action` to `session_id` and announces the outcomes, all under the session's lock.
    async fn execute(&mut self, session_id: &str, action: Action, reply: Reply) -> Result<(), CoreError> {
        let reply = match (&action, reply) {
            (Action::RequestLead, Reply::None) => Reply::Result("request_leader_result"),
            (_, reply) => reply,
        };
        let app = self.app.clone();
        let _guard = app.locks.lock(session_id).await;
        let now = now_ms();
        let command = Command { by: self.socket_id.clone(), action };
        let applied = app.store.apply(session_id, &command, now).await?;
        let room = rooms::legacy(session_id);
        match &command.action {
            Action::Join { .. } => {
                self.socket.join(room.clone());
                if self.seat.as_deref() != Some(session_id) {
                    tracing::info!(socket = %self.socket_id, session = %session_id, members = applied.session.members.len(), "joined");
                }
                self.seat = Some(session_id.to_owned());
            }
            Action::Leave(cause) => {
                self.socket.leave(room.clone());
                self.seat = None;
                tracing::info!(socket = %self.socket_id, session = %session_id, ?cause, "left");
            }
            _ => {}
        }
        app.ticker.track(&applied.session);
        let scene = Scene { session: &applied.session, by: &self.socket_id, now };
        let mut emissions = legacy_render::render(&applied.outcomes, &scene);
        if let Reply::Result(event) = reply {
            let pending = applied.outcomes.iter().any(|o| matches!(o, Outcome::LeadRequested { .. }));
            let mut data = json!({ "sessionId": session_id, "success": true });
            if pending {
                data["pending"] = Value::Bool(true);
            }
            emissions.push(Emission::new(Target::Sender, event, data));
        }
        deliver(&app.io, &self.socket, &room, &emissions).await;
        Ok(())
    }

    /// Tells the sender why `event` was refused: `error {message, code}`, and for the roles events
    /// also their `<event>_result`.
    fn refuse(&self, event: &str, payload: &Value, err: &CoreError) {
        tracing::info!(socket = %self.socket_id, event = %truncate(event, 64), code = err.code(), reason = %err, "refused");
        if let Some(result_event) = legacy::result_event(event) {
            let session_id = payload.get("sessionId").cloned().unwrap_or(Value::Null);
            let data =
                json!({ "sessionId": session_id, "success": false, "error": err.to_string(), "code": err.code() });
            self.emit(result_event, &data);
        }
        self.emit("error", &legacy_render::error(err));
    }

    fn ping(&mut self) {
        self.quality.ping_sent();
        self.emit("ping", &json!({ "timestamp": now_ms() }));
    }

    fn emit(&self, event: &str, data: &Value) {
        if let Err(err) = self.socket.emit(event, data) {
            tracing::debug!(socket = %self.socket_id, event, %err, "emit failed");
        }
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

//! The worker of one socket: handles its events one at a time, in the order they arrived.
//!
//! It owns the socket's connection state (its seat, its ping statistics), so none of that needs
//! locking, and it sends the application-level `ping` on its own timer. Events are handled by
//! vocabulary in [`super::legacy_events`] and [`super::enhanced_events`]; both change sessions
//! through [`Worker::execute`].

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json, value::RawValue};
use socketioxide::{
    SocketIo,
    adapter::Adapter,
    extract::{AckSender, SocketRef},
};
use tokio::time::MissedTickBehavior;

use super::{
    deliver::deliver,
    inbox::{Inbound, Inbox, QueuedEvent},
    legacy_use,
    quality::Quality,
    respond::Responder,
    rooms,
};
use crate::{
    clock::now_ms,
    core::{
        Action, Command, CoreError, Creation, LeaveCause, Millis, Outcome, Session, Vocabulary,
        seat::{SeatChange, plan_join},
    },
    delivery,
    protocol::{self, Parsed, Scene},
    state::AppState,
    telemetry,
};

/// Where a socket sits: the session and the vocabulary it joined with.
#[derive(Debug, Clone)]
pub(super) struct Seat {
    pub session_id: String,
    pub vocabulary: Vocabulary,
}

pub(super) struct Worker<A: Adapter> {
    pub socket: SocketRef<A>,
    pub io: SocketIo<A>,
    pub socket_id: String,
    pub app: Arc<AppState>,
    pub seat: Option<Seat>,
    pub quality: Quality,
    /// The transport the socket connected with, for the connection metrics.
    transport: &'static str,
    /// The error code of the event being handled, once it has been refused.
    refused: Option<&'static str>,
    /// Set by the connection's first legacy event (`LEGACY_EVENTS=warn` reports that one).
    used_legacy: bool,
}

pub async fn run<A: Adapter>(
    socket: SocketRef<A>,
    io: SocketIo<A>,
    inbox: Inbox<A>,
    app: Arc<AppState>,
    transport: &'static str,
) {
    let ping_every = app.config.legacy_ping_interval_ms;
    let mut pings = tokio::time::interval(Duration::from_millis(ping_every.max(1)));
    pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
    pings.tick().await; // the first tick is immediate; the first ping goes one interval after connecting
    let socket_id = socket.id.to_string();
    let quality = Quality::new(now_ms());
    let mut worker =
        Worker { socket, io, socket_id, app, seat: None, quality, transport, refused: None, used_legacy: false };
    loop {
        tokio::select! {
            biased;
            event = inbox.queue.next(&inbox.throttle) => match event {
                Some(Inbound::Event(event)) => {
                    let QueuedEvent { name, data, ack, parsed, superseded } = *event;
                    let started = std::time::Instant::now();
                    worker.refused = None;
                    // Boxed, like the leave below: the state of handling an event is large, and
                    // kept inline it would make every idle socket's task that large too.
                    let parsed = parsed.unwrap_or_else(|| protocol::parse(&name, &data, worker.app.limits));
                    Box::pin(worker.handle(&name, data, parsed, ack, superseded)).await;
                    let result = worker.refused.unwrap_or("ok");
                    telemetry::event_handled(&name, result, started.elapsed().as_secs_f64());
                }
                Some(Inbound::CheckSeat(session_id)) => Box::pin(worker.check_seat(&session_id)).await,
                Some(Inbound::Disconnected(reason)) => {
                    // Socket.IO took the socket out of its rooms when it closed; an event queued
                    // before the close may have joined one since (`metrics:subscribe`).
                    worker.socket.leave_all();
                    worker.app.connections.closed();
                    telemetry::connection_closed(worker.transport);
                    // Boxed, like the events above; a dropped connection's seat may be held a while.
                    Box::pin(worker.end_connection(reason)).await;
                    break;
                }
                None => break,
            },
            _ = pings.tick(), if ping_every > 0 => worker.ping(),
        }
    }
    // Events still queued behind the close are dropped, and none is taken from now on.
    inbox.queue.close();
    if let Some(seat) = &worker.seat {
        worker.app.deliveries.unseat(&seat.session_id, &worker.socket_id);
    }
}

impl<A: Adapter> Worker<A> {
    async fn handle(
        &mut self,
        event: &str,
        data: Value,
        parsed: Parsed,
        ack: Option<AckSender<A>>,
        superseded: Vec<AckSender<A>>,
    ) {
        match parsed {
            Parsed::Legacy(request) => {
                let responder = Responder::legacy(event, &data);
                let first_use = !std::mem::replace(&mut self.used_legacy, true);
                if let Err(err) = legacy_use::check(self.app.config.legacy_events, event, first_use, &self.socket_id) {
                    return self.refuse(responder, &err);
                }
                match request {
                    Ok(request) => self.handle_legacy(request, responder).await,
                    Err(err) => self.refuse(responder, &err),
                }
            }
            Parsed::Enhanced(request) => {
                let responder = Responder::enhanced(event, ack).superseding(superseded);
                match request {
                    Ok(request) => self.handle_enhanced(request, responder).await,
                    Err(err) => self.refuse(responder, &err),
                }
            }
            Parsed::Unknown => self.handle_unknown(event, ack),
        }
    }

    /// An event this server does not know. The Node server ignored such events, and the app
    /// sends some (`heartbeat_response`, answering a server `heartbeat`; whatever a newer version
    /// adds): from a legacy socket it is ignored. A sender that waits for an acknowledgement, or
    /// sits in a session with the enhanced vocabulary, is told (`VALIDATION`).
    fn handle_unknown(&mut self, event: &str, ack: Option<AckSender<A>>) {
        let name: String = event.chars().take(64).collect();
        let speaks_enhanced = self.seat.as_ref().is_some_and(|s| s.vocabulary == Vocabulary::Enhanced);
        if ack.is_none() && (!speaks_enhanced || event == "heartbeat_response") {
            tracing::debug!(socket = %self.socket_id, event = %name, "unknown event ignored");
            self.refused = Some("ignored");
            return;
        }
        let err = CoreError::Validation(format!("Unknown event: {name}"));
        self.refuse(Responder::enhanced(event, ack), &err);
    }

    /// Refuses the event being handled: tells the sender, and counts it under its error code.
    pub(super) fn refuse(&mut self, responder: Responder<A>, err: &CoreError) {
        self.refused = Some(err.code());
        responder.refuse(&self.socket, err);
    }

    /// Leaves the current session, if any (on disconnect). A leave the store refuses (it no
    /// longer lists the member: another instance unseated it, or a new connection took the seat
    /// back with its resume token) still ends the seat here.
    pub(super) async fn unseat(&mut self, cause: LeaveCause) {
        let Some(seat) = self.seat.clone() else { return };
        let command = Command { by: self.socket_id.clone(), action: Action::Leave(cause) };
        if let Err((err, _)) = self.apply_and_announce(&seat.session_id, command, None, |_, _| Value::Null).await {
            tracing::info!(socket = %self.socket_id, session = %seat.session_id, %err, "seat already gone");
        }
        self.drop_seat(&seat.session_id);
    }

    /// Stops listening to `session_id`'s rooms and, when seated there, ends the seat.
    fn drop_seat(&mut self, session_id: &str) {
        self.socket.leave(rooms::session(session_id, Vocabulary::Legacy));
        self.socket.leave(rooms::session(session_id, Vocabulary::Enhanced));
        self.app.deliveries.unseat(session_id, &self.socket_id);
        if let Some(seat) = self.seat.take_if(|s| s.session_id == session_id) {
            telemetry::member_seated(seat.vocabulary, -1.0);
        }
    }

    /// Seats the socket in `session_id` (a join action), then leaves the session it sat in before,
    /// if another: only once the join has succeeded, so a refused join changes nothing.
    pub(super) async fn join(
        &mut self,
        session_id: &str,
        join: Action,
        responder: Responder<A>,
        answer: impl FnOnce(&Session, Millis) -> Value,
    ) -> Option<Session> {
        let change = plan_join(self.seat.as_ref().map(|s| s.session_id.as_str()), session_id);
        let join = match self.within_session_limit(join).await {
            Ok(join) => join,
            Err(err) => {
                self.refuse(responder, &err);
                return None;
            }
        };
        let session = self.execute(session_id, join, responder, answer).await?;
        if let SeatChange::Move { leave } = change {
            // A failure only means there was nothing left to leave; the rooms are left either way.
            let command = Command { by: self.socket_id.clone(), action: Action::Leave(LeaveCause::Left) };
            if self.apply_and_announce(&leave, command, None, |_, _| Value::Null).await.is_err() {
                self.drop_seat(&leave);
            }
        }
        Some(session)
    }

    /// With `MAX_SESSIONS` reached, a join may still seat the sender in an existing session but
    /// create none. The count is read before the join, so instances creating sessions at the same
    /// moment may overshoot the limit by those few.
    async fn within_session_limit(&self, mut join: Action) -> Result<Action, CoreError> {
        let max_sessions = self.app.config.max_sessions as usize;
        let Action::Join { creation, .. } = &mut join else { return Ok(join) };
        let creates = matches!(creation, Creation::IfMissing(_) | Creation::New(_));
        if max_sessions == 0 || !creates || self.app.store.count().await.unwrap_or(0) < max_sessions {
            return Ok(join);
        }
        tracing::warn!(socket = %self.socket_id, max_sessions, "session limit reached; no new session");
        if matches!(creation, Creation::New(_)) {
            return Err(CoreError::TooManySessions { max: max_sessions });
        }
        *creation = Creation::AtCapacity { max_sessions };
        Ok(join)
    }

    /// Applies `action` to `session_id`, answers the sender through `responder` (with
    /// `answer(session, now)` merged into a success) and announces the outcomes. Returns the
    /// session as it now is, or `None` when the action was refused (the sender has been told).
    pub(super) async fn execute(
        &mut self,
        session_id: &str,
        action: Action,
        responder: Responder<A>,
        answer: impl FnOnce(&Session, Millis) -> Value,
    ) -> Option<Session> {
        let command = Command { by: self.socket_id.clone(), action: self.with_instance_settings(action) };
        match self.apply_and_announce(session_id, command, Some(responder), answer).await {
            Ok(session) => Some(session),
            Err((err, Some(responder))) => {
                self.refuse(responder, &err);
                None
            }
            Err((_, None)) => None,
        }
    }

    /// Fills in what this instance decides rather than the client: the drift threshold. (The
    /// start lead is the enhanced start's alone: see `handle_enhanced`.)
    fn with_instance_settings(&self, action: Action) -> Action {
        let config = &self.app.config;
        match action {
            Action::PositionReport { position, client_time, .. } => {
                Action::PositionReport { position, client_time, threshold_ms: config.drift_threshold_ms as f64 }
            }
            other => other,
        }
    }

    /// The change itself, under the session's lock so members hear changes in the order applied.
    pub(super) async fn apply_and_announce(
        &mut self,
        session_id: &str,
        command: Command,
        responder: Option<Responder<A>>,
        answer: impl FnOnce(&Session, Millis) -> Value,
    ) -> Result<Session, (CoreError, Option<Responder<A>>)> {
        let app = self.app.clone();
        let _guard = app.locks.lock(session_id).await;
        // A joiner's deliveries keep what other instances announce while its join is stored;
        // it hears them, and joins the session's rooms (streams), once the join is stored.
        let joining = match &command.action {
            Action::Join { joiner, .. } if self.seat.as_ref().is_none_or(|s| s.session_id != session_id) => {
                app.deliveries.expect(session_id, &self.socket_id, joiner.vocabulary, self.listener());
                true
            }
            _ => false,
        };
        let now = now_ms();
        let applied = match app.store.apply(session_id, &command, now).await {
            Ok(applied) => applied,
            Err(err) => {
                if joining {
                    app.deliveries.unseat(session_id, &self.socket_id);
                }
                return Err((err, responder));
            }
        };
        let just_seated = self.follow_seat(session_id, &command.action, &applied.session);
        if applied.changed {
            app.ticker.track(&applied.session);
        }
        for outcome in &applied.outcomes {
            if let Outcome::PositionChecked { drift, .. } = outcome {
                app.sync_stats.record_drift(*drift);
            }
        }
        let sender_vocabulary = self.seat.as_ref().map_or(Vocabulary::Legacy, |s| s.vocabulary);
        let scene = Scene { session: &applied.session, by: &self.socket_id, sender_vocabulary, now };
        let emissions = protocol::render(&applied.outcomes, &scene);
        let mut body = answer(&applied.session, now);
        for outcome in &applied.outcomes {
            if let Outcome::Resumed { previous, was_held, .. } = outcome {
                self.seat_taken_back(previous, *was_held);
                body["resumed"] = Value::Bool(true);
            }
        }
        match responder {
            Some(responder) if responder.answers_first() => {
                responder.succeed(&self.socket, body);
                deliver(&app, &self.socket, &applied, &emissions, just_seated).await;
            }
            responder => {
                deliver(&app, &self.socket, &applied, &emissions, just_seated).await;
                if let Some(responder) = responder {
                    responder.succeed(&self.socket, body);
                }
            }
        }
        Ok(applied.session)
    }

    /// This socket took back the seat of `previous`. A held seat's worker, if here, stops
    /// waiting (one on another instance hears of it through the store). A connection still open
    /// (a client back before the server saw it drop, on any instance) is closed: its seat is gone.
    fn seat_taken_back(&self, previous: &str, was_held: bool) {
        tracing::info!(socket = %self.socket_id, previous, was_held, "seat taken back");
        if was_held {
            self.app.graces.taken_back(previous);
            return;
        }
        let Some(namespace) = rooms::namespace(&self.io) else { return };
        let old = namespace.to(rooms::socket(previous));
        tokio::spawn(async move {
            if let Err(err) = old.disconnect().await {
                tracing::debug!(%err, "closing the seat's old connection");
            }
        });
    }

    /// Keeps the socket's rooms and seat in step with a join or leave that just succeeded; true
    /// when the socket was just seated.
    fn follow_seat(&mut self, session_id: &str, action: &Action, session: &Session) -> bool {
        match action {
            Action::Join { joiner, .. } => {
                if self.seat.as_ref().is_some_and(|s| s.session_id == session_id) {
                    return false;
                }
                let vocabulary = joiner.vocabulary;
                // A move from another session: the seat is counted once, under its new vocabulary.
                if let Some(old) = &self.seat {
                    telemetry::member_seated(old.vocabulary, -1.0);
                }
                telemetry::member_seated(vocabulary, 1.0);
                tracing::info!(socket = %self.socket_id, session = %session_id, ?vocabulary, members = session.members.len(), "joined");
                self.socket.join(rooms::session(session_id, vocabulary));
                self.seat = Some(Seat { session_id: session_id.to_owned(), vocabulary });
                true
            }
            Action::Leave(cause) => {
                tracing::info!(socket = %self.socket_id, session = %session_id, ?cause, members = session.members.len(), "left");
                self.drop_seat(session_id);
                false
            }
            _ => false,
        }
    }

    /// After an outage's write-back: a socket seated in `session_id` that the stored session does
    /// not list leaves the session's rooms and is told so. Either its join, made while this
    /// instance was cut off, was refused when replayed (a passcode, a seat taken meanwhile), or
    /// another instance unseated it meanwhile, taking this instance for lost.
    async fn check_seat(&mut self, session_id: &str) {
        let Some(vocabulary) = self.seat.as_ref().filter(|s| s.session_id == session_id).map(|s| s.vocabulary) else {
            return;
        };
        let Ok(stored) = self.app.store.get(session_id).await else { return };
        if stored.is_some_and(|session| session.member(&self.socket_id).is_some()) {
            return;
        }
        self.drop_seat(session_id);
        tracing::warn!(socket = %self.socket_id, session = %session_id, "unseated: after the redis outage, the stored session does not list this member");
        let responder = match vocabulary {
            Vocabulary::Legacy => Responder::legacy("join_session", &json!({ "sessionId": session_id })),
            Vocabulary::Enhanced => Responder::enhanced("session:join", None),
        };
        responder.refuse_unlogged(&self.socket, &CoreError::NotAMember);
    }

    fn ping(&mut self) {
        // The same instant in the ping and in the record its pong is matched against.
        let now = now_ms();
        self.quality.ping_sent(now);
        self.emit("ping", &json!({ "timestamp": now }));
    }

    pub(super) fn emit(&self, event: &str, data: &Value) {
        super::respond::emit(&self.socket, event, data);
    }

    /// How the session's deliveries reach this socket.
    fn listener(&self) -> delivery::Send {
        let socket = self.socket.clone();
        Arc::new(move |event: &str, data: &RawValue| super::respond::emit(&socket, event, data))
    }
}

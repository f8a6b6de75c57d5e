//! Answering the sender of one event: success and refusal, in the vocabulary it used.

use serde::Serialize;
use serde_json::{Value, json};
use socketioxide::{
    adapter::Adapter,
    extract::{AckSender, SocketRef},
};

use crate::{
    core::CoreError,
    protocol::{enhanced, legacy, legacy_render},
    telemetry,
};

/// How to answer the event being handled.
pub enum Responder<A: Adapter> {
    /// Legacy events: errors as `error {message, code}`; the roles events also get `<event>_result`.
    Legacy { event: String, session_id: Value },
    /// Enhanced events: the acknowledgement when the client asked for one, else `error:validation`
    /// or `error:session`. `superseded`: the acknowledgements of the sender's older events of the
    /// same state that this one took the place of before they were applied (`gateway::queue`);
    /// they get this one's answer, marked `coalesced: true`.
    Enhanced { event: String, ack: Option<AckSender<A>>, superseded: Vec<AckSender<A>> },
}

impl<A: Adapter> Responder<A> {
    pub fn legacy(event: &str, payload: &Value) -> Self {
        let session_id = payload.get("sessionId").cloned().unwrap_or(Value::Null);
        Responder::Legacy { event: event.to_owned(), session_id }
    }

    pub fn enhanced(event: &str, ack: Option<AckSender<A>>) -> Self {
        Responder::Enhanced { event: event.to_owned(), ack, superseded: Vec::new() }
    }

    /// Answers `acks` too, as superseded by this event (enhanced events only: the legacy
    /// vocabulary answers no acknowledgement).
    pub fn superseding(mut self, acks: Vec<AckSender<A>>) -> Self {
        if let Responder::Enhanced { superseded, .. } = &mut self {
            *superseded = acks;
        }
        self
    }

    /// For an event refused before it is parsed: enhanced when it is an enhanced event or asks
    /// for an acknowledgement, else legacy.
    pub fn for_event(event: &str, ack: Option<AckSender<A>>) -> Self {
        if ack.is_some() || enhanced::EVENTS.contains(&event) {
            Responder::enhanced(event, ack)
        } else {
            Responder::legacy(event, &Value::Null)
        }
    }

    /// True when the sender waits for an acknowledgement, which must be answered.
    pub fn awaits_ack(&self) -> bool {
        matches!(self, Responder::Enhanced { ack: Some(_), .. })
    }

    /// True when the answer goes before the events the request causes: an enhanced client that
    /// awaits its acknowledgement then sees every event that follows.
    pub fn answers_first(&self) -> bool {
        matches!(self, Responder::Enhanced { .. })
    }

    /// Answers a success; `body` fields join `{ok: true}` (enhanced) or `{sessionId, success: true}`
    /// (the legacy roles events). Other legacy events need no answer.
    pub fn succeed(self, socket: &SocketRef<A>, body: Value) {
        match self {
            Responder::Legacy { event, session_id } => {
                if let Some(result_event) = legacy::result_event(&event) {
                    let mut data = json!({ "sessionId": session_id, "success": true });
                    merge(&mut data, body);
                    emit(socket, result_event, &data);
                }
            }
            Responder::Enhanced { ack, superseded, .. } => {
                let mut data = json!({ "ok": true });
                merge(&mut data, body);
                answer_superseded(superseded, &data);
                if let Some(ack) = ack {
                    ack.send(&data).ok();
                }
            }
        }
    }

    /// Tells the sender why its event was refused, and logs it; nothing else happens.
    pub fn refuse(self, socket: &SocketRef<A>, err: &CoreError) {
        // Known event names only: an unknown one is the client's own text.
        let event = match &self {
            Responder::Legacy { event, .. } | Responder::Enhanced { event, .. } => telemetry::event_label(event),
        };
        tracing::info!(socket = %socket.id, event = %event, code = err.code(), reason = %err, "refused");
        self.refuse_unlogged(socket, err);
    }

    /// [`Self::refuse`] without its log line, for refusals that come in floods and are logged
    /// once a second by their caller.
    pub fn refuse_unlogged(self, socket: &SocketRef<A>, err: &CoreError) {
        match self {
            Responder::Legacy { event, session_id } => {
                if let Some(result_event) = legacy::result_event(&event) {
                    let data = json!({ "sessionId": session_id, "success": false, "error": err.to_string(), "code": err.code() });
                    emit(socket, result_event, &data);
                }
                emit(socket, "error", &legacy_render::error(err));
            }
            Responder::Enhanced { ack, event, superseded } => {
                let refused = json!({ "ok": false, "error": { "code": err.code(), "message": err.to_string() } });
                answer_superseded(superseded, &refused);
                match ack {
                    Some(ack) => {
                        ack.send(&refused).ok();
                    }
                    None => {
                        let name =
                            if matches!(err, CoreError::Validation(_)) { "error:validation" } else { "error:session" };
                        emit(socket, name, &json!({ "code": err.code(), "message": err.to_string(), "event": event }));
                    }
                }
            }
        }
    }
}

/// Answers the acknowledgements of superseded events with `data`, marked `coalesced: true`: their
/// own values were never applied, the newer one's answer is theirs.
fn answer_superseded<A: Adapter>(acks: Vec<AckSender<A>>, data: &Value) {
    if acks.is_empty() {
        return;
    }
    let mut data = data.clone();
    data["coalesced"] = Value::Bool(true);
    for ack in acks {
        ack.send(&data).ok();
    }
}

fn merge(target: &mut Value, extra: Value) {
    if let (Value::Object(target), Value::Object(extra)) = (target, extra) {
        target.extend(extra);
    }
}

pub fn emit<A: Adapter, T: Serialize + ?Sized>(socket: &SocketRef<A>, event: &str, data: &T) {
    if let Err(err) = socket.emit(event, data) {
        tracing::debug!(socket = %socket.id, event, %err, "emit failed");
    }
}

//! One ordered queue per socket.
//!
//! socketioxide runs every event handler as its own task, so two events sent back to back can be
//! handled out of order. Extractors, though, run synchronously in the order packets arrive. The
//! [`Queued`] extractor therefore does the real work: it checks the event against the socket's
//! budget and puts it in the socket's [`EventQueue`], which the socket's worker drains one event
//! at a time. State-setting events past their budget wait there, coalesced (see [`super::queue`]).

use std::{convert::Infallible, sync::Arc, time::Duration};

use serde_json::Value;
use socketioxide::{
    adapter::Adapter,
    extract::{AckSender, Event, SocketRef, TryData},
    handler::FromMessageParts,
    socket::{DisconnectReason, Socket},
};

use super::{
    enhanced_events::answer_clock_sync,
    queue::{Coalesced, EventQueue, Refused},
    respond::Responder,
    throttle::{EventClass, Refusal, Throttle},
};
use crate::{
    clock::precise_now_ms,
    core::CoreError,
    protocol::{self, Limits, Parsed},
    telemetry,
};

/// Something for a socket's worker to do, in arrival order.
pub enum Inbound<A: Adapter> {
    /// Boxed, so that queue entries stay small.
    Event(Box<QueuedEvent<A>>),
    /// The connection closed, for this reason.
    Disconnected(DisconnectReason),
    /// The stored state of this session replaced what the instance served during a Redis outage
    /// ([`crate::store::SessionStore::rewritten_sessions`]): the socket must check it still has
    /// its seat there.
    CheckSeat(Box<str>),
}

/// An event waiting for the socket's worker.
pub struct QueuedEvent<A: Adapter> {
    pub name: String,
    pub data: Value,
    pub ack: Option<AckSender<A>>,
    /// The payload parsed already, when the gateway had to look into it (state-setting events):
    /// the worker does not parse it again.
    pub parsed: Option<Parsed>,
    /// Acknowledgements of older events of the same state this one took the place of: they get
    /// this one's answer.
    pub superseded: Vec<AckSender<A>>,
}

impl<A: Adapter> QueuedEvent<A> {
    pub fn new(name: String, data: Value, ack: Option<AckSender<A>>, parsed: Option<Parsed>) -> Self {
        Self { name, data, ack, parsed, superseded: Vec::new() }
    }
}

/// A socket's queue and its rate limits, kept in the socket's extensions.
pub struct Inbox<A: Adapter> {
    pub queue: Arc<EventQueue<Inbound<A>>>,
    pub throttle: Arc<Throttle>,
    /// Payload limits, to tell a valid state-setting event (which may be coalesced) from one the
    /// worker will refuse.
    pub limits: Limits,
}

impl<A: Adapter> Clone for Inbox<A> {
    fn clone(&self) -> Self {
        Self { queue: self.queue.clone(), throttle: self.throttle.clone(), limits: self.limits }
    }
}

/// Extracting this queues the event; the handler it is passed to has nothing left to do.
pub struct Queued;

impl<A: Adapter> FromMessageParts<A> for Queued {
    type Error = Infallible;

    fn from_message_parts(
        socket: &Arc<Socket<A>>,
        value: &mut socketioxide_core::Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        let Some(inbox) = socket.extensions.get::<Inbox<A>>() else {
            return Ok(Queued);
        };
        let received_at = precise_now_ms();
        let name = Event::from_message_parts(socket, value, ack_id).map(|e| e.0).unwrap_or_default();
        let mut ack = ack_id.map(|_| AckSender::from_message_parts(socket, value, ack_id).expect("infallible"));
        let class = EventClass::of(&name);
        // Past its budget, an event that sets no state goes no further: its payload is not even
        // decoded, so a flood costs a bucket check per packet.
        if !class.coalesces() && !inbox.throttle.try_take(class) {
            over_budget(socket, &inbox.throttle, &name, class, ack);
            return Ok(Queued);
        }
        let Some(data) = decode(socket, &name, value, ack_id, &mut ack) else {
            return Ok(Queued);
        };
        // Clock sync is answered at once, not behind queued events: the less time between t1 and
        // t2, the less the client's offset estimate depends on the server's load.
        if name == "clock:sync"
            && let Some(t0) = data.get("t0").and_then(Value::as_f64)
        {
            // A client may report its previous round trip, the one figure the server cannot see.
            if let Some(rtt) = data.get("rtt").and_then(Value::as_f64).filter(|r| (0.0..60_000.0).contains(r)) {
                telemetry::clock_sync_rtt(rtt / 1_000.0);
            }
            telemetry::event_handled(&name, "ok", (precise_now_ms() - received_at) / 1_000.0);
            answer_clock_sync(&SocketRef::from(socket.clone()), Responder::enhanced(&name, ack), t0, received_at);
            return Ok(Queued);
        }
        // A state-setting event is parsed here, to tell a well-formed one (which may wait,
        // coalesced) from one the worker will refuse; the worker takes it parsed.
        let parsed = class.coalesces().then(|| protocol::parse(&name, &data, inbox.limits));
        if let Some(parsed) = parsed {
            if parsed.is_session_change() {
                queue_state(socket, &inbox, QueuedEvent::new(name, data, ack, Some(parsed)), class);
                return Ok(Queued);
            }
            // Malformed: the worker refuses it, within the budget of any other event.
            if !inbox.throttle.try_take(class) {
                over_budget(socket, &inbox.throttle, &name, class, ack);
                return Ok(Queued);
            }
            return push_event(socket, &inbox, QueuedEvent::new(name, data, ack, Some(parsed)));
        }
        push_event(socket, &inbox, QueuedEvent::new(name, data, ack, None))
    }
}

/// Queues an event that waits for nothing; a full queue refuses it.
fn push_event<A: Adapter>(
    socket: &Arc<Socket<A>>,
    inbox: &Inbox<A>,
    event: QueuedEvent<A>,
) -> Result<Queued, Infallible> {
    let event = Inbound::Event(Box::new(event));
    if let Err(Refused::Full(Inbound::Event(event))) = inbox.queue.push(event) {
        tracing::warn!(socket = %socket.id, event = %telemetry::event_label(&event.name), "event queue full; event dropped");
        telemetry::rate_limited("queue");
        let QueuedEvent { name, ack, .. } = *event;
        Responder::for_event(&name, ack).refuse_unlogged(&socket.clone().into(), &CoreError::RateLimited("queued"));
    }
    Ok(Queued)
}

/// The event's argument as JSON. A missing or undecodable one becomes null, which validation
/// refuses clearly; JSON nested past the decoder's depth limit is refused here, and `None` is
/// returned.
fn decode<A: Adapter>(
    socket: &Arc<Socket<A>>,
    name: &str,
    value: &mut socketioxide_core::Value,
    ack_id: &Option<i64>,
    ack: &mut Option<AckSender<A>>,
) -> Option<Value> {
    let TryData(data) = TryData::<Value>::from_message_parts(socket, value, ack_id).unwrap_or(TryData(Ok(Value::Null)));
    match data {
        Ok(data) => Some(data),
        Err(err) if err.to_string().contains("recursion limit") => {
            let too_deep = CoreError::Validation("Payload is nested too deeply (at most 128 levels)".into());
            Responder::for_event(name, ack.take()).refuse(&SocketRef::from(socket.clone()), &too_deep);
            None
        }
        Err(_) => Some(Value::Null),
    }
}

/// Queues a valid state-setting event. Past its budget it waits, taking the place of an older
/// value of the same state still waiting: that one is never applied, and an acknowledgement its
/// sender asked for gets the newer one's answer, marked `coalesced: true`. A full queue (a flood
/// of other events ahead of it) refuses it like an event past its budget.
fn queue_state<A: Adapter>(socket: &Arc<Socket<A>>, inbox: &Inbox<A>, event: QueuedEvent<A>, class: EventClass) {
    let absorb = |newer: &mut Inbound<A>, older: Inbound<A>| {
        if let (Inbound::Event(newer), Inbound::Event(older)) = (newer, older) {
            let QueuedEvent { ack, superseded, .. } = *older;
            newer.superseded.extend(superseded.into_iter().chain(ack));
        }
    };
    let event = Inbound::Event(Box::new(event));
    match inbox.queue.push_state(event, class, || inbox.throttle.try_take(class), absorb) {
        Coalesced::Replaced => {
            telemetry::coalesced(class.as_str());
            tracing::trace!(socket = %socket.id, class = class.as_str(), "coalesced");
        }
        Coalesced::Full(Inbound::Event(event)) => {
            let QueuedEvent { name, ack, .. } = *event;
            refuse_flood(socket, &name, class, ack, inbox.throttle.refused());
        }
        Coalesced::Queued { .. } | Coalesced::Full(_) | Coalesced::Closed => {}
    }
}

/// An event that sets no state, past its budget. Unknown events are ignored anyway: they are
/// dropped unseen. Any other is refused (see [`refuse_flood`]). An acknowledgement the client
/// waits for is always answered.
fn over_budget<A: Adapter>(
    socket: &Arc<Socket<A>>,
    throttle: &Throttle,
    name: &str,
    class: EventClass,
    ack: Option<AckSender<A>>,
) {
    if class != EventClass::Other {
        return refuse_flood(socket, name, class, ack, throttle.refused());
    }
    telemetry::rate_limited(class.as_str());
    if let Some(ack) = ack {
        Responder::enhanced(name, Some(ack)).refuse_unlogged(&socket.clone().into(), &CoreError::RateLimited("other"));
    }
}

/// Drops an event over its socket's limit. An acknowledgement the client waits for is always
/// answered; otherwise the sender is told at most once a second, in the vocabulary of the event.
fn refuse_flood<A: Adapter>(
    socket: &Arc<Socket<A>>,
    name: &str,
    class: EventClass,
    ack: Option<AckSender<A>>,
    Refusal { notify, disconnect }: Refusal,
) {
    telemetry::rate_limited(class.as_str());
    let responder = Responder::for_event(name, ack);
    if notify || responder.awaits_ack() {
        responder.refuse_unlogged(&socket.clone().into(), &CoreError::RateLimited(class.as_str()));
    }
    if notify {
        tracing::warn!(socket = %socket.id, class = class.as_str(), event = %telemetry::event_label(name), "rate limited");
    }
    if disconnect {
        tracing::warn!(socket = %socket.id, class = class.as_str(), "disconnected: kept flooding past its rate limits");
        let socket = socket.clone();
        // Disconnecting runs the socket's disconnect handlers: not from inside packet decoding. It
        // fails while the socket's outgoing queue is full (a flooder that does not read): retry.
        tokio::spawn(async move {
            for _ in 0..50 {
                if !socket.connected() || socket.clone().disconnect().is_ok() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tracing::warn!(socket = %socket.id, "could not disconnect a flooding socket");
        });
    }
}

/// The handler every event is routed to; [`Queued`] has already queued it.
pub async fn on_any_event(_: Queued) {}

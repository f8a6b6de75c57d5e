//! One ordered queue per socket.
//!
//! socketioxide runs every event handler as its own task, so two events sent back to back can be
//! handled out of order. Extractors, though, run synchronously in the order packets arrive. The
//! [`Queued`] extractor therefore does the real work: it pushes the event into the socket's
//! bounded queue, which the socket's worker drains one event at a time.

use std::{convert::Infallible, sync::Arc, time::Duration};

use serde_json::Value;
use socketioxide::{
    adapter::Adapter,
    extract::{AckSender, Event, SocketRef, TryData},
    handler::FromMessageParts,
    socket::Socket,
};
use tokio::sync::mpsc;

use super::{
    enhanced_events::answer_clock_sync,
    respond::Responder,
    throttle::{EventClass, Throttle, Verdict},
};
use crate::{clock::precise_now_ms, core::CoreError, telemetry};

/// Something for a socket's worker to do, in arrival order.
pub enum Inbound<A: Adapter> {
    /// Boxed: the queue allocates room for 32 entries up front, per socket, so entries stay small.
    Event(Box<QueuedEvent<A>>),
    /// The connection closed, with Socket.IO's reason text.
    Disconnected(&'static str),
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
}

/// The sending half of a socket's queue and its rate limits, kept in the socket's extensions.
pub struct Inbox<A: Adapter> {
    pub queue: mpsc::Sender<Inbound<A>>,
    pub throttle: Arc<Throttle>,
}

impl<A: Adapter> Clone for Inbox<A> {
    fn clone(&self) -> Self {
        Self { queue: self.queue.clone(), throttle: self.throttle.clone() }
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
        let Some(Inbox { queue, throttle }) = socket.extensions.get::<Inbox<A>>() else {
            return Ok(Queued);
        };
        let received_at = precise_now_ms();
        let name = Event::from_message_parts(socket, value, ack_id).map(|e| e.0).unwrap_or_default();
        let class = EventClass::of(&name);
        if let Verdict::Refused { notify, disconnect } = throttle.check(class) {
            let ack = ack_id.map(|_| AckSender::from_message_parts(socket, value, ack_id).expect("infallible"));
            refuse_flood(socket, &name, class, ack, notify, disconnect);
            return Ok(Queued);
        }
        let TryData(data) =
            TryData::<Value>::from_message_parts(socket, value, ack_id).unwrap_or(TryData(Ok(Value::Null)));
        let ack = ack_id.map(|_| AckSender::from_message_parts(socket, value, ack_id).expect("infallible"));
        let data = match data {
            Ok(data) => data,
            // JSON nested past the decoder's depth limit: say so, rather than "payload required".
            Err(err) if err.to_string().contains("recursion limit") => {
                let too_deep = CoreError::Validation("Payload is nested too deeply (at most 128 levels)".into());
                Responder::for_event(&name, ack).refuse(&SocketRef::from(socket.clone()), &too_deep);
                return Ok(Queued);
            }
            // A missing or otherwise undecodable argument becomes null, which validation refuses clearly.
            Err(_) => Value::Null,
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
        let event = Inbound::Event(Box::new(QueuedEvent { name, data, ack }));
        if let Err(mpsc::error::TrySendError::Full(Inbound::Event(event))) = queue.try_send(event) {
            tracing::warn!(socket = %socket.id, event = %telemetry::event_label(&event.name), "event queue full; event dropped");
            telemetry::rate_limited("queue");
            let QueuedEvent { name, ack, .. } = *event;
            Responder::for_event(&name, ack).refuse_unlogged(&socket.clone().into(), &CoreError::RateLimited("queued"));
        }
        Ok(Queued)
    }
}

/// Drops an event over its socket's limit. An acknowledgement the client waits for is always
/// answered; otherwise the sender is told at most once a second, in the vocabulary of the event.
fn refuse_flood<A: Adapter>(
    socket: &Arc<Socket<A>>,
    name: &str,
    class: EventClass,
    ack: Option<AckSender<A>>,
    notify: bool,
    disconnect: bool,
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

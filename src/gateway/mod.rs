//! The Socket.IO side: connection set-up, the per-socket queue and worker, delivery of events.
//!
//! Every socket gets a bounded queue ([`inbox`], [`queue`]) and one worker task ([`worker`]) that
//! handles its events strictly in arrival order; state-setting events past their budget
//! ([`throttle`]) wait in the queue, coalesced, instead of being refused. Set-up happens in a
//! connect middleware, which runs before the client is told it is connected, so no early event
//! can slip past the queue. When a connection drops, its worker holds the seat for the
//! reconnection grace ([`grace`]).

pub mod admission;
pub mod deliver;
mod enhanced_events;
pub mod grace;
pub mod inbox;
mod legacy_events;
pub mod legacy_use;
pub mod locks;
pub mod quality;
pub mod queue;
pub mod respond;
pub mod rooms;
pub mod server_changes;
pub mod throttle;
mod worker;

use std::sync::Arc;

use socketioxide::{
    SocketIo,
    adapter::Adapter,
    extract::{SocketRef, TryData},
    handler::ConnectHandler,
    socket::DisconnectReason,
};
use socketioxide_core::adapter::DefinedAdapter;

use crate::{clock, state::AppState, telemetry};

use admission::{AdmissionTicket, Refusal};
use inbox::{Inbound, Inbox};
use queue::EventQueue;
use throttle::Throttle;

/// Registers the namespace `/` on `io`; with a distributed adapter, the result is its start-up.
pub fn register<A: Adapter + DefinedAdapter>(io: &SocketIo<A>, app: Arc<AppState>) -> A::InitRes {
    let setup = {
        let app = app.clone();
        move |socket: SocketRef<A>, TryData(auth): TryData<serde_json::Value>| {
            let app = app.clone();
            async move {
                let ticket = admit(&socket, &app, &auth.unwrap_or_default())?;
                socket.extensions.insert(ticket);
                set_up(socket, app);
                Ok::<(), Refusal>(())
            }
        }
    };
    let io_for_workers = io.clone();
    let connected = move |socket: SocketRef<A>| {
        let (app, io) = (app.clone(), io_for_workers.clone());
        async move { on_connected(socket, io, app) }
    };
    io.ns("/", connected.with(setup))
}

/// Checks the token and the connection caps; a refusal becomes the client's `connect_error`.
fn admit<A: Adapter>(
    socket: &SocketRef<A>,
    app: &AppState,
    auth: &serde_json::Value,
) -> Result<Arc<AdmissionTicket>, Refusal> {
    let request = socket.req_parts();
    let address = admission::client_address(request, app.config.trust_proxy);
    let admitted =
        admission::check_token(&app.config, request, auth).and_then(|()| app.admission.admit(&app.config, address));
    if let Err(refusal) = &admitted {
        let address = address.map(|a| a.to_string()).unwrap_or_default();
        tracing::warn!(socket = %socket.id, %address, reason = %refusal, "connection refused");
        telemetry::connection_refused(refusal.label());
    }
    admitted
}

/// Gives the socket its queue before the client is told it is connected, so no event can slip
/// past it; the worker draining it starts once the socket is connected (see [`on_connected`]).
fn set_up<A: Adapter>(socket: SocketRef<A>, app: Arc<AppState>) {
    let inbox = Inbox::<A> {
        queue: Arc::new(EventQueue::new(app.config.max_queued_events as usize)),
        throttle: Arc::new(Throttle::new(&app.rate_limits)),
        limits: app.limits,
    };
    socket.extensions.insert(inbox);
    socket.join(rooms::socket(&socket.id.to_string()));
    socket.on_fallback(inbox::on_any_event);
    socket.on_disconnect(on_disconnect::<A>);
}

/// socketioxide marks a socket connected only after the middleware has run and the client has
/// been sent its CONNECT: anything emitted before then is dropped. So the worker, which may answer
/// the first events at once, starts here; events that came first wait in its queue.
fn on_connected<A: Adapter>(socket: SocketRef<A>, io: SocketIo<A>, app: Arc<AppState>) {
    tracing::info!(socket = %socket.id, transport = ?socket.transport_type(), protocol = ?socket.protocol(), "connected");
    respond::emit(&socket, "auth:handshake", &handshake(&app));
    if let Some(inbox) = socket.extensions.get::<Inbox<A>>() {
        let transport = match socket.transport_type() {
            socketioxide::TransportType::Websocket => "websocket",
            socketioxide::TransportType::Polling => "polling",
        };
        // Counted here, where the worker that counts the close starts: a socket whose CONNECT
        // could not be sent never gets this far, nor a disconnect.
        app.connections.opened();
        telemetry::connection_opened(transport);
        tokio::spawn(worker::run(socket, io, inbox, app, transport));
    }
}

/// `auth:handshake`: what this server speaks and its limits, sent to every socket on connect.
fn handshake(app: &AppState) -> serde_json::Value {
    let config = &app.config;
    serde_json::json!({
        "serverId": app.server_id,
        "serverVersion": env!("CARGO_PKG_VERSION"),
        "protocols": ["legacy", "enhanced"],
        "features": ["clock-sync", "tempo-ramps", "scheduled-start", "position-correction", "band-discovery", "metrics-feed"],
        "limits": {
            "maxSessionMembers": config.max_session_members,
            "syncRateMs": config.sync_rate_ms,
            "maxPayloadBytes": config.socket_max_payload_bytes,
        },
        "serverTime": clock::precise_now_ms(),
    })
}

async fn on_disconnect<A: Adapter>(socket: SocketRef<A>, reason: DisconnectReason) {
    tracing::info!(socket = %socket.id, reason = %reason, "disconnected");
    if let Some(Inbox { queue, .. }) = socket.extensions.get::<Inbox<A>>() {
        // Queued behind the socket's last events, so they are all handled before it leaves.
        queue.push_notice(Inbound::Disconnected(reason));
    }
}

/// The reason strings socket.io's Node server uses, which clients and logs already know.
pub(crate) fn reason_text(reason: DisconnectReason) -> &'static str {
    match reason {
        DisconnectReason::TransportClose => "transport close",
        DisconnectReason::TransportError | DisconnectReason::MultipleHttpPollingError => "transport error",
        DisconnectReason::PacketParsingError => "parse error",
        DisconnectReason::HeartbeatTimeout => "ping timeout",
        DisconnectReason::ClientNSDisconnect => "client namespace disconnect",
        DisconnectReason::ServerNSDisconnect => "server namespace disconnect",
        DisconnectReason::ClosingServer => "server shutting down",
    }
}

//! One raw Socket.IO client over one websocket, built to run by the thousand in one process.
//!
//! [`Client::connect`] does the Engine.IO open and the Socket.IO namespace connect, then hands the
//! websocket to one task that owns it: it answers heartbeats, writes what the [`Client`] handles
//! queue, routes acknowledgements and decodes each event just enough for the caller's handler.
//! Dropping every handle (or [`Client::close`]) closes the connection.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{
    net::TcpStream,
    sync::{mpsc, oneshot},
};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async_with_config,
    tungstenite::{Message, protocol::WebSocketConfig},
};

use super::{
    tally::{ConnectionCounts, Tally},
    wire::{self, Fields, Packet},
};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Read buffer per connection: frames here are small, and the default (128 KiB, allocated up front)
/// would cost over a gigabyte across 10 000 sockets. It grows if a larger frame arrives.
const READ_BUFFER: usize = 4 * 1024;

/// Longest wait for the TCP connect, the websocket upgrade and the Socket.IO connect together.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A wait for the first of some event names, with where to send that event.
type Waiter = (&'static [&'static str], oneshot::Sender<(String, Fields)>);

#[derive(Debug)]
enum Command {
    Send(String),
    SendWithAck { id: u64, frame: String, reply: oneshot::Sender<Value> },
    Expect { names: &'static [&'static str], reply: oneshot::Sender<(String, Fields)> },
    Close,
}

/// Connection settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Answer the legacy app-level `ping {timestamp}` event with `pong {timestamp}`, as the app does.
    pub answer_legacy_ping: bool,
}

/// A handle on one connection; cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    /// The Socket.IO socket id, as the server writes it in `socketId` and `leaderSocketId`.
    pub socket_id: String,
    commands: mpsc::UnboundedSender<Command>,
    next_ack: Arc<AtomicU64>,
}

impl Client {
    /// Connects to `endpoint` (a `ws://…/socket.io/?EIO=4&transport=websocket` URL) and joins the
    /// default namespace. `handler` sees every event after that, on the connection's own task.
    pub async fn connect<H>(endpoint: &str, tally: Arc<Tally>, options: Options, handler: H) -> anyhow::Result<Client>
    where
        H: FnMut(&str, &Fields) + Send + 'static,
    {
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
        let opening = async {
            // No Nagle: a latency measurement must not wait for a delayed ACK.
            let (mut ws, _) = connect_async_with_config(endpoint, Some(config), true).await?;
            let socket_id = handshake(&mut ws).await?;
            anyhow::Ok((ws, socket_id))
        };
        let (ws, socket_id) = tokio::time::timeout(HANDSHAKE_TIMEOUT, opening)
            .await
            .with_context(|| format!("no Socket.IO connect within {HANDSHAKE_TIMEOUT:?}"))??;
        let (commands, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(ws, queue, handler, ConnectionCounts::new(tally), options));
        Ok(Client { socket_id, commands, next_ack: Arc::new(AtomicU64::new(0)) })
    }

    /// Sends an event without asking for an acknowledgement.
    pub fn emit(&self, name: &str, payload: Value) {
        // A closed connection drops the event; callers notice through `closed()` or a timeout.
        let _ = self.commands.send(Command::Send(wire::encode_event(name, &payload, None)));
    }

    /// Sends an event with an acknowledgement and waits up to `timeout` for its first answer.
    pub async fn emit_with_ack(&self, name: &str, payload: Value, timeout: Duration) -> anyhow::Result<Value> {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        let frame = wire::encode_event(name, &payload, Some(id));
        self.commands.send(Command::SendWithAck { id, frame, reply }).map_err(|_| anyhow!("connection closed"))?;
        tokio::time::timeout(timeout, answer)
            .await
            .with_context(|| format!("no acknowledgement of {name} within {timeout:?}"))?
            .map_err(|_| anyhow!("connection closed before the acknowledgement of {name}"))
    }

    /// Sends an event and waits up to `timeout` for the first of `names` to arrive after it; the
    /// server's answer to events that take no acknowledgement (legacy `join_session` → `snapshot`).
    pub async fn emit_and_expect(
        &self,
        name: &str,
        payload: Value,
        names: &'static [&'static str],
        timeout: Duration,
    ) -> anyhow::Result<(String, Fields)> {
        let (reply, answer) = oneshot::channel();
        // Queued before the event itself, so the answer cannot slip past the wait.
        self.commands.send(Command::Expect { names, reply }).map_err(|_| anyhow!("connection closed"))?;
        self.emit(name, payload);
        tokio::time::timeout(timeout, answer)
            .await
            .with_context(|| format!("no {names:?} within {timeout:?} after {name}"))?
            .map_err(|_| anyhow!("connection closed while waiting for {names:?}"))
    }

    /// Closes the websocket (the server sees a client disconnect at once).
    pub fn close(&self) {
        let _ = self.commands.send(Command::Close);
    }

    /// Completes when the connection's task has ended, whoever closed it.
    pub async fn closed(&self) {
        self.commands.closed().await;
    }

    pub fn is_closed(&self) -> bool {
        self.commands.is_closed()
    }
}

/// Waits for the Engine.IO open packet, joins the default namespace, and returns the socket id.
async fn handshake(ws: &mut Ws) -> anyhow::Result<String> {
    let mut opened = false;
    loop {
        let frame = match ws.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | None => bail!("the server closed the websocket during the handshake"),
            Some(Ok(_)) => continue,
            Some(Err(err)) => return Err(err.into()),
        };
        match wire::classify(frame.as_str()) {
            Packet::Open if !opened => {
                opened = true;
                ws.send(Message::text("40")).await?;
            }
            Packet::Ping => ws.send(Message::text("3")).await?,
            Packet::Connect(Some(sid)) if opened => return Ok(sid),
            Packet::ConnectError(data) => bail!("the server refused the namespace connect: {data}"),
            Packet::Close | Packet::Disconnect => bail!("the server closed the connection during the handshake"),
            // Nothing else is expected before the connect packet; anything that comes is skipped.
            _ => {}
        }
    }
}

/// The connection's task: one loop, reading frames and writing queued commands, until either side
/// closes.
async fn run<H>(
    mut ws: Ws,
    mut queue: mpsc::UnboundedReceiver<Command>,
    mut handler: H,
    mut counts: ConnectionCounts,
    options: Options,
) where
    H: FnMut(&str, &Fields) + Send + 'static,
{
    let mut acks: HashMap<u64, oneshot::Sender<Value>> = HashMap::new();
    let mut waiters: Vec<Waiter> = Vec::new();
    loop {
        tokio::select! {
            frame = ws.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => continue,
                };
                let reply = match wire::classify(text.as_str()) {
                    Packet::Ping => Some("3".to_owned()),
                    Packet::Close | Packet::Disconnect => break,
                    Packet::Ack(id, data) => {
                        if let Some(reply) = acks.remove(&id) {
                            let _ = reply.send(wire::decode_ack(data));
                        }
                        None
                    }
                    Packet::Event(data) => match wire::decode_event(data) {
                        Some((name, fields)) => {
                            counts.add(name);
                            deliver_waiters(&mut waiters, name, &fields);
                            handler(name, &fields);
                            match fields.timestamp {
                                Some(ts) if options.answer_legacy_ping && name == "ping" => {
                                    Some(wire::encode_event("pong", &json!({ "timestamp": ts }), None))
                                }
                                _ => None,
                            }
                        }
                        None => None,
                    },
                    _ => None,
                };
                if let Some(reply) = reply
                    && ws.send(Message::text(reply)).await.is_err()
                {
                    break;
                }
            }
            command = queue.recv() => {
                let frame = match command {
                    Some(Command::Send(frame)) => frame,
                    Some(Command::SendWithAck { id, frame, reply }) => {
                        acks.insert(id, reply);
                        frame
                    }
                    Some(Command::Expect { names, reply }) => {
                        waiters.push((names, reply));
                        continue;
                    }
                    Some(Command::Close) | None => {
                        let _ = ws.close(None).await;
                        break;
                    }
                };
                if ws.send(Message::text(frame)).await.is_err() {
                    break;
                }
            }
        }
    }
    // Dropping `counts` hands in the last of them and counts the connection out.
}

fn deliver_waiters(waiters: &mut Vec<Waiter>, name: &str, fields: &Fields) {
    let mut i = 0;
    while i < waiters.len() {
        if waiters[i].0.contains(&name) {
            let (_, reply) = waiters.swap_remove(i);
            let _ = reply.send((name.to_owned(), fields.clone()));
        } else {
            i += 1;
        }
    }
}

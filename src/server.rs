//! Builds an instance from its settings and serves it until shut down.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use fred::clients::SubscriberClient;
use socketioxide::{SocketIo, adapter::Adapter};
use socketioxide_core::adapter::DefinedAdapter;
use socketioxide_redis::{FredAdapter, RedisAdapterConfig, RedisAdapterCtr, drivers::fred::FredDriver};
use tokio::{net::TcpListener, task::JoinHandle};

use crate::{
    config::Config,
    delivery::Deliveries,
    gateway::{self, throttle::RateLimits},
    http,
    protocol::Limits,
    state::{AppState, ConnectionCounts},
    store::{
        Backend, MemoryStore, RedisStore, SessionStore,
        redis::{self, Keys},
    },
    sync::Ticker,
    tasks, telemetry,
};

/// Packets a socket may have waiting to be written, at the least. Bursts (a join's snapshot and
/// stats, then a tick) must fit, and a slow client must not cost its heartbeat; socketioxide's
/// default is 128. See [`socket_buffer_packets`].
const MIN_SOCKET_BUFFER_PACKETS: usize = 1024;

/// Streams share each socket's queue with everything else (`sync::ticker`), so the queue must hold
/// all that a client can fall behind by before the Engine.IO heartbeat gives up on it: a ping
/// interval and a ping timeout of stream (80 Hz, with beats and changes: a quarter more). A client
/// whose network stalls is then cut by the heartbeat (its seat held for the reconnection grace, and
/// its reconnection brings the session as it is) before anything is dropped from its queue, a
/// change included. The queue grows only as it fills.
fn socket_buffer_packets(config: &Config) -> usize {
    let silent_ms = (config.socket_ping_interval_ms + config.socket_ping_timeout_ms) as f64;
    let packets = silent_ms / config.sync_rate_ms * 1.25;
    (packets.ceil() as usize).max(MIN_SOCKET_BUFFER_PACKETS)
}

/// Each websocket's read buffer, allocated for as long as it is open. Client messages are a few
/// hundred bytes; a rare large one is read in several steps.
const WS_READ_BUFFER_BYTES: usize = 1024;

/// How long shutdown waits for connections to close before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

/// Closes every Socket.IO connection of the instance (whatever its adapter).
type CloseAll = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Starts the ticker and the periodic tasks; they run until aborted.
type StartBackground = Box<dyn FnOnce() -> Vec<JoinHandle<()>> + Send>;

/// A bound, not yet serving, instance.
pub struct Server {
    listener: TcpListener,
    /// `METRICS_PORT`'s listener, when Prometheus scrapes apart from the clients.
    metrics_listener: Option<TcpListener>,
    router: axum::Router,
    app: Arc<AppState>,
    start_background: StartBackground,
    close_all: CloseAll,
}

impl Server {
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        let listener = http::listener::bind(&config.host, config.port)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}:{}: {e}", config.host, config.port))?;
        let port = listener.local_addr()?.port();
        let metrics_listener = match config.metrics_port {
            Some(metrics_port) => {
                Some(TcpListener::bind((config.host.as_str(), metrics_port)).await.map_err(|e| {
                    anyhow::anyhow!("cannot listen on {}:{metrics_port} (METRICS_PORT): {e}", config.host)
                })?)
            }
            None => None,
        };
        let server_id = config.server_id.clone().unwrap_or_else(|| default_server_id(port));
        let builder = SocketIo::builder()
            .req_path("/socket.io")
            .ping_interval(Duration::from_millis(config.socket_ping_interval_ms))
            .ping_timeout(Duration::from_millis(config.socket_ping_timeout_ms))
            .max_payload(config.socket_max_payload_bytes)
            .ws_max_message_size(config.socket_max_payload_bytes as usize)
            .ws_max_frame_size(config.socket_max_payload_bytes as usize)
            .max_buffer_size(socket_buffer_packets(&config))
            .ws_read_buffer_size(WS_READ_BUFFER_BYTES);

        if !config.redis_enabled() {
            let app = app_state(config, server_id, Arc::new(MemoryStore::new()));
            let (layer, io) = builder.build_layer();
            let router = http::cross_origin::protect(http::routes(app.clone()).layer(layer), &app.config);
            let ((), start_background, close_all) = wire(io, app.clone());
            return Ok(Self { listener, metrics_listener, router, app, start_background, close_all });
        }

        let store = RedisStore::connect(&config, &server_id).await?;
        let (adapter, subscriber) = redis_adapter(&config).await?;
        let app = app_state(config, server_id, store);
        let (layer, io) = builder.with_adapter::<FredAdapter<_>>(adapter).build_layer();
        let router = http::cross_origin::protect(http::routes(app.clone()).layer(layer), &app.config);
        let (init, start_background, close_all) = wire(io.clone(), app.clone());
        tokio::time::timeout(redis::CONNECT_TIMEOUT, init)
            .await
            .map_err(|_| anyhow::anyhow!("the Socket.IO Redis adapter did not start in time"))?
            .map_err(|e| anyhow::anyhow!("the Socket.IO Redis adapter did not start: {e}"))?;
        // Only once the adapter has subscribed may its client resubscribe by itself after a
        // reconnect (earlier, it would resubscribe to nothing, which Redis refuses).
        subscriber.manage_subscriptions();
        // Members this instance held before a restart cannot be connected any more.
        tasks::evict_lost_members(&app, true).await;
        Ok(Self { listener, metrics_listener, router, app, start_background, close_all })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// Where `/metrics` is served apart, with `METRICS_PORT`.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then disconnects every client and returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Self { listener, metrics_listener, router, app, start_background, close_all } = self;
        tracing::info!(addr = %listener.local_addr()?, server_id = %app.server_id, "listening");
        let mut background = start_background();
        let read_timeout = Duration::from_millis(app.config.http_read_timeout_ms);
        if let Some(metrics_listener) = metrics_listener {
            tracing::info!(addr = %metrics_listener.local_addr()?, "metrics listening");
            let metrics = http::cross_origin::protect(http::metrics_routes().with_state(app.clone()), &app.config);
            background.push(tokio::spawn(async move {
                let never = std::future::pending();
                if let Err(err) = http::listener::serve(metrics_listener, metrics, read_timeout, never).await {
                    tracing::error!(%err, "metrics listener failed");
                }
            }));
        }

        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
        let drain = {
            let app = app.clone();
            async move {
                shutdown.await;
                tracing::info!("shutting down: disconnecting clients");
                app.begin_draining();
                close_all().await;
                closed_tx.send(()).ok();
            }
        };
        let serving = tokio::spawn(http::listener::serve(listener, router, read_timeout, drain));
        // Long-polling requests and upgraded websockets may outlive the close; give them a bounded grace.
        closed_rx.await.ok();
        let waited = tokio::time::Instant::now();
        if tokio::time::timeout(SHUTDOWN_GRACE, serving).await.is_err() {
            tracing::warn!("connections still open after the grace period; closing anyway");
        }
        // Seats held for dropped connections end when draining begins; their leaves are stored
        // (with Redis, for the other instances) before the process goes.
        while app.graces.count() > 0 && waited.elapsed() < SHUTDOWN_GRACE {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for task in background {
            task.abort();
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Registers the socket handlers on `io` and prepares what runs beside them.
fn wire<A: Adapter + DefinedAdapter>(io: SocketIo<A>, app: Arc<AppState>) -> (A::InitRes, StartBackground, CloseAll) {
    let init = gateway::register(&io, app.clone());
    let background_io = io.clone();
    let start_background: StartBackground = Box::new(move || {
        vec![
            tokio::spawn(Ticker::run(app.clone(), background_io.clone())),
            tokio::spawn(tasks::sweep_idle_sessions(app.clone(), background_io.clone())),
            tokio::spawn(tasks::metrics_feed(app.clone(), background_io.clone())),
            tokio::spawn(tasks::metrics_upkeep()),
            tokio::spawn(tasks::instance_heartbeat(app.clone())),
            tokio::spawn(tasks::unseat_members_of_lost_instances(app.clone())),
            tokio::spawn(tasks::deliver_other_instances_changes(app.clone())),
            tokio::spawn(tasks::check_seats_of_rewritten_sessions(app.clone(), background_io)),
            tokio::spawn(tasks::follow_remote_changes(app)),
        ]
    });
    let close_all: CloseAll = Box::new(move || Box::pin(async move { io.close().await }));
    (init, start_background, close_all)
}

fn app_state(config: Config, server_id: String, store: Arc<dyn SessionStore>) -> Arc<AppState> {
    telemetry::handle();
    telemetry::build_info(&server_id);
    telemetry::connections_max(config.max_connections);
    // The store may have connected before the recorder was installed: say so again.
    if store.backend() == Backend::Connected {
        telemetry::redis_connected(true);
    }
    Arc::new(AppState {
        limits: Limits { max_name: config.max_name_length as usize, max_message: config.max_message_length as usize },
        rate_limits: RateLimits::from_settings(&config.rate_limits),
        admission: Default::default(),
        server_id,
        store,
        locks: Default::default(),
        ticker: Ticker::default(),
        connections: ConnectionCounts::default(),
        sync_stats: Default::default(),
        started_at: Instant::now(),
        graces: Default::default(),
        deliveries: Deliveries::new(Duration::from_millis(config.reorder_wait_ms)),
        draining: tokio::sync::watch::Sender::new(false),
        config,
    })
}

/// The Socket.IO Redis adapter: room broadcasts reach the sockets of every instance.
async fn redis_adapter(config: &Config) -> anyhow::Result<(RedisAdapterCtr<FredDriver>, SubscriberClient)> {
    let (fred, place) = redis::fred_config(config)?;
    let subscriber = redis::builder(fred).build_subscriber_client()?;
    let adapter_config = RedisAdapterConfig::default().with_prefix(Keys::new(&config.redis_key_prefix).adapter());
    let construct = RedisAdapterCtr::new_with_fred_config(subscriber.clone(), adapter_config);
    let adapter = tokio::time::timeout(redis::CONNECT_TIMEOUT, construct)
        .await
        .map_err(|_| {
            anyhow::anyhow!("cannot connect to Redis at {place}: no answer within {:?}", redis::CONNECT_TIMEOUT)
        })?
        .map_err(|e| anyhow::anyhow!("cannot connect to Redis at {place}: {e}"))?;
    Ok((adapter, subscriber))
}

/// `<host name>:<port>`: the same after a restart, so the instance can tell its own members from
/// before the restart apart from live ones.
fn default_server_id(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "bandsync".into());
    format!("{host}:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_queue_outlasts_the_heartbeat() {
        let mut config = Config::for_tests();
        // 25 s + 20 s of 80 Hz stream, and a quarter more.
        assert_eq!(socket_buffer_packets(&config), 4_500);
        config.socket_ping_interval_ms = 5_000;
        config.socket_ping_timeout_ms = 5_000;
        assert_eq!(socket_buffer_packets(&config), MIN_SOCKET_BUFFER_PACKETS);
    }
}

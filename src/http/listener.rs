//! Accepting HTTP connections, with the timeouts and socket options `axum::serve` leaves out.
//!
//! - A client must send a request's headers, and its body, within `HTTP_READ_TIMEOUT_MS`;
//!   otherwise a half-open connection (a request line sent slowly, headers never finished, a body
//!   shorter than its `Content-Length`) would hold a connection and a task for ever.
//! - `TCP_NODELAY`: a stream of small frames (80 position updates a second) must not wait for
//!   the previous frame's acknowledgement, as Nagle's algorithm would make it.
//!
//! Upgraded connections (websockets) are handed over to Socket.IO and no longer timed here.
//! A Socket.IO request's head is copied out of the connection's read buffer first
//! ([`super::owned_head`]), so a long-lived socket does not keep that buffer.

use std::{future::Future, io, pin::pin, time::Duration};

use axum::{Router, body::Body, extract::ConnectInfo, http::Request};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    net::{TcpListener, TcpSocket},
    sync::watch,
};
use tower::ServiceExt;
use tower_http::timeout::RequestBodyTimeoutLayer;

/// Connections waiting to be accepted. A band's worth of clients reconnecting at once after a
/// restart, times many bands, must not overflow it (an overflow costs a client a 1 s SYN retry).
const LISTEN_BACKLOG: u32 = 4096;

/// Listens on `host` (an address or a name) and `port`, with a deep accept queue.
pub async fn bind(host: &str, port: u16) -> io::Result<TcpListener> {
    let mut last_error = io::Error::new(io::ErrorKind::AddrNotAvailable, "the host resolves to no address");
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(err) => last_error = err,
        }
    }
    Err(last_error)
}

/// Serves `router` on `listener` until `shutdown` completes, then waits for open requests to end
/// (upgraded websockets are closed by Socket.IO's own shutdown).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let router = router.layer(RequestBodyTimeoutLayer::new(read_timeout));
    // Shutdown is announced to every connection's task through `stop`; each holds a `running`
    // receiver, so the server knows when the last one has finished.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (running_tx, running_rx) = watch::channel(());
    // HTTP/1 only, as every Socket.IO client speaks: detecting HTTP/2 first would wait for the
    // client's first bytes without a timeout, while this one starts counting at once.
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(read_timeout);
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // pause briefly rather than spin, and keep serving.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        stream.set_nodelay(true).ok();
        let service = router.clone().map_request(move |mut request: Request<Incoming>| {
            // For MAX_CONNECTIONS_PER_IP.
            request.extensions_mut().insert(ConnectInfo(peer));
            super::owned_head::own_socket_io_head(&mut request);
            request.map(Body::new)
        });
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)).with_upgrades();
        let (mut stop, running) = (stop_rx.clone(), running_rx.clone());
        tokio::spawn(async move {
            let mut connection = pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = async { stop.wait_for(|stopping| *stopping).await.map(|_| ()) } => {
                    // Finish the request in progress, then close.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = result {
                tracing::debug!(%peer, %err, "connection ended with an error");
            }
            drop(running);
        });
    }
    drop(listener);
    stop_tx.send(true).ok();
    drop(running_rx);
    running_tx.closed().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_request_never_finished_is_closed_after_the_read_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let router = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        tokio::spawn(serve(listener, router, Duration::from_millis(200), std::future::pending()));

        for opening in [&b"GET / HTTP/1.1\r\nHost: x\r\n"[..], b"", b"PRI * HTTP/2.0\r\n"] {
            let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
            slow.write_all(opening).await.unwrap();
            let mut rest = Vec::new();
            let closed = tokio::time::timeout(Duration::from_secs(3), slow.read_to_end(&mut rest)).await;
            assert!(closed.is_ok(), "{:?}: the half-open connection was not closed", String::from_utf8_lossy(opening));
        }

        let mut quick = tokio::net::TcpStream::connect(addr).await.unwrap();
        quick.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        quick.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"), "{answer}");
    }
}

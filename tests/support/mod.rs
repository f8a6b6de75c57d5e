//! Helpers shared by the integration tests: an in-process server on a free port, and a tiny
//! HTTP/1.1 client so the tests need no extra dependencies.

#![allow(dead_code)] // each test binary uses its own part of the helpers

pub mod redis;

use std::{net::SocketAddr, time::Duration};

use bandsync_server::{config::Config, server::Server};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::oneshot,
    task::JoinHandle,
};

pub struct Running {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub async fn start(config: Config) -> Self {
        let server = Server::bind(config).await.expect("server binds");
        let addr = server.local_addr();
        let metrics_addr = server.metrics_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move {
            stopped.await.ok();
        }));
        Self { addr, metrics_addr, stop: Some(stop), task }
    }

    /// Signals shutdown and waits for the server to return, at most `limit`.
    pub async fn shut_down(mut self, limit: Duration) -> anyhow::Result<()> {
        self.stop.take().expect("not yet stopped").send(()).ok();
        tokio::time::timeout(limit, self.task).await.expect("server stops in time").expect("server task does not panic")
    }
}

/// `GET path`: the status code and the body parsed as JSON.
pub async fn get_json(addr: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = get(addr, path).await;
    (status, serde_json::from_str(body.trim()).expect("JSON body"))
}

/// `GET path`: the status code and the body text.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("headers end");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status code");
    (status, body.to_owned())
}

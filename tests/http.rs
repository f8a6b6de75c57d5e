//! The HTTP routes of a running instance, and its shutdown.

mod support;

use std::time::Duration;

use bandsync_server::config::Config;
use support::{Running, get, get_json};

#[tokio::test]
async fn index_and_health_describe_the_instance() {
    let mut config = Config::for_tests();
    config.server_id = Some("test-instance".into());
    let server = Running::start(config).await;

    let (status, index) = get_json(server.addr, "/").await;
    assert_eq!(status, 200);
    assert_eq!(index["ok"], true);
    assert_eq!(index["service"], "bandsync-server");
    assert_eq!(index["version"], env!("CARGO_PKG_VERSION"));

    let (status, health) = get_json(server.addr, "/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["redis"], "disabled");
    assert_eq!(health["serverId"], "test-instance");
    assert_eq!(health["connections"]["current"], 0);
    assert_eq!(health["sessions"]["active"], 0);

    assert_eq!(get_json(server.addr, "/livez").await.0, 200);
    assert_eq!(get_json(server.addr, "/readyz").await.0, 200);
    server.shut_down(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn shutdown_returns_promptly_when_idle() {
    let server = Running::start(Config::for_tests()).await;
    server.shut_down(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn metrics_move_to_their_own_port_when_asked() {
    let shared = Running::start(Config::for_tests()).await;
    let (status, text) = get(shared.addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(text.contains("bandsync_build_info"), "{text}");
    shared.shut_down(Duration::from_secs(5)).await.unwrap();

    let mut config = Config::for_tests();
    config.metrics_port = Some(0);
    let apart = Running::start(config).await;
    let metrics_addr = apart.metrics_addr.expect("a metrics listener");
    assert_ne!(metrics_addr, apart.addr);
    let (status, text) = get(metrics_addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(text.contains("# HELP bandsync_build_info"), "{text}");
    assert_eq!(get(apart.addr, "/metrics").await.0, 404, "not on the clients' port");
    assert_eq!(get_json(apart.addr, "/health").await.0, 200);
    apart.shut_down(Duration::from_secs(5)).await.unwrap();
}

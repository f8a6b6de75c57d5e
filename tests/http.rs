//! The HTTP routes of a running instance, and its shutdown.

mod support;

use std::time::Duration;

use bandsync_server::config::Config;
use support::{Running, get_json};

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

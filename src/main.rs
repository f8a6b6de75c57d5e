//! The `bandsync-server` binary: settings, logging, then serve until SIGINT or SIGTERM.

use bandsync_server::{
    config::{Config, LogFormat},
    server::Server,
};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // A missing .env is normal; variables already set win over the file.
    dotenvy::dotenv().ok();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("bandsync-server: invalid setting\n{err}");
            return std::process::ExitCode::from(2);
        }
    };
    init_tracing(&config);
    match run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("bandsync-server: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let server = Server::bind(config).await?;
    server.serve(shutdown_signal()).await
}

fn init_tracing(config: &Config) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if config.debug_sync_engine {
        filter = filter.add_directive("bandsync_server::sync=debug".parse().expect("valid directive"));
    }
    if config.debug_redis_events {
        for directive in ["bandsync_server::store::redis=debug", "socketioxide_redis=debug", "fred=info"] {
            filter = filter.add_directive(directive.parse().expect("valid directive"));
        }
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

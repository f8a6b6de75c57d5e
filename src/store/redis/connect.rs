//! Connecting to Redis: settings to a fred client, and start-up that fails clearly, not a hang.

use std::time::Duration;

use fred::{
    prelude::{Builder, ClientLike, Config as FredConfig, ReconnectPolicy, ServerConfig},
    types::RespVersion,
};

use crate::config::Config;

/// How long start-up waits for Redis before giving up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A command waits this long at most; during an outage the instance works from its cache instead.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// The fred settings for `config`, and a description of where that is (no password) for logs.
pub fn fred_config(config: &Config) -> anyhow::Result<(FredConfig, String)> {
    let (mut fred, place) = if let Some(nodes) = &config.redis_cluster_nodes {
        let place = nodes.0.iter().map(|(h, p)| format!("{h}:{p}")).collect::<Vec<_>>().join(",");
        (FredConfig { server: ServerConfig::new_clustered(nodes.0.clone()), ..FredConfig::default() }, place)
    } else if let Some(url) = &config.redis_url {
        let fred =
            FredConfig::from_url(url).map_err(|e| anyhow::anyhow!("REDIS_URL is not a usable Redis URL: {e}"))?;
        (fred, redact(url))
    } else {
        let host = config.redis_host.clone().unwrap_or_else(|| "127.0.0.1".into());
        let place = format!("{host}:{}", config.redis_port);
        (FredConfig { server: ServerConfig::new_centralized(host, config.redis_port), ..FredConfig::default() }, place)
    };
    if config.redis_password.is_some() {
        fred.password = config.redis_password.clone();
    }
    if config.redis_db != 0 {
        fred.database = Some(config.redis_db);
    }
    // The Socket.IO adapter's sharded pub/sub needs RESP3.
    fred.version = RespVersion::RESP3;
    fred.fail_fast = true;
    Ok((fred, place))
}

/// A builder with the reconnect policy and timeouts every client of this server uses.
/// Pub/sub messages a client holds for its readers. Every change on another instance is two
/// messages (its announcement, its cache notice), and a leader's burst of tempo changes comes all
/// at once: with fred's default of 32, a reader kept from running for a moment falls behind, and
/// each announcement it misses reaches the members as a resync instead of as the change.
const NOTIFICATION_BUFFER: usize = 16_384;

pub fn builder(fred: FredConfig) -> Builder {
    let mut builder = Builder::from_config(fred);
    builder
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(3);
            c.internal_command_timeout = Duration::from_secs(3);
            c.max_command_attempts = 1;
        })
        .with_performance_config(|p| {
            p.default_command_timeout = COMMAND_TIMEOUT;
            p.broadcast_channel_capacity = NOTIFICATION_BUFFER;
        })
        // Retry forever, quickly at first: an outage ends whenever Redis comes back.
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
    builder
}

/// Connects `client`, or explains why not within [`CONNECT_TIMEOUT`].
pub async fn init(client: &impl ClientLike, place: &str) -> anyhow::Result<()> {
    match tokio::time::timeout(CONNECT_TIMEOUT, client.init()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(anyhow::anyhow!("cannot connect to Redis at {place}: {err}")),
        Err(_) => {
            client.quit().await.ok();
            Err(anyhow::anyhow!("cannot connect to Redis at {place}: no answer within {CONNECT_TIMEOUT:?}"))
        }
    }
}

/// The URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}***{}", &url[..scheme + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(redact("redis://:secret@cache:6379/0"), "redis://***@cache:6379/0");
        assert_eq!(redact("redis://cache:6379"), "redis://cache:6379");
    }
}

//! Who may open a Socket.IO connection: the shared token, and the caps on connections.
//!
//! Checked in the namespace's connect middleware, so a refused client gets a `connect_error` whose
//! message says why (socket.io-client shows it as `err.message`), and a log line names the reason.
//! An admitted connection holds an [`AdmissionTicket`] in its extensions; the ticket gives the
//! place back when the socket is dropped, whichever way the connection ends.

use std::{
    collections::HashMap,
    fmt,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
};

use axum::extract::{ConnectInfo, Query};
use serde_json::Value;

use crate::{config::Config, core::passcode::same_secret};

/// Why a connection was refused; the text is what the client sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Unauthorized,
    ServerFull { max: u32 },
    TooManyFromAddress { max: u32 },
}

impl Refusal {
    /// The metric label of the reason.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Unauthorized => "unauthorized",
            Refusal::ServerFull { .. } => "max_connections",
            Refusal::TooManyFromAddress { .. } => "max_connections_per_ip",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unauthorized => write!(f, "Unauthorized: a valid token is required"),
            Refusal::ServerFull { max } => write!(f, "Server full: {max} connections at most"),
            Refusal::TooManyFromAddress { max } => {
                write!(f, "Too many connections from your address: {max} at most")
            }
        }
    }
}

/// Open connections, in all and by client address.
#[derive(Debug, Default)]
pub struct Admission {
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: u32,
    by_address: HashMap<IpAddr, u32>,
}

/// An admitted connection's place; dropping it gives the place back.
pub struct AdmissionTicket {
    admission: Arc<Admission>,
    address: Option<IpAddr>,
}

impl Drop for AdmissionTicket {
    fn drop(&mut self) {
        let mut counts = self.admission.counts.lock().expect("admission lock");
        counts.total = counts.total.saturating_sub(1);
        if let Some(address) = self.address
            && let Some(count) = counts.by_address.get_mut(&address)
        {
            *count -= 1;
            if *count == 0 {
                counts.by_address.remove(&address);
            }
        }
    }
}

impl Admission {
    /// Takes a place for a connection from `address`, unless a cap is reached.
    pub fn admit(self: &Arc<Self>, config: &Config, address: Option<IpAddr>) -> Result<Arc<AdmissionTicket>, Refusal> {
        let mut counts = self.counts.lock().expect("admission lock");
        let max = config.max_connections;
        if max > 0 && counts.total >= max {
            return Err(Refusal::ServerFull { max });
        }
        let max_per_address = config.max_connections_per_ip;
        if let Some(address) = address {
            let from_address = counts.by_address.get(&address).copied().unwrap_or(0);
            if max_per_address > 0 && from_address >= max_per_address {
                return Err(Refusal::TooManyFromAddress { max: max_per_address });
            }
            counts.by_address.insert(address, from_address + 1);
        }
        counts.total += 1;
        Ok(Arc::new(AdmissionTicket { admission: self.clone(), address }))
    }

    /// Connections from `address` now.
    #[cfg(test)]
    fn count_from(&self, address: IpAddr) -> u32 {
        self.counts.lock().expect("admission lock").by_address.get(&address).copied().unwrap_or(0)
    }
}

/// The client's address: the connection's peer, or behind a trusted proxy the last
/// `X-Forwarded-For` entry, the one that proxy added (entries before it are the client's own say).
pub fn client_address(request: &axum::http::request::Parts, trust_proxy: bool) -> Option<IpAddr> {
    let forwarded = || {
        let header = request.headers.get_all("x-forwarded-for").iter().next_back()?.to_str().ok()?;
        header.rsplit(',').next()?.trim().parse().ok()
    };
    let peer = || request.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    if trust_proxy { forwarded().or_else(peer) } else { peer() }
}

/// With `AUTH_TOKEN` set, the client must give it as handshake `auth: {token}` or `?token=`.
pub fn check_token(config: &Config, request: &axum::http::request::Parts, auth: &Value) -> Result<(), Refusal> {
    let Some(expected) = config.auth_token.as_deref() else { return Ok(()) };
    let from_auth = auth.get("token").and_then(Value::as_str).map(str::to_owned);
    let from_query = || {
        let Query(query) = Query::<HashMap<String, String>>::try_from_uri(&request.uri).ok()?;
        query.get("token").cloned()
    };
    match from_auth.or_else(from_query) {
        Some(given) if same_secret(&given, expected) => Ok(()),
        _ => Err(Refusal::Unauthorized),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max: u32, per_address: u32) -> Config {
        let mut config = Config::for_tests();
        config.max_connections = max;
        config.max_connections_per_ip = per_address;
        config
    }

    #[test]
    fn caps_refuse_then_a_dropped_ticket_frees_its_place() {
        let admission = Arc::new(Admission::default());
        let config = config(3, 2);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = admission.admit(&config, Some(a)).unwrap();
        let _second = admission.admit(&config, Some(a)).unwrap();
        assert_eq!(admission.admit(&config, Some(a)).err(), Some(Refusal::TooManyFromAddress { max: 2 }));
        let _third = admission.admit(&config, Some(b)).unwrap();
        assert_eq!(admission.admit(&config, Some(b)).err(), Some(Refusal::ServerFull { max: 3 }));
        drop(first);
        assert_eq!(admission.count_from(a), 1);
        assert!(admission.admit(&config, Some(a)).is_ok());
    }

    #[test]
    fn zero_is_unlimited() {
        let admission = Arc::new(Admission::default());
        let config = config(0, 0);
        let tickets: Vec<_> =
            (0..1000).map(|_| admission.admit(&config, Some([127, 0, 0, 1].into())).unwrap()).collect();
        assert_eq!(admission.count_from([127, 0, 0, 1].into()), 1000);
        drop(tickets);
        assert_eq!(admission.count_from([127, 0, 0, 1].into()), 0);
    }

    #[test]
    fn the_token_may_come_in_auth_or_query_and_must_match() {
        let mut config = Config::for_tests();
        let request = |uri: &str| axum::http::Request::get(uri).body(()).unwrap().into_parts().0;
        let plain = request("/socket.io/?EIO=4");
        assert!(check_token(&config, &plain, &Value::Null).is_ok(), "no token configured: anyone");
        config.auth_token = Some("s3cret".into());
        assert_eq!(check_token(&config, &plain, &Value::Null), Err(Refusal::Unauthorized));
        assert!(check_token(&config, &plain, &serde_json::json!({"token": "s3cret"})).is_ok());
        assert!(check_token(&config, &plain, &serde_json::json!({"token": "s3cre"})).is_err());
        assert!(check_token(&config, &request("/socket.io/?EIO=4&token=s3cret"), &Value::Null).is_ok());
        assert!(check_token(&config, &request("/socket.io/?EIO=4&token=nope"), &Value::Null).is_err());
    }

    #[test]
    fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
        // The client claimed 198.51.100.9; the proxy appended the address it saw.
        let mut request =
            axum::http::Request::get("/").header("x-forwarded-for", "198.51.100.9, 203.0.113.7").body(()).unwrap();
        request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 5000))));
        let parts = request.into_parts().0;
        assert_eq!(client_address(&parts, false), Some([10, 0, 0, 1].into()));
        assert_eq!(client_address(&parts, true), Some([203, 0, 113, 7].into()));
    }
}

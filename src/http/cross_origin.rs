//! Browser-facing protections on every HTTP answer: CORS from `CORS_ORIGIN`, enforced, and the
//! security headers.
//!
//! CORS headers alone only stop a browser page from *reading* an answer; a websocket is not subject
//! to CORS at all. So a request to `/socket.io/` whose `Origin` is not allowed (polling or the
//! websocket handshake) is refused outright with 403. Requests without an `Origin` (Node scripts)
//! and same-origin requests pass: React Native's websocket sends the server's own address as its
//! `Origin`, and so does a page the server serves itself (`/demo/`).

use std::sync::Arc;

use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderName, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use tower_http::{
    cors::{AllowOrigin, Any, CorsLayer},
    set_header::SetResponseHeaderLayer,
};

use crate::config::Config;

/// Wraps `router` (Socket.IO included) in the origin check, CORS and the security headers.
pub fn protect(router: Router, config: &Config) -> Router {
    let security_headers = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    let guard = OriginGuard { allowed: config.cors_origins(), trust_proxy: config.trust_proxy };
    let router =
        router.layer(middleware::from_fn_with_state(Arc::new(guard), refuse_foreign_origins)).layer(cors(config));
    security_headers.into_iter().fold(router, |router, (name, value): (HeaderName, &'static str)| {
        router.layer(SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value)))
    })
}

fn cors(config: &Config) -> CorsLayer {
    let layer = CorsLayer::new().allow_methods(Any).allow_headers(Any);
    match config.cors_origins() {
        None => layer.allow_origin(Any),
        Some(origins) => {
            let values = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok());
            layer.allow_origin(AllowOrigin::list(values))
        }
    }
}

/// Which origins may reach `/socket.io/`.
struct OriginGuard {
    /// `None`: any (`CORS_ORIGIN=*`).
    allowed: Option<Vec<String>>,
    /// Behind a proxy, the host the client asked for is in `X-Forwarded-Host`.
    trust_proxy: bool,
}

impl OriginGuard {
    fn admits(&self, origin: &str, request: &Request) -> bool {
        let Some(allowed) = &self.allowed else { return true };
        allowed.iter().any(|a| a == origin) || self.same_origin(origin, request)
    }

    /// True when `origin`'s host and port are the host the request was sent to.
    fn same_origin(&self, origin: &str, request: &Request) -> bool {
        let Some((_, origin_host)) = origin.split_once("://") else { return false };
        let headers = request.headers();
        let forwarded = self.trust_proxy.then(|| headers.get("x-forwarded-host")).flatten();
        let host = forwarded.or_else(|| headers.get(header::HOST)).and_then(|h| h.to_str().ok());
        host.is_some_and(|host| host.eq_ignore_ascii_case(origin_host))
    }
}

async fn refuse_foreign_origins(State(guard): State<Arc<OriginGuard>>, request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok());
    if let Some(origin) = origin
        && request.uri().path().starts_with("/socket.io")
        && !guard.admits(origin, &request)
    {
        tracing::warn!(origin, "connection refused: origin not in CORS_ORIGIN");
        let body =
            serde_json::json!({ "code": "ORIGIN_NOT_ALLOWED", "message": format!("Origin {origin} is not allowed") });
        return (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
    }
    next.run(request).await
}

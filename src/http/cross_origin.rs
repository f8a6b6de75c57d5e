//! Browser-facing protections on every HTTP answer: CORS from `CORS_ORIGIN`, enforced, and the
//! security headers.
//!
//! CORS headers alone only stop a browser page from *reading* an answer; a websocket is not subject
//! to CORS at all. So a request to `/socket.io/` whose `Origin` is not allowed (polling or the
//! websocket handshake) is refused outright with 403. Requests without an `Origin` (native apps,
//! Node scripts) are not browsers' cross-origin requests and pass.

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
    let allowed: Arc<Option<Vec<String>>> = Arc::new(config.cors_origins());
    let security_headers = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    let router = router.layer(middleware::from_fn_with_state(allowed, refuse_foreign_origins)).layer(cors(config));
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

async fn refuse_foreign_origins(
    State(allowed): State<Arc<Option<Vec<String>>>>,
    request: Request,
    next: Next,
) -> Response {
    let origin = request.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok());
    if let (Some(allowed), Some(origin)) = (allowed.as_ref(), origin)
        && request.uri().path().starts_with("/socket.io")
        && !allowed.iter().any(|a| a == origin)
    {
        tracing::warn!(origin, "connection refused: origin not in CORS_ORIGIN");
        let body =
            serde_json::json!({ "code": "ORIGIN_NOT_ALLOWED", "message": format!("Origin {origin} is not allowed") });
        return (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
    }
    next.run(request).await
}

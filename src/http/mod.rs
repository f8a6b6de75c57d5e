//! HTTP routes beside Socket.IO: service info, health, liveness, readiness, the sync engine's
//! figures and the demo page.

use std::sync::Arc;

use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use serde_json::json;

use crate::{clock::now_ms, state::AppState, store::Backend, telemetry};

mod api;
pub mod cross_origin;
mod demo;
pub mod listener;
mod owned_head;

pub fn routes(app: Arc<AppState>) -> Router {
    let pages = if app.config.demo_page { demo::routes() } else { Router::new() };
    let router = pages
        .route("/", get(index))
        .route("/health", get(health))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/debug/sync", get(debug_sync))
        .route("/api/metrics", get(api::metrics))
        .route("/api/sessions", get(api::sessions))
        .route("/api/sessions/{id}", get(api::session));
    // With METRICS_PORT, Prometheus scrapes a listener of its own instead.
    let router = if app.config.metrics_port.is_none() { router.merge(metrics_routes()) } else { router };
    router.with_state(app)
}

/// `/metrics` alone, for the main listener or a `METRICS_PORT` of its own.
pub fn metrics_routes() -> Router<Arc<AppState>> {
    Router::new().route("/metrics", get(prometheus))
}

fn uptime_ms(app: &AppState) -> u64 {
    app.started_at.elapsed().as_millis() as u64
}

async fn index(State(app): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({
        "ok": true,
        "service": "bandsync-server",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime": uptime_ms(&app),
    }))
}

async fn health(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    let (current, peak, total) = app.connections.read();
    let sessions = app.store.count().await;
    let backend = app.store.backend();
    let status = match (&sessions, backend, app.is_draining()) {
        (Err(_), _, _) => "unhealthy",
        // Sessions keep working from the cache, but changes are not shared until Redis returns.
        (Ok(_), Backend::Disconnected, _) | (Ok(_), _, true) => "degraded",
        (Ok(_), _, false) => "healthy",
    };
    let code = if status == "unhealthy" { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    let redis = match backend {
        Backend::Embedded => "disabled",
        Backend::Connected => "connected",
        Backend::Disconnected => "disconnected",
    };
    let body = json!({
        "status": status,
        "ok": status != "unhealthy",
        "timestamp": now_ms(),
        "connections": { "current": current, "peak": peak, "total": total },
        "sessions": { "active": sessions.unwrap_or(0) },
        "redis": redis,
        "uptime": uptime_ms(&app),
        "serverId": app.server_id,
    });
    (code, Json(body))
}

async fn livez() -> Json<serde_json::Value> {
    Json(json!({ "ok": true }))
}

async fn readyz(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    let store_ok = app.store.backend() != Backend::Disconnected && app.store.count().await.is_ok();
    let ready = store_ok && !app.is_draining();
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(json!({ "ok": ready, "store": store_ok, "draining": app.is_draining() })))
}

/// The sync engine at a glance: sessions streaming, and how late its ticks run.
async fn debug_sync(State(app): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({
        "playingSessions": app.ticker.playing_count(),
        "syncRateMs": app.config.sync_rate_ms,
        "tickLag": app.ticker.lag.report(),
    }))
}

/// `GET /metrics`: Prometheus text exposition.
async fn prometheus(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    if let Ok(sessions) = app.store.all_sessions().await {
        let mixed = sessions.iter().filter(|s| s.is_mixed()).count();
        telemetry::sessions(sessions.len(), app.ticker.playing_count(), mixed);
    }
    telemetry::collect_process();
    let handle = telemetry::handle();
    handle.run_upkeep();
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render())
}

//! The JSON API: service metrics and the sessions, for dashboards and operators.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{clock::now_ms, protocol::payload, state::AppState};

/// `GET /api/metrics`.
pub async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let sessions = match app.store.all_sessions().await {
        Ok(sessions) => sessions,
        Err(err) => return unavailable(&err),
    };
    let (current, peak, total) = app.connections.read();
    let seated: usize = sessions.iter().map(|s| s.members.len()).sum();
    let avg_size = if sessions.is_empty() { 0.0 } else { seated as f64 / sessions.len() as f64 };
    Json(json!({
        "connections": { "current": current, "peak": peak, "total": total },
        "sessions": { "active": sessions.len(), "avgSize": (avg_size * 100.0).round() / 100.0 },
        "performance": { "avgLatency": app.sync_stats.latency(), "syncDrift": app.sync_stats.drift() },
        "timestamp": now_ms(),
    }))
    .into_response()
}

#[derive(Deserialize)]
pub struct SessionsQuery {
    #[serde(rename = "bandId")]
    band_id: Option<String>,
}

/// `GET /api/sessions[?bandId=]`: summaries, oldest first.
pub async fn sessions(State(app): State<Arc<AppState>>, Query(query): Query<SessionsQuery>) -> Response {
    let listed = match &query.band_id {
        Some(band) => app.store.sessions_of_band(band).await,
        None => app.store.all_sessions().await,
    };
    match listed {
        Ok(sessions) => {
            let summaries: Vec<Value> = sessions.iter().map(payload::summary).collect();
            Json(json!({ "sessions": summaries, "count": summaries.len() })).into_response()
        }
        Err(err) => unavailable(&err),
    }
}

/// `GET /api/sessions/{id}`: the session as members see it (`session:state_sync`).
pub async fn session(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match app.store.get(&id).await {
        Ok(Some(session)) => Json(payload::state_sync(&session, now_ms())).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": { "code": "SESSION_NOT_FOUND", "message": "Session not found" } })),
        )
            .into_response(),
        Err(err) => unavailable(&err),
    }
}

fn unavailable(err: &crate::core::CoreError) -> Response {
    let body = json!({ "error": { "code": err.code(), "message": err.to_string() } });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

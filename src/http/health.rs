//! Liveness, readiness (the store answers) for load balancers and orchestrators.

use super::AppState;
use super::error::ApiError;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(ready))
}

async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.service.store().ping().await?;
    let slack = state.slack.as_ref().map_or("disabled", |s| s.auth_status());
    Ok(Json(
        json!({"status": "ready", "store": "ok", "slack": slack}),
    ))
}

//! `GET /metrics` (Prometheus text) and the middleware that counts and times every request.
//!
//! `/metrics` is unauthenticated, like the probes: serve it on a network Prometheus reaches,
//! never publicly (it tells the rate of approvals, the clients and the rule names).

use super::AppState;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::time::Instant;

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // Counted in the store at each scrape: windows end on any replica, by time or revocation.
    match state.service.active_window_count().await {
        Ok(n) => crate::metrics::active_windows(n),
        Err(e) => tracing::debug!(error = %e, "cannot count active access windows"),
    }
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        crate::metrics::render(),
    )
}

/// Counts each request by its route template and status, and times it by route. Runs
/// inside the router (a `Router::layer`), where the matched path is known.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let started = Instant::now();
    let response = next.run(req).await;
    crate::metrics::http_request(&route, response.status().as_u16(), started.elapsed());
    response
}

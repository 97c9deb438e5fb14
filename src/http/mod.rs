//! The HTTP surface: one router per concern, merged here, sharing one [`AppState`].

mod actions;
mod audit;
pub mod error;
mod grants;
mod health;
mod openapi;
pub mod signed;
mod slack;

use crate::service::Service;
use crate::slack::Slack;
use axum::Router;
use axum::extract::MatchedPath;
use axum::http::Request;
use error::ApiError;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use tower_http::trace::TraceLayer;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<Service>,
    /// Present when Slack is configured.
    pub slack: Option<Arc<Slack>>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(actions::router())
        .merge(audit::router())
        .merge(grants::router())
        .merge(health::router())
        .merge(openapi::router())
        .merge(slack::router())
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::Invalid("method not allowed on this route".into())
        })
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let route = req
                    .extensions()
                    .get::<MatchedPath>()
                    .map_or("unmatched", MatchedPath::as_str);
                tracing::info_span!("http", method = %req.method(), route)
            }),
        )
        .with_state(state)
}

/// A JSON body already authenticated as raw bytes; unknown fields are rejected by the types.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    crate::domain::from_json(body).map_err(ApiError::Invalid)
}

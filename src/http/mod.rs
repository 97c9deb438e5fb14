//! The HTTP surface: one router per concern, merged here, sharing one [`AppState`].

mod access;
mod actions;
mod admin;
mod audit;
pub mod error;
mod grants;
mod health;
mod metrics;
mod openapi;
mod request_id;
pub mod signed;
mod slack;

use crate::reload::Reloader;
use crate::service::Service;
use crate::slack::Slack;
use axum::Router;
use axum::extract::MatchedPath;
use axum::http::Request;
use axum::routing::IntoMakeService;
use error::ApiError;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use tower::ServiceBuilder;
use tower_http::LatencyUnit;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<Service>,
    /// Present when Slack is configured.
    pub slack: Option<Arc<Slack>>,
    /// Reloads the policy for `POST /v1/admin/reload` (the same code as `SIGHUP`).
    pub reloader: Arc<Reloader>,
}

/// What `axum::serve` runs: the routes, turned into a connection factory once.
///
/// Not the `Router` itself: axum 0.8 serves a bare `Router` by calling `with_state(())` for
/// every connection, which rebuilds the route tables, about 14 KiB per connection (heaptrack,
/// 10,000 open long-polls; see docs/benchmarks.md). `into_make_service` builds them once and
/// hands each connection a clone that shares them.
pub fn router(state: AppState) -> IntoMakeService<Router> {
    routes(state).into_make_service()
}

/// The routes the OpenAPI document describes, and the document collected from them.
fn documented() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(access::router())
        .merge(actions::router())
        .merge(admin::router())
        .merge(audit::router())
        .merge(grants::router())
        .merge(health::router())
        .split_for_parts()
}

/// Every route, with its middleware, bound to the state.
fn routes(state: AppState) -> Router {
    let (documented, document) = documented();
    Router::new()
        .merge(documented)
        .merge(openapi::router(openapi::document(document)))
        .merge(metrics::router())
        .merge(slack::router())
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::Invalid("method not allowed on this route".into())
        })
        .layer(axum::middleware::from_fn(metrics::track))
        // `x-request-id` is taken from the request (if usable) or generated, recorded on
        // the span and returned on the response.
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn(request_id::drop_unusable))
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &Request<_>| {
                            let route = req
                                .extensions()
                                .get::<MatchedPath>()
                                .map_or("unmatched", MatchedPath::as_str);
                            let request_id = req
                                .headers()
                                .get(request_id::HEADER)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default();
                            tracing::info_span!("http", method = %req.method(), route, request_id)
                        })
                        .on_response(
                            DefaultOnResponse::new()
                                .level(tracing::Level::INFO)
                                .latency_unit(LatencyUnit::Millis),
                        ),
                )
                .layer(PropagateRequestIdLayer::x_request_id()),
        )
        .with_state(state)
}

/// A JSON body already authenticated as raw bytes; unknown fields are rejected by the types.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    crate::domain::from_json(body).map_err(ApiError::Invalid)
}

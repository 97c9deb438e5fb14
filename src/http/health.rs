//! Liveness, readiness (the store answers) for load balancers and orchestrators.

use super::AppState;
use super::error::ApiError;
use crate::error::{ErrorCode, ErrorDetail};
use crate::store::StoreError;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

#[derive(Serialize, ToSchema)]
pub struct Liveness {
    #[schema(example = "ok")]
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    #[schema(example = "ready")]
    status: &'static str,
    #[schema(example = "ok")]
    store: &'static str,
    /// `ok`, `failed`, `unknown` (not yet checked) or `disabled`.
    #[schema(example = "ok")]
    slack: &'static str,
}

/// 503 from `/readyz`: the body every 503 has (`error`), and what is not ready and why.
#[derive(Serialize, ToSchema)]
pub struct NotReady {
    #[schema(example = "not_ready")]
    status: &'static str,
    #[schema(example = "unreachable")]
    store: &'static str,
    /// Why, naming where the store was expected (never a password).
    #[schema(example = "redis unreachable at 127.0.0.1:6379: Connection refused (os error 111)")]
    reason: String,
    error: ErrorDetail,
}

/// The process is alive.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses((status = 200, description = "Alive", body = Liveness))
)]
pub(super) async fn healthz() -> Json<Liveness> {
    Json(Liveness { status: "ok" })
}

/// The store answers.
///
/// Slack's state is reported, but Slack being down does not make the service unready.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "The store cannot be reached; `reason` says where and why", body = NotReady),
    )
)]
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    match state.service.ping().await {
        Ok(()) => {
            let slack = state.slack.as_ref().map_or("disabled", |s| s.auth_status());
            Json(Readiness {
                status: "ready",
                store: "ok",
                slack,
            })
            .into_response()
        }
        Err(StoreError::Unavailable(reason)) => {
            tracing::warn!(%reason, "not ready");
            let body = NotReady {
                status: "not_ready",
                store: "unreachable",
                reason,
                error: ErrorDetail {
                    code: ErrorCode::Unavailable,
                    message: ApiError::Unavailable.to_string(),
                },
            };
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

//! Liveness, readiness (the store answers) for load balancers and orchestrators.

use super::AppState;
use super::error::ApiError;
use super::openapi::ErrorBody;
use axum::Json;
use axum::extract::State;
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
        (status = 503, description = "The store cannot be reached", body = ErrorBody),
    )
)]
pub(super) async fn readyz(State(state): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    state.service.ping().await?;
    let slack = state.slack.as_ref().map_or("disabled", |s| s.auth_status());
    Ok(Json(Readiness {
        status: "ready",
        store: "ok",
        slack,
    }))
}

//! `GET /v1/access`: the access windows in force, as the caller may see them.

use super::AppState;
use super::error::ApiError;
use super::signed::SignedNoBody;
use crate::domain::Action;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AccessQuery {
    /// Only windows in force: approved, not revoked, before `ends_at` (the only listing
    /// this version keeps; the default).
    active: Option<bool>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Windows {
    windows: Vec<Action>,
}

/// Lists the access windows in force.
///
/// A client sees the windows it requested; admins and auditors see all. Soonest to end
/// first.
#[utoipa::path(
    get,
    path = "/v1/access",
    tag = "actions",
    params(AccessQuery),
    responses(
        (status = 200, description = "The windows in force", body = Windows),
        super::openapi::SignedErrors,
    )
)]
async fn list(
    State(state): State<AppState>,
    query: Result<Query<AccessQuery>, QueryRejection>,
    signed: SignedNoBody,
) -> Result<Json<Windows>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::Invalid(e.body_text()))?;
    if query.active == Some(false) {
        return Err(ApiError::Invalid(
            "active: only windows in force are listed (`active=true`); ended ones are in the audit trail".into(),
        ));
    }
    let windows = state.service.active_windows(&signed.client).await?;
    Ok(Json(Windows { windows }))
}

//! `/v1/admin`: operations on the running server, for clients with the `admin` role.

use super::error::ApiError;
use super::openapi::{ErrorBody, SignedErrors};
use super::signed::SignedRequest;
use super::{AppState, parse_json};
use crate::reload::{ReloadError, Trigger};
use crate::service::Permission;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(reload))
}

/// An empty object, the only body `reload` takes (it may also have none).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NoFields {}

#[derive(Serialize, ToSchema)]
pub(super) struct ReloadAnswer {
    #[schema(pattern = "^reloaded$", example = "reloaded")]
    status: &'static str,
    /// Rules in the policy now running.
    #[schema(example = 5)]
    rules: usize,
    /// Clients whose secrets were read.
    #[schema(example = 4)]
    clients: usize,
}

/// Reloads the policy file and client secrets (role `admin`), as `SIGHUP` does.
///
/// The new policy replaces the old one at once; pending actions keep the rule they were
/// created under. A file that does not load is refused with `400` and its error
/// (`FILE:LINE: message`, or the name of a client secret variable that is not set), and
/// the running policy stays. Each replica reloads its own copy: call every replica, or
/// send them `SIGHUP`.
#[utoipa::path(
    post,
    path = "/v1/admin/reload",
    tag = "admin",
    request_body(content = Option<NoFields>, description = "Optional; `{}` when present"),
    responses(
        (status = 200, description = "Reloaded", body = ReloadAnswer),
        (status = 403, description = "The client does not have the admin role", body = ErrorBody),
        (status = 409, description = "No policy file: the built-in policy is in use", body = ErrorBody),
        SignedErrors,
    )
)]
pub(super) async fn reload(
    State(state): State<AppState>,
    signed: SignedRequest,
) -> Result<Json<ReloadAnswer>, ApiError> {
    signed.client.authorize(Permission::ReloadPolicy)?;
    if !signed.body.is_empty() {
        parse_json::<NoFields>(&signed.body)?;
    }
    match state
        .reloader
        .reload(Trigger::Client(signed.client.id()))
        .await
    {
        Ok(r) => Ok(Json(ReloadAnswer {
            status: "reloaded",
            rules: r.rules,
            clients: r.clients,
        })),
        Err(e @ ReloadError::NoFile) => Err(ApiError::Conflict(e.to_string())),
        Err(e @ ReloadError::Invalid(_)) => Err(ApiError::Invalid(e.to_string())),
    }
}

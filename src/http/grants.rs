//! Grants over HTTP: the public JWKS, `POST /v1/grants/verify` and the admin revoke.

use super::error::ApiError;
use super::signed::SignedRequest;
use super::{AppState, parse_json};
use crate::domain::{Action, ActionId};
use crate::grants::{Claims, GrantRejection};
use crate::service::grants::{self, VerifyRequest};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(jwks))
        .routes(routes!(verify))
        .routes(routes!(revoke))
}

/// Public keys, unauthenticated: verifiers fetch and cache them. Five minutes of caching
/// keeps a rotation quick to propagate (publish the new key as previous first if
/// verifiers must never miss it).
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "grants",
    summary = "The public keys that sign grants",
    responses((status = 200, description = "The current and previous keys", body = super::openapi::Jwks))
)]
async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::CONTENT_TYPE, "application/json"),
        ],
        state.service.grants().jwks().to_string(),
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    token: String,
    action: Option<String>,
    resource: Option<String>,
    #[serde(default)]
    consume: bool,
    /// One use of an access window's grant (which `action` and `resource`, both required,
    /// must fall within): counted, and audited as `access_used`.
    #[serde(default, rename = "use")]
    use_window: bool,
}

/// `{"valid": true, "claims": {...}}` or `{"valid": false, "reason": "..."}`: always `200`
/// once the request itself is fine, since an invalid grant is an answer, not an error.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
enum VerifyAnswer {
    Valid {
        #[schema(schema_with = super::openapi::always_true)]
        valid: bool,
        claims: Box<Claims>,
        /// With `use`: how many times the window's grant was used, this use included.
        #[serde(skip_serializing_if = "Option::is_none")]
        uses: Option<u64>,
    },
    Invalid {
        #[schema(schema_with = super::openapi::always_false)]
        valid: bool,
        reason: GrantRejection,
    },
}

/// Checks a grant token.
///
/// Only the client the grant was issued to (`aud`), or an admin, gets an answer about it:
/// anyone else gets `wrong_audience`, and the grant is not spent. `action` and `resource`,
/// when given, must be the grant's (or, for an access window's grant, fall within its
/// patterns); `consume: true` makes the grant single-use, atomically (`400` for a
/// window's grant). `use: true` records one use of a window's grant by its audience for
/// the concrete `action` and `resource`, and answers with the count (`uses`). An invalid
/// grant is an answer (`200`), not an error.
#[utoipa::path(
    post,
    path = "/v1/grants/verify",
    tag = "grants",
    request_body = VerifyBody,
    responses(
        (status = 200, description = "The verdict", body = VerifyAnswer),
        super::openapi::SignedErrors,
    )
)]
async fn verify(
    State(state): State<AppState>,
    signed: SignedRequest,
) -> Result<Json<VerifyAnswer>, ApiError> {
    let body: VerifyBody = parse_json(&signed.body)?;
    let request = VerifyRequest {
        token: body.token,
        action: body.action,
        resource: body.resource,
        consume: body.consume,
    };
    let verdict = if body.use_window {
        grants::use_window(&state.service, &signed.client, &request)
            .await?
            .map(|(claims, uses)| (claims, Some(uses)))
    } else {
        grants::verify(&state.service, &signed.client, &request)
            .await?
            .map(|claims| (claims, None))
    };
    let answer = match verdict {
        Ok((claims, uses)) => VerifyAnswer::Valid {
            valid: true,
            claims: Box::new(claims),
            uses,
        },
        Err(reason) => VerifyAnswer::Invalid {
            valid: false,
            reason,
        },
    };
    Ok(Json(answer))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    reason: Option<String>,
}

/// Revokes the grant of an approved action (role `admin`; the creating client may also
/// revoke its own access window).
///
/// `verify` then answers `revoked` for it, and an access window ends at once
/// (`window.ended = "revoked"`). Revoking twice is harmless.
#[utoipa::path(
    post,
    path = "/v1/actions/{id}/revoke",
    tag = "grants",
    params(("id" = ActionId, Path, description = "The action id")),
    request_body(content = Option<RevokeBody>, description = "Optional"),
    responses(
        (status = 200, description = "The action, whose grant is revoked", body = Action),
        (status = 403, description = "Needs the admin role (or to be the creator of the access window)", body = super::openapi::ErrorBody),
        (status = 404, description = "No such action", body = super::openapi::ErrorBody),
        (status = 409, description = "The action is not approved", body = super::openapi::ErrorBody),
        super::openapi::SignedErrors,
    )
)]
async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    signed: SignedRequest,
) -> Result<Json<Action>, ApiError> {
    // An id that is not well formed cannot exist.
    let id: ActionId = id
        .parse()
        .map_err(|_| ApiError::NotFound("no such action".into()))?;
    let body: RevokeBody = if signed.body.is_empty() {
        RevokeBody::default()
    } else {
        parse_json(&signed.body)?
    };
    if body
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > 2000)
    {
        return Err(ApiError::Invalid("reason: at most 2000 characters".into()));
    }
    let action =
        grants::revoke(&state.service, &signed.client, &id, body.reason.as_deref()).await?;
    Ok(Json(action))
}

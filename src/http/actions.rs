//! `/v1/actions`: create, read, wait, cancel and the admin break-glass decision.

use super::error::ApiError;
use super::openapi::{ErrorBody, SignedErrors};
use super::signed::{SignedCreate, SignedNoBody, SignedRequest};
use super::{AppState, parse_json};
use crate::domain::{Action, ActionId, Outcome};
use crate::service::{ActionBody, CreateOutcome};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show))
        .routes(routes!(wait))
        .routes(routes!(cancel))
        .routes(routes!(decide))
}

/// Ids that are not well formed cannot exist: answer as for a missing action.
fn action_id(raw: &str) -> Result<ActionId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound("no such action".into()))
}

impl IntoResponse for ActionBody {
    fn into_response(self) -> Response {
        match self {
            ActionBody::Parsed(action) => Json(action).into_response(),
            // Already the exact JSON of the action: no second serialisation.
            ActionBody::Published(json) => {
                ([(header::CONTENT_TYPE, "application/json")], json).into_response()
            }
        }
    }
}

/// Asks for approval of an action.
///
/// An action decided by policy is answered already decided. Repeating a `webhook-id` with
/// the same body within 24 h answers `200` with the action as it is now.
#[utoipa::path(
    post,
    path = "/v1/actions",
    tag = "actions",
    request_body = crate::domain::ActionRequest,
    responses(
        (status = 201, description = "Created", body = Action),
        (status = 200, description = "An idempotent repeat of the same request", body = Action),
        (status = 403, description = "Needs the requester or admin role", body = ErrorBody),
        (status = 409, description = "A repeated `webhook-id` with another body", body = ErrorBody),
        (status = 422, description = "The rule forbids self-approval and the requester has neither `email` nor `slack_user_id` (code `requester_unverifiable`), or the request asks for an access window and the rule has no `max_window` (code `window_not_allowed`)", body = ErrorBody),
        (status = 429, description = "The client already has its `max_pending` actions pending (`too_many_pending`)", body = ErrorBody),
        SignedErrors,
    )
)]
async fn create(
    State(state): State<AppState>,
    signed: SignedCreate,
) -> Result<(StatusCode, Json<Action>), ApiError> {
    match state
        .service
        .create(&signed.client, &signed.request_id, &signed.body)
        .await?
    {
        CreateOutcome::Created(action) => Ok((StatusCode::CREATED, Json(action))),
        CreateOutcome::Repeated(action) => Ok((StatusCode::OK, Json(action))),
    }
}

/// Reads an action.
///
/// Readable by its creator and by clients with the `admin` or `auditor` role; only the
/// creator sees the grant's `token`. Takes no body.
#[utoipa::path(
    get,
    path = "/v1/actions/{id}",
    tag = "actions",
    params(("id" = ActionId, Path, description = "The action id")),
    responses(
        (status = 200, description = "The action", body = Action),
        (status = 404, description = "No such action (or not this client's)", body = ErrorBody),
        SignedErrors,
    )
)]
async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    signed: SignedNoBody,
) -> Result<Json<Action>, ApiError> {
    let id = action_id(&id)?;
    Ok(Json(state.service.get(&signed.client, &id).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Which actions: only `pending` can be listed.
    status: String,
    /// At most this many (1 to 1000, default 100).
    limit: Option<usize>,
}

/// The listed actions.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct ActionList {
    actions: Vec<Action>,
}

/// Lists pending actions, with their ids: all of them for clients with the `admin` or
/// `auditor` role, the client's own otherwise. Takes no body.
#[utoipa::path(
    get,
    path = "/v1/actions",
    tag = "actions",
    params(ListQuery),
    responses(
        (status = 200, description = "The pending actions", body = ActionList),
        SignedErrors,
    )
)]
async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
    signed: SignedNoBody,
) -> Result<Json<ActionList>, ApiError> {
    let Query(query) = query.map_err(|_| {
        ApiError::Invalid("status=pending is required; limit is a number from 1 to 1000".into())
    })?;
    if query.status != "pending" {
        return Err(ApiError::Invalid(
            "status: only `pending` actions can be listed".into(),
        ));
    }
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::Invalid("limit: from 1 to 1000".into()));
    }
    let actions = state.service.pending_for(&signed.client, limit).await?;
    Ok(Json(ActionList { actions }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct WaitQuery {
    /// Seconds to wait (default 30, capped at `GREENLIGHT_MAX_WAIT`).
    timeout: Option<u64>,
}

/// Long-polls until the action is decided.
///
/// Answers as soon as the action is decided, or after `timeout` seconds with the action
/// still pending.
#[utoipa::path(
    get,
    path = "/v1/actions/{id}/wait",
    tag = "actions",
    params(("id" = ActionId, Path, description = "The action id"), WaitQuery),
    responses(
        (status = 200, description = "The action, decided or still pending", body = Action),
        (status = 404, description = "No such action (or not this client's)", body = ErrorBody),
        SignedErrors,
    )
)]
async fn wait(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    signed: SignedNoBody,
) -> Result<ActionBody, ApiError> {
    let id = action_id(&id)?;
    let Query(query) =
        query.map_err(|_| ApiError::Invalid("timeout: must be a number of seconds".into()))?;
    let timeout = Duration::from_secs(query.timeout.unwrap_or(30));
    Ok(state.service.wait(&signed.client, &id, timeout).await?)
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    reason: Option<String>,
}

/// Cancels a pending action.
///
/// Only the creating client cancels. The body is optional.
#[utoipa::path(
    post,
    path = "/v1/actions/{id}/cancel",
    tag = "actions",
    params(("id" = ActionId, Path, description = "The action id")),
    request_body(content = Option<CancelBody>, description = "Optional"),
    responses(
        (status = 200, description = "The cancelled action", body = Action),
        (status = 403, description = "Only the creating client cancels", body = ErrorBody),
        (status = 404, description = "No such action (or not this client's)", body = ErrorBody),
        (status = 409, description = "The action is already decided", body = ErrorBody),
        SignedErrors,
    )
)]
async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    signed: SignedRequest,
) -> Result<Json<Action>, ApiError> {
    let id = action_id(&id)?;
    let body: CancelBody = if signed.body.is_empty() {
        CancelBody::default()
    } else {
        parse_json(&signed.body)?
    };
    let reason = body.reason.filter(|r| !r.trim().is_empty());
    if reason.as_ref().is_some_and(|r| r.chars().count() > 2000) {
        return Err(ApiError::Invalid("reason: at most 2000 characters".into()));
    }
    Ok(Json(
        state.service.cancel(&signed.client, &id, reason).await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    #[schema(value_type = super::openapi::BreakGlassOutcome)]
    outcome: Outcome,
    by: String,
    reason: Option<String>,
}

/// Decides an action directly (role `admin`).
///
/// Break-glass, for when Slack is down; audited as such.
#[utoipa::path(
    post,
    path = "/v1/actions/{id}/decision",
    tag = "actions",
    params(("id" = ActionId, Path, description = "The action id")),
    request_body = DecisionBody,
    responses(
        (status = 200, description = "The decided action", body = Action),
        (status = 403, description = "The client does not have the admin role", body = ErrorBody),
        (status = 404, description = "No such action", body = ErrorBody),
        (status = 409, description = "The action is already decided", body = ErrorBody),
        SignedErrors,
    )
)]
async fn decide(
    State(state): State<AppState>,
    Path(id): Path<String>,
    signed: SignedRequest,
) -> Result<Json<Action>, ApiError> {
    let id = action_id(&id)?;
    let body: DecisionBody = parse_json(&signed.body)?;
    let by = body.by.trim();
    if by.is_empty() || by.chars().count() > 256 {
        return Err(ApiError::Invalid("by: 1 to 256 characters".into()));
    }
    if body
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > 2000)
    {
        return Err(ApiError::Invalid("reason: at most 2000 characters".into()));
    }
    let action = state
        .service
        .decide(&signed.client, &id, body.outcome, by, body.reason)
        .await?;
    Ok(Json(action))
}

//! `/v1/actions`: create, read, wait, cancel and the admin break-glass decision.

use super::error::ApiError;
use super::signed::{SignedCreate, SignedRequest};
use super::{AppState, parse_json};
use crate::domain::{Action, ActionId, Outcome};
use crate::policy::Role;
use crate::service::{ActionBody, CreateOutcome};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::time::Duration;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/actions", post(create))
        .route("/v1/actions/{id}", get(show))
        .route("/v1/actions/{id}/wait", get(wait))
        .route("/v1/actions/{id}/cancel", post(cancel))
        .route("/v1/actions/{id}/decision", post(decide))
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

async fn create(
    State(state): State<AppState>,
    signed: SignedCreate,
) -> Result<(StatusCode, Json<Action>), ApiError> {
    let spec = &signed.client.spec;
    if !spec.has_role(Role::Requester) && !spec.has_role(Role::Admin) {
        return Err(ApiError::Forbidden(
            "creating actions needs the requester role".into(),
        ));
    }
    match state
        .service
        .create(&signed.client, &signed.request_id, &signed.body)
        .await?
    {
        CreateOutcome::Created(action) => Ok((StatusCode::CREATED, Json(action))),
        CreateOutcome::Repeated(action) => Ok((StatusCode::OK, Json(action))),
    }
}

async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    signed: SignedRequest,
) -> Result<Json<Action>, ApiError> {
    let id = action_id(&id)?;
    Ok(Json(state.service.get(&signed.client, &id).await?))
}

#[derive(Deserialize)]
struct WaitQuery {
    timeout: Option<u64>,
}

async fn wait(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    signed: SignedRequest,
) -> Result<ActionBody, ApiError> {
    let id = action_id(&id)?;
    let Query(query) =
        query.map_err(|_| ApiError::Invalid("timeout: must be a number of seconds".into()))?;
    let timeout = Duration::from_secs(query.timeout.unwrap_or(30));
    Ok(state.service.wait(&signed.client, &id, timeout).await?)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    reason: Option<String>,
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    outcome: Outcome,
    by: String,
    reason: Option<String>,
}

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

//! The one HTTP error type: `{"error": {"code", "message"}}` with the documented statuses.

use crate::error::{ErrorBody, ErrorCode};
use crate::service::{Forbidden, Permission, ServiceError};
use crate::store::StoreError;
use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `invalid_request`
    #[error("{0}")]
    Invalid(String),
    /// 401 `unauthorized`
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403 `forbidden`
    #[error("{0}")]
    Forbidden(String),
    /// 404 `not_found`
    #[error("{0}")]
    NotFound(String),
    /// 409 `conflict`
    #[error("{0}")]
    Conflict(String),
    /// 413 `payload_too_large`
    #[error("request body is larger than 64 KiB")]
    PayloadTooLarge,
    /// 422 `requester_unverifiable`: self-approval is forbidden, and the requester has
    /// neither `email` nor `slack_user_id`.
    #[error("{0}")]
    RequesterUnverifiable(String),
    /// 422 `window_not_allowed`: an access window was asked of a rule without
    /// `max_window`.
    #[error("{0}")]
    WindowNotAllowed(String),
    /// 415 `unsupported_media_type`
    #[error("request body must be application/json")]
    UnsupportedMediaType,
    /// 429 `too_many_pending`: the client is at its `max_pending`.
    #[error("{0}")]
    TooManyPending(String),
    /// 503 `unavailable`: the store cannot be reached; nothing was changed or approved.
    #[error("the service cannot reach its store; nothing was changed, try again")]
    Unavailable,
    /// 500 `internal`: logged with its cause, answered with nothing of it.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, ErrorCode) {
        match self {
            ApiError::Invalid(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorCode::Forbidden),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, ErrorCode::Conflict),
            ApiError::PayloadTooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge)
            }
            ApiError::RequesterUnverifiable(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::RequesterUnverifiable,
            ),
            ApiError::WindowNotAllowed(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::WindowNotAllowed,
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
            ),
            ApiError::TooManyPending(_) => {
                (StatusCode::TOO_MANY_REQUESTS, ErrorCode::TooManyPending)
            }
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        }
    }
}

/// Each typed refusal of the service as the API words it.
impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::InvalidRequest(m) => ApiError::Invalid(m),
            ServiceError::ReasonRequired(rule) => {
                ApiError::Invalid(format!("reason: required by rule `{rule}`"))
            }
            ServiceError::BreakGlassOutcome(_) => {
                ApiError::Invalid("outcome: must be `approved` or `denied`".into())
            }
            ServiceError::Forbidden(f) => ApiError::Forbidden(forbidden_message(f).into()),
            ServiceError::NotFound => ApiError::NotFound("no such action".into()),
            ServiceError::WebhookIdReused => {
                ApiError::Conflict("this webhook-id was already used with a different body".into())
            }
            ServiceError::AlreadyDecided(e) => ApiError::Conflict(e.to_string()),
            ServiceError::NoGrant(status) => ApiError::Conflict(format!(
                "action is {status}: only an approved action has a grant to revoke"
            )),
            ServiceError::Contended => {
                ApiError::Conflict("the action kept changing; try again".into())
            }
            ServiceError::RequesterUnverifiable(rule) => ApiError::RequesterUnverifiable(format!(
                "requester: rule `{rule}` forbids self-approval, so the requester needs `email` or `slack_user_id` to be told apart from the approvers"
            )),
            ServiceError::TooManyPending(limit) => ApiError::TooManyPending(format!(
                "this client already has {limit} pending actions, its limit (max_pending); wait for some to be decided"
            )),
            ServiceError::WindowNotAllowed(rule) => ApiError::WindowNotAllowed(format!(
                "window_seconds: rule `{rule}` allows no access windows (it has no max_window)"
            )),
            ServiceError::WindowGrantNotConsumable => ApiError::Invalid(
                "consume: an access window's grant is used (`use: true`), never consumed".into(),
            ),
            ServiceError::Store(e) => e.into(),
        }
    }
}

impl From<Forbidden> for ApiError {
    fn from(f: Forbidden) -> Self {
        ServiceError::Forbidden(f).into()
    }
}

/// What a refused client is told it lacks.
fn forbidden_message(f: Forbidden) -> &'static str {
    match f {
        Forbidden::NotTheCreator => "only the client that created an action may cancel it",
        Forbidden::Lacks(p) => match p {
            Permission::CreateActions => "creating actions needs the requester role",
            Permission::DecideActions => "deciding an action needs the admin role",
            Permission::RevokeGrants => "revoking a grant needs the admin role",
            Permission::ReloadPolicy => "reloading the policy needs the admin role",
            Permission::ReadAudit => "reading the audit trail needs the auditor or admin role",
            Permission::ReadAllActions => {
                "reading other clients' actions needs the auditor or admin role"
            }
            Permission::VerifyAnyGrant => "verifying other clients' grants needs the admin role",
        },
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => {
                tracing::warn!(%cause, "store unavailable; failing closed");
                ApiError::Unavailable
            }
            StoreError::Corrupt(_) => ApiError::Internal(e.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = ?cause, "internal error");
        }
        let body = ErrorBody::new(code, self.to_string());
        if matches!(self, ApiError::PayloadTooLarge) {
            // The rest of the body was not read: close, and say so, so that a client
            // reusing the connection does not send its next request into it.
            return (status, [(header::CONNECTION, "close")], Json(body)).into_response();
        }
        (status, Json(body)).into_response()
    }
}

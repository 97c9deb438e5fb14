//! `GET /v1/audit`: the audit trail, oldest first, a page at a time (role `auditor` or
//! `admin`).

use super::AppState;
use super::error::ApiError;
use super::signed::SignedNoBody;
use crate::audit::{DEFAULT_LIMIT, MAX_LIMIT, Page};
use crate::domain::ActionId;
use crate::store::parse_stream_id;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// Only this action's entries (the scan is bounded: see `audit::SCAN_BUDGET`).
    action_id: Option<String>,
    /// The cursor: the `id` of the last entry seen, or a page's `next`.
    after: Option<String>,
    /// Entries per page: default 100, at most 1000 (more is capped).
    limit: Option<u64>,
}

/// Reads the audit trail (role `auditor` or `admin`).
///
/// Entries come oldest first, a page at a time; `next` is the cursor for `after`.
#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of entries", body = Page),
        (status = 403, description = "Needs the auditor or admin role", body = super::openapi::ErrorBody),
        super::openapi::SignedErrors,
    )
)]
async fn list(
    State(state): State<AppState>,
    query: Result<Query<AuditQuery>, QueryRejection>,
    signed: SignedNoBody,
) -> Result<Json<Page>, ApiError> {
    let audit = state.service.audit_for(&signed.client)?;
    let Query(query) = query.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let after = query.after.filter(|a| !a.is_empty());
    if after
        .as_deref()
        .is_some_and(|a| parse_stream_id(a).is_none())
    {
        return Err(ApiError::Invalid(
            "after: must be the id of an audit entry (e.g. 1767225600000-0)".into(),
        ));
    }
    let action_id = query
        .action_id
        .filter(|a| !a.is_empty())
        .map(|a| a.parse::<ActionId>())
        .transpose()
        .map_err(|_| ApiError::Invalid("action_id: not an action id (act_...)".into()))?;
    let limit = match query.limit {
        None => DEFAULT_LIMIT,
        Some(0) => return Err(ApiError::Invalid("limit: at least 1".into())),
        Some(n) => n.min(MAX_LIMIT as u64) as usize,
    };
    let page = audit
        .page(after.as_deref(), limit, action_id.as_ref())
        .await?;
    Ok(Json(page))
}

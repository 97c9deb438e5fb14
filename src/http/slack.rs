//! `/slack/interactions` and `/slack/commands`: signed by Slack (not by clients), verified
//! on the raw body before the form is decoded.

use super::AppState;
use super::error::ApiError;
use super::signed::BODY_LIMIT;
use crate::slack::verify::{HEADER_SIGNATURE, HEADER_TIMESTAMP};
use crate::slack::{Ack, Interaction, Slack, SlashCommand};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use std::sync::Arc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/slack/interactions", post(interactions))
        .route("/slack/commands", post(commands))
}

/// A request whose Slack signature verified, with its raw body.
pub struct VerifiedSlack {
    slack: Arc<Slack>,
    body: Bytes,
}

impl FromRequest<AppState> for VerifiedSlack {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let slack = state
            .slack
            .clone()
            .ok_or_else(|| ApiError::NotFound("Slack is not configured".into()))?;
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, BODY_LIMIT)
            .await
            .map_err(|_| ApiError::PayloadTooLarge)?;
        let header = |name| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
        };
        slack
            .verify(header(HEADER_TIMESTAMP), header(HEADER_SIGNATURE), &body)
            .map_err(|e| {
                tracing::info!(reason = %e, "rejected a Slack callback");
                ApiError::Unauthorized("Slack signature does not verify")
            })?;
        Ok(Self { slack, body })
    }
}

async fn interactions(
    State(state): State<AppState>,
    verified: VerifiedSlack,
) -> Result<Response, ApiError> {
    let interaction =
        Interaction::from_form(&verified.body).map_err(|e| ApiError::Invalid(e.to_string()))?;
    // Signed by our app, but maybe from another workspace it is installed in: that
    // changes nothing (answered 200 so Slack shows no error; the clicker is told).
    if let Some(team) = interaction.team_id()
        && let Err(refusal) = verified.slack.admit(team).await
    {
        verified
            .slack
            .refuse(&state.service, &interaction, &refusal)
            .await;
        return Ok(().into_response());
    }
    Ok(match verified.slack.handle(&state.service, interaction) {
        Ack::Empty => ().into_response(),
        Ack::Json(body) => Json(body).into_response(),
    })
}

async fn commands(
    State(state): State<AppState>,
    verified: VerifiedSlack,
) -> Result<Json<serde_json::Value>, ApiError> {
    let cmd = SlashCommand::from_form(&verified.body)
        .map_err(|e| ApiError::Invalid(format!("form: {e}")))?;
    let team = Some(cmd.team_id.as_str()).filter(|t| !t.is_empty());
    if let Err(refusal) = verified.slack.admit(team).await {
        tracing::warn!(user = %cmd.user_id, team, own = ?verified.slack.own_workspace(),
            "refused a slash command from another Slack workspace");
        return Ok(Json(
            serde_json::json!({"response_type": "ephemeral", "text": refusal.text()}),
        ));
    }
    Ok(Json(verified.slack.command(&state.service, cmd).await))
}

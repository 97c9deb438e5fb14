//! The extractor that authenticates clients: it reads the raw body
//! (at most 64 KiB), verifies the Standard Webhooks signature on those exact bytes before
//! anything parses them, and rejects replays: a `webhook-id` is good for one request,
//! on one endpoint (see [`crate::service::SignedUse`]).

use super::{AppState, error::ApiError};
use crate::service::{Client, SignedUse, WebhookIdUse};
use crate::signing::{self, HEADER_CLIENT, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use axum::body::Bytes;
use axum::extract::{FromRequest, OriginalUri, Request};
use axum::http::{HeaderMap, header};
use std::sync::Arc;

pub const BODY_LIMIT: usize = 64 * 1024;

/// A verified client request. With `REPLAY = true` (every route but `POST /v1/actions`),
/// a `webhook-id` seen before is rejected; `POST /v1/actions` instead treats a repeat on
/// itself as an idempotent retry (and a use elsewhere as a replay). With `BODY = false`
/// the route takes no body and refuses one (`400`): a body-less request signs its method
/// and path, so a body there could only be one signed for another request.
pub struct Signed<const REPLAY: bool, const BODY: bool = true> {
    pub client: Arc<Client>,
    pub request_id: String,
    pub body: Bytes,
}

/// Any signed `/v1` request other than creating an action.
pub type SignedRequest = Signed<true>;
/// `POST /v1/actions`, whose `webhook-id` is its idempotency key.
pub type SignedCreate = Signed<false>;
/// A signed request to a route that takes no body (the `GET`s).
pub type SignedNoBody = Signed<true, false>;

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, ApiError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .ok_or(ApiError::Unauthorized(match name {
            HEADER_CLIENT => "missing greenlight-client header",
            HEADER_ID => "missing webhook-id header",
            HEADER_TIMESTAMP => "missing webhook-timestamp header",
            _ => "missing webhook-signature header",
        }))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| {
            m.type_() == mime::APPLICATION
                && (m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON))
        })
}

impl<const REPLAY: bool, const BODY: bool> FromRequest<AppState> for Signed<REPLAY, BODY> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let path_and_query = req
            .extensions()
            .get::<OriginalUri>()
            .map(|u| u.0.clone())
            .unwrap_or_else(|| req.uri().clone());
        let path = path_and_query.path().to_owned();
        let path_and_query = path_and_query
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let (parts, body) = req.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > BODY_LIMIT) {
            return Err(ApiError::PayloadTooLarge);
        }
        let body = axum::body::to_bytes(body, BODY_LIMIT)
            .await
            .map_err(|_| ApiError::PayloadTooLarge)?;

        let headers = &parts.headers;
        let client_id = header(headers, HEADER_CLIENT)?;
        let request_id = header(headers, HEADER_ID)?;
        let timestamp = header(headers, HEADER_TIMESTAMP)?;
        let signature = header(headers, HEADER_SIGNATURE)?;
        let client = state
            .service
            .client(client_id)
            .ok_or(ApiError::Unauthorized("unknown client"))?;
        let content = signing::signed_content(&body, parts.method.as_str(), &path_and_query);
        signing::verify(
            &client.secrets,
            request_id,
            timestamp,
            signature,
            &content,
            chrono::Utc::now().timestamp(),
        )
        .map_err(|e| {
            tracing::info!(client = client_id, reason = %e, "rejected a request signature");
            ApiError::Unauthorized(match e {
                signing::VerifyError::BadTimestamp | signing::VerifyError::Stale => {
                    "webhook-timestamp is missing, malformed or more than 300 s off"
                }
                signing::VerifyError::Mismatch => "signature does not verify",
            })
        })?;
        if request_id.len() > 256 {
            return Err(ApiError::Invalid(
                "webhook-id: at most 256 characters".into(),
            ));
        }
        if !BODY && !body.is_empty() {
            return Err(ApiError::Invalid(format!(
                "{} {path} takes no request body",
                parts.method
            )));
        }
        if !body.is_empty() && !is_json(headers) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let used = SignedUse {
            method: parts.method.as_str(),
            path: &path,
            body: &body,
            idempotent: !REPLAY,
        };
        match state
            .service
            .claim_webhook_id(&client, request_id, &used)
            .await?
        {
            WebhookIdUse::First | WebhookIdUse::Repeat => {}
            WebhookIdUse::Replay => {
                tracing::info!(client = client.id(), method = %parts.method, path, "refused a reused webhook-id");
                return Err(ApiError::Unauthorized(
                    "webhook-id was already used (replay)",
                ));
            }
        }
        Ok(Self {
            client,
            request_id: request_id.to_owned(),
            body,
        })
    }
}

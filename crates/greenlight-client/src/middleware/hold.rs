//! Holding one HTTP request until its action is decided: the part the
//! [`RequireApproval`](super::RequireApproval) layer and `greenlight proxy` share.
//!
//! A request is held (`Ask::Hold`), or answered `202` at once when the caller prefers
//! (`Prefer: respond-async`). A caller that got a `202` sends the same request again with
//! `Greenlight-Action-Id`; that resumes the action instead of asking anew.
//!
//! Every held request is bound to its [`Binding`]: the action carries the digest of the
//! request (method, canonical target, body), the grant carries it too, and an approval
//! releases only a request with that digest, once: the grant is consumed on the server
//! before anything is forwarded, on the held path and on the resumed one alike, so a
//! second use is answered `409`.

use super::headers::{ACTION_ID, GRANT};
use crate::client::{Client, ClientError};
use crate::domain::{Action, ActionId, ActionRequest, Binding, Status};
use crate::error::{ErrorBody, ErrorCode};
use axum_core::body::Body;
use axum_core::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Holding a request longer than this is a configuration mistake rather than a policy.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(300);

/// How many requests one gate holds at once by default; more are answered `503`.
pub const DEFAULT_MAX_HELD: usize = 1000;

/// How the caller wants to be answered, from its headers.
#[derive(Clone, Debug, PartialEq)]
pub enum Ask {
    /// Hold the request until decided (or the hold timeout).
    Hold,
    /// `Prefer: respond-async`: answer `202` while pending.
    RespondAsync,
    /// `Greenlight-Action-Id`: the caller retries a request it was told to poll for.
    Resume { id: ActionId, respond_async: bool },
}

impl Ask {
    /// `Greenlight-Action-Id` (resume) and `Prefer: respond-async` (RFC 7240).
    // A rejection is a `Response`, as in axum's own extractors; it is built once per
    // refused request, never in a hot loop.
    #[allow(clippy::result_large_err)]
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, Response> {
        let respond_async = headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case("respond-async"));
        match headers.get(ACTION_ID) {
            None if respond_async => Ok(Ask::RespondAsync),
            None => Ok(Ask::Hold),
            Some(v) => {
                let id = v
                    .to_str()
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| {
                        refusal(
                            StatusCode::BAD_REQUEST,
                            ErrorCode::InvalidRequest,
                            "Greenlight-Action-Id is not an action id",
                            None,
                        )
                    })?;
                Ok(Ask::Resume { id, respond_async })
            }
        }
    }
}

/// What became of a held request.
pub enum Verdict {
    /// Approved, and the grant verified: forward, with [`Verdict::grant_headers`].
    Approved(Box<Action>),
    /// Answer this instead of forwarding.
    Answer(Response),
}

/// Asks for approval of requests and waits for the decision, with one [`Client`].
#[derive(Clone, Debug)]
pub struct Holder {
    client: Client,
    hold: Duration,
    /// One permit per request held at once.
    held: Arc<Semaphore>,
}

impl Holder {
    pub fn new(client: Client, hold: Duration) -> Self {
        Self {
            client,
            hold,
            held: Arc::new(Semaphore::new(DEFAULT_MAX_HELD)),
        }
    }

    /// At most `max` requests held at once; more are answered `503` at once.
    pub fn with_max_held(mut self, max: usize) -> Self {
        self.held = Arc::new(Semaphore::new(max));
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Decides the fate of the request `binding` describes, asking for `request`.
    pub async fn hold(&self, mut request: ActionRequest, binding: Binding, ask: Ask) -> Verdict {
        let Ok(_permit) = self.held.try_acquire() else {
            tracing::warn!("too many requests held for approval; refusing one");
            return Verdict::Answer(refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                "too many requests are waiting for approval here; try again later",
                None,
            ));
        };
        let digest = binding.digest.clone();
        request.binding = Some(binding);
        match self.decide(request, &digest, ask).await {
            Ok(verdict) => verdict,
            Err(e) => Verdict::Answer(failure(&e)),
        }
    }

    async fn decide(
        &self,
        request: ActionRequest,
        digest: &str,
        ask: Ask,
    ) -> Result<Verdict, ClientError> {
        let (action, respond_async) = match ask {
            Ask::Hold => (self.client.request(&request).await?, false),
            Ask::RespondAsync => (self.client.request(&request).await?, true),
            Ask::Resume { id, respond_async } => {
                let action = self.client.get(&id).await?;
                // An approval is for one request by one requester: a caller cannot carry
                // it over to another (another body, path, method or person).
                if action.action != request.action
                    || action.resource != request.resource
                    || action.requester.id != request.requester.id
                    || action.binding.as_ref().map(|b| b.digest.as_str()) != Some(digest)
                {
                    return Ok(Verdict::Answer(refusal(
                        StatusCode::FORBIDDEN,
                        ErrorCode::Forbidden,
                        "Greenlight-Action-Id names an approval for another request",
                        Some(&action),
                    )));
                }
                (action, respond_async)
            }
        };
        let action = if action.is_pending() && !respond_async {
            tracing::info!(action_id = %action.id, action = %action.action,
                resource = %action.resource, "holding a request for approval");
            self.client.wait(&action.id, self.hold).await?
        } else {
            action
        };
        if action.status == Status::Approved {
            // The grant names this very request (the client checks `dig` against the
            // action's binding, and the binding against ours here).
            let claims = self.client.verify_grant(&action).await?;
            if claims.dig.as_deref() != Some(digest) {
                return Ok(Verdict::Answer(refusal(
                    StatusCode::FORBIDDEN,
                    ErrorCode::Forbidden,
                    "the approval is for another request",
                    Some(&action),
                )));
            }
            if !self.client.consume_grant(&action).await? {
                return Ok(Verdict::Answer(refusal(
                    StatusCode::CONFLICT,
                    ErrorCode::Conflict,
                    "this approval was already used (or revoked)",
                    Some(&action),
                )));
            }
        }
        Ok(match action.status {
            Status::Approved => Verdict::Approved(Box::new(action)),
            Status::Pending if respond_async => Verdict::Answer(accepted(&self.client, &action)),
            Status::Pending => Verdict::Answer(still_pending(&self.client, &action)),
            _ => Verdict::Answer(refusal(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                &format!("not approved: the action was {}", action.status),
                Some(&action),
            )),
        })
    }
}

impl Verdict {
    /// The headers an approved request is forwarded with: the grant and the action id.
    pub fn grant_headers(action: &Action) -> [(&'static str, HeaderValue); 2] {
        let token = action
            .decision
            .as_ref()
            .and_then(|d| d.grant.as_ref())
            .map(|g| g.token.as_str())
            .unwrap_or_default();
        [
            (
                GRANT,
                HeaderValue::from_str(token).expect("a JWT is a header value"),
            ),
            (
                ACTION_ID,
                HeaderValue::from_str(action.id.as_str()).expect("an id is a header value"),
            ),
        ]
    }
}

/// The documented error body for a request refused before anything was asked.
pub(super) fn rejection(status: StatusCode, message: &str) -> Response {
    let code = match status {
        StatusCode::BAD_REQUEST => ErrorCode::InvalidRequest,
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        _ => ErrorCode::Error,
    };
    refusal(status, code, message, None)
}

/// `{"error": {...}, "action": {...}}`: the API's error body, with the action's outcome.
fn refusal(
    status: StatusCode,
    code: ErrorCode,
    message: &str,
    action: Option<&Action>,
) -> Response {
    let mut body = ErrorBody::new(code, message).to_value();
    if let Some(a) = action {
        body["action"] = outcome(a);
    }
    json_response(status, &body)
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn outcome(action: &Action) -> serde_json::Value {
    let decision = action.decision.as_ref();
    json!({
        "id": action.id, "status": action.status,
        "action": action.action, "resource": action.resource,
        "decided_by": decision.map(|d| &d.decided_by),
        "reason": decision.and_then(|d| d.reason.as_ref()),
        "expires_at": crate::domain::rfc3339::format(&action.expires_at),
    })
}

/// `202 Accepted`: pending; poll `Location` (the action on Greenlight), then send the
/// request again with `Greenlight-Action-Id`.
fn accepted(client: &Client, action: &Action) -> Response {
    let mut response = json_response(StatusCode::ACCEPTED, &json!({ "action": outcome(action) }));
    let headers = response.headers_mut();
    pending_headers(headers, client, action);
    headers.insert(
        "preference-applied",
        HeaderValue::from_static("respond-async"),
    );
    response
}

/// `504`: still pending when the hold timed out. The action stays open: the caller may
/// send the request again with `Greenlight-Action-Id` once it is approved.
fn still_pending(client: &Client, action: &Action) -> Response {
    let mut response = refusal(
        StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::Pending,
        "no decision in time; retry with Greenlight-Action-Id once approved",
        Some(action),
    );
    pending_headers(response.headers_mut(), client, action);
    response
}

fn pending_headers(headers: &mut HeaderMap, client: &Client, action: &Action) {
    if let Ok(v) = HeaderValue::from_str(&client.action_url(&action.id)) {
        headers.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(action.id.as_str()) {
        headers.insert(ACTION_ID, v);
    }
}

/// Greenlight said no to the request itself, could not be reached, or answered an
/// approval whose grant does not verify. Never forwards: fail closed.
fn failure(e: &ClientError) -> Response {
    match e {
        ClientError::Grant(g) if !g.is_unavailable() => {
            tracing::warn!(error = %g, "an approval whose grant does not verify; refusing");
            refusal(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "not approved: the grant does not verify",
                None,
            )
        }
        ClientError::Api {
            status: 400 | 409 | 413 | 415,
            message,
            ..
        } => refusal(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            &format!("Greenlight rejected the approval request: {message}"),
            None,
        ),
        // The gate describes requesters without an email or Slack id, under a rule that
        // forbids self-approval: a configuration to fix, said as Greenlight says it.
        ClientError::Api {
            status: 422,
            code,
            message,
        } => refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            code.clone(),
            message,
            None,
        ),
        ClientError::Api { status: 404, .. } => refusal(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "Greenlight-Action-Id names no action of this service",
            None,
        ),
        other => {
            tracing::error!(error = %other, "cannot get an approval decision; refusing");
            refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                "the approval service is unavailable",
                None,
            )
        }
    }
}

//! A client for Greenlight's HTTP API: signs every request with the same code the server
//! verifies with, and waits by long-poll. The CLI is built on it.

use crate::domain::{Action, ActionId, ActionRequest, Outcome};
use crate::signing::{self, Secret};
use reqwest::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{code} ({status}): {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("cannot reach Greenlight: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("{0}")]
    Config(String),
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    id: String,
    secret: Secret,
    http: reqwest::Client,
}

pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";
pub const DEFAULT_CLIENT_ID: &str = "local";

impl Client {
    pub fn new(base_url: &str, client_id: &str, secret: Secret) -> Self {
        Self {
            base: base_url.trim_end_matches('/').to_owned(),
            id: client_id.to_owned(),
            secret,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .expect("an HTTP client with default TLS"),
        }
    }

    /// From `GREENLIGHT_URL` (default `http://127.0.0.1:8080`), `GREENLIGHT_CLIENT_ID`
    /// (default `local`) and `GREENLIGHT_CLIENT_SECRET`.
    pub fn from_env() -> Result<Self, ClientError> {
        let url = std::env::var("GREENLIGHT_URL").unwrap_or_else(|_| DEFAULT_URL.into());
        let id = std::env::var("GREENLIGHT_CLIENT_ID").unwrap_or_else(|_| DEFAULT_CLIENT_ID.into());
        let raw = std::env::var("GREENLIGHT_CLIENT_SECRET")
            .map_err(|_| ClientError::Config("GREENLIGHT_CLIENT_SECRET is not set".into()))?;
        let secret = Secret::parse(&raw)
            .map_err(|e| ClientError::Config(format!("GREENLIGHT_CLIENT_SECRET {e}")))?;
        Ok(Self::new(&url, &id, secret))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let body = body.unwrap_or_default();
        let now = chrono::Utc::now().timestamp();
        let headers = signing::headers(
            &self.id,
            &self.secret,
            &body,
            method.as_str(),
            path_and_query,
            now,
        );
        let mut req = self
            .http
            .request(method, format!("{}{path_and_query}", self.base))
            .timeout(timeout);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        if !body.is_empty() {
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| ClientError::Api {
                status: status.as_u16(),
                code: "bad_response".into(),
                message: e.to_string(),
            });
        }
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => (b.error.code, b.error.message),
            Err(_) => ("http_error".into(), String::from_utf8_lossy(&bytes).into()),
        };
        Err(ClientError::Api {
            status: status.as_u16(),
            code,
            message,
        })
    }

    const CALL_TIMEOUT: Duration = Duration::from_secs(30);

    pub async fn request(&self, request: &ActionRequest) -> Result<Action, ClientError> {
        let body = serde_json::to_vec(request).expect("requests serialize");
        self.call(Method::POST, "/v1/actions", Some(body), Self::CALL_TIMEOUT)
            .await
    }

    pub async fn get(&self, id: &ActionId) -> Result<Action, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/actions/{id}"),
            None,
            Self::CALL_TIMEOUT,
        )
        .await
    }

    /// One long-poll of at most `seconds` (the server caps it).
    pub async fn wait_once(&self, id: &ActionId, seconds: u64) -> Result<Action, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/actions/{id}/wait?timeout={seconds}"),
            None,
            Duration::from_secs(seconds + 15),
        )
        .await
    }

    /// Waits until the action is decided or `timeout` passes, long-polling and riding out
    /// transient failures (a restarting server, a load balancer hiccup).
    pub async fn wait(&self, id: &ActionId, timeout: Duration) -> Result<Action, ClientError> {
        let deadline = Instant::now() + timeout;
        let mut backoff = Duration::from_millis(200);
        loop {
            // Whole seconds rounded up: rounded down, `--timeout 1s` would not wait at all
            // and every timeout would give up to a second early.
            let left = deadline.saturating_duration_since(Instant::now());
            let seconds = left.as_millis().div_ceil(1000).min(60) as u64;
            match self.wait_once(id, seconds).await {
                Ok(action) if !action.is_pending() || Instant::now() + WAIT_SLACK >= deadline => {
                    return Ok(action);
                }
                Ok(_) => backoff = Duration::from_millis(200),
                Err(e) if is_transient(&e) && Instant::now() + backoff < deadline => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub async fn cancel(&self, id: &ActionId, reason: Option<&str>) -> Result<Action, ClientError> {
        let body = reason.map(|r| json!({ "reason": r }).to_string().into_bytes());
        self.call(
            Method::POST,
            &format!("/v1/actions/{id}/cancel"),
            body,
            Self::CALL_TIMEOUT,
        )
        .await
    }

    /// Break-glass decision; needs the `admin` role.
    pub async fn decide(
        &self,
        id: &ActionId,
        outcome: Outcome,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Action, ClientError> {
        let body = json!({ "outcome": outcome, "by": by, "reason": reason });
        self.call(
            Method::POST,
            &format!("/v1/actions/{id}/decision"),
            Some(body.to_string().into_bytes()),
            Self::CALL_TIMEOUT,
        )
        .await
    }

    /// One page of the audit trail after the cursor `after` (oldest first); needs the
    /// `auditor` or `admin` role. With `action_id`, only that action's entries.
    pub async fn audit(
        &self,
        after: Option<&str>,
        limit: usize,
        action_id: Option<&str>,
    ) -> Result<crate::audit::Page, ClientError> {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("limit", &limit.to_string());
        if let Some(after) = after {
            query.append_pair("after", after);
        }
        if let Some(id) = action_id {
            query.append_pair("action_id", id);
        }
        self.call(
            Method::GET,
            &format!("/v1/audit?{}", query.finish()),
            None,
            Self::CALL_TIMEOUT,
        )
        .await
    }
}

/// A long-poll that ends this close to the deadline ends the wait: another poll would
/// overshoot it by a whole second.
const WAIT_SLACK: Duration = Duration::from_millis(250);

fn is_transient(e: &ClientError) -> bool {
    match e {
        ClientError::Transport(_) => true,
        ClientError::Api { status, .. } => matches!(status, 429 | 502 | 503 | 504),
        ClientError::Config(_) => false,
    }
}

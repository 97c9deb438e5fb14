//! A client for Greenlight's HTTP API: signs every request with the same code the server
//! verifies with, waits for decisions (by long-poll, or on Redis pub/sub), and takes a
//! decision as an approval only when its grant verifies against the server's JWKS.
//! The CLI, `greenlight gate`, the [`RequireApproval`](crate::middleware::RequireApproval)
//! layer and `greenlight proxy` are all built on it.
//!
//! ```no_run
//! use greenlight_client::client::Client;
//! use greenlight_client::domain::{ActionRequest, Requester, Status};
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), greenlight_client::client::ClientError> {
//! // GREENLIGHT_URL, GREENLIGHT_CLIENT_ID, GREENLIGHT_CLIENT_SECRET (and, with the
//! // `redis` feature, GREENLIGHT_CLIENT_REDIS_URL to wait on Redis instead of long-polling).
//! let client = Client::from_env()?;
//! let request = ActionRequest {
//!     action: "db.drop_table".into(),
//!     resource: "postgres://prod/users".into(),
//!     requester: Requester { id: "u-123".into(), ..Default::default() },
//!     reason: Some("remove a table left over by migration 42".into()),
//!     ..Default::default()
//! };
//! let action = client.request_and_wait(&request, Duration::from_secs(600)).await?;
//! if action.status == Status::Approved {
//!     // The grant verified: safe to act, and to pass the token on.
//!     let token = &action.decision.as_ref().unwrap().grant.as_ref().unwrap().token;
//!     # let _ = token;
//! }
//! # Ok(())
//! # }
//! ```

mod access;
mod grant;
mod jwks;
#[cfg(feature = "redis")]
mod redis_wait;
mod wait;
pub mod window;

pub use grant::{GrantError, GrantVerifier};
pub use jwks::{JwksCache, JwksError};

use crate::Claims;
use crate::domain::{Action, ActionId, ActionRequest, Outcome};
use crate::error::{ErrorBody, ErrorCode};
use crate::signing::{self, Secret};
#[cfg(feature = "redis")]
use redis_wait::RedisWaits;
use reqwest::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body (or, for [`ErrorCode::BadResponse`] and
    /// [`ErrorCode::HttpError`], with something else).
    #[error("{code} ({status}): {message}")]
    Api {
        status: u16,
        code: ErrorCode,
        message: String,
    },
    #[error("cannot reach Greenlight: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("{0}")]
    Config(String),
    /// The action looks approved but its grant does not verify: not an approval.
    #[error("not approved: {0}")]
    Grant(#[from] GrantError),
}

/// A Greenlight client: cheap to clone (clones share the HTTP connection pool, the JWKS
/// cache and the Redis connection).
#[derive(Clone)]
pub struct Client {
    base: String,
    id: String,
    secret: Secret,
    http: reqwest::Client,
    grants: Arc<GrantVerifier>,
    #[cfg(feature = "redis")]
    redis: Option<Arc<RedisWaits>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("id", &self.id)
            .field("redis", &self.waits_on_redis())
            .finish_non_exhaustive()
    }
}

pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";
pub const DEFAULT_CLIENT_ID: &str = "local";
pub const DEFAULT_REDIS_PREFIX: &str = "greenlight";

impl Client {
    pub fn new(base_url: &str, client_id: &str, secret: Secret) -> Self {
        let base = base_url.trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client with default TLS");
        let jwks = JwksCache::new(format!("{base}/.well-known/jwks.json"), http.clone());
        Self {
            grants: Arc::new(GrantVerifier::new(jwks, client_id)),
            base,
            id: client_id.to_owned(),
            secret,
            http,
            #[cfg(feature = "redis")]
            redis: None,
        }
    }

    /// From `GREENLIGHT_URL` (default `http://127.0.0.1:8080`), `GREENLIGHT_CLIENT_ID`
    /// (default `local`) and `GREENLIGHT_CLIENT_SECRET`; when `GREENLIGHT_CLIENT_REDIS_URL`
    /// is set, waits subscribe there (channel prefix `GREENLIGHT_REDIS_PREFIX`, default
    /// `greenlight`).
    pub fn from_env() -> Result<Self, ClientError> {
        let url = std::env::var("GREENLIGHT_URL").unwrap_or_else(|_| DEFAULT_URL.into());
        let scheme_ok = url::Url::parse(&url)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
        if !scheme_ok {
            return Err(ClientError::Config(format!(
                "GREENLIGHT_URL: expected http://HOST:PORT or https://HOST, got `{url}`"
            )));
        }
        let id = std::env::var("GREENLIGHT_CLIENT_ID").unwrap_or_else(|_| DEFAULT_CLIENT_ID.into());
        let raw = std::env::var("GREENLIGHT_CLIENT_SECRET")
            .map_err(|_| ClientError::Config("GREENLIGHT_CLIENT_SECRET is not set".into()))?;
        let secret = Secret::parse(&raw)
            .map_err(|e| ClientError::Config(format!("GREENLIGHT_CLIENT_SECRET {e}")))?;
        let client = Self::new(&url, &id, secret);
        match std::env::var("GREENLIGHT_CLIENT_REDIS_URL") {
            #[cfg(feature = "redis")]
            Ok(redis) if !redis.is_empty() => {
                let prefix = std::env::var("GREENLIGHT_REDIS_PREFIX")
                    .unwrap_or_else(|_| DEFAULT_REDIS_PREFIX.into());
                client.with_redis(&redis, &prefix)
            }
            // Waiting by long-poll instead would be slower than the operator asked for,
            // and silently so.
            #[cfg(not(feature = "redis"))]
            Ok(redis) if !redis.is_empty() => Err(ClientError::Config(
                "GREENLIGHT_CLIENT_REDIS_URL is set, but this program was built without \
                 greenlight-client's `redis` feature"
                    .into(),
            )),
            _ => Ok(client),
        }
    }

    /// Whether waits subscribe on Redis rather than long-poll.
    pub fn waits_on_redis(&self) -> bool {
        #[cfg(feature = "redis")]
        return self.redis.is_some();
        #[cfg(not(feature = "redis"))]
        false
    }

    /// Waits subscribe to `{prefix}:decision:{id}` on this Redis (one connection for all
    /// of this client's waits, opened on the first) instead of long-polling the server.
    /// The URL is checked here; connecting happens on the first wait.
    #[cfg(feature = "redis")]
    pub fn with_redis(mut self, url: &str, prefix: &str) -> Result<Self, ClientError> {
        let waits = RedisWaits::new(url, prefix)
            .map_err(|e| ClientError::Config(format!("Redis URL: {e}")))?;
        self.redis = Some(Arc::new(waits));
        Ok(self)
    }

    /// Also require grants to carry this issuer (the server's `GREENLIGHT_PUBLIC_URL`).
    pub fn with_grant_issuer(mut self, issuer: &str) -> Self {
        let jwks = JwksCache::new(
            format!("{}/.well-known/jwks.json", self.base),
            self.http.clone(),
        );
        self.grants = Arc::new(GrantVerifier::new(jwks, &self.id).with_issuer(issuer));
        self
    }

    /// The client id requests are signed as.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The server's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The URL of an action on the server (signed clients only may read it).
    pub fn action_url(&self, id: &ActionId) -> String {
        format!("{}/v1/actions/{id}", self.base)
    }

    pub(crate) async fn call<T: DeserializeOwned>(
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
                code: ErrorCode::BadResponse,
                message: e.to_string(),
            });
        }
        let (code, message) = match ErrorBody::parse(&bytes) {
            Some(b) => (b.error.code, b.error.message),
            None => (ErrorCode::HttpError, String::from_utf8_lossy(&bytes).into()),
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

    /// The pending actions this client may read (all of them with the admin or auditor
    /// role), at most `limit` (1 to 1000).
    pub async fn pending(&self, limit: usize) -> Result<Vec<Action>, ClientError> {
        #[derive(Deserialize)]
        struct List {
            actions: Vec<Action>,
        }
        let list: List = self
            .call(
                Method::GET,
                &format!("/v1/actions?status=pending&limit={limit}"),
                None,
                Self::CALL_TIMEOUT,
            )
            .await?;
        Ok(list.actions)
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

    /// Asks for approval and waits for the decision: [`Client::request`], then
    /// [`Client::wait`] unless the policy decided at once.
    pub async fn request_and_wait(
        &self,
        request: &ActionRequest,
        timeout: Duration,
    ) -> Result<Action, ClientError> {
        let action = self.request(request).await?;
        if action.is_pending() {
            return self.wait(&action.id, timeout).await;
        }
        self.settle(action).await.map(|a| a.expect("decided"))
    }

    /// The claims of an approved action's grant, checked offline against the server's
    /// JWKS (fetched once, refetched on an unknown key id): signature, expiry, audience
    /// (the action's client) and scope (this action id, action name and resource).
    pub async fn verify_grant(&self, action: &Action) -> Result<Claims, ClientError> {
        Ok(self.grants.verify_action(action).await?)
    }

    /// The claims of a bare grant token issued to this client (signature, expiry,
    /// audience; scope is yours to check).
    pub async fn verify_grant_token(&self, token: &str) -> Result<Claims, ClientError> {
        Ok(self.grants.verify_token(token).await?)
    }

    /// Spends an approved action's grant on the server (`POST /v1/grants/verify` with
    /// `consume: true`): `Ok(true)` for the one caller that gets to use it, `Ok(false)`
    /// when it was used, revoked, or does not verify.
    pub async fn consume_grant(&self, action: &Action) -> Result<bool, ClientError> {
        let Some(grant) = action.decision.as_ref().and_then(|d| d.grant.as_ref()) else {
            return Ok(false);
        };
        #[derive(Deserialize)]
        struct Verdict {
            valid: bool,
        }
        let body = json!({
            "token": grant.token, "action": action.action,
            "resource": action.resource, "consume": true,
        });
        let verdict: Verdict = self
            .call(
                Method::POST,
                "/v1/grants/verify",
                Some(body.to_string().into_bytes()),
                Self::CALL_TIMEOUT,
            )
            .await?;
        Ok(verdict.valid)
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
    ) -> Result<AuditPage, ClientError> {
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

/// One page of the audit trail: the entries as the server keeps them (each a JSON
/// object with `seq`, `id`, `prev` and `hash`), and the cursor to continue after, `None`
/// at the end of the trail.
#[derive(Debug, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<Box<serde_json::value::RawValue>>,
    pub next: Option<String>,
}

pub(crate) fn is_transient(e: &ClientError) -> bool {
    match e {
        ClientError::Transport(_) => true,
        ClientError::Api { status, .. } => matches!(status, 429 | 502 | 503 | 504),
        ClientError::Config(_) | ClientError::Grant(_) => false,
    }
}

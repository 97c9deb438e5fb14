//! [`RequireApproval`]: a tower layer for axum services that holds matching requests until
//! a person approves them in Greenlight, then forwards them with the grant in the
//! `Greenlight-Grant` header; a request that is not approved gets a `403` naming the
//! outcome (or a `202` to poll, when the caller sends `Prefer: respond-async`). A request
//! that carries its requester's access window grant for what the extractor describes
//! goes through without a new approval, once Greenlight has counted the use
//! ([`WindowPass`]).
//!
//! ```no_run
//! use axum::{Router, http::StatusCode, routing::delete};
//! use greenlight_client::client::Client;
//! use greenlight_client::domain::{ActionRequest, Requester};
//! use greenlight_client::middleware::RequireApproval;
//!
//! # fn app() -> Result<Router, greenlight_client::client::ClientError> {
//! let approval = RequireApproval::new(Client::from_env()?)
//!     .route("DELETE /accounts/*")
//!     .extract(|req| {
//!         let user = req.headers.get("x-user").and_then(|v| v.to_str().ok());
//!         let user = user.ok_or((StatusCode::UNAUTHORIZED, "who are you?".to_owned()))?;
//!         Ok(ActionRequest {
//!             action: "accounts.delete".into(),
//!             resource: req.uri.path().into(),
//!             requester: Requester { id: user.into(), ..Default::default() },
//!             ..Default::default()
//!         })
//!     });
//! Ok(Router::new()
//!     .route("/accounts/{id}", delete(|| async { "deleted" }))
//!     .layer(approval))
//! # }
//! ```

pub mod canonical;
mod hold;
mod routes;
mod window;

pub use hold::{Ask, DEFAULT_HOLD, DEFAULT_MAX_HELD, Holder, Verdict};
pub use routes::RoutePattern;
pub use window::{WindowPass, offered_grant};

use crate::client::Client;
use crate::domain::{ActionRequest, Binding};
use axum_core::body::Body;
use axum_core::response::Response;
use futures::future::BoxFuture;
use http::request::Parts;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Layer, Service};

/// The header names Greenlight's gates use.
pub mod headers {
    /// The grant token, on a forwarded request. Removed from incoming requests, so only
    /// the gate can set it; a caller may offer an access window's grant in it, which the
    /// gate checks with Greenlight before forwarding it (see [`super::WindowPass`]).
    pub const GRANT: &str = "greenlight-grant";
    /// The action id: on a forwarded request, on a `202`/`504` answer, and from a caller
    /// resuming an action it was told to poll for.
    pub const ACTION_ID: &str = "greenlight-action-id";
}

/// Describes a matching request as an action request, or refuses it with a status and a
/// message (e.g. `401` when the caller cannot be identified), answered as the API's
/// JSON error body.
pub type Extractor = dyn Fn(&Parts) -> Result<ActionRequest, Rejection> + Send + Sync;

/// A refusal by the extractor.
pub type Rejection = (StatusCode, String);

/// The layer. Cheap to clone.
#[derive(Clone)]
pub struct RequireApproval {
    holder: Holder,
    routes: Arc<Vec<RoutePattern>>,
    extract: Arc<Extractor>,
    max_body: usize,
}

/// The largest body of a held request by default: it is read whole, to bind the approval
/// to it, and kept while the request waits.
pub const DEFAULT_MAX_HELD_BODY: usize = 1 << 20;

impl RequireApproval {
    /// No route gated yet, and an extractor that refuses everything: configure both.
    pub fn new(client: Client) -> Self {
        Self {
            holder: Holder::new(client, DEFAULT_HOLD),
            routes: Arc::default(),
            extract: Arc::new(|_| {
                Err((
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "no approval extractor configured".into(),
                ))
            }),
            max_body: DEFAULT_MAX_HELD_BODY,
        }
    }

    /// Gates requests matching `pattern`: `"DELETE /accounts/*"`, or `"/admin/*"` for any
    /// method (`*` and `?` globs on the path).
    ///
    /// # Panics
    /// On a pattern that does not parse: routes are fixed when the service is built.
    pub fn route(mut self, pattern: &str) -> Self {
        let parsed = pattern
            .parse()
            .unwrap_or_else(|e| panic!("route pattern `{pattern}`: {e}"));
        Arc::make_mut(&mut self.routes).push(parsed);
        self
    }

    /// How a matching request is described to Greenlight: action, resource, requester
    /// (and reason, context, ttl if you like).
    pub fn extract(
        mut self,
        f: impl Fn(&Parts) -> Result<ActionRequest, Rejection> + Send + Sync + 'static,
    ) -> Self {
        self.extract = Arc::new(f);
        self
    }

    /// The longest a request is held (default 5 minutes); then it is answered `504` and
    /// the action stays pending.
    pub fn hold_timeout(mut self, timeout: Duration) -> Self {
        self.holder = Holder::new(self.holder.client().clone(), timeout);
        self
    }

    /// At most `max` requests held at once (default [`DEFAULT_MAX_HELD`]); more are
    /// answered `503` at once.
    pub fn max_held(mut self, max: usize) -> Self {
        self.holder = self.holder.with_max_held(max);
        self
    }

    /// The largest body a held request may have (default 1 MiB; `413` beyond).
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.max_body = max;
        self
    }
}

impl<S> Layer<S> for RequireApproval {
    type Service = RequireApprovalService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireApprovalService {
            config: self.clone(),
            inner,
        }
    }
}

/// The service [`RequireApproval`] wraps around `S`.
#[derive(Clone)]
pub struct RequireApprovalService<S> {
    config: RequireApproval,
    inner: S,
}

impl<S> Service<Request<Body>> for RequireApprovalService<S>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // Only the gate sets the grant header: a caller's own is never passed on as sent.
        // It may offer an access window's grant, checked below before anything is
        // forwarded with it.
        let offered = offered_grant(request.headers());
        request.headers_mut().remove(headers::GRANT);
        // Every request goes on with its canonical target, the one routes are matched on,
        // so the service behind cannot read a path the routes did not see.
        match canonical::uri(request.method(), request.uri()) {
            Ok(None) => {}
            Ok(Some(uri)) => *request.uri_mut() = uri,
            Err(e) => {
                let answer = hold::rejection(StatusCode::BAD_REQUEST, &e.to_string());
                return Box::pin(async move { Ok(answer) });
            }
        }
        let gated = self
            .config
            .routes
            .iter()
            .any(|r| r.matches(request.method(), request.uri().path()));
        // The clone that was driven to readiness serves this request; a fresh clone is
        // left for the next (the tower pattern for services that hold a request).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !gated {
            // Nor an action id that looks like an approval of this request.
            request.headers_mut().remove(headers::ACTION_ID);
            return Box::pin(inner.call(request));
        }
        let config = self.config.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let ask = match Ask::from_headers(&parts.headers) {
                Ok(ask) => ask,
                Err(answer) => return Ok(answer),
            };
            let action_request = match (config.extract)(&parts) {
                Ok(r) => r,
                Err((status, message)) => return Ok(hold::rejection(status, &message)),
            };
            // A window's grant for exactly this action, resource and requester lets the
            // request through as it is, once Greenlight has counted the use.
            if let Some(token) = offered
                && let Some(pass) = config.holder.window_pass(&token, &action_request).await
            {
                for (name, value) in pass.headers() {
                    parts.headers.insert(name, value);
                }
                return inner.call(Request::from_parts(parts, body)).await;
            }
            // The body is read whole: the approval is bound to it, and exactly these
            // bytes are passed on.
            let limited = http_body_util::Limited::new(body, config.max_body);
            let Ok(body) = limited.collect().await.map(|b| b.to_bytes()) else {
                return Ok(hold::rejection(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the body of a request that needs approval is too large",
                ));
            };
            let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let binding = Binding::of(parts.method.as_str(), target, &body, None);
            match config.holder.hold(action_request, binding, ask).await {
                Verdict::Approved(action) => {
                    for (name, value) in Verdict::grant_headers(&action) {
                        parts.headers.insert(name, value);
                    }
                    inner
                        .call(Request::from_parts(parts, Body::from(body)))
                        .await
                }
                Verdict::Answer(answer) => Ok(answer),
            }
        })
    }
}

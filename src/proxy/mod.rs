//! `greenlight proxy`: a reverse proxy that puts approvals in front of an HTTP API without
//! changing it. Requests that match a route of `routes.toml` are held until approved and
//! then forwarded with the grant (or refused); all others pass straight through, streamed.
//! The holding is the [`RequireApproval`](crate::middleware::RequireApproval) layer's
//! ([`Holder`]); see `docs/proxy.md`.

mod body;
pub mod config;
mod forward;
mod requester;
mod strict_json;
mod template;

pub use config::ProxyConfig;

use crate::client::Client;
use crate::domain::{ActionRequest, Binding, Requester as Person};
use crate::middleware::canonical;
use crate::middleware::headers::{ACTION_ID, GRANT};
use crate::middleware::{Ask, Holder, Verdict, offered_grant};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::Response;
use body::{BodyVars, Evaluation};
use bytes::Bytes;
use config::{Limits, Route};
use forward::{Outgoing, Upstream};
use requester::Requester;
use std::net::SocketAddr;
use std::sync::Arc;
use template::Vars;
use tokio_util::sync::CancellationToken;

/// The proxy's state: routes, the Greenlight client, the upstream. Cheap to share.
pub struct Proxy {
    routes: Vec<Route>,
    limits: Limits,
    holder: Holder,
    upstream: Upstream,
    requester: Requester,
}

impl Proxy {
    pub fn new(config: ProxyConfig, client: Client, upstream: url::Url) -> Arc<Self> {
        let ProxyConfig {
            limits,
            requester,
            routes,
        } = config;
        Arc::new(Self {
            holder: Holder::new(client, limits.hold_timeout).with_max_held(limits.max_held),
            upstream: Upstream::new(upstream, limits.upstream_timeout, limits.max_body_bytes),
            requester: Requester::new(requester, reqwest::Client::new()),
            routes,
            limits,
        })
    }

    pub fn router(self: &Arc<Self>) -> Router {
        Router::new().fallback(handle).with_state(self.clone())
    }

    /// Serves on `listener` until `shutdown`, letting requests in flight finish.
    pub async fn serve(
        self: &Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let app = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    }
}

/// A route that matched, and what its templates need.
struct Matched<'a> {
    route: &'a Route,
    params: Vec<(String, String)>,
    body: BodyVars,
}

async fn handle(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let (mut parts, body) = request.into_parts();
    let limits = &proxy.limits;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes) {
        return forward::too_large();
    }
    let ask = Ask::from_headers(&parts.headers);
    // Only the proxy says what was approved: a caller's own grant header never passes as
    // sent. It may offer an access window's grant, checked below before it is forwarded.
    let offered = offered_grant(&parts.headers);
    parts.headers.remove(GRANT);
    parts.headers.remove(ACTION_ID);
    // Routes are matched on the canonical target, and that is what is forwarded.
    match canonical::uri(&parts.method, &parts.uri) {
        Ok(None) => {}
        Ok(Some(uri)) => parts.uri = uri,
        Err(e) => return forward::error(StatusCode::BAD_REQUEST, &e.to_string()),
    }

    let (matched, outgoing) = match find_route(&proxy, &parts, body).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let Some(matched) = matched else {
        return proxy.upstream.forward(parts, outgoing, peer).await;
    };
    let ask = match ask {
        Ok(ask) => ask,
        Err(answer) => return answer,
    };
    let requester = match proxy.requester.identify(&parts.headers).await {
        Ok(id) => id,
        Err(answer) => return answer,
    };
    let request = action_request(&parts, &matched, requester);
    tracing::debug!(route = %matched.route.name, "a request matches a route");
    // A window's grant for exactly this action, resource and requester (all taken from
    // the request as it is forwarded) lets it through, streamed, once Greenlight has
    // counted the use.
    if let Some(token) = offered
        && let Some(pass) = proxy.holder.window_pass(&token, &request).await
    {
        for (name, value) in pass.headers() {
            parts.headers.insert(name, value);
        }
        return proxy.upstream.forward(parts, outgoing, peer).await;
    }
    // A held request's body is read whole: the approval is bound to these bytes, and
    // exactly they are forwarded.
    let body = match outgoing {
        Outgoing::Read(bytes) => bytes,
        Outgoing::Stream(body) => {
            match axum::body::to_bytes(body, limits.max_inspected_body_bytes).await {
                Ok(bytes) => bytes,
                Err(_) => return forward::too_large(),
            }
        }
    };
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let binding = Binding::of(
        parts.method.as_str(),
        target,
        &body,
        matched.body.field.as_deref(),
    );
    match proxy.holder.hold(request, binding, ask).await {
        Verdict::Approved(action) => {
            for (name, value) in Verdict::grant_headers(&action) {
                parts.headers.insert(name, value);
            }
            tracing::info!(action_id = %action.id, "approved; forwarding");
            proxy
                .upstream
                .forward(parts, Outgoing::Read(body), peer)
                .await
        }
        Verdict::Answer(answer) => answer,
    }
}

/// The first route that matches the request, and its body to forward. Only a route with
/// a `body` condition makes the body be read (once, up to the inspection limit); otherwise
/// it stays a stream.
async fn find_route<'a>(
    proxy: &'a Proxy,
    parts: &Parts,
    body: Body,
) -> Result<(Option<Matched<'a>>, Outgoing), Response> {
    let mut body = Some(body);
    let mut read: Option<Bytes> = None;
    let mut matched = None;
    for route in &proxy.routes {
        let Some(params) = route.matches(&parts.method, parts.uri.path()) else {
            continue;
        };
        let body_vars = match &route.body {
            None => BodyVars::default(),
            Some(condition) => {
                if read.is_none() {
                    let limit = proxy.limits.max_inspected_body_bytes;
                    let whole = axum::body::to_bytes(body.take().expect("read once"), limit);
                    read = Some(whole.await.map_err(|_| forward::too_large())?);
                }
                let bytes = read.as_ref().expect("read above");
                match condition.evaluate_blocking(&parts.headers, bytes).await {
                    Evaluation::Apply(vars) => vars,
                    Evaluation::Skip => continue,
                    Evaluation::Refuse(why) => {
                        return Err(forward::error(StatusCode::BAD_REQUEST, &why));
                    }
                }
            }
        };
        matched = Some(Matched {
            route,
            params,
            body: body_vars,
        });
        break;
    }
    let outgoing = match (read, body) {
        (Some(bytes), _) => Outgoing::Read(bytes),
        (None, Some(body)) => Outgoing::Stream(body),
        (None, None) => Outgoing::Stream(Body::empty()),
    };
    Ok((matched, outgoing))
}

fn action_request(parts: &Parts, matched: &Matched<'_>, requester: Person) -> ActionRequest {
    let vars = Vars {
        method: &parts.method,
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or_default(),
        headers: &parts.headers,
        params: &matched.params,
        body: matched.body.field.as_deref(),
        sql_kind: &matched.body.sql_kind,
        sql_tables: &matched.body.sql_tables,
    };
    let route = matched.route;
    let context: serde_json::Map<String, serde_json::Value> = route
        .context
        .iter()
        .map(|(k, t)| (k.clone(), t.render(&vars).into()))
        .collect();
    ActionRequest {
        action: route.action.render(&vars),
        resource: route.resource.render(&vars),
        requester,
        reason: route
            .reason
            .as_ref()
            .map(|t| t.render(&vars))
            .filter(|r| !r.is_empty()),
        context: (!context.is_empty()).then_some(context),
        ttl_seconds: route.ttl.map(|t| t.as_secs()),
        callback_url: None,
        binding: None,
        window_seconds: None,
        audience: None,
    }
}

//! Passing a request to the upstream and its answer back, as a reverse proxy should:
//! bodies streamed both ways (never collected), hop-by-hop headers dropped, the client's
//! address in `X-Forwarded-For`, redirects passed back rather than followed, and a
//! bounded wait for the upstream's status line.

use crate::error::{ErrorBody, ErrorCode};
use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Headers that describe one connection, not the message (RFC 9110 section 7.6.1).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub struct Upstream {
    base: url::Url,
    http: reqwest::Client,
    timeout: Duration,
    max_body: u64,
}

/// A request body on its way: streamed as received, or already read (to check a route's
/// body condition).
pub enum Outgoing {
    Stream(Body),
    Read(Bytes),
}

impl Upstream {
    pub fn new(base: url::Url, timeout: Duration, max_body: u64) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // The client sees the upstream's redirects; following them here would send
            // the request (and its grant) somewhere no route was checked for.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with default TLS");
        Self {
            base,
            http,
            timeout,
            max_body,
        }
    }

    /// The upstream URL of a (canonical) request path and query; `None` when the URL
    /// would carry another path than the one routes were matched on.
    fn url(&self, parts: &Parts) -> Option<url::Url> {
        let mut url = self.base.clone();
        let base_path = self.base.path().trim_end_matches('/');
        let path = format!("{base_path}{}", parts.uri.path());
        url.set_path(&path);
        url.set_query(parts.uri.query());
        (url.path() == path).then_some(url)
    }

    pub async fn forward(
        &self,
        parts: Parts,
        body: Outgoing,
        peer: Option<SocketAddr>,
    ) -> Response {
        let exceeded = Arc::new(AtomicBool::new(false));
        // The upstream's time to answer counts from the end of the request body: a large
        // upload is not a slow upstream.
        let body_sent = Arc::new(Notify::new());
        let body = match body {
            Outgoing::Read(bytes) => {
                body_sent.notify_one();
                reqwest::Body::from(bytes)
            }
            Outgoing::Stream(body) => reqwest::Body::wrap_stream(limited(
                body.into_data_stream(),
                self.max_body,
                exceeded.clone(),
                body_sent.clone(),
            )),
        };
        let Some(url) = self.url(&parts) else {
            return error(
                StatusCode::BAD_REQUEST,
                "the request path cannot be forwarded as it is",
            );
        };
        let headers = request_headers(&parts, peer);
        let sent = self
            .http
            .request(parts.method.clone(), url)
            .headers(headers)
            .body(body)
            .send();
        let answer = match tokio::time::timeout(self.timeout, sent).await {
            Err(_) => {
                return error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "the upstream did not answer in time",
                );
            }
            Ok(Err(_)) if exceeded.load(Ordering::Relaxed) => return too_large(),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "upstream request failed");
                return error(StatusCode::BAD_GATEWAY, "the upstream cannot be reached");
            }
            Ok(Ok(answer)) => answer,
        };
        let mut response = Response::builder().status(answer.status());
        if let Some(headers) = response.headers_mut() {
            *headers = answer.headers().clone();
            strip_hop_by_hop(headers);
        }
        response
            .body(Body::from_stream(answer.bytes_stream()))
            .unwrap_or_else(|_| error(StatusCode::BAD_GATEWAY, "the upstream's answer is invalid"))
    }
}

/// The request headers the upstream gets: the client's, without hop-by-hop ones and
/// `Host` (the upstream's own is set from its URL), plus `X-Forwarded-*`.
fn request_headers(parts: &Parts, peer: Option<SocketAddr>) -> HeaderMap {
    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    let host = headers.remove(header::HOST);
    if let Some(peer) = peer {
        let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(earlier) => format!("{earlier}, {}", peer.ip()),
            None => peer.ip().to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
            headers.insert("x-forwarded-for", v);
        }
    }
    if let Some(host) = host {
        headers.insert("x-forwarded-host", host);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    headers
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers the `Connection` header names are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The body stream, cut off with an error once more than `max` bytes went through;
/// `sent` is notified when it ends.
fn limited(
    body: impl Stream<Item = Result<Bytes, axum::Error>> + Send + 'static,
    max: u64,
    exceeded: Arc<AtomicBool>,
    sent: Arc<Notify>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures::stream::unfold(
        (body.boxed(), 0u64, Some(sent)),
        move |(mut body, seen, sent)| {
            let exceeded = exceeded.clone();
            async move {
                let sent = sent?;
                match body.next().await {
                    None => {
                        sent.notify_one();
                        None
                    }
                    Some(Err(e)) => Some((Err(std::io::Error::other(e)), (body, seen, None))),
                    Some(Ok(chunk)) => {
                        let seen = seen + chunk.len() as u64;
                        if seen > max {
                            exceeded.store(true, Ordering::Relaxed);
                            let e = std::io::Error::other("request body over the limit");
                            return Some((Err(e), (body, seen, None)));
                        }
                        Some((Ok(chunk), (body, seen, Some(sent))))
                    }
                }
            }
        },
    )
}

pub fn too_large() -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "the request body is too large",
    )
}

pub fn error(status: StatusCode, message: &str) -> Response {
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::BAD_REQUEST => ErrorCode::InvalidRequest,
        _ => ErrorCode::Unavailable,
    };
    (status, axum::Json(ErrorBody::new(code, message))).into_response()
}

//! A fake PagerDuty Events API v2 and a recording webhook receiver, both on loopback.
//!
//! Point `PAGERDUTY_EVENTS_URL` at `FakePagerDuty::url`: it checks events the way PagerDuty
//! does (400 `invalid event` for a bad one, 202 otherwise) and records every request; faults
//! can be queued to test retries. `FakeWebhook` records headers and raw bytes, so tests can
//! verify signatures over exactly what was sent.

use super::Headers;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request to `/v2/enqueue`.
#[derive(Clone, Debug)]
pub struct Event {
    /// The JSON body, or the raw body as a string when it is not JSON.
    pub body: Value,
    pub at: Instant,
    /// Answered with a queued [`PdFault`] instead of being processed.
    pub faulted: bool,
    /// The HTTP status it was answered with.
    pub status: u16,
}

#[derive(Clone, Debug)]
pub enum PdFault {
    /// This status with PagerDuty's body for it (e.g. 500, 400, 429), no `Retry-After`.
    Status(u16),
    /// HTTP 429 with `Retry-After` (seconds) when given.
    RateLimited { retry_after: Option<u64> },
}

#[derive(Default)]
struct PdInner {
    events: Vec<Event>,
    faults: VecDeque<PdFault>,
}

pub struct FakePagerDuty {
    /// The full enqueue URL, `http://127.0.0.1:PORT/v2/enqueue`.
    pub url: String,
    inner: Arc<Mutex<PdInner>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakePagerDuty {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakePagerDuty {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(PdInner::default()));
        let router = Router::new()
            .route("/v2/enqueue", post(enqueue))
            .with_state(inner.clone());
        let (addr, server) = serve(router).await;
        Self {
            url: format!("http://{addr}/v2/enqueue"),
            inner,
            server,
        }
    }

    /// Every request in arrival order, faulted and invalid ones included.
    pub fn events(&self) -> Vec<Event> {
        self.inner.lock().unwrap().events.clone()
    }

    /// The bodies answered 202.
    pub fn accepted(&self) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e.status == 202)
            .map(|e| e.body)
            .collect()
    }

    /// The next `times` requests answer with `fault` (queued after earlier faults).
    pub fn fail(&self, fault: PdFault, times: usize) {
        self.inner
            .lock()
            .unwrap()
            .faults
            .extend(std::iter::repeat_n(fault, times));
    }

    /// Waits until at least `n` accepted events have this `event_action`; panics with every
    /// request seen on timeout. The deadline is wall-clock, so it holds under a paused clock.
    pub async fn wait_for(&self, event_action: &str, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let matching: Vec<Value> = self
                .accepted()
                .into_iter()
                .filter(|b| b["event_action"] == event_action)
                .collect();
            if matching.len() >= n {
                return matching;
            }
            if Instant::now() >= deadline {
                let seen: Vec<String> = self
                    .events()
                    .iter()
                    .map(|e| format!("  HTTP {} {}", e.status, e.body))
                    .collect();
                panic!(
                    "waited {timeout:?} for {n} accepted {event_action} event(s), got {}; all \
                     requests:\n{}",
                    matching.len(),
                    seen.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn enqueue(State(inner): State<Arc<Mutex<PdInner>>>, body: Bytes) -> Response {
    let body = serde_json::from_slice::<Value>(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let mut inner = inner.lock().unwrap();
    let fault = inner.faults.pop_front();
    let faulted = fault.is_some();
    let (status, resp) = match fault {
        Some(PdFault::RateLimited { retry_after }) => {
            let mut resp = throttled();
            if let Some(secs) = retry_after {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, secs.to_string().parse().unwrap());
            }
            (429, resp)
        }
        Some(PdFault::Status(429)) => (429, throttled()),
        Some(PdFault::Status(400)) => (400, invalid(vec!["Event object is invalid".into()])),
        Some(PdFault::Status(status)) => {
            let code = StatusCode::from_u16(status).unwrap();
            let reason = code.canonical_reason().unwrap_or("Error");
            (status, (code, reason).into_response())
        }
        None => match check(&body) {
            Ok(dedup_key) => {
                let reply = json!({
                    "status": "success", "message": "Event processed", "dedup_key": dedup_key,
                });
                (
                    202,
                    (StatusCode::ACCEPTED, axum::Json(reply)).into_response(),
                )
            }
            Err(errors) => (400, invalid(errors)),
        },
    };
    inner.events.push(Event {
        body,
        at: Instant::now(),
        faulted,
        status,
    });
    resp
}

/// What PagerDuty checks: the `dedup_key` to answer with, or the errors it would list.
fn check(body: &Value) -> Result<String, Vec<String>> {
    let mut errors = Vec::new();
    let text = |path: &[&str]| {
        path.iter()
            .try_fold(body, |v, k| v.get(k))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if text(&["routing_key"]).is_none() {
        errors.push("'routing_key' is missing or blank".to_owned());
    }
    let action = text(&["event_action"]);
    if !matches!(action, Some("trigger" | "acknowledge" | "resolve")) {
        errors.push("'event_action' is invalid".to_owned());
    }
    let dedup_key = text(&["dedup_key"]);
    if dedup_key.is_some_and(|k| k.chars().count() > 255) {
        errors.push("'dedup_key' is longer than 255 characters".to_owned());
    }
    if action != Some("trigger") && dedup_key.is_none() {
        errors.push("'dedup_key' is required for acknowledge and resolve".to_owned());
    }
    if action == Some("trigger") {
        match text(&["payload", "summary"]) {
            None => errors.push("'payload.summary' is missing or blank".to_owned()),
            Some(s) if s.chars().count() > 1024 => {
                errors.push("'payload.summary' is longer than 1024 characters".to_owned())
            }
            Some(_) => {}
        }
        if text(&["payload", "source"]).is_none() {
            errors.push("'payload.source' is missing or blank".to_owned());
        }
        if !matches!(
            text(&["payload", "severity"]),
            Some("critical" | "error" | "warning" | "info")
        ) {
            errors.push("'payload.severity' is invalid".to_owned());
        }
        if let Some(links) = body.get("links") {
            let ok = links
                .as_array()
                .is_some_and(|l| l.iter().all(|l| l["href"].is_string()));
            if !ok {
                errors.push("'links' must be a list of objects with 'href'".to_owned());
            }
        }
    }
    if errors.is_empty() {
        Ok(dedup_key.map_or_else(|| ulid::Ulid::new().to_string(), str::to_owned))
    } else {
        Err(errors)
    }
}

fn invalid(errors: Vec<String>) -> Response {
    let reply =
        json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors});
    (StatusCode::BAD_REQUEST, axum::Json(reply)).into_response()
}

fn throttled() -> Response {
    let reply = json!({
        "status": "throttle event",
        "message": "Requests for this service are arriving too quickly. Please retry later.",
    });
    (StatusCode::TOO_MANY_REQUESTS, axum::Json(reply)).into_response()
}

/// One request to a [`FakeWebhook`].
#[derive(Clone, Debug)]
pub struct Delivery {
    /// Lower-case names, in arrival order.
    pub headers: Headers,
    pub body: Vec<u8>,
    /// The HTTP status it was answered with.
    pub status: u16,
}

impl Delivery {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }
}

/// The first value of header `name` (case-insensitive) in a recorded list.
pub fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[derive(Default)]
struct HookInner {
    deliveries: Vec<Delivery>,
    faults: VecDeque<u16>,
}

/// Records every POST to `/hook` and answers 200 unless a fault is queued.
pub struct FakeWebhook {
    /// `http://127.0.0.1:PORT/hook`.
    pub url: String,
    inner: Arc<Mutex<HookInner>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeWebhook {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeWebhook {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(HookInner::default()));
        let router = Router::new()
            .route("/hook", post(hook))
            .with_state(inner.clone());
        let (addr, server) = serve(router).await;
        Self {
            url: format!("http://{addr}/hook"),
            inner,
            server,
        }
    }

    /// Every request as `(headers, body)`, failed ones included.
    pub fn received(&self) -> Vec<(Headers, Vec<u8>)> {
        self.deliveries()
            .into_iter()
            .map(|d| (d.headers, d.body))
            .collect()
    }

    /// Every request with its arrival time and the status it got.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner.lock().unwrap().deliveries.clone()
    }

    /// The next `times` requests answer `status` (queued after earlier faults).
    pub fn fail(&self, status: u16, times: usize) {
        self.inner
            .lock()
            .unwrap()
            .faults
            .extend(std::iter::repeat_n(status, times));
    }

    /// Waits until at least `n` requests were answered 2xx and returns those; panics with
    /// every request seen on timeout.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Delivery> {
        let deadline = Instant::now() + timeout;
        loop {
            let ok: Vec<Delivery> = self
                .deliveries()
                .into_iter()
                .filter(|d| (200..300).contains(&d.status))
                .collect();
            if ok.len() >= n {
                return ok;
            }
            if Instant::now() >= deadline {
                let seen: Vec<String> = self
                    .deliveries()
                    .iter()
                    .map(|d| format!("  HTTP {} {}", d.status, String::from_utf8_lossy(&d.body)))
                    .collect();
                panic!(
                    "waited {timeout:?} for {n} delivered webhook(s), got {}; all requests:\n{}",
                    ok.len(),
                    seen.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn hook(
    State(inner): State<Arc<Mutex<HookInner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let headers = headers
        .iter()
        .map(|(k, v)| {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (k.as_str().to_owned(), v)
        })
        .collect();
    let mut inner = inner.lock().unwrap();
    let status = inner.faults.pop_front().unwrap_or(200);
    inner.deliveries.push(Delivery {
        headers,
        body: body.to_vec(),
        status,
    });
    let code = StatusCode::from_u16(status).unwrap();
    (code, code.canonical_reason().unwrap_or("")).into_response()
}

async fn serve(router: Router) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, router).await.expect("fake serves");
    });
    (addr, server)
}

//! A fake Slack Web API on loopback, plus (in `callbacks`) the callbacks Slack would send.
//!
//! Point the service at `FakeSlack::base` as `SLACK_API_BASE`; every call is recorded with its
//! arguments and bearer token, and faults can be queued per method to test retries.

mod callbacks;
// Every test binary compiles `common`, and most use none of these.
#[allow(unused_imports)]
pub use callbacks::*;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use url::form_urlencoded;

pub const TEAM_ID: &str = "T0TEAM";
pub const TEAM_DOMAIN: &str = "greenlight-test";
pub const APP_ID: &str = "A0GREENLIGHT";
pub const BOT_USER_ID: &str = "UBOT";
pub const BOT_ID: &str = "B0BOT";
/// Where a `#name` channel lands: the fake has one public channel.
pub const CHANNEL_ID: &str = "C0APPROVALS";

/// One request to `/api/{method}`.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    /// The JSON body as sent, or form (and query) fields as a JSON object of strings.
    pub args: Value,
    /// The bearer token from `Authorization`.
    pub token: Option<String>,
    pub at: Instant,
    /// Answered with a queued [`Fault`] instead of the method's behaviour.
    pub faulted: bool,
    /// The JSON the fake answered (`Null` for a 500), e.g. the `ts` a `chat.postMessage` got.
    pub reply: Value,
}

#[derive(Clone, Debug)]
pub enum Fault {
    /// HTTP 429, with `Retry-After` (seconds) when given.
    RateLimited { retry_after: Option<u64> },
    /// HTTP 500 with a plain-text body.
    ServerError,
    /// HTTP 200 `{"ok":false,"error":...}`.
    SlackError(&'static str),
}

struct Group {
    id: String,
    handle: String,
    members: Vec<String>,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    faults: HashMap<String, VecDeque<Fault>>,
    users_by_email: HashMap<String, String>,
    groups: Vec<Group>,
    responses: Vec<(String, Value)>,
    messages: u64,
    views: u64,
    response_urls: u64,
}

// A std Mutex is enough: it is never held across an `.await`.
type Shared = Arc<Mutex<Inner>>;

pub struct FakeSlack {
    /// `http://127.0.0.1:PORT/api`, to use as `SLACK_API_BASE`.
    pub base: String,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    inner: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeSlack {
    pub async fn start() -> FakeSlack {
        let inner = Shared::default();
        let router = Router::new()
            .route("/api/{method}", any(api))
            .route("/response/{n}", post(response_url))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("fake Slack serves");
        });
        let url = format!("http://{addr}");
        FakeSlack {
            base: format!("{url}/api"),
            url,
            inner,
            server,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    /// Every call to `/api/*` in arrival order, faulted ones included.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The calls to `method` that got a real answer (not a queued fault).
    pub fn calls_to(&self, method: &str) -> Vec<Call> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.method == method && !c.faulted)
            .cloned()
            .collect()
    }

    /// Waits until at least `n` non-faulted calls to `method` arrived; panics with every call
    /// seen on timeout. The deadline is wall-clock, so it holds under `tokio::time::pause()`.
    pub async fn wait_for(&self, method: &str, n: usize, timeout: Duration) -> Vec<Call> {
        let deadline = Instant::now() + timeout;
        loop {
            let calls = self.calls_to(method);
            if calls.len() >= n {
                return calls;
            }
            if Instant::now() >= deadline {
                let seen: Vec<String> = self
                    .calls()
                    .iter()
                    .map(|c| {
                        let mark = if c.faulted { " (faulted)" } else { "" };
                        format!("  {}{mark} {}", c.method, c.args)
                    })
                    .collect();
                panic!(
                    "waited {timeout:?} for {n} call(s) to {method}, got {}; all calls:\n{}",
                    calls.len(),
                    seen.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The next `times` calls to `method` answer with `fault` (queued after earlier faults).
    pub fn fail(&self, method: &str, fault: Fault, times: usize) {
        self.lock()
            .faults
            .entry(method.to_owned())
            .or_default()
            .extend(std::iter::repeat_n(fault, times));
    }

    /// Makes `users.lookupByEmail` find `email`.
    pub fn add_user(&self, email: &str, user_id: &str) {
        self.lock()
            .users_by_email
            .insert(email.to_lowercase(), user_id.to_owned());
    }

    /// A user group for `usergroups.list` and `usergroups.users.list`.
    pub fn add_group(&self, id: &str, handle: &str, members: &[&str]) {
        self.lock().groups.push(Group {
            id: id.to_owned(),
            handle: handle.trim_start_matches('@').to_owned(),
            members: members.iter().map(|m| m.to_string()).collect(),
        });
    }

    /// A fresh response URL on this server; what is POSTed to it shows in [`Self::responses`].
    pub fn response_url(&self) -> String {
        let mut inner = self.lock();
        inner.response_urls += 1;
        format!("{}/response/{}", self.url, inner.response_urls)
    }

    /// Bodies POSTed to response URLs, as `(path, body)`; a body that is not JSON is a string.
    pub fn responses(&self) -> Vec<(String, Value)> {
        self.lock().responses.clone()
    }

    pub async fn wait_for_responses(&self, n: usize, timeout: Duration) -> Vec<(String, Value)> {
        let deadline = Instant::now() + timeout;
        loop {
            let responses = self.responses();
            if responses.len() >= n {
                return responses;
            }
            if Instant::now() >= deadline {
                panic!("waited {timeout:?} for {n} response(s), got {responses:#?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn api(
    State(inner): State<Shared>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let (mut args, bad_json) = if is_json {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => (v, false),
            Err(_) => (Value::String(String::from_utf8_lossy(&body).into()), true),
        }
    } else {
        (form_fields(&body), false)
    };
    // Query parameters count as arguments too, without overriding the body.
    if let (Some(q), Value::Object(map)) = (query, &mut args) {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            map.entry(k.into_owned())
                .or_insert(Value::String(v.into_owned()));
        }
    }

    let mut inner = inner.lock().unwrap();
    let fault = inner.faults.get_mut(&method).and_then(VecDeque::pop_front);
    let faulted = fault.is_some();
    let (reply, resp) = match fault {
        Some(Fault::RateLimited { retry_after }) => {
            let reply = error("ratelimited");
            let mut resp =
                (StatusCode::TOO_MANY_REQUESTS, axum::Json(reply.clone())).into_response();
            if let Some(secs) = retry_after {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, secs.to_string().parse().unwrap());
            }
            (reply, resp)
        }
        Some(Fault::ServerError) => (
            Value::Null,
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response(),
        ),
        fault => {
            let reply = match fault {
                Some(Fault::SlackError(e)) => error(e),
                _ if bad_json => error("invalid_json"),
                _ => answer(&mut inner, &method, &args),
            };
            (reply.clone(), axum::Json(reply).into_response())
        }
    };
    inner.calls.push(Call {
        method,
        args,
        token,
        at: Instant::now(),
        faulted,
        reply,
    });
    resp
}

/// The JSON body `method` answers with (always HTTP 200, as Slack does for `ok:false`).
fn answer(inner: &mut Inner, method: &str, args: &Value) -> Value {
    let arg = |name: &str| args.get(name).and_then(Value::as_str).unwrap_or("");
    match method {
        "chat.postMessage" => {
            let channel = match arg("channel") {
                "" => return error("channel_not_found"),
                c if c.starts_with('#') => CHANNEL_ID.to_owned(),
                // Posting to a user id lands in the app's DM with them.
                c if c.starts_with('U') || c.starts_with('W') => format!("D{c}"),
                c => c.to_owned(),
            };
            if args.get("text").is_none() && args.get("blocks").is_none() {
                return error("no_text");
            }
            let ts = next_ts(inner);
            let mut message = json!({
                "type": "message", "subtype": "bot_message", "text": arg("text"), "ts": ts,
                "user": BOT_USER_ID, "bot_id": BOT_ID, "app_id": APP_ID, "team": TEAM_ID,
            });
            if let Some(blocks) = args.get("blocks") {
                message["blocks"] = json_arg(blocks);
            }
            if !arg("thread_ts").is_empty() {
                message["thread_ts"] = json!(arg("thread_ts"));
            }
            json!({"ok": true, "channel": channel, "ts": ts, "message": message})
        }
        "chat.update" => {
            if arg("channel").is_empty() {
                return error("channel_not_found");
            }
            if arg("ts").is_empty() {
                return error("message_not_found");
            }
            let mut message = json!({"text": arg("text"), "user": BOT_USER_ID, "bot_id": BOT_ID});
            if let Some(blocks) = args.get("blocks") {
                message["blocks"] = json_arg(blocks);
            }
            json!({
                "ok": true, "channel": arg("channel"), "ts": arg("ts"), "text": arg("text"),
                "message": message,
            })
        }
        "chat.postEphemeral" => json!({"ok": true, "message_ts": next_ts(inner)}),
        "views.open" => {
            inner.views += 1;
            let view = args.get("view").map(json_arg).unwrap_or(Value::Null);
            json!({"ok": true, "view": {
                "id": format!("V{}", inner.views), "team_id": TEAM_ID, "type": view["type"],
                "callback_id": view["callback_id"], "private_metadata": view["private_metadata"],
                "app_id": APP_ID, "bot_id": BOT_ID,
            }})
        }
        "conversations.open" => match arg("users") {
            "" => error("users_list_not_supplied"),
            u if u.contains(',') => {
                json!({"ok": true, "channel": {"id": format!("G{}", u.replace(',', ""))}})
            }
            u => json!({"ok": true, "channel": {"id": format!("D{u}")}}),
        },
        "chat.getPermalink" => {
            let (channel, ts) = (arg("channel"), arg("message_ts"));
            if channel.is_empty() || ts.is_empty() {
                return error("message_not_found");
            }
            json!({"ok": true, "channel": channel, "permalink": format!(
                "https://example.slack.com/archives/{channel}/p{}", ts.replace('.', "")
            )})
        }
        "users.lookupByEmail" => match inner.users_by_email.get(&arg("email").to_lowercase()) {
            Some(id) => json!({"ok": true, "user": {
                "id": id, "team_id": TEAM_ID, "name": id.to_lowercase(), "deleted": false,
                "is_bot": false, "profile": {"email": arg("email")},
            }}),
            None => error("users_not_found"),
        },
        "usergroups.list" => {
            let with_users = args
                .get("include_users")
                .is_some_and(|v| *v == true || *v == "true" || *v == "1");
            let groups: Vec<Value> = inner
                .groups
                .iter()
                .map(|g| {
                    let mut v = json!({
                        "id": g.id, "team_id": TEAM_ID, "handle": g.handle, "name": g.handle,
                        "is_usergroup": true, "user_count": g.members.len(),
                    });
                    if with_users {
                        v["users"] = json!(g.members);
                    }
                    v
                })
                .collect();
            json!({"ok": true, "usergroups": groups})
        }
        "usergroups.users.list" => match inner.groups.iter().find(|g| g.id == arg("usergroup")) {
            Some(g) => json!({"ok": true, "users": g.members}),
            None => error("no_such_subteam"),
        },
        "auth.test" => json!({
            "ok": true, "url": "https://example.slack.com/", "team": "Greenlight Test",
            "user": "greenlight", "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID,
        }),
        _ => error("unknown_method"),
    }
}

fn error(code: &str) -> Value {
    json!({"ok": false, "error": code})
}

fn next_ts(inner: &mut Inner) -> String {
    inner.messages += 1;
    format!("1700000000.{:06}", 100 + inner.messages)
}

/// Form-encoded Web API calls carry `blocks` and `view` as JSON strings.
fn json_arg(v: &Value) -> Value {
    match v {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| v.clone()),
        _ => v.clone(),
    }
}

fn form_fields(body: &[u8]) -> Value {
    let map: Map<String, Value> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    Value::Object(map)
}

async fn response_url(State(inner): State<Shared>, Path(n): Path<String>, body: Bytes) -> Response {
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
    inner
        .lock()
        .unwrap()
        .responses
        .push((format!("/response/{n}"), value));
    axum::Json(json!({"ok": true})).into_response()
}

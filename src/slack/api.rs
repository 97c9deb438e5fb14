//! The Slack Web API client: one shared `reqwest::Client`, a configurable base URL (tests and
//! GovSlack use another), retries that honour `Retry-After`, and per-channel pacing of posts.
//!
//! `ok:false` is always an error and never a success; only rate limits, 5xx answers and
//! network errors are retried. The bot token is a `SecretString`: it is sent in the
//! `Authorization` header and appears in no log, error or `Debug` output.

use super::render::Message;
use crate::metrics::SlackResult;
use reqwest::header::CONTENT_TYPE;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

pub const DEFAULT_BASE_URL: &str = "https://slack.com/api";

/// Per HTTP attempt, including reading the body.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// The wait after a 429 that names none.
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(1);
const RATE_LIMIT_JITTER_MS: u64 = 250;
/// Past this many channels, entries whose slot has passed are dropped from the pacing map.
const PACING_PRUNE_AT: usize = 1024;

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Requests per call, the first included.
    pub attempts: u32,
    /// Backoff before the second attempt after a 5xx or network error; doubles each time.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// The longest `Retry-After` waited for inline; longer ones return `RateLimited`.
    pub max_inline_wait: Duration,
    /// At most one `chat.postMessage` per channel per this interval, within this process
    /// (Slack allows about one message per second per channel).
    pub channel_interval: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            base_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
            max_inline_wait: Duration::from_secs(5),
            channel_interval: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    /// Slack answered `ok:false`; carries Slack's `error` string (`invalid_response` when
    /// the answer was not a Web API answer at all).
    #[error("slack error: {0}")]
    Api(String),
    /// HTTP 429 (or `ok:false` `ratelimited`) with a wait beyond `max_inline_wait`, or
    /// still limited after the last attempt.
    #[error("rate limited by Slack; retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    /// A non-2xx answer other than 429 (5xx only after the last attempt).
    #[error("slack answered HTTP {0}")]
    Http(u16),
    /// No answer: connection, TLS or timeout (after the last attempt).
    #[error("cannot reach slack: {0}")]
    Transport(String),
}

/// How a Slack call ended, for the metrics.
impl SlackResult {
    fn of<T>(result: &Result<T, SlackError>) -> Self {
        match result {
            Ok(_) => SlackResult::Ok,
            Err(SlackError::Api(_)) => SlackResult::Error,
            Err(SlackError::RateLimited { .. }) => SlackResult::RateLimited,
            Err(SlackError::Http(_)) => SlackResult::Http,
            Err(SlackError::Transport(_)) => SlackResult::Unreachable,
        }
    }
}

impl SlackError {
    /// Worth trying again later: rate limits, 5xx and network errors.
    pub fn is_transient(&self) -> bool {
        match self {
            SlackError::RateLimited { .. } | SlackError::Transport(_) => true,
            SlackError::Http(status) => (500..600).contains(status),
            SlackError::Api(_) => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SlackError::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostedMessage {
    pub channel: String,
    pub ts: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserGroup {
    pub id: String,
    pub handle: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthInfo {
    pub user_id: String,
    pub team_id: String,
    pub bot_id: Option<String>,
}

#[derive(Clone)]
pub struct SlackApi {
    http: reqwest::Client,
    base: Arc<str>,
    token: SecretString,
    /// Next allowed post per channel. A std `Mutex` is fine: it is held only to read and
    /// bump one entry, never across an `.await`.
    pacing: Arc<Mutex<HashMap<String, Instant>>>,
    retry: RetryPolicy,
}

impl fmt::Debug for SlackApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackApi")
            .field("base", &self.base)
            .field("token", &"[redacted]")
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

enum Body<'a> {
    Json(&'a Value),
    Form(&'a [(&'a str, &'a str)]),
}

/// Where a request goes and how its answer is read.
struct Target<'a> {
    /// For logs: the Web API method, or `response_url` (whose URL is a credential of sorts
    /// and is never logged).
    label: &'a str,
    url: &'a str,
    /// Send the bot token (Web API methods) or not (`response_url`).
    auth: bool,
    /// `response_url` answers are not always Web API JSON; any 2xx without `ok:false` is fine.
    lenient: bool,
}

/// What one HTTP attempt came to.
enum Attempt {
    Done(Value),
    /// Retry after the backoff, or give up with this error after the last attempt.
    Retry(SlackError),
    RateLimited(Duration),
    Failed(SlackError),
}

impl SlackApi {
    pub fn new(http: reqwest::Client, base_url: &str, token: SecretString) -> Self {
        Self {
            http,
            base: Arc::from(base_url.trim_end_matches('/')),
            token,
            pacing: Arc::default(),
            retry: RetryPolicy::default(),
        }
    }

    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// POST `{base}/{method}` with a JSON body and `Authorization: Bearer` (for write methods).
    pub async fn call(&self, method: &str, args: &Value) -> Result<Value, SlackError> {
        let url = format!("{}/{method}", self.base);
        let target = Target {
            label: method,
            url: &url,
            auth: true,
            lenient: false,
        };
        self.send(&target, Body::Json(args)).await
    }

    /// POST form-encoded (read methods that do not take JSON: `users.lookupByEmail`,
    /// `usergroups.users.list`, `usergroups.list`, `auth.test`, `chat.getPermalink`).
    pub async fn call_form(
        &self,
        method: &str,
        args: &[(&str, &str)],
    ) -> Result<Value, SlackError> {
        let url = format!("{}/{method}", self.base);
        let target = Target {
            label: method,
            url: &url,
            auth: true,
            lenient: false,
        };
        self.send(&target, Body::Form(args)).await
    }

    /// `chat.postMessage`, paced per channel. Links in request text are not unfurled.
    pub async fn post_message(
        &self,
        channel: &str,
        message: &Message,
        thread_ts: Option<&str>,
    ) -> Result<PostedMessage, SlackError> {
        let mut args = json!({
            "channel": channel,
            "text": message.text,
            "unfurl_links": false,
            "unfurl_media": false,
        });
        // A text-only message sends no `blocks` (an empty list is not a valid message).
        if message.blocks.as_array().is_some_and(|b| !b.is_empty()) {
            args["blocks"] = message.blocks.clone();
        }
        if let Some(ts) = thread_ts {
            args["thread_ts"] = ts.into();
        }
        self.pace(channel).await;
        let v = self.call("chat.postMessage", &args).await?;
        Ok(PostedMessage {
            channel: string_at(&v, &["channel"])?,
            ts: string_at(&v, &["ts"])?,
        })
    }

    /// `chat.update` of one of our messages. `blocks` is always sent: an empty list clears
    /// the old blocks, where leaving it out would keep them.
    pub async fn update_message(
        &self,
        channel: &str,
        ts: &str,
        message: &Message,
    ) -> Result<(), SlackError> {
        let args = json!({
            "channel": channel,
            "ts": ts,
            "text": message.text,
            "blocks": message.blocks,
        });
        self.call("chat.update", &args).await.map(drop)
    }

    /// `views.open` with an interaction's `trigger_id` (valid for 3 s).
    pub async fn open_view(&self, trigger_id: &str, view: &Value) -> Result<(), SlackError> {
        let args = json!({"trigger_id": trigger_id, "view": view});
        self.call("views.open", &args).await.map(drop)
    }

    /// `conversations.open` with one user: the id of the DM channel.
    pub async fn open_dm(&self, user: &str) -> Result<String, SlackError> {
        let v = self
            .call("conversations.open", &json!({"users": user}))
            .await?;
        string_at(&v, &["channel", "id"])
    }

    pub async fn permalink(&self, channel: &str, ts: &str) -> Result<String, SlackError> {
        let v = self
            .call_form(
                "chat.getPermalink",
                &[("channel", channel), ("message_ts", ts)],
            )
            .await?;
        string_at(&v, &["permalink"])
    }

    /// The Slack user with this email, or `None` when there is none (`users_not_found`).
    pub async fn lookup_user_by_email(&self, email: &str) -> Result<Option<String>, SlackError> {
        match self
            .call_form("users.lookupByEmail", &[("email", email)])
            .await
        {
            Ok(v) => string_at(&v, &["user", "id"]).map(Some),
            Err(SlackError::Api(e)) if e == "users_not_found" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `usergroups.list`: the workspace's enabled user groups.
    pub async fn usergroups(&self) -> Result<Vec<UserGroup>, SlackError> {
        let v = self.call_form("usergroups.list", &[]).await?;
        let groups = v["usergroups"].as_array().ok_or_else(invalid_response)?;
        Ok(groups
            .iter()
            .filter_map(|g| {
                Some(UserGroup {
                    id: g["id"].as_str()?.to_owned(),
                    handle: g["handle"].as_str().unwrap_or_default().to_owned(),
                })
            })
            .collect())
    }

    /// `usergroups.users.list`: the user ids in a group.
    pub async fn usergroup_members(&self, group_id: &str) -> Result<Vec<String>, SlackError> {
        let v = self
            .call_form("usergroups.users.list", &[("usergroup", group_id)])
            .await?;
        let users = v["users"].as_array().ok_or_else(invalid_response)?;
        Ok(users
            .iter()
            .filter_map(|u| u.as_str().map(str::to_owned))
            .collect())
    }

    /// `auth.test`: who the token belongs to.
    pub async fn auth_test(&self) -> Result<AuthInfo, SlackError> {
        let v = self.call_form("auth.test", &[]).await?;
        Ok(AuthInfo {
            user_id: string_at(&v, &["user_id"])?,
            team_id: string_at(&v, &["team_id"])?,
            bot_id: v["bot_id"].as_str().map(str::to_owned),
        })
    }

    /// POST a JSON message to an interaction's `response_url` (no token; same retry rules).
    pub async fn respond(&self, response_url: &str, body: &Value) -> Result<(), SlackError> {
        let target = Target {
            label: "response_url",
            url: response_url,
            auth: false,
            lenient: true,
        };
        self.send(&target, Body::Json(body)).await.map(drop)
    }

    /// Waits for this channel's next posting slot. The slot is reserved under the lock and
    /// slept for outside it, so concurrent posts to one channel queue up one interval apart.
    async fn pace(&self, channel: &str) {
        let interval = self.retry.channel_interval;
        if interval.is_zero() {
            return;
        }
        let wait = {
            let mut next = self.pacing.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if next.len() >= PACING_PRUNE_AT {
                next.retain(|_, at| *at > now);
            }
            let slot = next
                .get(channel)
                .copied()
                .filter(|at| *at > now)
                .unwrap_or(now);
            next.insert(channel.to_owned(), slot + interval);
            slot - now
        };
        if !wait.is_zero() {
            tracing::debug!(wait_ms = wait.as_millis() as u64, "pacing slack post");
            tokio::time::sleep(wait).await;
        }
    }

    async fn send(&self, target: &Target<'_>, body: Body<'_>) -> Result<Value, SlackError> {
        let result = self.send_with_retries(target, body).await;
        crate::metrics::slack_call(target.label, SlackResult::of(&result));
        result
    }

    async fn send_with_retries(
        &self,
        target: &Target<'_>,
        body: Body<'_>,
    ) -> Result<Value, SlackError> {
        let policy = &self.retry;
        let attempts = policy.attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= attempts;
            let wait = match self.attempt(target, &body).await {
                Attempt::Done(v) => {
                    tracing::debug!(method = target.label, attempt, "slack call ok");
                    return Ok(v);
                }
                Attempt::Failed(err) => {
                    tracing::debug!(method = target.label, attempt, error = %err, "slack call failed");
                    return Err(err);
                }
                Attempt::RateLimited(retry_after) => {
                    crate::metrics::slack_rate_limited();
                    if last || retry_after > policy.max_inline_wait {
                        let err = SlackError::RateLimited { retry_after };
                        tracing::warn!(method = target.label, attempt, error = %err, "slack call rate limited");
                        return Err(err);
                    }
                    retry_after
                }
                Attempt::Retry(err) => {
                    if last {
                        tracing::warn!(method = target.label, attempt, error = %err, "slack call failed after retries");
                        return Err(err);
                    }
                    crate::outbound::backoff(policy.base_backoff, policy.max_backoff, attempt)
                }
            };
            tracing::debug!(
                method = target.label,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "retrying slack call"
            );
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(&self, target: &Target<'_>, body: &Body<'_>) -> Attempt {
        let mut req = self.http.post(target.url).timeout(HTTP_TIMEOUT);
        if target.auth {
            // reqwest marks this header sensitive.
            req = req.bearer_auth(self.token.expose_secret());
        }
        req = match body {
            Body::Json(v) => req
                .header(CONTENT_TYPE, "application/json; charset=utf-8")
                .body(v.to_string()),
            Body::Form(args) => req.form(args),
        };
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => return Attempt::Retry(SlackError::Transport(crate::outbound::describe(e))),
        };
        let status = resp.status();
        let retry_after = crate::outbound::retry_after(resp.headers());
        if status.as_u16() == 429 {
            return Attempt::RateLimited(retry_after.unwrap_or_else(default_rate_limit_wait));
        }
        if status.is_server_error() {
            return Attempt::Retry(SlackError::Http(status.as_u16()));
        }
        if !status.is_success() {
            return Attempt::Failed(SlackError::Http(status.as_u16()));
        }
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return Attempt::Retry(SlackError::Transport(crate::outbound::describe(e))),
        };
        let ok = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| Some((v.get("ok")?.as_bool()?, v)));
        match ok {
            Some((true, v)) => Attempt::Done(v),
            Some((false, v)) => {
                let error = v["error"].as_str().unwrap_or("unknown_error");
                if error == "ratelimited" {
                    return Attempt::RateLimited(
                        retry_after.unwrap_or_else(default_rate_limit_wait),
                    );
                }
                tracing::warn!(method = target.label, error, "slack answered ok:false");
                Attempt::Failed(SlackError::Api(error.to_owned()))
            }
            None if target.lenient => Attempt::Done(Value::Null),
            None => {
                tracing::warn!(
                    method = target.label,
                    "slack answer is not a Web API answer"
                );
                Attempt::Failed(invalid_response())
            }
        }
    }
}

fn invalid_response() -> SlackError {
    SlackError::Api("invalid_response".to_owned())
}

/// The string at `path` in a Web API answer, or `invalid_response`.
fn string_at(v: &Value, path: &[&str]) -> Result<String, SlackError> {
    path.iter()
        .try_fold(v, |v, key| v.get(key))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(invalid_response)
}

fn default_rate_limit_wait() -> Duration {
    DEFAULT_RATE_LIMIT_WAIT + Duration::from_millis(rand::random_range(0..=RATE_LIMIT_JITTER_MS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};
    use std::collections::VecDeque;

    const TOKEN: &str = "xoxb-test-token-do-not-leak";

    #[derive(Clone, Debug)]
    struct Seen {
        path: String,
        auth: Option<String>,
        content_type: Option<String>,
        body: String,
        at: Instant,
    }

    #[derive(Clone)]
    struct Reply {
        status: u16,
        retry_after: Option<&'static str>,
        body: String,
    }

    fn ok(body: Value) -> Reply {
        Reply {
            status: 200,
            retry_after: None,
            body: body.to_string(),
        }
    }

    fn status(status: u16, retry_after: Option<&'static str>) -> Reply {
        Reply {
            status,
            retry_after,
            body: json!({"ok": false, "error": "ratelimited"}).to_string(),
        }
    }

    #[derive(Clone, Default)]
    struct Fake {
        replies: Arc<Mutex<VecDeque<Reply>>>,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl Fake {
        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    /// Answers with `replies` in order; the last one repeats forever.
    async fn answer(
        State(fake): State<Fake>,
        uri: Uri,
        headers: HeaderMap,
        body: String,
    ) -> Response {
        let header = |name| {
            headers
                .get(name)
                .and_then(|v: &axum::http::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        fake.seen.lock().unwrap().push(Seen {
            path: uri.path().to_owned(),
            auth: header("authorization"),
            content_type: header("content-type"),
            body,
            at: Instant::now(),
        });
        let reply = {
            let mut replies = fake.replies.lock().unwrap();
            if replies.len() > 1 {
                replies.pop_front().unwrap()
            } else {
                replies.front().cloned().unwrap()
            }
        };
        let mut resp = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
        if let Some(secs) = reply.retry_after {
            resp.headers_mut()
                .insert("retry-after", secs.parse().unwrap());
        }
        resp
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            base_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_inline_wait: Duration::from_secs(5),
            channel_interval: Duration::from_millis(300),
        }
    }

    /// A fake Slack on 127.0.0.1:0 and a client pointed at it.
    async fn fake(replies: Vec<Reply>) -> (SlackApi, Fake) {
        let fake = Fake {
            replies: Arc::new(Mutex::new(replies.into())),
            ..Fake::default()
        };
        let app = Router::new()
            .fallback(axum::routing::post(answer))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let api =
            SlackApi::new(http, &format!("http://{addr}/api/"), TOKEN.into()).with_retry(fast());
        (api, fake)
    }

    fn message() -> Message {
        Message {
            text: "Approval needed".into(),
            blocks: json!([{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]),
        }
    }

    #[tokio::test]
    async fn ok_true_is_parsed_and_json_is_sent_with_the_token() {
        let (api, fake) = fake(vec![ok(
            json!({"ok": true, "channel": "C1", "ts": "1700.01"}),
        )])
        .await;
        let posted = api
            .post_message("C1", &message(), Some("1600.5"))
            .await
            .unwrap();
        assert_eq!(
            (posted.channel.as_str(), posted.ts.as_str()),
            ("C1", "1700.01")
        );
        let seen = fake.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].path, "/api/chat.postMessage");
        assert_eq!(seen[0].auth.as_deref(), Some(&*format!("Bearer {TOKEN}")));
        assert_eq!(
            seen[0].content_type.as_deref(),
            Some("application/json; charset=utf-8")
        );
        let body: Value = serde_json::from_str(&seen[0].body).unwrap();
        assert_eq!(body["channel"], "C1");
        assert_eq!(body["text"], "Approval needed");
        assert_eq!(body["blocks"], message().blocks);
        assert_eq!(body["thread_ts"], "1600.5");
        assert_eq!(body["unfurl_links"], false);
    }

    #[tokio::test]
    async fn text_only_messages_send_no_blocks() {
        let (api, fake) = fake(vec![ok(json!({"ok": true, "channel": "D1", "ts": "1.1"}))]).await;
        api.post_message("U1", &Message::text("hello"), None)
            .await
            .unwrap();
        api.update_message("D1", "1.1", &Message::text("bye"))
            .await
            .unwrap();
        let seen = fake.seen();
        let post: Value = serde_json::from_str(&seen[0].body).unwrap();
        assert_eq!(post["text"], "hello");
        assert!(post.get("blocks").is_none());
        assert!(post.get("thread_ts").is_none());
        let update: Value = serde_json::from_str(&seen[1].body).unwrap();
        assert_eq!(update["blocks"], json!([]));
    }

    #[tokio::test]
    async fn ok_false_is_an_error_and_not_retried() {
        let (api, fake) = fake(vec![ok(json!({"ok": false, "error": "channel_not_found"}))]).await;
        let err = api
            .update_message("C1", "1.2", &message())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SlackError::Api(e) if e == "channel_not_found"),
            "{err:?}"
        );
        assert!(!err.is_transient());
        assert_eq!(fake.seen().len(), 1);
    }

    #[tokio::test]
    async fn answers_that_are_not_web_api_answers_are_invalid() {
        for body in ["<html>gateway</html>", r#"{"channel": "C1"}"#] {
            let reply = Reply {
                status: 200,
                retry_after: None,
                body: body.into(),
            };
            let (api, fake) = fake(vec![reply]).await;
            let err = api.call("chat.update", &json!({})).await.unwrap_err();
            assert!(
                matches!(&err, SlackError::Api(e) if e == "invalid_response"),
                "{err:?}"
            );
            assert_eq!(fake.seen().len(), 1);
        }
    }

    #[tokio::test]
    async fn rate_limit_with_retry_after_waits_then_succeeds() {
        let (api, fake) = fake(vec![
            status(429, Some("1")),
            ok(json!({"ok": true, "channel": {"id": "D1"}})),
        ])
        .await;
        let start = Instant::now();
        assert_eq!(api.open_dm("U1").await.unwrap(), "D1");
        assert!(start.elapsed() >= Duration::from_secs(1));
        let seen = fake.seen();
        assert_eq!(seen.len(), 2);
        assert!(seen[1].at - seen[0].at >= Duration::from_secs(1));
        assert_eq!(
            serde_json::from_str::<Value>(&seen[0].body).unwrap(),
            json!({"users": "U1"})
        );
    }

    #[tokio::test]
    async fn rate_limit_without_retry_after_waits_about_a_second() {
        let (api, fake) = fake(vec![status(429, None), ok(json!({"ok": true}))]).await;
        let start = Instant::now();
        api.call("chat.update", &json!({})).await.unwrap();
        let took = start.elapsed();
        assert!(took >= Duration::from_secs(1), "{took:?}");
        assert!(took < Duration::from_millis(1900), "{took:?}");
        assert_eq!(fake.seen().len(), 2);
    }

    #[tokio::test]
    async fn ratelimited_in_the_body_counts_as_a_429() {
        let mut limited = ok(json!({"ok": false, "error": "ratelimited"}));
        limited.retry_after = Some("0");
        let (api, fake) = fake(vec![limited, ok(json!({"ok": true}))]).await;
        api.call("chat.update", &json!({})).await.unwrap();
        assert_eq!(fake.seen().len(), 2);
    }

    #[tokio::test]
    async fn long_retry_after_is_returned_at_once() {
        let (api, fake) = fake(vec![status(429, Some("30"))]).await;
        let start = Instant::now();
        let err = api.call("chat.postMessage", &json!({})).await.unwrap_err();
        assert!(start.elapsed() < Duration::from_millis(500));
        assert!(
            matches!(err, SlackError::RateLimited { retry_after } if retry_after == Duration::from_secs(30))
        );
        assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
        assert!(err.is_transient());
        assert_eq!(fake.seen().len(), 1);
    }

    #[tokio::test]
    async fn server_errors_are_retried_with_backoff() {
        let (api, fake) = fake(vec![
            status(500, None),
            status(502, None),
            ok(json!({"ok": true})),
        ])
        .await;
        api.open_view("trigger", &json!({"type": "modal"}))
            .await
            .unwrap();
        let seen = fake.seen();
        assert_eq!(seen.len(), 3);
        let body: Value = serde_json::from_str(&seen[2].body).unwrap();
        assert_eq!(
            body,
            json!({"trigger_id": "trigger", "view": {"type": "modal"}})
        );
    }

    #[tokio::test]
    async fn server_errors_give_up_after_the_last_attempt() {
        let (api, fake) = fake(vec![status(500, None)]).await;
        let err = api.call("chat.update", &json!({})).await.unwrap_err();
        assert!(matches!(err, SlackError::Http(500)), "{err:?}");
        assert!(err.is_transient());
        assert_eq!(fake.seen().len(), 4);
    }

    #[tokio::test]
    async fn client_errors_are_not_retried() {
        let (api, fake) = fake(vec![status(404, None)]).await;
        let err = api.call("chat.update", &json!({})).await.unwrap_err();
        assert!(matches!(err, SlackError::Http(404)));
        assert!(!err.is_transient());
        assert_eq!(fake.seen().len(), 1);
    }

    #[tokio::test]
    async fn network_errors_are_retried_and_never_show_the_token() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let api = SlackApi::new(http, &format!("http://{addr}"), TOKEN.into()).with_retry(fast());
        let start = Instant::now();
        let err = api.auth_test().await.unwrap_err();
        assert!(matches!(err, SlackError::Transport(_)), "{err:?}");
        assert!(err.is_transient());
        assert!(start.elapsed() >= Duration::from_millis(2 + 5 + 10));
        let shown = format!("{err} {err:?} {api:?}");
        assert!(!shown.contains(TOKEN), "{shown}");
        assert!(shown.contains("[redacted]"));
    }

    #[tokio::test]
    async fn read_methods_are_form_encoded() {
        let (api, fake) = fake(vec![
            ok(json!({"ok": true, "user": {"id": "U0ALICE"}})),
            ok(json!({"ok": false, "error": "users_not_found"})),
            ok(json!({"ok": true, "usergroups": [{"id": "S1", "handle": "dba-team"}, {"handle": "broken"}]})),
            ok(json!({"ok": true, "users": ["U1", "U2"]})),
            ok(json!({"ok": true, "channel": "C1", "permalink": "https://x.slack.com/archives/C1/p1"})),
            ok(json!({"ok": true, "user_id": "UBOT", "team_id": "T1", "bot_id": "B1"})),
        ])
        .await;
        assert_eq!(
            api.lookup_user_by_email("a+b@example.com")
                .await
                .unwrap()
                .as_deref(),
            Some("U0ALICE")
        );
        assert_eq!(
            api.lookup_user_by_email("nobody@example.com")
                .await
                .unwrap(),
            None
        );
        let groups = api.usergroups().await.unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(
            (groups[0].id.as_str(), groups[0].handle.as_str()),
            ("S1", "dba-team")
        );
        assert_eq!(api.usergroup_members("S1").await.unwrap(), ["U1", "U2"]);
        assert_eq!(
            api.permalink("C1", "1700.01").await.unwrap(),
            "https://x.slack.com/archives/C1/p1"
        );
        let me = api.auth_test().await.unwrap();
        assert_eq!((me.user_id.as_str(), me.team_id.as_str()), ("UBOT", "T1"));
        assert_eq!(me.bot_id.as_deref(), Some("B1"));

        let seen = fake.seen();
        let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/api/users.lookupByEmail",
                "/api/users.lookupByEmail",
                "/api/usergroups.list",
                "/api/usergroups.users.list",
                "/api/chat.getPermalink",
                "/api/auth.test",
            ]
        );
        for s in &seen {
            assert_eq!(
                s.content_type.as_deref(),
                Some("application/x-www-form-urlencoded")
            );
            assert_eq!(s.auth.as_deref(), Some(&*format!("Bearer {TOKEN}")));
        }
        assert_eq!(seen[0].body, "email=a%2Bb%40example.com");
        assert_eq!(seen[3].body, "usergroup=S1");
        assert_eq!(seen[4].body, "channel=C1&message_ts=1700.01");
        assert_eq!(seen[5].body, "");
    }

    #[tokio::test]
    async fn respond_posts_json_without_the_token() {
        let reply = Reply {
            status: 200,
            retry_after: None,
            body: "ok".into(),
        };
        let (api, server) = fake(vec![status(503, None), reply]).await;
        let url = format!("{}/../hooks/actions/T1/1/abc", api.base);
        let body = json!({"response_type": "ephemeral", "text": "hi"});
        api.respond(&url, &body).await.unwrap();
        let seen = server.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].auth, None);
        assert_eq!(serde_json::from_str::<Value>(&seen[1].body).unwrap(), body);

        let (api, _) = fake(vec![ok(json!({"ok": false, "error": "expired_url"}))]).await;
        let url = format!("{}/../hooks/actions/T1/1/abc", api.base);
        let err = api.respond(&url, &body).await.unwrap_err();
        assert!(matches!(&err, SlackError::Api(e) if e == "expired_url"));
    }

    #[tokio::test]
    async fn posts_to_one_channel_are_paced() {
        let posted = json!({"ok": true, "channel": "C1", "ts": "1.1"});
        let (api, fake) = fake(vec![ok(posted)]).await;
        let start = Instant::now();
        let m = message();
        let (a, b) = tokio::join!(
            api.post_message("C1", &m, None),
            api.post_message("C1", &m, None)
        );
        a.unwrap();
        b.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(300));
        let seen = fake.seen();
        assert!(
            seen[1].at - seen[0].at >= Duration::from_millis(250),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn posts_to_different_channels_are_not_paced() {
        let posted = json!({"ok": true, "channel": "C1", "ts": "1.1"});
        let (api, _fake) = fake(vec![ok(posted)]).await;
        let start = Instant::now();
        let m = message();
        let (a, b) = tokio::join!(
            api.post_message("C1", &m, None),
            api.post_message("C2", &m, None)
        );
        a.unwrap();
        b.unwrap();
        assert!(start.elapsed() < Duration::from_millis(250));
    }

    #[test]
    fn debug_hides_the_token() {
        let api = SlackApi::new(reqwest::Client::new(), DEFAULT_BASE_URL, TOKEN.into());
        let shown = format!("{api:?}");
        assert!(!shown.contains(TOKEN), "{shown}");
        assert!(shown.contains("https://slack.com/api"));
    }
}

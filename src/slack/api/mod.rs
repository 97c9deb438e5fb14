//! The Slack Web API client: one shared `reqwest::Client`, a configurable base URL (tests and
//! GovSlack use another), retries that honour `Retry-After`, and per-channel pacing of posts.
//!
//! `ok:false` is always an error and never a success; only rate limits, 5xx answers and
//! network errors are retried. The bot token is a `SecretString`: it is sent in the
//! `Authorization` header and appears in no log, error or `Debug` output.

mod send;
#[cfg(test)]
mod tests;

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
}

/// The string at `path` in a Web API answer, or `invalid_response`.
fn string_at(v: &Value, path: &[&str]) -> Result<String, SlackError> {
    path.iter()
        .try_fold(v, |v, key| v.get(key))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(invalid_response)
}

fn invalid_response() -> SlackError {
    SlackError::Api("invalid_response".to_owned())
}

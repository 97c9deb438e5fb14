//! How one Slack call is sent: per-channel pacing of posts, then attempts until an answer
//! that is final, retrying rate limits (after `Retry-After`), 5xx answers and network
//! errors with the one retry policy (`retry.rs`).

use super::*;
use crate::metrics::SlackResult;
use crate::retry::{self, Backoff, retry};

/// Per HTTP attempt, including reading the body.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The wait after a 429 that names none.
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(1);

const RATE_LIMIT_JITTER_MS: u64 = 250;

/// Past this many channels, entries whose slot has passed are dropped from the pacing map.
const PACING_PRUNE_AT: usize = 1024;

/// What one HTTP attempt came to.
enum Attempt {
    Done(Value),
    /// Retry after the backoff, or give up with this error after the last attempt.
    Retry(SlackError),
    RateLimited(Duration),
    Failed(SlackError),
}

impl SlackApi {
    /// Waits for this channel's next posting slot. The slot is reserved under the lock and
    /// slept for outside it, so concurrent posts to one channel queue up one interval apart.
    pub(super) async fn pace(&self, channel: &str) {
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

    pub(super) async fn send(
        &self,
        target: &Target<'_>,
        body: Body<'_>,
    ) -> Result<Value, SlackError> {
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
        let backoff = Backoff::new(policy.base_backoff, policy.max_backoff).with_jitter();
        let body = &body;
        retry(target.label, attempts, backoff, |attempt| async move {
            let last = attempt >= attempts;
            match self.attempt(target, body).await {
                Attempt::Done(v) => {
                    tracing::debug!(method = target.label, attempt, "slack call ok");
                    retry::Attempt::Done(Ok(v))
                }
                Attempt::Failed(err) => {
                    tracing::debug!(method = target.label, attempt, error = %err, "slack call failed");
                    retry::Attempt::Done(Err(err))
                }
                Attempt::RateLimited(retry_after) => {
                    crate::metrics::slack_rate_limited();
                    let err = SlackError::RateLimited { retry_after };
                    if last || retry_after > policy.max_inline_wait {
                        tracing::warn!(method = target.label, attempt, error = %err, "slack call rate limited");
                        return retry::Attempt::Done(Err(err));
                    }
                    retry::Attempt::Again {
                        error: err,
                        wait: Some(retry_after),
                    }
                }
                Attempt::Retry(err) => {
                    if last {
                        tracing::warn!(method = target.label, attempt, error = %err, "slack call failed after retries");
                    }
                    retry::Attempt::Again {
                        error: err,
                        wait: None,
                    }
                }
            }
        })
        .await
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

fn default_rate_limit_wait() -> Duration {
    DEFAULT_RATE_LIMIT_WAIT + Duration::from_millis(rand::random_range(0..=RATE_LIMIT_JITTER_MS))
}

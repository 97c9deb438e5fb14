//! Escalation notifications: PagerDuty Events API v2 and signed generic
//! webhooks. Both go through `deliver`, so they agree on what is retried: 429 (honouring
//! `Retry-After`), 5xx and network errors, with capped exponential backoff and jitter
//! (`retry.rs`). Any other non-2xx answer is final.

pub mod pagerduty;
pub mod webhook;

pub use pagerduty::{PagerDuty, Trigger};
pub use webhook::WebhookNotifier;

use crate::retry::{self, Backoff};
use std::time::Duration;

/// Per HTTP attempt, including reading the answer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of an answer's body that is read (it only ever ends up in an error message).
const MAX_BODY: usize = 4096;

#[derive(Clone, Debug)]
pub struct Retry {
    /// Requests per event, the first included.
    pub attempts: u32,
    /// Backoff before the second attempt; doubles each time.
    pub base_backoff: Duration,
    /// Caps both the backoff and any `Retry-After` the server asks for.
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 4,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A non-2xx answer other than 429 and 5xx (a 4xx, or a 3xx since redirects are not
    /// followed): the event itself is wrong, so it is never retried. `body` is the first
    /// 4 KiB of the answer.
    #[error("rejected with HTTP {status}: {body}")]
    Rejected { status: u16, body: String },
    /// Still 429, 5xx or unreachable after the last attempt.
    #[error("failed after retries: {0}")]
    Exhausted(String),
    /// The request could not even be built (e.g. a malformed URL); never sent.
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl NotifyError {
    /// Worth sending again later: only when every attempt failed for a passing reason.
    pub fn is_transient(&self) -> bool {
        matches!(self, NotifyError::Exhausted(_))
    }

    /// The same error with every occurrence of `secret` masked, in case a server echoes it.
    pub(crate) fn redact(self, secret: &str) -> Self {
        if secret.is_empty() {
            return self;
        }
        let mask = |s: String| s.replace(secret, "[redacted]");
        match self {
            NotifyError::Rejected { status, body } => NotifyError::Rejected {
                status,
                body: mask(body),
            },
            NotifyError::Exhausted(s) => NotifyError::Exhausted(mask(s)),
            NotifyError::Invalid(s) => NotifyError::Invalid(mask(s)),
        }
    }
}

/// A 2xx answer, after this many attempts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Delivered {
    pub status: u16,
    pub attempts: u32,
}

/// What one attempt came to.
enum Attempt {
    Delivered(u16),
    Final(NotifyError),
    /// Worth another attempt: `detail` goes into the error if none is left.
    Again {
        status: Option<u16>,
        detail: String,
        retry_after: Option<Duration>,
    },
}

impl Retry {
    fn backoff(&self) -> Backoff {
        Backoff::new(self.base_backoff, self.max_backoff).with_jitter()
    }
}

/// Sends the request `build` makes, once per attempt, until a 2xx or a final answer.
///
/// `build` is called again for each attempt, so a signature can carry that attempt's time.
/// `kind` names the service in debug logs; callers log the outcome with their own fields
/// (and mask their secrets in the error with [`NotifyError::redact`]).
pub(crate) async fn deliver<F>(
    kind: &str,
    retry: &Retry,
    build: F,
) -> Result<Delivered, NotifyError>
where
    F: Fn() -> reqwest::RequestBuilder,
{
    let build = &build;
    crate::retry::retry(
        kind,
        retry.attempts,
        retry.backoff(),
        |attempt| async move {
            match once(build().timeout(HTTP_TIMEOUT)).await {
                Attempt::Delivered(status) => retry::Attempt::Done(Ok(Delivered {
                    status,
                    attempts: attempt,
                })),
                Attempt::Final(err) => retry::Attempt::Done(Err(err)),
                Attempt::Again {
                    status,
                    detail,
                    retry_after,
                } => {
                    // The detail may hold an echoed secret, so only the status is logged here.
                    tracing::debug!(kind, attempt, status, "notification attempt failed");
                    retry::Attempt::Again {
                        error: NotifyError::Exhausted(format!("{detail} ({attempt} attempts)")),
                        wait: retry_after.map(|asked| asked.min(retry.max_backoff)),
                    }
                }
            }
        },
    )
    .await
}

async fn once(req: reqwest::RequestBuilder) -> Attempt {
    let resp = match req.send().await {
        Ok(resp) => resp,
        Err(e) if e.is_builder() => {
            return Attempt::Final(NotifyError::Invalid(crate::outbound::describe(e)));
        }
        Err(e) => {
            return Attempt::Again {
                status: None,
                detail: crate::outbound::describe(e),
                retry_after: None,
            };
        }
    };
    let status = resp.status().as_u16();
    let retry_after = crate::outbound::retry_after(resp.headers());
    // Read even on success, so the connection can be reused.
    let body = read_capped(resp).await;
    match status {
        200..=299 => Attempt::Delivered(status),
        429 => Attempt::Again {
            status: Some(status),
            detail: http_detail(status, &body),
            retry_after,
        },
        500..=599 => Attempt::Again {
            status: Some(status),
            detail: http_detail(status, &body),
            retry_after: None,
        },
        _ => Attempt::Final(NotifyError::Rejected { status, body }),
    }
}

fn http_detail(status: u16, body: &str) -> String {
    if body.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {body}")
    }
}

/// At most [`MAX_BODY`] bytes of the body, as text; a body that fails midway is cut there.
async fn read_capped(mut resp: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < MAX_BODY {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_BODY - buf.len();
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    String::from_utf8_lossy(&buf).trim().to_owned()
}

/// The host of `url`, for logs: the rest may carry a token.
fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "<invalid url>".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_masks_the_secret_everywhere() {
        let key = "R0UTINGKEY";
        let e = NotifyError::Rejected {
            status: 400,
            body: format!("bad key {key}"),
        }
        .redact(key);
        assert_eq!(e.to_string(), "rejected with HTTP 400: bad key [redacted]");
        assert!(!e.is_transient());
        let e = NotifyError::Exhausted(format!("HTTP 500: {key}")).redact(key);
        assert!(!format!("{e} {e:?}").contains(key));
        assert!(e.is_transient());
        let e = NotifyError::Exhausted("x".into()).redact("");
        assert_eq!(e.to_string(), "failed after retries: x");
    }

    #[test]
    fn hosts_only_for_logs() {
        assert_eq!(
            host_of("https://hooks.example/t/SECRET?x=1"),
            "hooks.example"
        );
        assert_eq!(host_of("not a url"), "<invalid url>");
    }
}

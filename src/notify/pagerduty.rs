//! PagerDuty Events API v2 (`POST /v2/enqueue`): a `trigger` when an escalation stage pages,
//! a `resolve` with the same `dedup_key` (the action id) when the action leaves pending.
//!
//! PagerDuty answers 202 when it takes an event, 400 when the event is invalid (never
//! retried), 429 when throttled and 5xx on its own errors (both retried, see `notify::deliver`).
//! The routing key is a `SecretString`: it travels only in the request body and appears in no
//! log, error or `Debug` output.

pub use super::{NotifyError, Retry};

use super::deliver;
use reqwest::header::CONTENT_TYPE;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::fmt;
use std::sync::Arc;

pub const DEFAULT_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// PagerDuty's limit on `payload.summary`, in characters.
pub const MAX_SUMMARY_CHARS: usize = 1024;
/// Shown as the event's `client` in PagerDuty.
const CLIENT: &str = "Greenlight";

#[derive(Clone)]
pub struct PagerDuty {
    http: reqwest::Client,
    url: Arc<str>,
    routing_key: SecretString,
    retry: Retry,
}

impl fmt::Debug for PagerDuty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PagerDuty")
            .field("url", &self.url)
            .field("routing_key", &"[redacted]")
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// An alert to open (or add to, when one with this `dedup_key` is open).
#[derive(Clone, Debug)]
pub struct Trigger<'a> {
    /// At most 255 characters; the action id.
    pub dedup_key: &'a str,
    /// Truncated to [`MAX_SUMMARY_CHARS`] when longer.
    pub summary: String,
    /// `critical`, `error`, `warning` or `info`.
    pub severity: &'a str,
    /// The affected system, e.g. the action's resource.
    pub source: &'a str,
    /// Free-form JSON object shown with the alert.
    pub custom_details: Value,
    /// `(href, text)` pairs, e.g. the Slack message.
    pub links: Vec<(String, String)>,
}

impl PagerDuty {
    /// `events_url` is the full enqueue URL (`PAGERDUTY_EVENTS_URL`, default
    /// [`DEFAULT_EVENTS_URL`]).
    pub fn new(http: reqwest::Client, events_url: &str, routing_key: SecretString) -> Self {
        Self {
            http,
            url: Arc::from(events_url),
            routing_key,
            retry: Retry::default(),
        }
    }

    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    pub async fn trigger(&self, t: &Trigger<'_>) -> Result<(), NotifyError> {
        let links: Vec<Value> = t
            .links
            .iter()
            .map(|(href, text)| json!({"href": href, "text": text}))
            .collect();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let body = json!({
            "routing_key": self.routing_key.expose_secret(),
            "event_action": "trigger",
            "dedup_key": t.dedup_key,
            "payload": {
                "summary": truncate_chars(&t.summary, MAX_SUMMARY_CHARS),
                "source": t.source,
                "severity": t.severity,
                "timestamp": now,
                "custom_details": t.custom_details,
            },
            "links": links,
            "client": CLIENT,
        });
        self.send(t.dedup_key, "trigger", &body).await
    }

    /// Resolves the alert opened with `dedup_key`; PagerDuty drops it when none is open.
    pub async fn resolve(&self, dedup_key: &str) -> Result<(), NotifyError> {
        let body = json!({
            "routing_key": self.routing_key.expose_secret(),
            "event_action": "resolve",
            "dedup_key": dedup_key,
        });
        self.send(dedup_key, "resolve", &body).await
    }

    async fn send(
        &self,
        dedup_key: &str,
        event_action: &str,
        body: &Value,
    ) -> Result<(), NotifyError> {
        let bytes = bytes::Bytes::from(body.to_string());
        let result = deliver("pagerduty", &self.retry, || {
            self.http
                .post(&*self.url)
                .header(CONTENT_TYPE, "application/json")
                .body(bytes.clone())
        })
        .await
        .map_err(|e| e.redact(self.routing_key.expose_secret()));
        match result {
            Ok(done) => {
                tracing::info!(
                    dedup_key,
                    event_action,
                    status = done.status,
                    attempts = done.attempts,
                    "pagerduty event sent"
                );
                Ok(())
            }
            Err(error) => {
                tracing::warn!(dedup_key, event_action, %error, "pagerduty event failed");
                Err(error)
            }
        }
    }
}

/// The first `max` characters of `s` (not bytes: PagerDuty counts characters).
fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_are_cut_on_character_boundaries() {
        assert_eq!(truncate_chars("abc", 5), "abc");
        assert_eq!(truncate_chars("abc", 3), "abc");
        assert_eq!(truncate_chars("ééé", 2), "éé");
        let long = "ü".repeat(MAX_SUMMARY_CHARS + 10);
        assert_eq!(
            truncate_chars(&long, MAX_SUMMARY_CHARS).chars().count(),
            MAX_SUMMARY_CHARS
        );
    }

    #[test]
    fn debug_hides_the_routing_key() {
        let pd = PagerDuty::new(
            reqwest::Client::new(),
            DEFAULT_EVENTS_URL,
            "R0123456789ABCDEF0123456789ABCDE".into(),
        );
        let shown = format!("{pd:?}");
        assert!(!shown.contains("R0123456789"), "{shown}");
        assert!(shown.contains("[redacted]") && shown.contains(DEFAULT_EVENTS_URL));
    }
}

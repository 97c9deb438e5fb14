//! Signed webhooks: `POST url` with an event as JSON, signed in the Standard Webhooks
//! scheme (content = body) with the key given: for escalation events the key derived from
//! `GREENLIGHT_NOTIFY_SECRET`, for decision callbacks the one derived from the creating
//! client's secret (see [`crate::signing::KeyPurpose`]).
//!
//! Every attempt of one event carries the same `webhook-id`, so a receiver can drop repeats,
//! and a fresh `webhook-timestamp` and signature, so a late retry is not refused as stale.
//!
//! Redirects are not followed: the `reqwest::Client` handed in is expected to be built with
//! `redirect::Policy::none()` (the application's is), so a 3xx is a final [`NotifyError::Rejected`]
//! and a signed event never lands on a host nobody configured.

use super::{NotifyError, Retry, deliver, host_of};
use crate::signing::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, Secret};
use reqwest::header::CONTENT_TYPE;
use std::fmt;

#[derive(Clone)]
pub struct WebhookNotifier {
    http: reqwest::Client,
    secret: Option<Secret>,
    retry: Retry,
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("signed", &self.secret.is_some())
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl WebhookNotifier {
    /// `secret` is the signing key (derived for its purpose); without one, events go unsigned.
    pub fn new(http: reqwest::Client, secret: Option<Secret>) -> Self {
        Self {
            http,
            secret,
            retry: Retry::default(),
        }
    }

    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// POSTs `event` as JSON to `url`, signed when a secret is configured, with `event_id` as
    /// the `webhook-id` of every attempt. 429, 5xx and network errors are retried; any other
    /// non-2xx answer (a 4xx, or a 3xx) is final.
    pub async fn send(
        &self,
        url: &str,
        event_id: &str,
        event: &serde_json::Value,
    ) -> Result<(), NotifyError> {
        let body = bytes::Bytes::from(event.to_string());
        let result = deliver("webhook", &self.retry, || {
            let mut req = self
                .http
                .post(url)
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some(secret) = &self.secret {
                let now = chrono::Utc::now().timestamp();
                req = req
                    .header(HEADER_ID, event_id)
                    .header(HEADER_TIMESTAMP, now.to_string())
                    .header(HEADER_SIGNATURE, secret.sign(event_id, now, &body));
            }
            req
        })
        .await;
        // The host only: the path or query of a webhook URL may be a credential.
        let host = host_of(url);
        match result {
            Ok(done) => {
                tracing::info!(
                    event_id,
                    host,
                    status = done.status,
                    attempts = done.attempts,
                    "webhook delivered"
                );
                Ok(())
            }
            Err(error) => {
                tracing::warn!(event_id, host, %error, "webhook failed");
                Err(error)
            }
        }
    }
}

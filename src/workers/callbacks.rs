//! Decision callbacks: when an action with a `callback_url` leaves pending, POST the
//! action object to it, signed (Standard Webhooks) with the callback key derived from the
//! creating client's secret (`greenlight secret derive --purpose callback`), never with
//! the secret itself: a receiver holding the callback key cannot sign API requests, and
//! a callback replayed against the API does not verify. The same `webhook-id` is sent on
//! every attempt. Each attempt is one run of a durable
//! timer, so retries survive restarts; they back off to an hour apart and stop after a
//! day. The URL was checked against the client's `callback_hosts` when the action was
//! created, and redirects are never followed (the app's HTTP client refuses them).

use super::Fired;
use crate::audit::AuditEvent;
use crate::domain::ActionId;
use crate::notify::{Retry, WebhookNotifier};
use crate::service::Service;
use crate::signing::KeyPurpose;
use crate::store::StoreError;
use chrono::{Duration as ChronoDuration, Utc};
use std::sync::Arc;
use std::time::Duration;

/// Callbacks are retried for this long after the decision, then given up.
const GIVE_UP_AFTER: ChronoDuration = ChronoDuration::hours(24);
const MAX_DELAY: Duration = Duration::from_secs(3600);

pub struct Callbacks {
    pub service: Arc<Service>,
    pub http: reqwest::Client,
}

impl Callbacks {
    /// One delivery attempt of the decision of `id`.
    pub async fn deliver(&self, id: &ActionId) -> Result<Fired, StoreError> {
        let Some(v) = self.service.load(id).await? else {
            return Ok(Fired::Done);
        };
        let action = v.action;
        let (Some(url), Some(decision)) = (&action.callback_url, &action.decision) else {
            return Ok(Fired::Done);
        };
        let Some(client) = self.service.client(&action.client) else {
            tracing::error!(action_id = %id, client = %action.client, "callback dropped: the client is no longer in the policy");
            crate::metrics::callback(crate::metrics::CallbackResult::Failed);
            return Ok(Fired::Done);
        };
        // From the first secret listed in the client's variable (several during a rotation).
        let Some(secret) = client
            .secrets
            .first()
            .map(|s| s.derive(KeyPurpose::Callback))
        else {
            return Ok(Fired::Done);
        };
        // One attempt per run: the timer is the retry loop, so retries outlive a restart.
        let notifier = WebhookNotifier::new(self.http.clone(), Some(secret)).with_retry(Retry {
            attempts: 1,
            ..Retry::default()
        });
        let body = serde_json::to_value(&action).expect("actions serialize");
        let event_id = format!("{id}-decision");
        match notifier.send(url, &event_id, &body).await {
            Ok(()) => {
                tracing::info!(action_id = %id, "decision callback delivered");
                crate::metrics::callback(crate::metrics::CallbackResult::Delivered);
                self.service
                    .audit()
                    .record(AuditEvent::callback_sent(&action, url))
                    .await;
                Ok(Fired::Done)
            }
            Err(e) => {
                let waited = Utc::now() - decision.decided_at;
                if waited > GIVE_UP_AFTER || !e.is_transient() {
                    tracing::error!(action_id = %id, error = %e, "decision callback failed; giving up");
                    crate::metrics::callback(crate::metrics::CallbackResult::Failed);
                    self.service
                        .audit()
                        .record(AuditEvent::callback_failed(
                            &action,
                            url,
                            &e.to_string(),
                            None,
                        ))
                        .await;
                    return Ok(Fired::Done);
                }
                // Back off with the time already waited: about doubling, from 1 s to 1 h.
                let delay = waited
                    .to_std()
                    .unwrap_or_default()
                    .clamp(Duration::from_secs(1), MAX_DELAY);
                let jitter = Duration::from_millis(rand::random::<u64>() % 250);
                tracing::warn!(action_id = %id, error = %e, retry_in = ?delay, "decision callback failed; will retry");
                crate::metrics::callback(crate::metrics::CallbackResult::Retry);
                let retry_at =
                    Utc::now() + ChronoDuration::from_std(delay + jitter).unwrap_or_default();
                self.service
                    .audit()
                    .record(AuditEvent::callback_failed(
                        &action,
                        url,
                        &e.to_string(),
                        Some(retry_at),
                    ))
                    .await;
                Ok(Fired::At(retry_at))
            }
        }
    }
}

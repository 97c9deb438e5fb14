//! The one timer loop of a process. Deadlines live in the store (a Redis sorted set), so
//! they survive restarts; each due timer is claimed atomically under a lease, so exactly
//! one replica fires it and a crash only delays it. The loop sleeps until the next
//! deadline, woken early when this process schedules a nearer one, and polls at least
//! every [`MAX_SLEEP`] for deadlines other replicas added.

use crate::domain::ActionId;
use crate::service::{Service, ServiceError};
use crate::slack::{Slack, Synced};
use crate::store::{StoreError, Timer, TimerKind};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const MAX_SLEEP: Duration = Duration::from_secs(1);
const BATCH: usize = 100;
const LEASE: Duration = Duration::from_secs(30);

/// What one step did.
#[derive(Debug, PartialEq)]
pub struct Step {
    pub fired: usize,
    pub next_due: Option<DateTime<Utc>>,
}

pub struct Scheduler {
    service: Arc<Service>,
    slack: Option<Arc<Slack>>,
}

impl Scheduler {
    pub fn new(service: Arc<Service>, slack: Option<Arc<Slack>>) -> Self {
        Self { service, slack }
    }

    /// Fires every timer due at `now`, then reports when the next one is due.
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<Step, StoreError> {
        let store = self.service.store();
        let mut fired = 0;
        loop {
            let due = store.claim_due(now, BATCH, LEASE).await?;
            let n = due.len();
            for timer in due {
                if self.fire(&timer).await? {
                    fired += 1;
                }
            }
            if n < BATCH {
                break;
            }
        }
        Ok(Step {
            fired,
            next_due: store.next_due().await?,
        })
    }

    /// Does a timer's work and settles it in the store: removed when done, moved when to
    /// be retried, left to its lease when it failed. Returns whether it was done.
    async fn fire(&self, timer: &Timer) -> Result<bool, StoreError> {
        let store = self.service.store();
        match timer.kind {
            TimerKind::Expire => {
                if !self.expire(&timer.action_id).await {
                    return Ok(false);
                }
                store.finish(timer).await?;
            }
            TimerKind::SlackSync => match &self.slack {
                // Slack was switched off since: nothing to keep in sync.
                None => store.finish(timer).await?,
                Some(slack) => match slack.sync(store.as_ref(), &timer.action_id).await? {
                    Synced::Reflected(rev) => store.finish_if_current(timer, rev).await?,
                    Synced::RetryAt(at) => {
                        store.reschedule(timer, at).await?;
                        return Ok(false);
                    }
                },
            },
        }
        Ok(true)
    }

    async fn expire(&self, id: &ActionId) -> bool {
        match self.service.expire(id).await {
            Ok(_) | Err(ServiceError::NotFound) => true,
            Err(e) => {
                tracing::warn!(action_id = %id, error = %e, "expiry failed; will retry");
                false
            }
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let sleep = match self.run_once(Utc::now()).await {
                Ok(step) => {
                    backoff = Duration::from_millis(100);
                    step.next_due
                        .map(|due| (due - Utc::now()).to_std().unwrap_or_default())
                        .map_or(MAX_SLEEP, |d| d.min(MAX_SLEEP))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler cannot reach the store");
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    backoff
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.service.timers_changed.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }
}

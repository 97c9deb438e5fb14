//! The one timer loop of a process. Deadlines live in the store (a Redis sorted set), so
//! they survive restarts; each due timer is claimed atomically under a lease, so exactly
//! one replica fires it and a crash only delays it. The loop sleeps until the next
//! deadline, woken early when this process schedules a nearer one, and polls at least
//! every [`MAX_SLEEP`] for deadlines other replicas added.

use crate::service::{Service, ServiceError};
use crate::slack::{Slack, Synced};
use crate::store::{StoreError, Timer, TimerKind};
use crate::workers::callbacks::Callbacks;
use crate::workers::escalation::Escalator;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const MAX_SLEEP: Duration = Duration::from_secs(1);
const BATCH: usize = 100;
/// How long a claimed timer stays invisible to other replicas: a timer whose run was cut
/// short (a crash, or a shutdown past its timeout) runs again once this has passed.
pub const LEASE: Duration = Duration::from_secs(30);

/// What one step did.
#[derive(Debug, PartialEq)]
pub struct Step {
    pub fired: usize,
    pub next_due: Option<DateTime<Utc>>,
}

/// How a timer's work ended, and so what becomes of the timer.
#[derive(Debug, PartialEq)]
pub enum Fired {
    /// Done: remove it.
    Done,
    /// An effect that reflected this revision of the action: remove it unless the action
    /// changed meanwhile.
    Reflected(u64),
    /// Run it again then (a retry, or the next reminder).
    At(DateTime<Utc>),
    /// Failed: leave it to its lease, so it runs again shortly.
    Leave,
}

pub struct Scheduler {
    service: Arc<Service>,
    slack: Option<Arc<Slack>>,
    escalator: Escalator,
    callbacks: Callbacks,
    /// Cancelled at shutdown: a step then stops after the timer it is running.
    stop: CancellationToken,
}

impl Scheduler {
    pub fn new(
        service: Arc<Service>,
        slack: Option<Arc<Slack>>,
        escalator: Escalator,
        callbacks: Callbacks,
    ) -> Self {
        Self {
            service,
            slack,
            escalator,
            callbacks,
            stop: CancellationToken::new(),
        }
    }

    /// Fires every timer due at `now`, then reports when the next one is due.
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<Step, StoreError> {
        let store = self.service.timers();
        let mut fired = 0;
        loop {
            let mut due = store.claim_due(now, BATCH, LEASE).await?.into_iter();
            let n = due.len();
            while let Some(timer) = due.next() {
                if self.stop.is_cancelled() {
                    // Shutting down: hand back what was claimed but not started, due as
                    // before, so another replica runs it without waiting out the lease.
                    for t in std::iter::once(timer).chain(due.by_ref()) {
                        store.reschedule(&t, t.due).await?;
                    }
                    return Ok(Step {
                        fired,
                        next_due: None,
                    });
                }
                let outcome = match self.fire(&timer).await {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        tracing::warn!(timer = %timer.member(), error = %e, "timer failed; will retry");
                        Fired::Leave
                    }
                };
                match outcome {
                    Fired::Done => store.finish(&timer).await?,
                    Fired::Reflected(rev) => store.finish_if_current(&timer, rev).await?,
                    Fired::At(at) => store.reschedule(&timer, at).await?,
                    Fired::Leave => continue,
                }
                fired += 1;
            }
            if n < BATCH || self.stop.is_cancelled() {
                break;
            }
        }
        Ok(Step {
            fired,
            next_due: store.next_due().await?,
        })
    }

    async fn fire(&self, timer: &Timer) -> Result<Fired, StoreError> {
        let id = &timer.action_id;
        match timer.kind {
            TimerKind::Expire => Ok(match self.service.expire(id).await {
                Ok(_) | Err(ServiceError::NotFound) => Fired::Done,
                Err(e) => {
                    tracing::warn!(action_id = %id, error = %e, "expiry failed; will retry");
                    Fired::Leave
                }
            }),
            TimerKind::Escalate(stage) => self.escalator.stage(id, stage).await,
            TimerKind::Remind => self.escalator.remind(id).await,
            TimerKind::PagerDutyResolve => self.escalator.resolve(id).await,
            TimerKind::Callback => self.callbacks.deliver(id).await,
            TimerKind::SlackSync => match &self.slack {
                // Slack was switched off since: nothing to keep in sync.
                None => Ok(Fired::Done),
                Some(slack) => Ok(match slack.sync(&self.service, id).await? {
                    Synced::Reflected(rev) => Fired::Reflected(rev),
                    Synced::RetryAt(at) => Fired::At(at),
                }),
            },
        }
    }

    /// Loops [`Self::run_once`] until `shutdown`, which also ends a step after the timer
    /// it is running.
    pub async fn run(mut self, shutdown: CancellationToken) {
        self.stop = shutdown.clone();
        let mut backoff = Duration::from_millis(100);
        loop {
            let sleep = match self.run_once(Utc::now()).await {
                Ok(step) => {
                    backoff = Duration::from_millis(100);
                    crate::metrics::sample_store(&self.service).await;
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

//! One timer's run: what it does by kind, cut off at [`RUN_TIMEOUT`], and what then becomes
//! of the timer in the store.

use super::callbacks::Callbacks;
use super::escalation::Escalator;
use super::scheduler::RUN_TIMEOUT;
use crate::service::{Service, ServiceError};
use crate::slack::{Slack, Synced};
use crate::store::{StoreError, Timer, TimerKind};
use chrono::{DateTime, Utc};
use std::sync::Arc;

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

/// The run slots a timer takes, by the work it does: each pool fills on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    /// Expiry: one compare-and-set, never behind anything slow.
    Expiry = 0,
    /// Decision callbacks: receivers the clients run, as slow as they like.
    Callbacks = 1,
    /// Slack sync, escalation, reminders, PagerDuty.
    Notify = 2,
}

impl Pool {
    pub const COUNT: usize = 3;

    pub fn of(kind: TimerKind) -> Self {
        match kind {
            TimerKind::Expire => Pool::Expiry,
            TimerKind::Callback => Pool::Callbacks,
            TimerKind::Escalate(_)
            | TimerKind::Remind
            | TimerKind::SlackSync
            | TimerKind::PagerDutyResolve => Pool::Notify,
        }
    }
}

/// What runs timers: the service and every worker a timer kind needs.
pub struct Worker {
    pub service: Arc<Service>,
    pub slack: Option<Arc<Slack>>,
    pub escalator: Escalator,
    pub callbacks: Callbacks,
}

impl Worker {
    /// Fires `timer` (for at most [`RUN_TIMEOUT`]) and settles it in the store. Failures
    /// are logged and leave the timer to its lease.
    pub async fn run(&self, timer: &Timer) {
        let outcome = match tokio::time::timeout(RUN_TIMEOUT, self.fire(timer)).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => {
                tracing::warn!(timer = %timer.member(), error = %e, "timer failed; will retry");
                Fired::Leave
            }
            Err(_) => {
                tracing::warn!(timer = %timer.member(), timeout = ?RUN_TIMEOUT,
                    "timer run took too long; abandoned to its lease, it runs again then");
                Fired::Leave
            }
        };
        let timers = self.service.timers();
        let settled = match outcome {
            Fired::Done => timers.finish(timer).await,
            Fired::Reflected(rev) => timers.finish_if_current(timer, rev).await,
            Fired::At(at) => timers.reschedule(timer, at).await,
            Fired::Leave => Ok(()),
        };
        if let Err(e) = settled {
            tracing::warn!(timer = %timer.member(), error = %e,
                "cannot settle a timer; it runs again when its lease ends");
        }
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
}

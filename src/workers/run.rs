//! One timer's run: what it does by kind, cut off at [`RUN_TIMEOUT`], and what then becomes
//! of the timer in the store.

use super::callbacks::Callbacks;
use super::escalation::Escalator;
use super::{Fired, RUN_TIMEOUT};
use crate::service::{Service, ServiceError};
use crate::slack::{Slack, Synced};
use crate::store::{StoreError, Timer, TimerKind};
use std::future::Future;
use std::sync::Arc;

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
            TimerKind::Expire | TimerKind::WindowEnd => Pool::Expiry,
            TimerKind::Callback => Pool::Callbacks,
            TimerKind::Escalate(_)
            | TimerKind::Remind
            | TimerKind::SlackSync
            | TimerKind::SlackWindowEnd
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
        let outcome = bounded(timer, self.fire(timer)).await;
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
            TimerKind::WindowEnd => Ok(match self.service.window_ended(id).await {
                Ok(()) => Fired::Done,
                Err(e) => {
                    tracing::warn!(action_id = %id, error = %e, "window end failed; will retry");
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
            TimerKind::SlackWindowEnd => match &self.slack {
                None => Ok(Fired::Done),
                Some(slack) => Ok(match slack.show_window_end(&self.service, id).await? {
                    Synced::Reflected(_) => Fired::Done,
                    Synced::RetryAt(at) => Fired::At(at),
                }),
            },
        }
    }
}

/// A timer's work, cut off at [`RUN_TIMEOUT`]: a failure or a run cut off is logged and
/// leaves the timer to its lease.
async fn bounded(timer: &Timer, work: impl Future<Output = Result<Fired, StoreError>>) -> Fired {
    match tokio::time::timeout(RUN_TIMEOUT, work).await {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ActionId;
    use chrono::Utc;
    use std::time::Duration;

    fn timer() -> Timer {
        Timer::new(TimerKind::Callback, &ActionId::generate(), Utc::now())
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_past_the_timeout_is_cut_off_and_left_to_its_lease() {
        let started = tokio::time::Instant::now();
        let hung = async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(Fired::Done)
        };
        assert_eq!(bounded(&timer(), hung).await, Fired::Leave);
        assert_eq!(started.elapsed(), RUN_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_within_the_timeout_keeps_its_outcome() {
        let at = Utc::now();
        let slow = async move {
            tokio::time::sleep(RUN_TIMEOUT - Duration::from_millis(1)).await;
            Ok(Fired::At(at))
        };
        assert_eq!(bounded(&timer(), slow).await, Fired::At(at));
        let failed = async { Err(StoreError::Unavailable("down".into())) };
        assert_eq!(bounded(&timer(), failed).await, Fired::Leave);
    }

    #[test]
    fn expiry_has_a_pool_of_its_own() {
        assert_eq!(Pool::of(TimerKind::Expire), Pool::Expiry);
        assert_eq!(Pool::of(TimerKind::Callback), Pool::Callbacks);
        for kind in [
            TimerKind::SlackSync,
            TimerKind::SlackWindowEnd,
            TimerKind::Escalate(1),
            TimerKind::Remind,
            TimerKind::PagerDutyResolve,
        ] {
            assert_eq!(Pool::of(kind), Pool::Notify, "{kind:?}");
        }
    }
}

//! The one way an action changes: a compare-and-set on its revision, with the expiry rule
//! applied in the same step. A pending action whose `expires_at` has passed takes no other
//! change: whoever reaches it first (a vote, a decision, a cancel, a read, an escalation
//! or the expiry timer itself) expires it instead, so a late timer never leaves a window
//! in which a click still approves.

use super::{Service, ServiceError, ServiceResult};
use crate::audit::{AuditEvent, Origin};
use crate::domain::{Action, ActionId, AlreadyDecided, DecidedBy, Outcome, Status};
use crate::store::{StoreError, Timer};
use chrono::{DateTime, Utc};

/// How many times a compare-and-set is retried against concurrent writers before giving up.
const CAS_ATTEMPTS: usize = 32;

pub(super) enum CasError<E> {
    /// The change declined (the action was already decided, the voter already voted...).
    Change(E),
    /// The action was past its deadline: it was expired instead (by this call or before),
    /// and this is it.
    Expired(Box<Action>),
    Store(StoreError),
    Contended,
}

impl Service {
    /// Applies `change` (given the time it is made) to the pending action, retrying
    /// against concurrent writers. Exactly one caller moves it out of `pending`; the rest
    /// get `Conflict` naming the status it already has.
    pub(super) async fn transition(
        &self,
        id: &ActionId,
        origin: Origin<'_>,
        change: impl FnMut(&mut Action, DateTime<Utc>) -> Result<(), AlreadyDecided>,
    ) -> ServiceResult<Action> {
        match self.audited_change(id, origin, change).await {
            Ok(Some(action)) => Ok(action),
            Ok(None) => Err(ServiceError::NotFound),
            Err(CasError::Change(e)) => Err(ServiceError::AlreadyDecided(e)),
            Err(CasError::Expired(_)) => Err(ServiceError::AlreadyDecided(AlreadyDecided(
                Status::Expired,
            ))),
            Err(CasError::Store(e)) => Err(ServiceError::Store(e)),
            Err(CasError::Contended) => Err(ServiceError::Contended),
        }
    }

    /// A compare-and-set whose change may decline (`false`): `None` then, and when the
    /// action was expired instead.
    pub(super) async fn change_if(
        &self,
        id: &ActionId,
        mut change: impl FnMut(&mut Action, DateTime<Utc>) -> bool,
    ) -> Result<Option<Action>, StoreError> {
        let changed = self
            .compare_and_set(id, |a, now| if change(a, now) { Ok(()) } else { Err(()) })
            .await;
        match changed {
            Ok(action) => Ok(action),
            Err(CasError::Change(()) | CasError::Expired(_)) => Ok(None),
            Err(CasError::Store(e)) => Err(e),
            Err(CasError::Contended) => {
                Err(StoreError::Unavailable("the action kept changing".into()))
            }
        }
    }

    /// [`Self::compare_and_set`], then the audit entries of what it did: the vote, and the
    /// decision when this change made it (a change only applies to a pending action, so
    /// one that leaves it decided is the one that decided it).
    pub(super) async fn audited_change<E>(
        &self,
        id: &ActionId,
        origin: Origin<'_>,
        change: impl FnMut(&mut Action, DateTime<Utc>) -> Result<(), E>,
    ) -> Result<Option<Action>, CasError<E>> {
        let result = self.compare_and_set(id, change).await;
        if let Ok(Some(action)) = &result {
            self.audit
                .record_all(AuditEvent::changed(action, &origin))
                .await;
            count_decision(action, (&origin).into());
        }
        result
    }

    /// The one read-change-write loop: `None` when there is no such action. Each attempt
    /// reads the server's clock once: a pending action at or past its `expires_at` then is
    /// expired (and audited as the timer's) in place of `change`; otherwise `change` is
    /// made at that time. The write is conditional on the revision read, so a change
    /// decided before the deadline and the expiry can never both land.
    async fn compare_and_set<E>(
        &self,
        id: &ActionId,
        mut change: impl FnMut(&mut Action, DateTime<Utc>) -> Result<(), E>,
    ) -> Result<Option<Action>, CasError<E>> {
        for _ in 0..CAS_ATTEMPTS {
            let Some(v) = self.store.load(id).await.map_err(CasError::Store)? else {
                return Ok(None);
            };
            let now = Utc::now();
            let mut action = v.action;
            let overdue = action.is_pending() && now >= action.expires_at;
            if overdue {
                action
                    .decide(Outcome::Expired, DecidedBy::Timer, None, now)
                    .expect("checked pending");
            } else if action.status == Status::Expired {
                return Err(CasError::Expired(Box::new(action)));
            } else {
                change(&mut action, now).map_err(CasError::Change)?;
            }
            self.attach_grant(&mut action);
            let json = serde_json::to_string(&action).expect("actions serialize");
            let effects = self.effects(&action);
            // A decided action's deadlines are dropped with the decision.
            let dropped = if action.is_pending() {
                Vec::new()
            } else {
                Timer::deadlines(&action)
            };
            if self
                .store
                .replace(v.rev, &action, &json, &effects, &dropped)
                .await
                .map_err(CasError::Store)?
            {
                if !effects.is_empty() {
                    self.timers_changed.notify_one();
                }
                if overdue {
                    self.audit
                        .record_all(AuditEvent::changed(&action, &Origin::Timer))
                        .await;
                    count_decision(&action, crate::metrics::By::Timer);
                    tracing::info!(action_id = %id, "action expired");
                    return Err(CasError::Expired(Box::new(action)));
                }
                return Ok(Some(action));
            }
        }
        Err(CasError::Contended)
    }
}

/// Counts `action`'s decision in the metrics: nothing while it is still pending (a vote
/// short of the quorum).
pub(super) fn count_decision(action: &Action, by: crate::metrics::By) {
    let Some(decision) = &action.decision else {
        return;
    };
    if action.status == Status::Pending {
        return;
    }
    let waited = (decision.decided_at - action.created_at)
        .to_std()
        .unwrap_or_default();
    crate::metrics::decided(action.status.as_str(), by, waited);
}

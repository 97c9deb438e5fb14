//! What Greenlight does, independent of how it is asked: create an action under the
//! policy, read it, wait for it, and move it out of `pending` exactly once.
//! HTTP handlers, Slack callbacks and timers all come through here.

use crate::audit::{self, Audit};
use crate::domain::{Action, ActionId, Status, VoteRejected};
use crate::grants::GrantKeys;
use crate::store::{Store, StoreError, Timer, TimerKind};
use crate::waiters::Waiters;
use bytes::Bytes;
use chrono::Utc;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

mod webhook_ids;
pub use webhook_ids::{SignedUse, WebhookIdUse};
mod cas;
mod changes;
mod clients;
mod create;
mod door;
pub mod grants;
mod reads;

pub use clients::{Client, Loaded, load};

pub use door::Timers;

use cas::CasError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("no such action")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    /// The matching rule forbids self-approval, and nothing in the request tells
    /// approvers apart from the requester.
    #[error(
        "requester: rule `{0}` forbids self-approval, so the requester needs `email` or `slack_user_id` to be told apart from the approvers"
    )]
    RequesterUnverifiable(String),
    /// The client already has this many actions pending (its `max_pending`).
    #[error(
        "this client already has {0} pending actions, its limit (max_pending); wait for some to be decided"
    )]
    TooManyPending(u32),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// An action as an answer: parsed, or the exact JSON that was published.
pub enum ActionBody {
    Parsed(Box<Action>),
    Published(Bytes),
}

pub enum CreateOutcome {
    Created(Action),
    /// The same client repeated a `webhook-id` with the same body.
    Repeated(Action),
}

pub struct Service {
    store: Arc<dyn Store>,
    waiters: Arc<Waiters>,
    loaded: RwLock<Arc<Loaded>>,
    /// Wakes the scheduler when a nearer deadline may exist.
    pub timers_changed: Notify,
    max_wait: Duration,
    /// Whether changes are mirrored to Slack (a sync effect per change).
    slack: bool,
    shutdown: CancellationToken,
    /// Signs the grant every approval carries.
    grants: Arc<GrantKeys>,
    /// Where every event is recorded (see [`crate::audit`]).
    audit: Audit,
}

/// Why a vote was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum VoteError {
    #[error(transparent)]
    Rejected(#[from] VoteRejected),
    #[error("no such action")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Service {
    pub fn new(
        store: Arc<dyn Store>,
        waiters: Arc<Waiters>,
        loaded: Loaded,
        max_wait: Duration,
        slack: bool,
        shutdown: CancellationToken,
        grants: Arc<GrantKeys>,
    ) -> Self {
        Self {
            audit: Audit::new(store.clone(), audit::DEFAULT_MAXLEN),
            store,
            waiters,
            loaded: RwLock::new(Arc::new(loaded)),
            timers_changed: Notify::new(),
            max_wait,
            slack,
            shutdown,
            grants,
        }
    }

    /// The keys that sign and verify grants.
    pub fn grants(&self) -> &GrantKeys {
        &self.grants
    }

    /// Every approval carries a grant, signed once when the action becomes `approved`,
    /// valid for the `grant_ttl` of the rule it was created under.
    fn attach_grant(&self, action: &mut Action) {
        if action.status != Status::Approved {
            return;
        }
        let ttl = Duration::from_secs(action.policy.grant_ttl_seconds);
        let issued = match &action.decision {
            Some(d) if d.grant.is_none() => self.grants.issue(action, ttl, d.decided_at),
            _ => return,
        };
        if let Some(d) = action.decision.as_mut() {
            d.grant = Some(issued);
        }
    }

    /// The side effects a change of an action schedules, atomically with it: the Slack
    /// sync after every change; once it is decided, resolving its PagerDuty incident and
    /// its decision callback.
    fn effects(&self, action: &Action) -> Vec<Timer> {
        let now = Utc::now();
        let mut effects = Vec::new();
        if self.slack {
            effects.push(Timer::new(TimerKind::SlackSync, &action.id, now));
        }
        if !action.is_pending() && action.escalation.as_ref().is_some_and(|e| e.paged) {
            effects.push(Timer::new(TimerKind::PagerDutyResolve, &action.id, now));
        }
        if !action.is_pending() && action.callback_url.is_some() {
            effects.push(Timer::new(TimerKind::Callback, &action.id, now));
        }
        effects
    }

    /// Records that an escalation stage was reached; `None` when the action was decided
    /// or already got that far (so each stage notifies once).
    pub async fn record_escalation(
        &self,
        id: &ActionId,
        stage: u32,
    ) -> Result<Option<Action>, StoreError> {
        self.change_if(id, |a, now| a.escalate(stage, now)).await
    }

    /// Records that PagerDuty was paged for this action, so its decision resolves the
    /// incident; `false` when it was decided meanwhile.
    pub async fn record_paged(&self, id: &ActionId) -> Result<bool, StoreError> {
        let changed = self
            .change_if(id, |a, _| match &mut a.escalation {
                Some(e) if a.status == crate::domain::Status::Pending => {
                    e.paged = true;
                    true
                }
                _ => false,
            })
            .await?;
        Ok(changed.is_some())
    }

    /// Keeps about `maxlen` audit entries (`GREENLIGHT_AUDIT_MAXLEN`; 0 keeps all).
    pub fn with_audit_maxlen(mut self, maxlen: u64) -> Self {
        self.audit = Audit::new(self.store.clone(), maxlen);
        self
    }

    /// The audit trail, for anything that records an event.
    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    pub fn loaded(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the policy and clients at once. Pending actions keep the rule snapshot
    /// they were created with.
    pub fn reload(&self, loaded: Loaded) {
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
    }

    pub fn client(&self, id: &str) -> Option<Arc<Client>> {
        self.loaded().clients.get(id).cloned()
    }

    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }
}

//! What Greenlight does, independent of how it is asked: create an action under the
//! policy, read it, wait for it, and move it out of `pending` exactly once.
//! HTTP handlers, Slack callbacks and timers all come through here.

use crate::audit::{self, Audit};
use crate::domain::{Action, ActionId, AlreadyDecided, Outcome, Status, VoteRejected};
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
mod authz;
mod cas;
mod changes;
mod clients;
mod create;
mod door;
pub mod grants;
mod reads;
mod revoke;
mod windows;

pub use authz::{Forbidden, Permission};
pub use clients::{Client, Loaded, load};
pub use revoke::Revoker;

pub use door::Timers;

use cas::CasError;

/// Why a use case refused or failed, typed: the HTTP layer (`http/error.rs`) maps each
/// to its status, code and wording.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The body is not a valid action request; the parser's description of what is wrong.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The matching rule (named) requires a reason and the request gave none.
    #[error("rule `{0}` requires a reason")]
    ReasonRequired(String),
    /// A break-glass decision may only approve or deny.
    #[error("a break-glass decision cannot set {0:?}")]
    BreakGlassOutcome(Outcome),
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    /// No such action, or one the client may not see.
    #[error("no such action")]
    NotFound,
    /// This client already used this `webhook-id` with another body.
    #[error("webhook-id reused with another body")]
    WebhookIdReused,
    /// The action already left pending.
    #[error(transparent)]
    AlreadyDecided(AlreadyDecided),
    /// Only an approved action has a grant to revoke; this one has the status given.
    #[error("no grant to revoke: the action is {0}")]
    NoGrant(Status),
    /// Concurrent writers kept changing the action.
    #[error("the action kept changing")]
    Contended,
    /// The matching rule (named) forbids self-approval, and nothing in the request tells
    /// approvers apart from the requester.
    #[error("rule `{0}` cannot tell the requester from approvers")]
    RequesterUnverifiable(String),
    /// The client already has this many actions pending (its `max_pending`).
    #[error("client at its max_pending ({0})")]
    TooManyPending(u32),
    /// The matching rule (named) has no `max_window`, and the request asks for a window.
    #[error("rule `{0}` allows no access windows")]
    WindowNotAllowed(String),
    /// `consume` was asked of an access window's grant, which is used, never consumed.
    #[error("an access window's grant cannot be consumed")]
    WindowGrantNotConsumable,
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
    /// valid for the `grant_ttl` of the rule it was created under; an access window
    /// starts then, and its grant lasts as long as the window.
    fn attach_grant(&self, action: &mut Action) {
        if action.status != Status::Approved {
            return;
        }
        let ttl = Duration::from_secs(action.policy.grant_ttl_seconds);
        let decided_at = match &action.decision {
            Some(d) if d.grant.is_none() => d.decided_at,
            _ => return,
        };
        if let Some(window) = action.window.as_mut() {
            window.start(decided_at);
        }
        let issued = self.grants.issue(action, ttl, decided_at);
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
        effects.extend(Timer::window_end(action));
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

//! What Greenlight does, independent of how it is asked: create an action under the
//! policy, read it, wait for it, and move it out of `pending` exactly once.
//! HTTP handlers, Slack callbacks and timers all come through here.

use crate::audit::{self, Audit, AuditEvent, Origin};
use crate::domain::{
    Action, ActionId, ActionRequest, DecidedBy, Outcome, PolicySnapshot, StagePlan, Status,
    VoteKind, VoteRejected, from_json,
};
use crate::grants::GrantKeys;
use crate::policy::{MatchInput, Role, RuleDecision};
use crate::store::{Created, NewAction, Store, StoreError, Timer, TimerKind};
use crate::waiters::Waiters;
use bytes::Bytes;
use chrono::{SubsecRound, Utc};
use sha2::{Digest, Sha256};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

mod webhook_ids;
pub use webhook_ids::{SignedUse, WebhookIdUse};
mod cas;
mod clients;
mod door;
pub mod grants;

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

    /// `POST /v1/actions`: validates, applies the policy and stores the action once per
    /// (client, `webhook-id`).
    pub async fn create(
        &self,
        client: &Client,
        request_id: &str,
        body: &[u8],
    ) -> ServiceResult<CreateOutcome> {
        let request: ActionRequest = from_json(body).map_err(ServiceError::Invalid)?;
        let request = request
            .validate(&client.spec)
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;

        let loaded = self.loaded();
        let eval = loaded.policy.evaluate(&MatchInput {
            action: &request.action,
            resource: &request.resource,
            client: client.id(),
            context: &request.context,
        });
        if eval.reason_required && request.reason.is_none() {
            return Err(ServiceError::Invalid(format!(
                "reason: required by rule `{}`",
                eval.rule_name
            )));
        }
        if eval.decision == RuleDecision::Require
            && !eval.allow_self_approval
            && request.requester.email.is_none()
            && request.requester.slack_user_id.is_none()
        {
            return Err(ServiceError::RequesterUnverifiable(eval.rule_name.clone()));
        }
        // Whole seconds, as the action object shows them, so expiry matches what callers see.
        let now = Utc::now().trunc_subsecs(0);
        let ttl = request.ttl.map_or(eval.max_ttl, |t| t.min(eval.max_ttl));
        let mut action = Action {
            id: self.store.new_action_id(client.id(), request_id),
            status: Status::Pending,
            action: request.action,
            resource: request.resource,
            requester: request.requester,
            reason: request.reason,
            context: request.context,
            client: client.id().to_owned(),
            policy: PolicySnapshot {
                rule: eval.rule_name.clone(),
                min_approvals: eval.min_approvals,
                approvers: eval.approvers.clone(),
                channel: eval.channel.clone(),
                allow_self_approval: eval.allow_self_approval,
                deny_reason_required: eval.deny_reason_required,
                escalate: eval.rule.map_or_else(Vec::new, |r| {
                    r.escalate
                        .iter()
                        .map(|s| StagePlan {
                            after_seconds: s.after.as_secs(),
                            notify: s.notify.clone(),
                            pagerduty: s.pagerduty,
                            webhook: s.webhook.clone(),
                        })
                        .collect()
                }),
                remind_every_seconds: eval
                    .rule
                    .and_then(|r| r.remind_every)
                    .map(|d| d.as_secs().max(1)),
                severity: eval.rule.map(|r| r.severity.to_string()),
                grant_ttl_seconds: eval.grant_ttl.as_secs(),
            },
            votes: Vec::new(),
            created_at: now,
            expires_at: now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX),
            callback_url: request.callback_url.map(String::from),
            escalation: None,
            binding: request.binding,
            decision: None,
        };
        let auto = match eval.decision {
            RuleDecision::Approve => Some(Outcome::Approved),
            RuleDecision::Deny => Some(Outcome::Denied),
            RuleDecision::Require => None,
        };
        if let Some(outcome) = auto {
            action
                .decide(
                    outcome,
                    DecidedBy::Policy(eval.rule_name.clone()),
                    None,
                    now,
                )
                .expect("a new action is pending");
            self.attach_grant(&mut action);
        }
        // An auto-decided action has no timers and posts nothing to Slack.
        let timers = if action.is_pending() {
            let mut t = self.effects(&action);
            t.extend(Timer::deadlines(&action));
            t
        } else {
            Vec::new()
        };
        let json = serde_json::to_string(&action).expect("actions serialize");
        let body_hash = hex::encode(Sha256::digest(body));
        let created = self
            .store
            .create(NewAction {
                client: client.id(),
                idempotency_key: request_id,
                body_hash: &body_hash,
                action: &action,
                json: &json,
                timers: &timers,
                max_pending: client.spec.max_pending,
            })
            .await?;
        match created {
            Created::New => {
                let mut events = vec![AuditEvent::requested(&action)];
                events.extend(AuditEvent::auto_decided(&action));
                self.audit.record_all(events).await;
                crate::metrics::action_created(client.id(), &action.policy.rule);
                cas::count_decision(&action, crate::metrics::By::Policy);
                if action.is_pending() {
                    self.timers_changed.notify_one();
                }
                tracing::info!(action_id = %action.id, client = client.id(), rule = %action.policy.rule,
                    status = %action.status, "action requested");
                Ok(CreateOutcome::Created(action))
            }
            Created::TooManyPending => {
                tracing::info!(
                    client = client.id(),
                    limit = client.spec.max_pending,
                    "create refused: too many pending actions"
                );
                Err(ServiceError::TooManyPending(client.spec.max_pending))
            }
            Created::Existing {
                body_hash: stored,
                action_id,
            } => {
                if stored != body_hash {
                    return Err(ServiceError::Conflict(
                        "this webhook-id was already used with a different body".into(),
                    ));
                }
                let action = self.read(&action_id).await?;
                Ok(CreateOutcome::Repeated(action))
            }
        }
    }

    /// Reads an action for a caller already entitled to it (Slack users, workers),
    /// expiring it first if its deadline has passed (so nobody sees a pending action past
    /// `expires_at`, even before the timer runs).
    pub async fn read(&self, id: &ActionId) -> ServiceResult<Action> {
        Ok(self.load(id).await?.ok_or(ServiceError::NotFound)?.action)
    }

    fn authorize_read(client: &Client, action: &Action) -> ServiceResult<()> {
        // Another client's action answers like a missing one: ids are not disclosed.
        if action.client == client.id() || client.can_read_all() {
            Ok(())
        } else {
            Err(ServiceError::NotFound)
        }
    }

    /// The action as `client` may see it (without the grant's token unless it created it).
    pub async fn get(&self, client: &Client, id: &ActionId) -> ServiceResult<Action> {
        let action = self.read(id).await?;
        Self::authorize_read(client, &action)?;
        Ok(action.shown_to(client.id()))
    }

    /// Long-poll: registers the waiter first, then reads, so a decision in between is
    /// never missed. Answers at the decision, at `timeout`, or at shutdown.
    pub async fn wait(
        &self,
        client: &Client,
        id: &ActionId,
        timeout: Duration,
    ) -> ServiceResult<ActionBody> {
        let deadline = tokio::time::Instant::now() + timeout.min(self.max_wait);
        loop {
            let mut waiter = self.waiters.register(id.as_str());
            // The store reads are boxed: inline, the largest of them sizes the future that
            // every idle waiter keeps allocated for its whole wait (heaptrack: ~5 KiB a waiter).
            let action = Box::pin(self.get(client, id)).await?;
            if !action.is_pending() {
                return Ok(ActionBody::Parsed(Box::new(action)));
            }
            // `expires_at` ends the wait too, however late the expiry timer is: the read
            // after it expires the action (one timer for both, to keep waiters small).
            let expiry = tokio::time::Instant::now()
                + (action.expires_at - Utc::now())
                    .to_std()
                    .unwrap_or_default()
                + Duration::from_millis(5);
            let wake = deadline.min(expiry);
            tokio::select! {
                published = &mut waiter.receiver => match published {
                    // An empty message: one this deployment could not vouch for. Look again.
                    Ok(json) if json.is_empty() => continue,
                    // Published as stored, grant token included: only its creator
                    // gets it as is.
                    Ok(json) if action.client == client.id() => {
                        return Ok(ActionBody::Published(json));
                    }
                    Ok(json) => {
                        let published: Action = serde_json::from_slice(&json)
                            .map_err(|e| StoreError::Corrupt(format!("published action: {e}")))?;
                        return Ok(ActionBody::Parsed(Box::new(published.shown_to(client.id()))));
                    }
                    Err(_) => {
                        return Ok(ActionBody::Parsed(Box::new(Box::pin(self.get(client, id)).await?)));
                    }
                },
                _ = tokio::time::sleep_until(wake) => {
                    if wake < deadline {
                        continue;
                    }
                    return Ok(ActionBody::Parsed(Box::new(Box::pin(self.get(client, id)).await?)));
                }
                // On shutdown, answer with the current state so the caller retries elsewhere:
                // read again (the decision channel stops with the process), or, if the store
                // does not answer, the state read when the wait began.
                _ = self.shutdown.cancelled() => {
                    return Ok(ActionBody::Parsed(Box::new(
                        Box::pin(self.get(client, id)).await.unwrap_or(action),
                    )));
                }
            }
        }
    }

    /// The creating client withdraws its pending action.
    pub async fn cancel(
        &self,
        client: &Client,
        id: &ActionId,
        reason: Option<String>,
    ) -> ServiceResult<Action> {
        let action = self.get(client, id).await?;
        if action.client != client.id() {
            return Err(ServiceError::Forbidden(
                "only the client that created an action may cancel it".into(),
            ));
        }
        let by = client.id().to_owned();
        self.transition(id, Origin::Client(client.id()), |a, now| {
            a.decide(
                Outcome::Cancelled,
                DecidedBy::Client(by.clone()),
                reason.clone(),
                now,
            )
        })
        .await
    }

    /// Break-glass decision by an admin client (`POST /v1/actions/{id}/decision`).
    pub async fn decide(
        &self,
        client: &Client,
        id: &ActionId,
        outcome: Outcome,
        by: &str,
        reason: Option<String>,
    ) -> ServiceResult<Action> {
        if !client.spec.has_role(Role::Admin) {
            return Err(ServiceError::Forbidden(
                "deciding an action needs the admin role".into(),
            ));
        }
        if !matches!(outcome, Outcome::Approved | Outcome::Denied) {
            return Err(ServiceError::Invalid(
                "outcome: must be `approved` or `denied`".into(),
            ));
        }
        self.read(id).await?;
        let origin = Origin::BreakGlass {
            client: client.id(),
            by,
        };
        let action = self
            .transition(id, origin, |a, now| {
                a.decide(
                    outcome,
                    DecidedBy::People(vec![by.to_owned()]),
                    reason.clone(),
                    now,
                )
            })
            .await?;
        tracing::warn!(action_id = %id, client = client.id(), by, outcome = %action.status,
            "break-glass decision");
        Ok(action.shown_to(client.id()))
    }

    /// The expiry timer (or a late read) ends a pending action; a decided one answers
    /// with its decision, which stands.
    pub async fn expire(&self, id: &ActionId) -> ServiceResult<Action> {
        let expired = self
            .audited_change(id, Origin::Timer, |a, now| {
                a.decide(Outcome::Expired, DecidedBy::Timer, None, now)
            })
            .await;
        match expired {
            Ok(Some(action)) => {
                tracing::info!(action_id = %id, "action expired");
                Ok(action)
            }
            Err(CasError::Expired(action)) => Ok(*action),
            Ok(None) => Err(ServiceError::NotFound),
            // Decided meanwhile: that decision stands; answer with it.
            Err(CasError::Change(_)) => self
                .store
                .load(id)
                .await?
                .map(|v| v.action)
                .ok_or(ServiceError::NotFound),
            Err(CasError::Store(e)) => Err(ServiceError::Store(e)),
            Err(CasError::Contended) => Err(ServiceError::Conflict(
                "the action kept changing; try again".into(),
            )),
        }
    }

    /// Records a vote whose voter was already authorized (approver, not the requester
    /// unless allowed). Deciding votes decide the action, exactly once.
    pub async fn vote(
        &self,
        id: &ActionId,
        user: &str,
        vote: VoteKind,
        reason: Option<String>,
    ) -> Result<Action, VoteError> {
        let origin = Origin::Vote {
            user,
            vote,
            reason: reason.as_deref(),
        };
        let result = self
            .audited_change(id, origin, |a, now| {
                a.add_vote(user, vote, reason.clone(), now)
            })
            .await;
        match result {
            Ok(Some(action)) => {
                tracing::info!(action_id = %id, user, ?vote, status = %action.status, "vote recorded");
                Ok(action)
            }
            Ok(None) => Err(VoteError::NotFound),
            Err(CasError::Change(e)) => Err(VoteError::Rejected(e)),
            Err(CasError::Expired(_)) => Err(VoteError::Rejected(VoteRejected::Decided(
                crate::domain::Status::Expired,
            ))),
            Err(CasError::Store(e)) => Err(VoteError::Store(e)),
            Err(CasError::Contended) => Err(VoteError::Store(StoreError::Unavailable(
                "the action kept changing".into(),
            ))),
        }
    }

    /// Pending actions, oldest first, at most `limit`.
    /// The pending actions `client` may read (all of them for admins and auditors, its
    /// own otherwise), at most `limit`.
    pub async fn pending_for(&self, client: &Client, limit: usize) -> ServiceResult<Vec<Action>> {
        // Pending actions carry no grant, so there is no token to hide.
        let mut actions = self
            .pending(if client.can_read_all() {
                limit
            } else {
                usize::MAX
            })
            .await?;
        actions.retain(|a| Self::authorize_read(client, a).is_ok());
        actions.truncate(limit);
        Ok(actions)
    }

    pub async fn pending(&self, limit: usize) -> ServiceResult<Vec<Action>> {
        let mut actions = Vec::new();
        for id in self.store.pending_ids(limit).await? {
            if let Some(v) = self.load(&id).await?
                && v.action.is_pending()
            {
                actions.push(v.action);
            }
        }
        Ok(actions)
    }
}

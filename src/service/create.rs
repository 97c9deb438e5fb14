//! Intake: a signed request becomes an action under the policy, decided at once or left
//! pending for people, exactly once per `webhook-id`.

use super::{Client, CreateOutcome, Permission, Service, ServiceError, ServiceResult};
use crate::audit::AuditEvent;
use crate::domain::{
    Action, ActionRequest, DecidedBy, Outcome, PolicySnapshot, StagePlan, Status, Window, from_json,
};
use crate::policy::{MatchInput, RuleDecision};
use crate::store::{Created, NewAction, Timer};
use chrono::{SubsecRound, Utc};
use sha2::{Digest, Sha256};

impl Service {
    /// `POST /v1/actions`: validates, applies the policy and stores the action once per
    /// (client, `webhook-id`).
    pub async fn create(
        &self,
        client: &Client,
        request_id: &str,
        body: &[u8],
    ) -> ServiceResult<CreateOutcome> {
        client.authorize(Permission::CreateActions)?;
        let request: ActionRequest = from_json(body).map_err(ServiceError::InvalidRequest)?;
        let request = request
            .validate(&client.spec)
            .map_err(|e| ServiceError::InvalidRequest(e.to_string()))?;

        let loaded = self.loaded();
        let eval = loaded.policy.evaluate(&MatchInput {
            action: &request.action,
            resource: &request.resource,
            client: client.id(),
            context: &request.context,
        });
        if eval.reason_required && request.reason.is_none() {
            return Err(ServiceError::ReasonRequired(eval.rule_name));
        }
        if eval.decision == RuleDecision::Require
            && !eval.allow_self_approval
            && request.requester.email.is_none()
            && request.requester.slack_user_id.is_none()
        {
            return Err(ServiceError::RequesterUnverifiable(eval.rule_name.clone()));
        }
        let window = match &request.window {
            None => None,
            Some(asked) => {
                let Some(max) = eval.max_window else {
                    return Err(ServiceError::WindowNotAllowed(eval.rule_name));
                };
                let audience = asked.audience.as_deref().unwrap_or(client.id());
                if !loaded.clients.contains_key(audience) {
                    return Err(ServiceError::InvalidRequest(format!(
                        "audience: no client `{audience}` in the policy"
                    )));
                }
                let seconds = asked.length.min(max).as_secs().max(1);
                Some(Window::new(seconds, audience.to_owned()))
            }
        };
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
            window,
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
        // An auto-decided action has no timers and posts nothing to Slack; an
        // auto-approved window still ends on time.
        let timers = if action.is_pending() {
            let mut t = self.effects(&action);
            t.extend(Timer::deadlines(&action));
            t
        } else {
            Timer::window_end(&action).into_iter().collect()
        };
        let json = serde_json::to_string(&action).expect("actions serialize");
        let body_hash = hex::encode(Sha256::digest(body));
        self.list_window(&action).await?;
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
                super::cas::count_decision(&action, crate::metrics::By::Policy);
                if !timers.is_empty() {
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
                    return Err(ServiceError::WebhookIdReused);
                }
                let action = self.read(&action_id).await?;
                Ok(CreateOutcome::Repeated(action))
            }
        }
    }
}

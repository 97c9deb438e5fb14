//! Chasing unanswered actions: escalation stages (Slack mentions and DMs, PagerDuty,
//! a signed webhook), reminders, and resolving the PagerDuty incident at the decision.
//! Each runs from a durable timer; the stage reached is recorded on the action by
//! compare-and-set before anyone is notified, so a stage notifies once across replicas.

use super::Fired;
use crate::audit::AuditEvent;
use crate::domain::{Action, ActionId, StagePlan};
use crate::notify::pagerduty::{PagerDuty, Trigger};
use crate::notify::webhook::WebhookNotifier;
use crate::service::Service;
use crate::slack::{Slack, Target};
use crate::store::{SlackState, StoreError};
use chrono::{Duration as ChronoDuration, Utc};
use serde_json::json;
use std::sync::Arc;

/// How long a stage waits for the approval message to be posted before it fires anyway.
const WAIT_FOR_MESSAGE: ChronoDuration = ChronoDuration::seconds(60);

/// How long a failing PagerDuty resolve is retried after the decision.
const RESOLVE_GIVE_UP_AFTER: ChronoDuration = ChronoDuration::hours(24);

pub struct Escalator {
    pub service: Arc<Service>,
    pub slack: Option<Arc<Slack>>,
    pub pagerduty: Option<PagerDuty>,
    pub webhooks: WebhookNotifier,
}

impl Escalator {
    async fn pending(&self, id: &ActionId) -> Result<Option<crate::store::Versioned>, StoreError> {
        Ok(self
            .service
            .load(id)
            .await?
            .filter(|v| v.action.is_pending()))
    }

    /// Stage `stage` (from 1) of the action's rule comes due.
    pub async fn stage(&self, id: &ActionId, stage: u32) -> Result<Fired, StoreError> {
        let Some(v) = self.pending(id).await? else {
            return Ok(Fired::Done);
        };
        let Some(plan) = v.action.policy.escalate.get(stage as usize - 1).cloned() else {
            return Ok(Fired::Done);
        };
        if Utc::now() >= v.action.expires_at {
            // Late after downtime, past the deadline: the action expires instead.
            if let Err(e) = self.service.expire(id).await {
                tracing::warn!(action_id = %id, error = %e, "cannot expire an overdue action");
                return Ok(Fired::Leave);
            }
            return Ok(Fired::Done);
        }
        // The notice goes in the approval message's thread: give a message still being
        // posted (paced, or retried after a 429) a minute before escalating without it.
        let due = v.action.created_at + ChronoDuration::seconds(plan.after_seconds as i64);
        if self.slack.is_some() && v.slack.is_none() && Utc::now() - due < WAIT_FOR_MESSAGE {
            return Ok(Fired::At(Utc::now() + ChronoDuration::seconds(1)));
        }
        // Stages fire in order: one overtaken by a later one (both late after downtime,
        // or waiting for the message) fires first.
        let reached = v.action.escalation.as_ref().map_or(0, |e| e.stage);
        for n in reached + 1..=stage {
            let Some(plan) = v.action.policy.escalate.get(n as usize - 1) else {
                break;
            };
            // Not recorded here: either the action was decided (no later stage fires
            // either), or another run (this action's timer of that stage, here or on a
            // replica, run at the same time) recorded it first and notifies it: go on.
            if !self.fire_stage(id, n, plan, v.slack.as_ref()).await?
                && self.pending(id).await?.is_none()
            {
                break;
            }
        }
        Ok(Fired::Done)
    }

    /// Records stage `n` and notifies everyone it names; `false` when the action was
    /// decided meanwhile or the stage already ran elsewhere.
    async fn fire_stage(
        &self,
        id: &ActionId,
        n: u32,
        plan: &StagePlan,
        message: Option<&SlackState>,
    ) -> Result<bool, StoreError> {
        let stage = n;
        let Some(action) = self.service.record_escalation(id, stage).await? else {
            return Ok(false);
        };
        tracing::warn!(action_id = %id, stage, "escalating an unanswered approval");
        crate::metrics::escalation(stage);
        let targets = self.targets(plan);
        let named: Vec<String> = targets
            .iter()
            .map(|t| match t {
                Target::User(u) | Target::Group(u) => u.clone(),
            })
            .collect();
        let audit = self.service.audit();
        audit
            .record(AuditEvent::escalated(&action, stage, &plan.notify, &named))
            .await;
        let link = match (&self.slack, message) {
            (Some(slack), Some(state)) => {
                if let Err(e) = slack
                    .escalation_notice(&action, state, stage, &targets)
                    .await
                {
                    tracing::warn!(action_id = %id, stage, error = %e, "escalation notice to Slack failed");
                    audit
                        .record(AuditEvent::slack_error(
                            &action,
                            "escalation notice",
                            &e.to_string(),
                        ))
                        .await;
                }
                slack.api.permalink(&state.channel, &state.ts).await.ok()
            }
            _ => None,
        };
        if plan.pagerduty && self.page(&action, link.as_deref()).await {
            // Marked paged only once the trigger went through, so the resolve scheduled
            // by the decision can never overtake it; decided meanwhile: resolve now.
            if !self.service.record_paged(id).await? {
                self.resolve(id).await?;
            }
        }
        if let Some(url) = &plan.webhook {
            let event = json!({
                "type": "greenlight.escalation",
                "stage": stage,
                "notify": plan.notify,
                "action": action,
            });
            let event_id = format!("{id}-escalation-{stage}");
            if let Err(e) = self.webhooks.send(url, &event_id, &event).await {
                tracing::warn!(action_id = %id, stage, error = %e, "escalation webhook failed");
            }
        }
        Ok(true)
    }

    /// Who a stage names, now: `oncall:NAME` is whoever the rotation names at this instant.
    fn targets(&self, plan: &StagePlan) -> Vec<Target> {
        let loaded = self.service.loaded();
        let now = Utc::now();
        plan.notify
            .iter()
            .filter_map(|entry| {
                if entry.contains('@') && !entry.starts_with('@') {
                    Some(Target::User(entry.clone()))
                } else if let Some(name) = entry.strip_prefix("oncall:") {
                    match loaded.policy.oncall(name) {
                        Some(rotation) => Some(Target::User(rotation.on_call_at(now).to_owned())),
                        None => {
                            tracing::warn!(
                                rotation = name,
                                "escalation names an unknown on-call rotation"
                            );
                            None
                        }
                    }
                } else if entry.starts_with('@') || entry.starts_with('S') {
                    Some(Target::Group(entry.clone()))
                } else {
                    Some(Target::User(entry.clone()))
                }
            })
            .collect()
    }

    /// Triggers the incident; `true` when PagerDuty took it.
    async fn page(&self, action: &Action, link: Option<&str>) -> bool {
        let Some(pd) = &self.pagerduty else {
            tracing::warn!(action_id = %action.id, "stage asks for PagerDuty but PAGERDUTY_ROUTING_KEY is not set");
            return false;
        };
        let requester = action
            .requester
            .name
            .as_deref()
            .unwrap_or(&action.requester.id);
        let trigger = Trigger {
            dedup_key: action.id.as_str(),
            summary: format!(
                "Approval pending: {} on {} requested by {}",
                action.action, action.resource, requester
            ),
            severity: action.policy.severity.as_deref().unwrap_or("critical"),
            source: "greenlight",
            custom_details: json!({
                "action_id": action.id,
                "action": action.action,
                "resource": action.resource,
                "requester": action.requester,
                "client": action.client,
                "rule": action.policy.rule,
                "expires_at": crate::domain::rfc3339::format(&action.expires_at),
            }),
            links: link
                .map(|l| vec![(l.to_owned(), "Slack approval message".to_owned())])
                .unwrap_or_default(),
        };
        match pd.trigger(&trigger).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(action_id = %action.id, error = %e, "PagerDuty trigger failed");
                false
            }
        }
    }

    /// A reminder comes due: nudge and come back in `remind_every`, until decided.
    pub async fn remind(&self, id: &ActionId) -> Result<Fired, StoreError> {
        let Some(v) = self.pending(id).await? else {
            return Ok(Fired::Done);
        };
        let Some(every) = v.action.policy.remind_every_seconds else {
            return Ok(Fired::Done);
        };
        if let (Some(slack), Some(state)) = (&self.slack, &v.slack) {
            let event = match slack.reminder(&v.action, state).await {
                Ok(()) => {
                    tracing::info!(action_id = %id, "reminded approvers");
                    AuditEvent::reminded(&v.action)
                }
                Err(e) => {
                    tracing::warn!(action_id = %id, error = %e, "reminder to Slack failed");
                    AuditEvent::slack_error(&v.action, "reminder", &e.to_string())
                }
            };
            self.service.audit().record(event).await;
        }
        let next = Utc::now() + ChronoDuration::seconds(every as i64);
        Ok(if next < v.action.expires_at {
            Fired::At(next)
        } else {
            Fired::Done
        })
    }

    /// The action was decided after paging: resolve the incident.
    pub async fn resolve(&self, id: &ActionId) -> Result<Fired, StoreError> {
        let Some(pd) = &self.pagerduty else {
            return Ok(Fired::Done);
        };

        match pd.resolve(id.as_str()).await {
            Ok(()) => Ok(Fired::Done),
            Err(e) if e.is_transient() => {
                let decided = self
                    .service
                    .load(id)
                    .await?
                    .and_then(|v| v.action.decision.map(|d| d.decided_at));
                if decided.is_some_and(|t| Utc::now() - t > RESOLVE_GIVE_UP_AFTER) {
                    tracing::error!(action_id = %id, error = %e, "giving up resolving the PagerDuty incident");
                    return Ok(Fired::Done);
                }
                tracing::warn!(action_id = %id, error = %e, "PagerDuty resolve failed; will retry");
                Ok(Fired::At(Utc::now() + ChronoDuration::seconds(10)))
            }
            Err(e) => {
                tracing::error!(action_id = %id, error = %e, "PagerDuty refused the resolve");
                Ok(Fired::Done)
            }
        }
    }
}

//! Keeping Slack true: one effect, run by the scheduler after every change of an action,
//! makes Slack match the stored state: the message posted (once, while pending), updated
//! in place, each vote posted in its thread, and the outcome announced in the thread and
//! to the requester. What was announced is recorded, so a re-run repeats nothing.

use super::Slack;
use super::api::SlackError;
use super::directory::is_user_id;
use super::render;
use crate::audit::{Audit, AuditEvent};
use crate::domain::{Action, ActionId};
use crate::service::Service;
use crate::store::{SlackState, StoreError};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// What a sync did with the action's state.
#[derive(Debug, PartialEq)]
pub enum Synced {
    /// Slack shows revision `rev` of the action (or the action is gone).
    Reflected(u64),
    /// Slack could not be reached; try again then.
    RetryAt(DateTime<Utc>),
}

/// After this long, a Slack message that still cannot be synced is given up on.
const GIVE_UP_AFTER: chrono::Duration = chrono::Duration::hours(24);
const RETRY_AFTER: Duration = Duration::from_secs(10);

enum Step {
    Retry(DateTime<Utc>, Option<Failure>),
    GiveUp(Option<Failure>),
}

/// A Slack call that failed: audited as `slack_error` when it is given up on.
struct Failure {
    call: &'static str,
    error: String,
}

impl Step {
    fn failure(self) -> Option<Failure> {
        match self {
            Step::Retry(_, f) | Step::GiveUp(f) => f,
        }
    }
}

impl Slack {
    /// A failure is audited (`slack_error`) when it is given up on: a refusal at once, a
    /// transient failure once retries stop; retried failures are only logged, so an
    /// outage does not flood the trail.
    pub async fn sync(&self, service: &Service, id: &ActionId) -> Result<Synced, StoreError> {
        let audit = service.audit();
        let Some(v) = service.load(id).await? else {
            return Ok(Synced::Reflected(0));
        };
        match self.sync_action(service, audit, &v.action, v.slack).await {
            Ok(()) => Ok(Synced::Reflected(v.rev)),
            Err(Step::Retry(at, _)) if Utc::now() - v.action.created_at < GIVE_UP_AFTER => {
                Ok(Synced::RetryAt(at))
            }
            Err(step) => {
                if let Some(f) = step.failure() {
                    audit
                        .record(AuditEvent::slack_error(&v.action, f.call, &f.error))
                        .await;
                }
                Ok(Synced::Reflected(v.rev))
            }
        }
    }

    fn failed(&self, id: &ActionId, what: &'static str, e: SlackError) -> Step {
        let failure = Some(Failure {
            call: what,
            error: e.to_string(),
        });
        if e.is_transient() {
            tracing::warn!(action_id = %id, what, error = %e, "Slack call failed; will retry");
            let wait = e.retry_after().unwrap_or(RETRY_AFTER);
            Step::Retry(
                Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default(),
                failure,
            )
        } else {
            // ok:false and the like: a retry would fail the same way.
            tracing::error!(action_id = %id, what, error = %e, "Slack refused a call; giving up on it");
            Step::GiveUp(failure)
        }
    }

    async fn sync_action(
        &self,
        service: &Service,
        audit: &Audit,
        action: &Action,
        state: Option<SlackState>,
    ) -> Result<(), Step> {
        let id = &action.id;
        let message = render::approval_message(action);
        let mut state = match state {
            Some(state) => {
                self.api
                    .update_message(&state.channel, &state.ts, &message)
                    .await
                    .map_err(|e| self.failed(id, "chat.update", e))?;
                state
            }
            // Decided before its message was posted: nobody needs a message to click.
            None if !action.is_pending() => return Ok(()),
            None => {
                let Some(channel) = action
                    .policy
                    .channel
                    .as_deref()
                    .or(self.default_channel.as_deref())
                else {
                    tracing::error!(action_id = %id, "no Slack channel for this action (set the rule's channel or SLACK_DEFAULT_CHANNEL)");
                    return Err(Step::GiveUp(Some(Failure {
                        call: "chat.postMessage",
                        error: "no channel: set the rule's channel or SLACK_DEFAULT_CHANNEL".into(),
                    })));
                };
                let posted = self
                    .api
                    .post_message(channel, &message, None)
                    .await
                    .map_err(|e| self.failed(id, "chat.postMessage", e))?;
                tracing::info!(action_id = %id, channel = %posted.channel, "approval message posted");
                audit
                    .record(AuditEvent::message_posted(
                        action,
                        &posted.channel,
                        &posted.ts,
                    ))
                    .await;
                let state = SlackState {
                    channel: posted.channel,
                    ts: posted.ts,
                    ..SlackState::default()
                };
                save(service, id, &state).await?;
                state
            }
        };
        while state.votes_posted < action.votes.len() {
            let vote = &action.votes[state.votes_posted];
            let text = render::vote_reply(action, vote);
            self.api
                .post_message(
                    &state.channel,
                    &render::Message::text(text),
                    Some(&state.ts),
                )
                .await
                .map_err(|e| self.failed(id, "chat.postMessage (vote)", e))?;
            state.votes_posted += 1;
            save(service, id, &state).await?;
        }
        if action.is_pending() {
            return Ok(());
        }
        if !state.outcome_posted {
            let text = render::outcome_dm(action, None);
            self.api
                .post_message(
                    &state.channel,
                    &render::Message::text(text),
                    Some(&state.ts),
                )
                .await
                .map_err(|e| self.failed(id, "chat.postMessage (outcome)", e))?;
            state.outcome_posted = true;
            save(service, id, &state).await?;
        }
        if !state.requester_told {
            self.tell_requester(action, &state).await?;
            state.requester_told = true;
            save(service, id, &state).await?;
        }
        Ok(())
    }

    /// The outcome to the requester, when Slack knows them.
    async fn tell_requester(&self, action: &Action, state: &SlackState) -> Result<(), Step> {
        let id = &action.id;
        let requester = match action.requester.slack_user_id.as_deref() {
            Some(u) if is_user_id(u) => Some(u.to_owned()),
            _ => match action.requester.email.as_deref() {
                Some(email) => self.directory.user_for_email(email).await.unwrap_or(None),
                None => None,
            },
        };
        if let Some(user) = requester {
            let permalink = self.api.permalink(&state.channel, &state.ts).await.ok();
            let dm = self
                .api
                .open_dm(&user)
                .await
                .map_err(|e| self.failed(id, "conversations.open", e))?;
            let text = render::outcome_dm(action, permalink.as_deref());
            self.api
                .post_message(&dm, &render::Message::text(text), None)
                .await
                .map_err(|e| self.failed(id, "chat.postMessage (dm)", e))?;
        }
        Ok(())
    }
}

async fn save(service: &Service, id: &ActionId, state: &SlackState) -> Result<(), Step> {
    service.set_slack(id, state).await.map_err(|e| {
        tracing::warn!(action_id = %id, error = %e, "cannot record Slack state; will retry");
        Step::Retry(Utc::now() + chrono::Duration::seconds(1), None)
    })
}

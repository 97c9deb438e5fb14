//! Keeping Slack true: one effect, run by the scheduler after every change of an action,
//! makes Slack match the stored state: the message posted (once, while pending), updated
//! in place, each vote posted in its thread, and the outcome announced in the thread and
//! to the requester. What was announced is recorded, so a re-run repeats nothing.
//! The end of an access window, which leaves the action as it is, has an effect of its
//! own ([`Slack::show_window_end`]), also run once.

use super::Slack;
use super::api::SlackError;
use super::directory::is_user_id;
use super::render;
use crate::audit::{Audit, AuditEvent};
use crate::domain::{Action, ActionId, Window};
use crate::service::{Service, ServiceError};
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
        let (action, revoked_by) = service.with_window_end(v.action).await?;
        let message = render::approval_message_with(&action, revoked_by.as_ref());
        match self
            .sync_action(service, audit, &action, &message, v.slack)
            .await
        {
            // A window that ended while this ran, shown as active: once more (the end's
            // own update may have landed before this one).
            Ok(()) if window_ended_since(service, &action).await? => {
                Ok(Synced::RetryAt(Utc::now()))
            }
            Ok(()) => Ok(Synced::Reflected(v.rev)),
            Err(Step::Retry(at, _)) if Utc::now() - action.created_at < GIVE_UP_AFTER => {
                Ok(Synced::RetryAt(at))
            }
            Err(step) => {
                if let Some(f) = step.failure() {
                    audit
                        .record(AuditEvent::slack_error(&action, f.call, &f.error))
                        .await;
                }
                Ok(Synced::Reflected(v.rev))
            }
        }
    }

    /// Shows the end of an access window in its message: the `slackend` timer, scheduled
    /// each time a window is ended. A decided action never changes, so the revision-keyed
    /// [`Self::sync`] does not run for it; this update runs once (a flag in the store says
    /// it was done), and only where a message was posted.
    pub async fn show_window_end(
        &self,
        service: &Service,
        id: &ActionId,
    ) -> Result<Synced, StoreError> {
        const DONE: Synced = Synced::Reflected(0);
        if service.window_end_shown(id).await? {
            return Ok(DONE);
        }
        let Some(v) = service.load(id).await? else {
            return Ok(DONE);
        };
        let Some(state) = v.slack else {
            return Ok(DONE);
        };
        let (action, revoked_by) = service.with_window_end(v.action).await?;
        let Some(window) = action.window.as_ref().filter(|w| w.ended.is_some()) else {
            return Ok(DONE);
        };
        let message = render::approval_message_with(&action, revoked_by.as_ref());
        let updated = self
            .api
            .update_message(&state.channel, &state.ts, &message)
            .await;
        match updated.map_err(|e| self.failed(id, "chat.update (window end)", e)) {
            Ok(_) => {
                tracing::info!(action_id = %id, "Slack message shows the end of the access window");
                service.set_window_end_shown(id).await?;
                Ok(DONE)
            }
            Err(Step::Retry(at, _))
                if window
                    .starts_at
                    .is_some_and(|s| Utc::now() - s < GIVE_UP_AFTER + window_length(window)) =>
            {
                Ok(Synced::RetryAt(at))
            }
            Err(step) => {
                if let Some(f) = step.failure() {
                    service
                        .audit()
                        .record(AuditEvent::slack_error(&action, f.call, &f.error))
                        .await;
                }
                Ok(DONE)
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
        message: &render::Message,
        state: Option<SlackState>,
    ) -> Result<(), Step> {
        let id = &action.id;
        let mut state = match state {
            Some(state) => {
                self.api
                    .update_message(&state.channel, &state.ts, message)
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
                    .post_message(channel, message, None)
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
            let text = render::requester_dm(action, permalink.as_deref());
            self.api
                .post_message(&dm, &render::Message::text(text), None)
                .await
                .map_err(|e| self.failed(id, "chat.postMessage (dm)", e))?;
        }
        Ok(())
    }
}

fn window_length(window: &Window) -> chrono::Duration {
    chrono::Duration::seconds(window.seconds.min(u64::from(u32::MAX)) as i64)
}

/// Whether `action`, read as an access window still active, has ended since.
async fn window_ended_since(service: &Service, action: &Action) -> Result<bool, StoreError> {
    let Some(window) = &action.window else {
        return Ok(false);
    };
    if window.starts_at.is_none() || window.ended.is_some() {
        return Ok(false);
    }
    let now = match service.read(&action.id).await {
        Ok(a) => a,
        Err(ServiceError::NotFound) => return Ok(false),
        Err(ServiceError::Store(e)) => return Err(e),
        Err(e) => return Err(StoreError::Unavailable(e.to_string())),
    };
    Ok(now.window.is_some_and(|w| w.ended.is_some()))
}

async fn save(service: &Service, id: &ActionId, state: &SlackState) -> Result<(), Step> {
    service.set_slack(id, state).await.map_err(|e| {
        tracing::warn!(action_id = %id, error = %e, "cannot record Slack state; will retry");
        Step::Retry(Utc::now() + chrono::Duration::seconds(1), None)
    })
}

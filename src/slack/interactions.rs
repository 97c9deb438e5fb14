//! Button clicks and modal submissions from Slack. Slack wants an answer within 3 s, so
//! the HTTP handler answers at once and the vote runs as tracked background work; the
//! clicker hears about a refused vote through an ephemeral reply on `response_url`.

use super::directory::is_user_id;
use super::render::{
    APPROVE_ACTION_ID, DENY_ACTION_ID, DENY_REASON_BLOCK_ID, DENY_REASON_CALLBACK_ID,
    DENY_REASON_INPUT_ID, REVOKE_ACTION_ID,
};
use super::{Refusal, Slack};
use crate::audit::AuditEvent;
use crate::domain::{Action, ActionId, VoteKind, VoteRejected};
use crate::service::{Service, VoteError};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Interaction {
    BlockActions(BlockActions),
    ViewSubmission(ViewSubmission),
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
pub struct User {
    pub id: String,
}

/// The workspace a callback comes from.
#[derive(Debug, Deserialize)]
pub struct Team {
    pub id: String,
}

#[derive(Debug, Deserialize)]
pub struct BlockActions {
    /// Absent or null (an org-wide install): the callback counts for no workspace.
    #[serde(default)]
    pub team: Option<Team>,
    pub user: User,
    #[serde(default)]
    pub actions: Vec<ActionInfo>,
    pub response_url: Option<String>,
    pub trigger_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ActionInfo {
    pub action_id: String,
    pub value: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ViewSubmission {
    #[serde(default)]
    pub team: Option<Team>,
    pub user: User,
    pub view: View,
}

#[derive(Debug, Deserialize)]
pub struct View {
    #[serde(default)]
    pub callback_id: String,
    #[serde(default)]
    pub private_metadata: String,
    #[serde(default)]
    pub state: ViewState,
}

#[derive(Debug, Default, Deserialize)]
pub struct ViewState {
    #[serde(default)]
    pub values: HashMap<String, HashMap<String, InputValue>>,
}

#[derive(Debug, Deserialize)]
pub struct InputValue {
    pub value: Option<String>,
}

/// Why an interaction callback body could not be decoded (answered `400`).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("form: {0}")]
    Form(#[from] serde_urlencoded::de::Error),
    #[error("payload: {0}")]
    Payload(#[from] serde_json::Error),
}

#[derive(Deserialize)]
struct InteractionForm {
    payload: String,
}

impl Interaction {
    /// Decodes a callback body as Slack sends it: a form whose `payload` field is the JSON
    /// interaction. Call it only on a body whose signature verified. Public so that the
    /// fuzz target exercises exactly what the endpoint runs.
    pub fn from_form(body: &[u8]) -> Result<Self, DecodeError> {
        let form: InteractionForm = serde_urlencoded::from_bytes(body)?;
        Ok(serde_json::from_str(&form.payload)?)
    }

    /// The workspace it comes from, for the interactions that can change something
    /// (`None` for the others, which are ignored anyway).
    pub fn team_id(&self) -> Option<Option<&str>> {
        match self {
            Interaction::BlockActions(click) => Some(click.team.as_ref().map(|t| t.id.as_str())),
            Interaction::ViewSubmission(sub) => Some(sub.team.as_ref().map(|t| t.id.as_str())),
            Interaction::Other => None,
        }
    }
}

/// The immediate answer to Slack's HTTP request.
pub enum Ack {
    /// 200 with an empty body.
    Empty,
    /// 200 with this JSON (e.g. modal validation errors).
    Json(Value),
}

/// Where to tell the clicker why nothing happened.
pub(super) struct Reply<'a> {
    pub(super) response_url: Option<&'a str>,
}

impl Slack {
    /// An interaction refused for its workspace: nothing changes; each vote it carried is
    /// logged and audited as rejected, and the clicker is told why.
    pub async fn refuse(&self, service: &Service, interaction: &Interaction, refusal: &Refusal) {
        let (user, team, votes, response_url): (&str, Option<&str>, Vec<&str>, Option<&str>) =
            match interaction {
                Interaction::BlockActions(click) => (
                    &click.user.id,
                    click.team.as_ref().map(|t| t.id.as_str()),
                    click
                        .actions
                        .iter()
                        .filter(|a| {
                            [APPROVE_ACTION_ID, DENY_ACTION_ID, REVOKE_ACTION_ID]
                                .contains(&a.action_id.as_str())
                        })
                        .filter_map(|a| a.value.as_deref())
                        .collect(),
                    click.response_url.as_deref(),
                ),
                Interaction::ViewSubmission(sub) => (
                    &sub.user.id,
                    sub.team.as_ref().map(|t| t.id.as_str()),
                    vec![sub.view.private_metadata.as_str()],
                    None,
                ),
                Interaction::Other => return,
            };
        let why = match refusal {
            Refusal::Unknown => "the bot's Slack workspace is not known yet",
            Refusal::Foreign(_) => "the callback came from another Slack workspace",
        };
        tracing::warn!(user, team, own = ?self.own_workspace(), why, "refused a Slack interaction");
        for id in votes.iter().filter_map(|v| v.parse::<ActionId>().ok()) {
            service
                .audit()
                .record(AuditEvent::vote_from_elsewhere(&id, user, team, why))
                .await;
        }
        if !votes.is_empty() {
            self.tell(&Reply { response_url }, refusal.text()).await;
        }
    }

    /// Dispatches one interaction; votes continue in the background.
    pub fn handle(self: &Arc<Self>, service: &Arc<Service>, interaction: Interaction) -> Ack {
        match interaction {
            Interaction::BlockActions(click) => {
                for action in click.actions {
                    let vote = match action.action_id.as_str() {
                        APPROVE_ACTION_ID => VoteKind::Approve,
                        DENY_ACTION_ID => VoteKind::Deny,
                        REVOKE_ACTION_ID => {
                            let (slack, service) = (self.clone(), service.clone());
                            let user = click.user.id.clone();
                            let value = action.value.unwrap_or_default();
                            let response_url = click.response_url.clone();
                            self.spawn("revoke", async move {
                                slack
                                    .revoke_click(&service, &user, &value, response_url)
                                    .await
                            });
                            continue;
                        }
                        _ => continue,
                    };
                    let (slack, service) = (self.clone(), service.clone());
                    let user = click.user.id.clone();
                    let value = action.value.unwrap_or_default();
                    let response_url = click.response_url.clone();
                    let trigger_id = click.trigger_id.clone();
                    self.spawn("vote", async move {
                        slack
                            .click(&service, &user, vote, &value, response_url, trigger_id)
                            .await
                    });
                }
                Ack::Empty
            }
            Interaction::ViewSubmission(sub) if sub.view.callback_id == DENY_REASON_CALLBACK_ID => {
                let reason = sub
                    .view
                    .state
                    .values
                    .get(DENY_REASON_BLOCK_ID)
                    .and_then(|b| b.get(DENY_REASON_INPUT_ID))
                    .and_then(|v| v.value.as_deref())
                    .map(str::trim)
                    .unwrap_or_default()
                    .to_owned();
                if reason.is_empty() {
                    return Ack::Json(json!({
                        "response_action": "errors",
                        "errors": { DENY_REASON_BLOCK_ID: "Please say why you deny this action." }
                    }));
                }
                let (slack, service) = (self.clone(), service.clone());
                let user = sub.user.id;
                let value = sub.view.private_metadata;
                self.spawn("deny with reason", async move {
                    let reply = Reply { response_url: None };
                    slack
                        .cast(
                            &service,
                            &user,
                            VoteKind::Deny,
                            &value,
                            Some(reason),
                            &reply,
                        )
                        .await;
                });
                Ack::Empty
            }
            _ => Ack::Empty,
        }
    }

    async fn click(
        &self,
        service: &Service,
        user: &str,
        vote: VoteKind,
        value: &str,
        response_url: Option<String>,
        trigger_id: Option<String>,
    ) {
        let reply = Reply {
            response_url: response_url.as_deref(),
        };
        let Some(action) = self.votable(service, user, value, &reply).await else {
            return;
        };
        if vote == VoteKind::Deny && action.policy.deny_reason_required {
            let Some(trigger_id) = trigger_id else {
                return self
                    .tell(&reply, "Slack sent no trigger to open the reason form.")
                    .await;
            };
            let view = super::render::deny_reason_modal(&action);
            if let Err(e) = self.api.open_view(&trigger_id, &view).await {
                tracing::warn!(action_id = %action.id, error = %e, "cannot open the deny-reason modal");
                service
                    .audit()
                    .record(AuditEvent::slack_error(
                        &action,
                        "views.open",
                        &e.to_string(),
                    ))
                    .await;
                self.tell(
                    &reply,
                    "Greenlight could not open the reason form; please try again.",
                )
                .await;
            }
            return;
        }
        self.cast(service, user, vote, value, None, &reply).await;
    }

    async fn cast(
        &self,
        service: &Service,
        user: &str,
        vote: VoteKind,
        value: &str,
        reason: Option<String>,
        reply: &Reply<'_>,
    ) {
        let Some(action) = self.votable(service, user, value, reply).await else {
            return;
        };
        match service.vote(&action.id, user, vote, reason).await {
            Ok(_) => {}
            Err(VoteError::Rejected(VoteRejected::AlreadyVoted)) => {
                self.reject(
                    service,
                    &action,
                    user,
                    reply,
                    "You already voted on this action.",
                )
                .await
            }
            Err(VoteError::Rejected(VoteRejected::Decided(_))) | Err(VoteError::NotFound) => {
                let now = service.load(&action.id).await.ok().flatten();
                let text = now.map_or_else(
                    || "This action no longer exists.".to_owned(),
                    |v| decided_text(&v.action),
                );
                self.reject(service, &action, user, reply, &text).await
            }
            Err(VoteError::Store(e)) => {
                tracing::warn!(action_id = %action.id, error = %e, "cannot record a vote");
                self.tell(reply, "Greenlight cannot record your vote right now; nothing changed. Please try again.")
                    .await
            }
        }
    }

    /// The action, if `user` may vote on it now; otherwise tells them why not.
    async fn votable(
        &self,
        service: &Service,
        user: &str,
        value: &str,
        reply: &Reply<'_>,
    ) -> Option<Action> {
        let Ok(id) = value.parse::<ActionId>() else {
            self.tell(reply, "This button does not belong to a Greenlight action.")
                .await;
            return None;
        };
        let action = match service.load(&id).await {
            Ok(Some(v)) => v.action,
            Ok(None) => {
                self.tell(reply, "This action no longer exists.").await;
                return None;
            }
            Err(e) => {
                tracing::warn!(action_id = %id, error = %e, "cannot load an action for a vote");
                self.tell(
                    reply,
                    "Greenlight cannot reach its store; nothing changed. Please try again.",
                )
                .await;
                return None;
            }
        };
        if !action.is_pending() {
            self.reject(service, &action, user, reply, &decided_text(&action))
                .await;
            return None;
        }
        if !action.policy.allow_self_approval && self.is_requester(&action, user).await {
            self.reject(
                service,
                &action,
                user,
                reply,
                "You requested this action, so someone else has to approve or deny it.",
            )
            .await;
            return None;
        }
        match self
            .directory
            .is_approver(&action.policy.approvers, user)
            .await
        {
            Ok(true) => Some(action),
            Ok(false) => {
                let text = format!(
                    "You are not an approver for rule `{}`.",
                    super::render::escape(&action.policy.rule)
                );
                self.reject(service, &action, user, reply, &text).await;
                None
            }
            Err(e) => {
                tracing::warn!(action_id = %id, error = %e, "cannot resolve approvers");
                self.tell(reply, "Greenlight cannot check the approvers with Slack right now; nothing changed. Please try again.")
                    .await;
                None
            }
        }
    }

    async fn is_requester(&self, action: &Action, user: &str) -> bool {
        // When Slack cannot say who owns the email, fail closed: treat as the requester.
        self.requester_is(action, user).await.unwrap_or(true)
    }

    /// Whether `user` is the requester of `action`: by `requester.slack_user_id`, or by
    /// `requester.email` through Slack (an error when Slack cannot say).
    pub(super) async fn requester_is(
        &self,
        action: &Action,
        user: &str,
    ) -> Result<bool, super::api::SlackError> {
        let r = &action.requester;
        if r.slack_user_id.as_deref() == Some(user) {
            return Ok(true);
        }
        match r.email.as_deref() {
            Some(email) => Ok(self.directory.user_for_email(email).await?.as_deref() == Some(user)),
            None => Ok(false),
        }
    }

    async fn reject(
        &self,
        service: &Service,
        action: &Action,
        user: &str,
        reply: &Reply<'_>,
        why: &str,
    ) {
        tracing::info!(action_id = %action.id, user, why, "vote rejected");
        service
            .audit()
            .record(AuditEvent::vote_rejected(action, user, why))
            .await;
        self.tell(reply, why).await;
    }

    /// An ephemeral reply to the clicker.
    pub(super) async fn tell(&self, reply: &Reply<'_>, text: &str) {
        let Some(url) = reply.response_url else {
            return;
        };
        let body = json!({"response_type": "ephemeral", "replace_original": false, "text": text});
        if let Err(e) = self.api.respond(url, &body).await {
            tracing::warn!(error = %e, "cannot send an ephemeral reply");
        }
    }
}

fn decided_text(action: &Action) -> String {
    let by = action
        .decision
        .as_ref()
        .map(|d| {
            if let Some(rule) = &d.by_policy {
                format!(" by policy rule `{}`", super::render::escape(rule))
            } else if d.decided_by.is_empty() {
                String::new()
            } else {
                let people: Vec<String> = d
                    .decided_by
                    .iter()
                    .map(|p| {
                        if is_user_id(p) {
                            format!("<@{p}>")
                        } else {
                            super::render::escape(p)
                        }
                    })
                    .collect();
                format!(" by {}", people.join(", "))
            }
        })
        .unwrap_or_default();
    format!("This action is already {}{by}.", action.status)
}

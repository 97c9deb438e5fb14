//! `/greenlight pending | status <id> | help`: ephemeral answers in the HTTP response.

use super::Slack;
use super::render;
use crate::domain::{Action, ActionId};
use crate::service::Service;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

/// The fields of a slash command Greenlight uses (Slack sends more; they are ignored).
#[derive(Debug, Deserialize)]
pub struct SlashCommand {
    /// The workspace it comes from (empty when Slack sent none: refused).
    #[serde(default)]
    pub team_id: String,
    pub user_id: String,
    #[serde(default)]
    pub text: String,
}

impl SlashCommand {
    /// Decodes the form Slack posts; only on a body whose signature verified.
    pub fn from_form(body: &[u8]) -> Result<Self, serde_urlencoded::de::Error> {
        serde_urlencoded::from_bytes(body)
    }
}

const HELP: &str = "*Greenlight*\n\
    • `/greenlight pending`: pending actions you may approve\n\
    • `/greenlight status <id>`: one action\n\
    • `/greenlight help`: this help";

/// The answer for an unknown action and for one the caller may not see: the same.
const NOT_YOURS: &str = "No such action, or not yours.";

/// How many pending actions are listed, at most.
const LIST_LIMIT: usize = 20;

fn ephemeral(text: String) -> Value {
    json!({"response_type": "ephemeral", "text": text})
}

impl Slack {
    pub async fn command(&self, service: &Service, cmd: SlashCommand) -> Value {
        let mut words = cmd.text.split_whitespace();
        match (words.next(), words.next()) {
            (Some("pending"), None) => self.pending(service, &cmd.user_id).await,
            (Some("status"), Some(id)) => self.status(service, &cmd.user_id, id).await,
            _ => ephemeral(HELP.to_owned()),
        }
    }

    /// One action, shown only to its approvers and its requester. Anyone else gets the
    /// same answer as for an id that does not exist, so ids cannot be probed.
    async fn status(&self, service: &Service, user: &str, id: &str) -> Value {
        let Ok(id) = id.parse::<ActionId>() else {
            return ephemeral(format!("`{}` is not an action id.", render::escape(id)));
        };
        let action = match service.load(&id).await {
            Ok(Some(v)) => v.action,
            Ok(None) => return ephemeral(NOT_YOURS.into()),
            Err(_) => return ephemeral("Greenlight cannot reach its store right now.".into()),
        };
        let approver = match self
            .directory
            .is_approver(&action.policy.approvers, user)
            .await
        {
            Ok(approver) => approver,
            // Fail closed, with the same answer: a Slack outage must not tell ids apart.
            Err(e) => {
                tracing::warn!(action_id = %id, error = %e, "cannot resolve approvers for /greenlight status");
                false
            }
        };
        if approver || self.requested(&action, user).await {
            ephemeral(render::action_line(&action))
        } else {
            ephemeral(NOT_YOURS.into())
        }
    }

    /// Whether `user` requested `action`, by Slack id or by the email Slack knows them
    /// by. Unlike the vote check, an unanswered lookup counts as no: here that hides.
    async fn requested(&self, action: &Action, user: &str) -> bool {
        let r = &action.requester;
        if r.slack_user_id.as_deref() == Some(user) {
            return true;
        }
        match r.email.as_deref() {
            Some(email) => matches!(
                self.directory.user_for_email(email).await,
                Ok(Some(owner)) if owner == user
            ),
            None => false,
        }
    }

    async fn pending(&self, service: &Service, user: &str) -> Value {
        let actions = match service.pending(1000).await {
            Ok(a) => a,
            Err(_) => return ephemeral("Greenlight cannot reach its store right now.".into()),
        };
        let mut mine = Vec::new();
        for action in actions {
            let own = action.requester.slack_user_id.as_deref() == Some(user);
            if (own && !action.policy.allow_self_approval)
                || !self
                    .directory
                    .is_approver(&action.policy.approvers, user)
                    .await
                    .unwrap_or(false)
            {
                continue;
            }
            mine.push(action);
            if mine.len() == LIST_LIMIT {
                break;
            }
        }
        if mine.is_empty() {
            return ephemeral("Nothing is waiting for your approval.".into());
        }
        // Links to each approval message, fetched concurrently.
        let lines: Vec<String> = futures::stream::iter(mine)
            .map(|action| async move {
                let link = match service.load(&action.id).await {
                    Ok(Some(v)) => match v.slack {
                        Some(s) => self.api.permalink(&s.channel, &s.ts).await.ok(),
                        None => None,
                    },
                    _ => None,
                };
                let line = render::action_line(&action);
                match link {
                    Some(url) => format!("• {line} (<{url}|open>)"),
                    None => format!("• {line}"),
                }
            })
            .buffered(8)
            .collect()
            .await;
        ephemeral(format!(
            "*Waiting for your approval:*\n{}",
            lines.join("\n")
        ))
    }
}

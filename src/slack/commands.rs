//! `/greenlight pending | status <id> | help`: ephemeral answers in the HTTP response.

use super::Slack;
use super::render;
use crate::domain::ActionId;
use crate::service::{Service, ServiceError};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

/// The fields of a slash command Greenlight uses (Slack sends more; they are ignored).
#[derive(Debug, Deserialize)]
pub struct SlashCommand {
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
            (Some("status"), Some(id)) => self.status(service, id).await,
            _ => ephemeral(HELP.to_owned()),
        }
    }

    async fn status(&self, service: &Service, id: &str) -> Value {
        let Ok(id) = id.parse::<ActionId>() else {
            return ephemeral(format!("`{}` is not an action id.", render::escape(id)));
        };
        match service.read(&id).await {
            Ok(action) => ephemeral(render::action_line(&action)),
            Err(ServiceError::NotFound) => ephemeral("No such action.".into()),
            Err(_) => ephemeral("Greenlight cannot reach its store right now.".into()),
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

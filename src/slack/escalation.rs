//! Chasing people in Slack: escalation notices (thread reply with mentions, a DM to each
//! person) and reminders to the approvers who have not voted.

use super::Slack;
use super::api::SlackError;
use super::directory::is_user_id;
use super::render::{Message, escape};
use crate::domain::Action;
use crate::store::SlackState;

/// Someone an escalation stage names, resolved at the moment it fires.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// A Slack user (from `U…`, an email, or an on-call rotation).
    User(String),
    /// A user group: `S…` id or `@handle`.
    Group(String),
}

impl Slack {
    async fn mention(&self, target: &Target) -> Option<String> {
        match target {
            Target::User(u) if is_user_id(u) => Some(format!("<@{u}>")),
            Target::User(email) => match self.directory.user_for_email(email).await {
                Ok(Some(u)) => Some(format!("<@{u}>")),
                _ => Some(escape(email)),
            },
            Target::Group(g) => match self.directory.group_id(g).await {
                Ok(Some(id)) => Some(format!("<!subteam^{id}>")),
                _ => Some(escape(g)),
            },
        }
    }

    /// The users among `targets` (groups are mentioned, not messaged one by one).
    async fn people(&self, targets: &[Target]) -> Vec<String> {
        let mut people = Vec::new();
        for t in targets {
            if let Target::User(u) = t {
                let id = if is_user_id(u) {
                    Some(u.clone())
                } else {
                    self.directory.user_for_email(u).await.ok().flatten()
                };
                if let Some(id) = id.filter(|id| !people.contains(id)) {
                    people.push(id);
                }
            }
        }
        people
    }

    /// Posts the stage in the approval message's thread, mentioning everyone it names,
    /// and sends each person a DM with a link to the message.
    pub async fn escalation_notice(
        &self,
        action: &Action,
        state: &SlackState,
        stage: u32,
        targets: &[Target],
    ) -> Result<(), SlackError> {
        let mut mentions = Vec::new();
        for t in targets {
            if let Some(m) = self.mention(t).await {
                mentions.push(m);
            }
        }
        let waited = humantime::format_duration(std::time::Duration::from_secs(
            (chrono::Utc::now() - action.created_at)
                .num_seconds()
                .max(0) as u64,
        ));
        let text = format!(
            ":rotating_light: Escalation {stage}: {} — this approval has waited {waited}. Please review `{}` on `{}`.",
            mentions.join(" "),
            escape(&action.action),
            escape(&action.resource),
        );
        self.api
            .post_message(&state.channel, &Message::text(text), Some(&state.ts))
            .await?;
        let link = self.api.permalink(&state.channel, &state.ts).await.ok();
        for person in self.people(targets).await {
            let dm = self.api.open_dm(&person).await?;
            let text = format!(
                ":rotating_light: An approval is waiting for you (escalation {stage}): `{}` on `{}` requested by {}.{}",
                escape(&action.action),
                escape(&action.resource),
                escape(
                    action
                        .requester
                        .name
                        .as_deref()
                        .unwrap_or(&action.requester.id)
                ),
                link.as_deref()
                    .map(|l| format!(" <{l}|Open the approval>"))
                    .unwrap_or_default(),
            );
            self.api
                .post_message(&dm, &Message::text(text), None)
                .await?;
        }
        Ok(())
    }

    /// A nudge in the thread for the approvers who have not voted yet.
    pub async fn reminder(&self, action: &Action, state: &SlackState) -> Result<(), SlackError> {
        let voted = |u: &str| action.votes.iter().any(|v| v.user == u);
        let mut waiting = Vec::new();
        for entry in &action.policy.approvers {
            let target = if is_user_id(entry) || entry.contains('@') && !entry.starts_with('@') {
                Target::User(entry.clone())
            } else {
                Target::Group(entry.clone())
            };
            if matches!(&target, Target::User(u) if is_user_id(u) && voted(u)) {
                continue;
            }
            if let Some(m) = self.mention(&target).await {
                waiting.push(m);
            }
        }
        let who = if waiting.is_empty() {
            "Approvers".to_owned()
        } else {
            waiting.join(" ")
        };
        let have = action
            .votes
            .iter()
            .filter(|v| v.vote == crate::domain::VoteKind::Approve)
            .count();
        let text = format!(
            ":hourglass: Reminder: {who}, this action still needs {} more approval(s).",
            (action.policy.min_approvals as usize)
                .saturating_sub(have)
                .max(1)
        );
        self.api
            .post_message(&state.channel, &Message::text(text), Some(&state.ts))
            .await?;
        Ok(())
    }
}

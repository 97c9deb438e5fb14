//! Block Kit rendering of actions: the approval message, thread replies, DMs and the deny
//! modal. Pure functions of the action, so every wording and limit is tested without Slack.
//!
//! Request text (action, resource, requester, reason, context, client, names) is untrusted:
//! it goes through [`escape`] so it cannot ping (`<!channel>`), link or mention, and it is
//! placed in labelled fields, quotes or a code block rather than inside our own sentences.
//! The only `<…>` constructs in our output are the ones built here from trusted ids:
//! `<@U…>`, `<!subteam^S…>`, `<!date^…>` and the permalink Slack gave us.
//!
//! `escape.rs` makes untrusted text safe (the security-critical part, kept apart from
//! layout); `message.rs` lays out the messages, `modal.rs` the deny modal; this file holds
//! the ids, the limits and the block primitives they share.

mod escape;
mod message;
mod modal;
#[cfg(test)]
mod tests;
mod window;
#[cfg(test)]
mod window_tests;

pub use escape::{escape, mention};
pub use message::{action_line, approval_message, approval_message_with, outcome_dm, vote_reply};
pub use modal::deny_reason_modal;
pub use window::requester_dm;

use crate::domain::{Action, Status};
use escape::{clip, one_line};
use serde_json::{Value, json};

pub const APPROVE_ACTION_ID: &str = "greenlight_approve";

pub const DENY_ACTION_ID: &str = "greenlight_deny";

/// The **Revoke** button of an active access window (its value: the action id).
pub const REVOKE_ACTION_ID: &str = "greenlight_revoke";

pub const DENY_REASON_CALLBACK_ID: &str = "greenlight_deny_reason";

pub const DENY_REASON_BLOCK_ID: &str = "reason";

pub const DENY_REASON_INPUT_ID: &str = "reason_input";

/// Block Kit limits (characters) that request text could otherwise exceed.
const HEADER_MAX: usize = 150;

const SECTION_MAX: usize = 3000;

const FIELD_MAX: usize = 2000;

const CONFIRM_TEXT_MAX: usize = 300;

/// How much of the context JSON the message shows.
const CONTEXT_MAX: usize = 500;

/// Resource length in one-line summaries (notification text, slash commands, DMs).
const SUMMARY_RESOURCE_MAX: usize = 200;

/// The longest deny reason the modal accepts (the limit on request reasons).
const DENY_REASON_MAX: usize = 2000;

/// A message for `chat.postMessage` / `chat.update`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Message {
    /// Plain fallback used in notifications and by screen readers.
    pub text: String,
    /// A JSON array of blocks.
    pub blocks: Value,
}

impl Message {
    /// A text-only message (thread replies, DMs); `text` must already be safe mrkdwn.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            blocks: Value::Array(Vec::new()),
        }
    }
}

fn mrkdwn(text: String) -> Value {
    json!({"type": "mrkdwn", "text": text})
}

fn plain(text: String) -> Value {
    json!({"type": "plain_text", "text": text, "emoji": true})
}

fn section(text: String) -> Value {
    json!({"type": "section", "text": mrkdwn(clip(&text, SECTION_MAX))})
}

/// A labelled field; `value` must already be safe mrkdwn.
fn field(label: &str, value: String) -> Value {
    mrkdwn(clip(&format!("*{label}*\n{value}"), FIELD_MAX))
}

fn outcome_word(status: Status) -> &'static str {
    match status {
        Status::Pending => "Approval needed",
        Status::Approved => "Approved",
        Status::Denied => "Denied",
        Status::Expired => "Expired",
        Status::Cancelled => "Cancelled",
    }
}

fn outcome_emoji(status: Status) -> &'static str {
    match status {
        Status::Pending => ":hourglass_flowing_sand:",
        Status::Approved => ":white_check_mark:",
        Status::Denied => ":x:",
        Status::Expired => ":hourglass:",
        Status::Cancelled => ":no_entry_sign:",
    }
}

/// `db.drop_table on postgres://prod/users`, escaped and on one line.
fn summary(action: &Action) -> String {
    format!(
        "{} on {}",
        one_line(&action.action, 200),
        one_line(&action.resource, SUMMARY_RESOURCE_MAX)
    )
}

//! The approval message and the texts around it: thread replies, the requester's DM and
//! the one-line summary of slash commands. Request text goes through `escape.rs` first.

use super::escape::*;
use super::*;
use crate::domain::{Action, Outcome, Status, Vote, VoteKind};
use crate::service::Revoker;

/// The requester's name (or id) and their Slack mention when the id is a real one.
pub(super) fn requester(action: &Action, max: usize) -> String {
    let r = &action.requester;
    let mut out = one_line(r.name.as_deref().unwrap_or(&r.id), 200);
    match r.slack_user_id.as_deref() {
        Some(id) if is_user_id(id) => out.push_str(&format!(" (<@{id}>)")),
        Some(other) => out.push_str(&format!(" (Slack: {})", one_line(other, 100))),
        None => {}
    }
    let mut details = Vec::new();
    if r.name.is_some() {
        details.push(format!("id {}", one_line(&r.id, 200)));
    }
    if let Some(email) = &r.email {
        details.push(one_line(email, 320));
    }
    if !details.is_empty() {
        out.push('\n');
        out.push_str(&details.join(" · "));
    }
    clip(&out, max)
}

/// Joins safe items with `, ` within `max` characters, never cutting one in half.
pub(super) fn join_within(items: impl ExactSizeIterator<Item = String>, max: usize) -> String {
    let total = items.len();
    let mut out = String::new();
    let mut len = 0;
    for (i, item) in items.enumerate() {
        let n = item.chars().count() + if i > 0 { 2 } else { 0 };
        // Keep room for the ", and 9999 more" tail.
        if len + n + 16 > max && i + 1 < total || len + n > max {
            out.push_str(&format!(" and {} more", total - i));
            break;
        }
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&item);
        len += n;
    }
    out
}

pub(super) fn approvers(action: &Action, max: usize) -> String {
    if action.policy.approvers.is_empty() {
        "anyone but the requester".to_owned()
    } else {
        join_within(action.policy.approvers.iter().map(|a| mention(a)), max)
    }
}

/// Users who approved, in vote order, without repeats.
pub(super) fn approvals(action: &Action) -> Vec<&str> {
    let mut users: Vec<&str> = Vec::new();
    for v in action.votes.iter().filter(|v| v.vote == VoteKind::Approve) {
        if !users.contains(&v.user.as_str()) {
            users.push(&v.user);
        }
    }
    users
}

/// The context as compact JSON in a code block, at most [`CONTEXT_MAX`] characters.
pub(super) fn context_block(action: &Action) -> Option<Value> {
    if action.context.is_empty() {
        return None;
    }
    let json = serde_json::to_string(&action.context).unwrap_or_default();
    // Backticks can only occur inside JSON strings, where `\u0060` means the same thing;
    // without them request text cannot close our code block and write outside it.
    let json = clip(&json.replace('`', "\\u0060"), CONTEXT_MAX);
    Some(section(format!("*Context*\n```{}```", escape(&json))))
}

/// The one request a gate holds (the SQL statement, or the method, target and start of
/// the body) in a code block, as it will run.
pub(super) fn preview_block(action: &Action) -> Option<Value> {
    let preview = &action.binding.as_ref()?.preview;
    let shown = code_text(preview);
    Some(section(format!(
        "*Request*\n```{}```",
        escape(&clip(&shown, SECTION_MAX - 40))
    )))
}

pub(super) fn votes_block(action: &Action) -> Option<Value> {
    if action.votes.is_empty() {
        return None;
    }
    let mut lines = vec![format!(
        "*Votes* ({} of {} approvals)",
        approvals(action).len(),
        action.policy.min_approvals
    )];
    for v in &action.votes {
        let (emoji, verb) = match v.vote {
            VoteKind::Approve => (":white_check_mark:", "approved"),
            VoteKind::Deny => (":x:", "denied"),
        };
        lines.push(format!(
            "{emoji} {} {verb} {}",
            person(&v.user),
            slack_date(&v.at)
        ));
    }
    // Drop whole lines rather than cutting a `<!date^…>` in half.
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        if out.chars().count() + line.chars().count() + 40 > SECTION_MAX {
            out.push_str(&format!("\n…and {} more", lines.len() - i));
            break;
        }
        if i > 0 {
            out.push('\n');
        }
        out.push_str(line);
    }
    Some(section(out))
}

pub(super) fn buttons(action: &Action) -> Value {
    let id = action.id.as_str();
    // Plain text: only the action name (validated, no `&<>`), never the resource.
    let confirm_text = clip(
        &format!(
            "Deny {}? This decides the request for everyone.",
            one_line(&action.action, 128)
        ),
        CONFIRM_TEXT_MAX,
    );
    json!({
        "type": "actions",
        "block_id": "greenlight_vote",
        "elements": [
            {
                "type": "button",
                "action_id": APPROVE_ACTION_ID,
                "text": plain("Approve".into()),
                "style": "primary",
                "value": id,
            },
            {
                "type": "button",
                "action_id": DENY_ACTION_ID,
                "text": plain("Deny".into()),
                "style": "danger",
                "value": id,
                "confirm": {
                    "title": {"type": "plain_text", "text": "Deny this request?"},
                    "text": {"type": "plain_text", "text": confirm_text},
                    "confirm": {"type": "plain_text", "text": "Deny"},
                    "deny": {"type": "plain_text", "text": "Cancel"},
                    "style": "danger",
                },
            },
        ],
    })
}

/// Who or what decided, as mrkdwn: `by <@U1>, <@U2>`, `by policy rule prod-db`, ….
pub(super) fn decided_by(action: &Action) -> String {
    let Some(d) = &action.decision else {
        return String::new();
    };
    let names = || join_within(d.decided_by.iter().map(|p| person(p)), 2000);
    if let Some(rule) = &d.by_policy {
        return format!("automatically by policy rule {}", one_line(rule, 200));
    }
    match d.outcome {
        Outcome::Expired => "with no decision before the deadline".to_owned(),
        Outcome::Cancelled if d.decided_by.is_empty() => {
            format!("by client {}", one_line(&action.client, 200))
        }
        Outcome::Cancelled => format!("by client {}", names()),
        _ if d.decided_by.is_empty() => String::new(),
        _ => format!("by {}", names()),
    }
}

pub(super) fn outcome_blocks(action: &Action) -> Vec<Value> {
    let status = action.status;
    let mut line = format!("{} *{}*", outcome_emoji(status), outcome_word(status));
    if let Some(d) = &action.decision {
        let by = decided_by(action);
        if !by.is_empty() {
            line.push(' ');
            line.push_str(&by);
        }
        line.push_str(" · ");
        line.push_str(&slack_date(&d.decided_at));
    }
    let mut blocks = vec![section(line)];
    if let Some(reason) = action.decision.as_ref().and_then(|d| d.reason.as_deref()) {
        let label = if status == Status::Denied {
            "Deny reason"
        } else {
            "Decision note"
        };
        blocks.push(section(format!(
            "*{label}*\n>{}",
            text(reason, SECTION_MAX - 40, Lines::Quoted)
        )));
    }
    blocks
}

/// The approval message: posted while pending, updated in place after every vote and at
/// the decision (then without buttons, naming who decided).
pub fn approval_message(action: &Action) -> Message {
    approval_message_with(action, None)
}

/// [`approval_message`]; an access window's message also says what it grants and for how
/// long and, once approved, whether it is active (with the **Revoke** button) or how it
/// ended (naming `revoked_by` when it was revoked).
pub fn approval_message_with(action: &Action, revoked_by: Option<&Revoker>) -> Message {
    let status = action.status;
    let header = clip(
        &format!(
            "{}: {}",
            outcome_word(status),
            one_line(&action.action, 128)
        ),
        HEADER_MAX,
    );
    let value_max = FIELD_MAX - 30;
    let fields = vec![
        field("Action", one_line(&action.action, value_max)),
        field("Resource", one_line(&action.resource, value_max)),
        field("Requester", requester(action, value_max)),
        field("Client", one_line(&action.client, value_max)),
        field("Rule", one_line(&action.policy.rule, value_max)),
        field("Who may approve", approvers(action, value_max)),
        field("Approvals needed", action.policy.min_approvals.to_string()),
        field("Expires", slack_date(&action.expires_at)),
    ];
    let mut blocks = vec![json!({"type": "header", "text": plain(header)})];
    blocks.extend(window::access_line(action).map(section));
    blocks.push(json!({"type": "section", "fields": fields}));
    if let Some(reason) = action.reason.as_deref().filter(|r| !r.trim().is_empty()) {
        blocks.push(section(format!(
            "*Reason*\n>{}",
            text(reason, SECTION_MAX - 20, Lines::Quoted)
        )));
    }
    blocks.extend(preview_block(action));
    blocks.extend(context_block(action));
    blocks.extend(votes_block(action));
    if status == Status::Pending {
        blocks.push(buttons(action));
    } else {
        blocks.extend(outcome_blocks(action));
        blocks.extend(window::state_line(action, revoked_by).map(section));
        blocks.extend(window::revoke_button(action));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [mrkdwn(format!(
            "Greenlight · `{}` · requested {}",
            action.id,
            slack_date(&action.created_at)
        ))],
    }));
    let summary = window::access_summary(action).unwrap_or_else(|| summary(action));
    Message {
        text: format!("{}: {summary}", outcome_word(status)),
        blocks: Value::Array(blocks),
    }
}

/// A vote, for the message's thread: `:white_check_mark: <@U0BOB> approved (1 of 2)`.
pub fn vote_reply(action: &Action, vote: &Vote) -> String {
    match vote.vote {
        VoteKind::Approve => {
            let mut users = approvals(action);
            if !users.contains(&vote.user.as_str()) {
                users.push(&vote.user);
            }
            format!(
                ":white_check_mark: {} approved ({} of {})",
                person(&vote.user),
                users.len(),
                action.policy.min_approvals
            )
        }
        VoteKind::Deny => format!(":x: {} denied", person(&vote.user)),
    }
}

/// The DM telling the requester how their request ended.
pub fn outcome_dm(action: &Action, permalink: Option<&str>) -> String {
    let status = action.status;
    let what = match status {
        Status::Pending => "is still *pending*".to_owned(),
        Status::Expired => "*expired* without a decision".to_owned(),
        _ => {
            let by = decided_by(action);
            let word = outcome_word(status).to_lowercase();
            if by.is_empty() {
                format!("was *{word}*")
            } else {
                format!("was *{word}* {by}")
            }
        }
    };
    let mut out = format!(
        "{} Your request {what}.\n>*Action:* {}\n>*Resource:* {}",
        outcome_emoji(status),
        one_line(&action.action, 200),
        one_line(&action.resource, SUMMARY_RESOURCE_MAX)
    );
    if let Some(reason) = action.decision.as_ref().and_then(|d| d.reason.as_deref()) {
        out.push_str("\n>*Reason:* ");
        out.push_str(&text(reason, SECTION_MAX, Lines::Quoted));
    }
    if let Some(link) = permalink.filter(|l| is_plain_https(l)) {
        out.push_str(&format!("\n<{}|Open the request in Slack>", escape(link)));
    }
    out
}

/// One mrkdwn line for slash-command replies: id, action, resource, requester, status, time.
pub fn action_line(action: &Action) -> String {
    let when = match &action.decision {
        Some(d) if action.status != Status::Pending => {
            format!("decided {}", slack_date(&d.decided_at))
        }
        _ => format!("expires {}", slack_date(&action.expires_at)),
    };
    let r = &action.requester;
    let who = match r.slack_user_id.as_deref() {
        Some(id) if is_user_id(id) => format!("<@{id}>"),
        _ => one_line(r.name.as_deref().unwrap_or(&r.id), 100),
    };
    format!(
        "{} `{}` *{}* · {} · requested by {who} · {} · {when}",
        outcome_emoji(action.status),
        action.id,
        one_line(&action.action, 200),
        one_line(&action.resource, 100),
        action.status,
    )
}

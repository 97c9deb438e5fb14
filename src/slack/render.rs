//! Block Kit rendering of actions: the approval message, thread replies, DMs and the deny
//! modal. Pure functions of the action, so every wording and limit is tested without Slack.
//!
//! Request text (action, resource, requester, reason, context, client, names) is untrusted:
//! it goes through [`escape`] so it cannot ping (`<!channel>`), link or mention, and it is
//! placed in labelled fields, quotes or a code block rather than inside our own sentences.
//! The only `<…>` constructs in our output are the ones built here from trusted ids:
//! `<@U…>`, `<!subteam^S…>`, `<!date^…>` and the permalink Slack gave us.

use crate::domain::{Action, Outcome, Status, Vote, VoteKind, rfc3339};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub const APPROVE_ACTION_ID: &str = "greenlight_approve";
pub const DENY_ACTION_ID: &str = "greenlight_deny";
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

/// Escapes text for Slack mrkdwn: `&`, `<` and `>` and nothing else, as Slack asks.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    out
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        c => out.push(c),
    }
}

/// How line breaks in untrusted text are rendered.
#[derive(Clone, Copy)]
enum Lines {
    /// Collapsed to spaces, so a value cannot start a line of its own inside our layout.
    One,
    /// Kept, each new line continuing a `>` quote.
    Quoted,
}

/// Escapes `s` and truncates the result to at most `max` characters, ending with `…` when
/// cut. Truncation happens between escaped characters, never inside an entity.
fn text(s: &str, max: usize, lines: Lines) -> String {
    let mut out = String::new();
    let mut len = 0;
    let mut piece = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        piece.clear();
        match (c, lines) {
            ('\r', _) if chars.peek() == Some(&'\n') => continue,
            ('\n' | '\r' | '\u{2028}' | '\u{2029}', Lines::Quoted) => piece.push_str("\n>"),
            ('\u{2028}' | '\u{2029}', Lines::One) => piece.push(' '),
            (c, _) if c.is_control() => piece.push(' '),
            (c, _) => push_escaped(&mut piece, c),
        }
        let n = piece.chars().count();
        // Keep room for the ellipsis unless this is the very last character.
        let room = if chars.peek().is_some() {
            max.saturating_sub(1)
        } else {
            max
        };
        if len + n > room {
            out.push('…');
            return out;
        }
        out.push_str(&piece);
        len += n;
    }
    out
}

fn one_line(s: &str, max: usize) -> String {
    text(s, max, Lines::One)
}

/// Truncates already-safe text to `max` characters with `…`.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `U…`/`W…` followed by upper-case letters and digits: a Slack user id.
fn is_user_id(s: &str) -> bool {
    is_slack_id(s, &['U', 'W'])
}

fn is_subteam_id(s: &str) -> bool {
    is_slack_id(s, &['S'])
}

fn is_slack_id(s: &str, prefixes: &[char]) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if prefixes.contains(&c))
        && s.len() >= 2
        && s.len() <= 32
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// A person: a mention when it is a Slack user id, escaped text otherwise.
fn person(s: &str) -> String {
    if is_user_id(s) {
        format!("<@{s}>")
    } else {
        one_line(s, 200)
    }
}

/// An approver from the policy: `U…`/`W…` → `<@U…>`, `S…` → `<!subteam^S…>`, anything else
/// (`@handle`, an email) as escaped text.
pub fn mention(approver: &str) -> String {
    if is_user_id(approver) {
        format!("<@{approver}>")
    } else if is_subteam_id(approver) {
        format!("<!subteam^{approver}>")
    } else {
        one_line(approver, 200)
    }
}

/// A time every reader sees in their own zone, with an RFC 3339 fallback.
fn slack_date(t: &DateTime<Utc>) -> String {
    format!(
        "<!date^{}^{{date_short_pretty}} at {{time}}|{}>",
        t.timestamp(),
        rfc3339::format(t)
    )
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

/// The requester's name (or id) and their Slack mention when the id is a real one.
fn requester(action: &Action, max: usize) -> String {
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
fn join_within(items: impl ExactSizeIterator<Item = String>, max: usize) -> String {
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

fn approvers(action: &Action, max: usize) -> String {
    if action.policy.approvers.is_empty() {
        "anyone but the requester".to_owned()
    } else {
        join_within(action.policy.approvers.iter().map(|a| mention(a)), max)
    }
}

/// Users who approved, in vote order, without repeats.
fn approvals(action: &Action) -> Vec<&str> {
    let mut users: Vec<&str> = Vec::new();
    for v in action.votes.iter().filter(|v| v.vote == VoteKind::Approve) {
        if !users.contains(&v.user.as_str()) {
            users.push(&v.user);
        }
    }
    users
}

/// The context as compact JSON in a code block, at most [`CONTEXT_MAX`] characters.
fn context_block(action: &Action) -> Option<Value> {
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
fn preview_block(action: &Action) -> Option<Value> {
    let preview = &action.binding.as_ref()?.preview;
    // Inside a code block only a backtick could end it early: it is shown as `ˋ`. Control
    // and invisible format characters (bidi overrides, zero-width) show as `�`, so the
    // text approvers read is the text that runs.
    let shown: String = preview
        .chars()
        .map(|c| match c {
            '`' => '\u{2cb}',
            '\n' | '\t' => c,
            c if c.is_control() || is_invisible_format(c) => '\u{fffd}',
            c => c,
        })
        .collect();
    Some(section(format!(
        "*Request*\n```{}```",
        escape(&clip(&shown, SECTION_MAX - 40))
    )))
}

/// Bidirectional controls and zero-width characters: they change what text looks like.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

fn votes_block(action: &Action) -> Option<Value> {
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

fn buttons(action: &Action) -> Value {
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
fn decided_by(action: &Action) -> String {
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

fn outcome_blocks(action: &Action) -> Vec<Value> {
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
    let mut blocks = vec![
        json!({"type": "header", "text": plain(header)}),
        json!({"type": "section", "fields": fields}),
    ];
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
    }
    blocks.push(json!({
        "type": "context",
        "elements": [mrkdwn(format!(
            "Greenlight · `{}` · requested {}",
            action.id,
            slack_date(&action.created_at)
        ))],
    }));
    Message {
        text: format!("{}: {}", outcome_word(status), summary(action)),
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

/// A URL we can put inside `<…|…>` without it ending the link early.
fn is_plain_https(url: &str) -> bool {
    url.starts_with("https://")
        && !url
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '|' | '<' | '>'))
}

/// The `views.open` modal asking for a deny reason.
pub fn deny_reason_modal(action: &Action) -> Value {
    json!({
        "type": "modal",
        "callback_id": DENY_REASON_CALLBACK_ID,
        "private_metadata": action.id.as_str(),
        "title": {"type": "plain_text", "text": "Deny request"},
        "submit": {"type": "plain_text", "text": "Deny"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            section(format!("{} {}", outcome_emoji(Status::Denied), summary(action))),
            {
                "type": "input",
                "block_id": DENY_REASON_BLOCK_ID,
                "label": {"type": "plain_text", "text": "Why are you denying it?"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": DENY_REASON_INPUT_ID,
                    "multiline": true,
                    "max_length": DENY_REASON_MAX,
                },
            },
        ],
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ActionId, DecidedBy, PolicySnapshot, Requester};
    use chrono::TimeZone;

    const EVIL: &str = "<!channel> <https://evil|click> <@U123> &amp; ```x``` *Approved* _by_ <!subteam^S1>\n> forged";

    fn at(min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 10, min, 0).unwrap()
    }

    fn action() -> Action {
        Action {
            id: "act_01JD8Y3M6QW9T3V7K2X5N4B1C0".parse().unwrap(),
            status: Status::Pending,
            action: "db.drop_table".into(),
            resource: "postgres://prod/users".into(),
            requester: Requester {
                id: "u-123".into(),
                email: Some("alice@example.com".into()),
                slack_user_id: Some("U0ALICE".into()),
                name: Some("Alice".into()),
            },
            reason: Some("remove table left over by migration 42".into()),
            context: json!({"env": "prod", "rows": 1200})
                .as_object()
                .unwrap()
                .clone(),
            client: "payments-api".into(),
            policy: PolicySnapshot {
                rule: "prod-db".into(),
                min_approvals: 2,
                approvers: vec!["S0DBA".into(), "U0BOB".into(), "@dba-team".into()],
                ..Default::default()
            },
            votes: vec![],
            created_at: at(0),
            expires_at: at(10),
            callback_url: None,
            escalation: None,
            binding: None,
            decision: None,
        }
    }

    fn evil() -> Action {
        let mut a = action();
        a.resource = format!("postgres://prod/{EVIL}");
        a.requester = Requester {
            id: EVIL.into(),
            email: Some(EVIL.into()),
            slack_user_id: Some("<!channel>".into()),
            name: Some(EVIL.into()),
        };
        a.reason = Some(EVIL.into());
        a.client = EVIL.into();
        a.context = json!({"note": EVIL, EVIL: 1}).as_object().unwrap().clone();
        a.votes = vec![Vote {
            user: EVIL.into(),
            vote: VoteKind::Approve,
            at: at(1),
        }];
        a
    }

    fn strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
            Value::Object(o) => o.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }

    /// Every `<` must open one of our constructs, built from a trusted id.
    fn assert_only_our_angles(s: &str) {
        for (i, _) in s.match_indices('<') {
            let rest = &s[i..];
            let ours = [
                "<@U0",
                "<!date^",
                "<!subteam^S0DBA>",
                "<https://example.slack.com/",
            ];
            assert!(
                ours.iter().any(|p| rest.starts_with(p)),
                "raw `<` from request text in {s:?}"
            );
        }
        assert!(!s.contains("<!channel>"));
        assert!(!s.contains("<https://evil"));
        assert!(!s.contains("<@U123>"));
    }

    fn all_text(m: &Message) -> Vec<String> {
        let mut out = vec![m.text.clone()];
        strings(&m.blocks, &mut out);
        out
    }

    fn blocks_of<'a>(m: &'a Message, kind: &str) -> Vec<&'a Value> {
        m.blocks
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == kind)
            .collect()
    }

    fn decide(a: &mut Action, outcome: Outcome, by: DecidedBy, reason: Option<&str>) {
        a.decide(outcome, by, reason.map(str::to_owned), at(5))
            .unwrap();
    }

    #[test]
    fn escapes_only_what_slack_requires() {
        assert_eq!(escape("<!channel>"), "&lt;!channel&gt;");
        assert_eq!(escape("<@U123>"), "&lt;@U123&gt;");
        assert_eq!(escape("<https://evil|click>"), "&lt;https://evil|click&gt;");
        assert_eq!(escape("&amp;"), "&amp;amp;");
        assert_eq!(escape("*bold* _it_ `code` ~s~"), "*bold* _it_ `code` ~s~");
    }

    #[test]
    fn injection_renders_as_text_everywhere() {
        let mut a = evil();
        for s in all_text(&approval_message(&a)) {
            assert_only_our_angles(&s);
        }
        let vote = a.votes[0].clone();
        assert_only_our_angles(&vote_reply(&a, &vote));
        assert_only_our_angles(&action_line(&a));
        let mut modal = Vec::new();
        strings(&deny_reason_modal(&a), &mut modal);
        modal.iter().for_each(|s| assert_only_our_angles(s));

        decide(
            &mut a,
            Outcome::Denied,
            DecidedBy::People(vec![EVIL.into()]),
            Some(EVIL),
        );
        let m = approval_message(&a);
        for s in all_text(&m) {
            assert_only_our_angles(&s);
        }
        assert_only_our_angles(&outcome_dm(
            &a,
            Some("https://example.slack.com/archives/C1/p1"),
        ));
        assert_only_our_angles(&action_line(&a));
        let dump = m.blocks.to_string();
        assert!(dump.contains("&lt;!channel&gt;"));
    }

    #[test]
    fn request_text_cannot_close_the_code_block_or_start_lines() {
        let a = evil();
        let m = approval_message(&a);
        let context = all_text(&m)
            .into_iter()
            .find(|s| s.starts_with("*Context*"))
            .unwrap();
        let body = context.strip_prefix("*Context*\n```").unwrap();
        let body = body.strip_suffix("```").unwrap();
        assert!(!body.contains('`'), "{body}");
        // One-line fields stay one line; the reason stays inside its quote.
        let fields = &blocks_of(&m, "section")[0]["fields"];
        let resource = fields[1]["text"].as_str().unwrap();
        assert_eq!(resource.lines().count(), 2);
        let reason = all_text(&m)
            .into_iter()
            .find(|s| s.starts_with("*Reason*"))
            .unwrap();
        assert!(
            reason.lines().skip(1).all(|l| l.starts_with('>')),
            "{reason}"
        );
    }

    #[test]
    fn pending_message_shows_the_request_and_both_buttons() {
        let a = action();
        let m = approval_message(&a);
        assert_eq!(
            m.text,
            "Approval needed: db.drop_table on postgres://prod/users"
        );
        let dump = m.blocks.to_string();
        for needle in [
            "db.drop_table",
            "postgres://prod/users",
            "Alice (<@U0ALICE>)",
            "payments-api",
            "prod-db",
            "<!subteam^S0DBA>, <@U0BOB>, @dba-team",
            "*Approvals needed*\\n2",
            "remove table left over by migration 42",
            r#"```{\"env\":\"prod\",\"rows\":1200}```"#,
            "<!date^1795342200^{date_short_pretty} at {time}|2026-11-22T10:10:00Z>",
        ] {
            assert!(dump.contains(needle), "missing {needle} in {dump}");
        }
        let actions = blocks_of(&m, "actions");
        assert_eq!(actions.len(), 1);
        let [approve, deny] = actions[0]["elements"].as_array().unwrap().as_slice() else {
            panic!("two buttons");
        };
        assert_eq!(approve["action_id"], APPROVE_ACTION_ID);
        assert_eq!(approve["style"], "primary");
        assert_eq!(approve["value"], a.id.as_str());
        assert!(approve.get("confirm").is_none());
        assert_eq!(deny["action_id"], DENY_ACTION_ID);
        assert_eq!(deny["style"], "danger");
        assert_eq!(deny["value"], a.id.as_str());
        assert_eq!(deny["confirm"]["confirm"]["text"], "Deny");
        assert_eq!(deny["confirm"]["style"], "danger");
    }

    #[test]
    fn the_held_request_is_shown_as_it_will_run() {
        let mut a = action();
        a.binding = Some(crate::domain::Binding::of(
            "POST",
            "/sql",
            b"",
            Some("DELETE FROM `users` <@U0BOB>\u{202e}1=1 WHERE id = 1"),
        ));
        let dump = approval_message(&a).blocks.to_string();
        assert!(
            dump.contains(
                "*Request*\\n```DELETE FROM \u{2cb}users\u{2cb} &lt;@U0BOB&gt;\u{fffd}1=1 WHERE id = 1```"
            ),
            "{dump}"
        );
    }

    #[test]
    fn votes_so_far_are_listed_while_pending() {
        let mut a = action();
        a.votes.push(Vote {
            user: "U0BOB".into(),
            vote: VoteKind::Approve,
            at: at(1),
        });
        let dump = approval_message(&a).blocks.to_string();
        assert!(dump.contains("*Votes* (1 of 2 approvals)"));
        assert!(dump.contains(":white_check_mark: <@U0BOB> approved <!date^"));
        assert_eq!(
            vote_reply(&a, &a.votes[0]),
            ":white_check_mark: <@U0BOB> approved (1 of 2)"
        );
        let carol = Vote {
            user: "U0CAROL".into(),
            vote: VoteKind::Approve,
            at: at(2),
        };
        assert_eq!(
            vote_reply(&a, &carol),
            ":white_check_mark: <@U0CAROL> approved (2 of 2)"
        );
        let deny = Vote {
            user: "U0DAVE".into(),
            vote: VoteKind::Deny,
            at: at(2),
        };
        assert_eq!(vote_reply(&a, &deny), ":x: <@U0DAVE> denied");
    }

    #[test]
    fn decided_message_has_no_buttons_and_names_the_decider() {
        let mut a = action();
        decide(
            &mut a,
            Outcome::Approved,
            DecidedBy::People(vec!["U0BOB".into(), "U0CAROL".into()]),
            None,
        );
        let m = approval_message(&a);
        assert!(blocks_of(&m, "actions").is_empty());
        assert_eq!(m.text, "Approved: db.drop_table on postgres://prod/users");
        let dump = m.blocks.to_string();
        assert!(
            dump.contains(
                ":white_check_mark: *Approved* by <@U0BOB>, <@U0CAROL> · <!date^1795341900^"
            ),
            "{dump}"
        );

        let mut a = action();
        decide(
            &mut a,
            Outcome::Denied,
            DecidedBy::People(vec!["ops-lead@example.com".into()]),
            Some("not during the freeze"),
        );
        let dump = approval_message(&a).blocks.to_string();
        assert!(
            dump.contains(":x: *Denied* by ops-lead@example.com"),
            "{dump}"
        );
        assert!(dump.contains("*Deny reason*\\n>not during the freeze"));

        let mut a = action();
        decide(
            &mut a,
            Outcome::Approved,
            DecidedBy::Policy("auto-staging".into()),
            None,
        );
        let dump = approval_message(&a).blocks.to_string();
        assert!(dump.contains("*Approved* automatically by policy rule auto-staging"));

        let mut a = action();
        decide(&mut a, Outcome::Expired, DecidedBy::Timer, None);
        let m = approval_message(&a);
        assert!(blocks_of(&m, "actions").is_empty());
        assert!(m.blocks.to_string().contains(":hourglass: *Expired*"));

        let mut a = action();
        decide(
            &mut a,
            Outcome::Cancelled,
            DecidedBy::Client("payments-api".into()),
            None,
        );
        let dump = approval_message(&a).blocks.to_string();
        assert!(dump.contains(":no_entry_sign: *Cancelled* by client payments-api"));
    }

    #[test]
    fn context_is_truncated_to_500_characters() {
        let mut a = action();
        a.context = json!({"blob": "x".repeat(2000)})
            .as_object()
            .unwrap()
            .clone();
        let context = all_text(&approval_message(&a))
            .into_iter()
            .find(|s| s.starts_with("*Context*"))
            .unwrap();
        let body = context
            .strip_prefix("*Context*\n```")
            .and_then(|s| s.strip_suffix("```"))
            .unwrap();
        assert_eq!(body.chars().count(), 500);
        assert!(body.starts_with(r#"{"blob":"xxx"#));
        assert!(body.ends_with('…'));
    }

    #[test]
    fn long_request_text_stays_within_block_kit_limits() {
        let mut a = action();
        a.action = "a".repeat(128);
        a.resource = "&".repeat(512);
        a.reason = Some("<\n".repeat(1000));
        a.requester.name = Some("<".repeat(2000));
        a.client = "c".repeat(3000);
        a.policy.approvers = (0..500).map(|i| format!("U{i:08}")).collect();
        a.votes = (0..200)
            .map(|i| Vote {
                user: format!("U{i:08}"),
                vote: VoteKind::Approve,
                at: at(1),
            })
            .collect();
        let m = approval_message(&a);
        let blocks = m.blocks.as_array().unwrap();
        assert!(blocks.len() <= 50);
        for b in blocks {
            if let Some(t) = b["text"]["text"].as_str() {
                let max = if b["type"] == "header" {
                    HEADER_MAX
                } else {
                    SECTION_MAX
                };
                assert!(t.chars().count() <= max, "{} chars", t.chars().count());
            }
            if let Some(fields) = b["fields"].as_array() {
                assert!(fields.len() <= 10);
                for f in fields {
                    let t = f["text"].as_str().unwrap();
                    assert!(
                        t.chars().count() <= FIELD_MAX,
                        "{} chars",
                        t.chars().count()
                    );
                    // Never a half entity left behind by the cut.
                    assert!(!t.contains("&a…") && !t.contains("&l…"));
                }
            }
            for e in b["elements"].as_array().into_iter().flatten() {
                if let Some(t) = e["text"]["text"].as_str() {
                    assert!(t.chars().count() <= 75);
                }
                if let Some(t) = e["confirm"]["text"]["text"].as_str() {
                    assert!(t.chars().count() <= CONFIRM_TEXT_MAX);
                }
            }
        }
        let fields = &blocks[1]["fields"];
        assert!(fields[1]["text"].as_str().unwrap().ends_with('…'));
        for s in all_text(&m) {
            assert_only_our_angles(&s);
        }
    }

    #[test]
    fn deny_modal_carries_the_action_id() {
        let a = action();
        let v = deny_reason_modal(&a);
        assert_eq!(v["type"], "modal");
        assert_eq!(v["callback_id"], DENY_REASON_CALLBACK_ID);
        assert_eq!(v["private_metadata"], a.id.as_str());
        assert_eq!(v["submit"]["text"], "Deny");
        assert_eq!(v["close"]["text"], "Cancel");
        assert!(v["title"]["text"].as_str().unwrap().len() <= 24);
        let input = &v["blocks"][1];
        assert_eq!(input["type"], "input");
        assert_eq!(input["block_id"], DENY_REASON_BLOCK_ID);
        assert_eq!(input["element"]["type"], "plain_text_input");
        assert_eq!(input["element"]["action_id"], DENY_REASON_INPUT_ID);
        assert_eq!(input["element"]["multiline"], true);
    }

    #[test]
    fn mentions() {
        assert_eq!(mention("U0BOB"), "<@U0BOB>");
        assert_eq!(mention("W0ENT"), "<@W0ENT>");
        assert_eq!(mention("S0DBA"), "<!subteam^S0DBA>");
        assert_eq!(mention("@dba-team"), "@dba-team");
        assert_eq!(mention("bob@example.com"), "bob@example.com");
        assert_eq!(mention("<!here>"), "&lt;!here&gt;");
        assert_eq!(mention("u0lower"), "u0lower");
        assert_eq!(mention("U"), "U");
    }

    #[test]
    fn requester_mention_only_for_real_slack_ids() {
        let mut a = action();
        a.requester.slack_user_id = Some("alice".into());
        let dump = approval_message(&a).blocks.to_string();
        assert!(dump.contains("Alice (Slack: alice)"));
        assert!(!dump.contains("<@alice>"));
    }

    #[test]
    fn outcome_dm_and_action_line() {
        let mut a = action();
        decide(
            &mut a,
            Outcome::Denied,
            DecidedBy::People(vec!["U0BOB".into()]),
            Some("freeze\nuntil monday"),
        );
        let dm = outcome_dm(&a, Some("https://example.slack.com/archives/C1/p1?a=1&b=2"));
        assert!(
            dm.starts_with(":x: Your request was *denied* by <@U0BOB>."),
            "{dm}"
        );
        assert!(dm.contains(">*Reason:* freeze\n>until monday"));
        assert!(dm.contains("<https://example.slack.com/archives/C1/p1?a=1&amp;b=2|Open"));
        assert!(!outcome_dm(&a, Some("javascript:alert(1)")).contains("javascript"));
        assert!(!outcome_dm(&a, Some("https://x|y")).contains("x|y"));

        let line = action_line(&a);
        assert!(line.contains("`act_01JD8Y3M6QW9T3V7K2X5N4B1C0`"));
        assert!(line.contains("*db.drop_table*"));
        assert!(line.contains("postgres://prod/users"));
        assert!(line.contains("requested by <@U0ALICE>"));
        assert!(line.contains("denied"));
        assert!(line.contains("decided <!date^"));
        assert!(!line.contains('\n'));
        assert!(action_line(&action()).contains("pending · expires <!date^"));
    }

    #[test]
    fn generated_ids_render() {
        let mut a = action();
        a.id = ActionId::generate();
        let m = approval_message(&a);
        assert_eq!(
            blocks_of(&m, "actions")[0]["elements"][0]["value"],
            a.id.as_str()
        );
    }
}

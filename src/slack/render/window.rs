//! An access window in Slack: what it grants and for how long, whether it is active (with
//! the **Revoke** button) or how it ended, and how the requester uses it. The grant itself
//! is never rendered: only the client that asked for the window is shown it.

use super::escape::*;
use super::*;
use crate::domain::WindowEnd;
use crate::service::Revoker;
use std::time::Duration;

/// The window's length as a user writes it (`1h`, `1h 30m`, `90s` reads `1m 30s`).
fn length(seconds: u64) -> String {
    crate::policy::duration::format(Duration::from_secs(seconds))
}

/// Untrusted text as inline code, on one line: it cannot close the code span (a backtick
/// shows as `ˋ`), ping or link.
fn code(s: &str, max: usize) -> String {
    format!("`{}`", one_line(&code_text(s), max))
}

fn uses(n: u64) -> String {
    if n == 1 {
        "1 use".to_owned()
    } else {
        format!("{n} uses")
    }
}

/// `:key: *Access for 1h* to `db.*` on `postgres://prod/*``: what a window grants.
pub(super) fn access_line(action: &Action) -> Option<String> {
    let w = action.window.as_ref()?;
    Some(format!(
        ":key: *Access for {}* to {} on {}",
        length(w.seconds),
        code(&action.action, 200),
        code(&action.resource, SUMMARY_RESOURCE_MAX)
    ))
}

/// `access for 1h to db.* on postgres://prod/*`, for notification text.
pub(super) fn access_summary(action: &Action) -> Option<String> {
    let w = action.window.as_ref()?;
    Some(format!(
        "access for {} to {}",
        length(w.seconds),
        summary(action)
    ))
}

/// Once approved: `active until … · N uses`, or how it ended. The uses are those counted
/// when the message was last updated.
pub(super) fn state_line(action: &Action, revoked_by: Option<&Revoker>) -> Option<String> {
    let w = action.window.as_ref()?;
    let ends_at = w.ends_at.filter(|_| action.status == Status::Approved)?;
    Some(match w.ended {
        None => format!(
            ":large_green_circle: *Access active* until {} · {}",
            slack_date(&ends_at),
            uses(w.uses)
        ),
        Some(WindowEnd::Expired) => {
            format!(
                ":checkered_flag: *Access ended*: expired · {}",
                uses(w.uses)
            )
        }
        Some(WindowEnd::Revoked) => {
            let by = match revoked_by {
                Some(Revoker::SlackUser(user)) => format!(" by {}", person(user)),
                Some(Revoker::Client(client)) => format!(" by client {}", code(client, 100)),
                None => String::new(),
            };
            format!(":no_entry: *Access ended*: revoked{by} · {}", uses(w.uses))
        }
    })
}

/// The **Revoke** button, while an approved window is active; it asks for confirmation.
pub(super) fn revoke_button(action: &Action) -> Option<Value> {
    let w = action.window.as_ref()?;
    if action.status != Status::Approved || w.starts_at.is_none() || w.ended.is_some() {
        return None;
    }
    // Plain text: only the action pattern (validated, no `&<>`), never the resource.
    let confirm_text = clip(
        &format!(
            "Access to {} ends at once, for every use of its grant.",
            one_line(&action.action, 128)
        ),
        CONFIRM_TEXT_MAX,
    );
    Some(json!({
        "type": "actions",
        "block_id": "greenlight_window",
        "elements": [{
            "type": "button",
            "action_id": REVOKE_ACTION_ID,
            "text": plain("Revoke".into()),
            "style": "danger",
            "value": action.id.as_str(),
            "confirm": {
                "title": {"type": "plain_text", "text": "Revoke this access?"},
                "text": {"type": "plain_text", "text": confirm_text},
                "confirm": {"type": "plain_text", "text": "Revoke"},
                "deny": {"type": "plain_text", "text": "Cancel"},
                "style": "danger",
            },
        }],
    }))
}

/// The DM telling the requester how their request ended; for an approved window, also how
/// to use it. Never the grant: only the client that asked for the window is shown it.
pub fn requester_dm(action: &Action, permalink: Option<&str>) -> String {
    let mut out = super::outcome_dm(action, permalink);
    let Some(w) = action.window.as_ref() else {
        return out;
    };
    // Told late (Slack was down), after the window ended: nothing left to use.
    let Some(ends_at) = w
        .ends_at
        .filter(|_| action.status == Status::Approved && w.ended.is_none())
    else {
        return out;
    };
    out.push_str(&format!(
        "\n:key: Your access is active until {}. To use it, send its grant with each \
         request to {} in the `Greenlight-Grant` header. The grant is given only to the \
         client that asked for it ({}), never in Slack: \
         `greenlight access request … --wait --export` prints it as \
         `export GREENLIGHT_GRANT=…` for `eval`.",
        slack_date(&ends_at),
        code(&w.audience, 100),
        code(&action.client, 100)
    ));
    out
}

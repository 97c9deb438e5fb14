//! The line `greenlight gate` keeps up to date on a terminal while it waits: who was
//! asked, the votes so far and the time left.

use crate::domain::{Action, VoteKind};
use std::io::{IsTerminal, Write};

/// Where the progress goes: rewritten in place on a terminal, silent in a pipeline log
/// (which gets one line at the start and one at the end instead).
pub struct Progress {
    live: bool,
}

impl Progress {
    pub fn stderr() -> Self {
        Self {
            live: std::io::stderr().is_terminal(),
        }
    }

    pub fn is_live(&self) -> bool {
        self.live
    }

    /// `gave_up_at`: when gate stops waiting (its `--timeout`), if before the expiry.
    pub fn show(&self, action: &Action, gave_up_at: chrono::DateTime<chrono::Utc>) {
        if self.live {
            let mut err = std::io::stderr().lock();
            // Carriage return and "erase line": the line is rewritten, not appended.
            let _ = write!(
                err,
                "\r\x1b[2K{}",
                line(action, gave_up_at, chrono::Utc::now())
            );
            let _ = err.flush();
        }
    }

    /// Ends the live line so that what follows starts on a fresh one.
    pub fn done(&self) {
        if self.live {
            eprintln!();
        }
    }
}

/// `waiting for approval: asked @dba-team, U0BOB (2 needed); votes 1/2 (U0BOB approved); 9m12s left`
pub fn line(
    action: &Action,
    gave_up_at: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let asked = if action.policy.approvers.is_empty() {
        action
            .policy
            .channel
            .clone()
            .unwrap_or_else(|| "the approvers".into())
    } else {
        action.policy.approvers.join(", ")
    };
    let approvals = action
        .votes
        .iter()
        .filter(|v| v.vote == VoteKind::Approve)
        .count();
    let voters: Vec<String> = action
        .votes
        .iter()
        .map(|v| {
            let kind = match v.vote {
                VoteKind::Approve => "approved",
                VoteKind::Deny => "denied",
            };
            format!("{} {kind}", v.user)
        })
        .collect();
    let end = action.expires_at.min(gave_up_at);
    let left = (end - now).num_seconds().max(0) as u64;
    let mut line = format!(
        "waiting for approval of {} on {}: asked {asked} ({} needed); votes {approvals}/{}",
        action.action, action.resource, action.policy.min_approvals, action.policy.min_approvals
    );
    if !voters.is_empty() {
        line.push_str(&format!(" ({})", voters.join(", ")));
    }
    line.push_str(&format!(
        "; {} left",
        humantime::format_duration(std::time::Duration::from_secs(left))
    ));
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_who_was_asked_the_votes_and_the_time_left() {
        let action: Action = serde_json::from_value(serde_json::json!({
            "id": "act_01JD8Y3M6QW9T3V7K2X5N4B1C0", "status": "pending",
            "action": "deploy.prod", "resource": "svc/payments",
            "requester": {"id": "u-123"}, "reason": null, "context": {}, "client": "ci",
            "policy": {"rule": "prod", "min_approvals": 2, "approvers": ["@sre", "U0BOB"]},
            "votes": [{"user": "U0BOB", "vote": "approve", "at": "2026-11-22T10:01:00Z"}],
            "created_at": "2026-11-22T10:00:00Z", "expires_at": "2026-11-22T10:10:00Z",
            "decision": null,
        }))
        .unwrap();
        let at = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
        let now = at("2026-11-22T10:02:00Z");
        assert_eq!(
            line(&action, at("2026-11-22T11:00:00Z"), now),
            "waiting for approval of deploy.prod on svc/payments: asked @sre, U0BOB \
             (2 needed); votes 1/2 (U0BOB approved); 8m left"
        );
        // gate's own --timeout, when it comes first.
        assert!(line(&action, at("2026-11-22T10:03:30Z"), now).ends_with("; 1m 30s left"));
    }
}

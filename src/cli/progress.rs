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

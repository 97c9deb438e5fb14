//! `policy explain`: which rule a request hits, what that means, and why earlier rules missed.

use std::fmt;

use chrono::{DateTime, Utc};

use super::Evaluation;
use super::duration;
use super::matching::Mismatch;
use super::model::{EscalationStage, Oncall, Rule, format_instant};

/// The rules consulted for one request, in order, and the resulting evaluation.
#[derive(Debug, Clone)]
pub struct Explanation<'p> {
    /// Every rule up to and including the one that matched (all rules when none did).
    pub checks: Vec<RuleCheck<'p>>,
    pub evaluation: Evaluation<'p>,
    /// Rules after the match, never consulted because the first match wins.
    pub not_reached: usize,
    /// The policy's rotations, to say who an `oncall:NAME` escalation would reach.
    pub oncall: &'p [Oncall],
    /// When those rotations are resolved.
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct RuleCheck<'p> {
    pub rule: &'p Rule,
    /// `Err` names the first criterion that failed.
    pub result: Result<(), Mismatch>,
}

impl Explanation<'_> {
    /// `after 2m: notify oncall:dba (now U0DAVE until …), @dba-leads; pagerduty; webhook URL`.
    fn stage(&self, stage: &EscalationStage) -> String {
        let mut parts = Vec::new();
        if !stage.notify.is_empty() {
            let who: Vec<String> = stage.notify.iter().map(|n| self.target(n)).collect();
            parts.push(format!("notify {}", who.join(", ")));
        }
        if stage.pagerduty {
            parts.push("pagerduty".to_owned());
        }
        if let Some(url) = &stage.webhook {
            parts.push(format!("webhook {url}"));
        }
        format!(
            "after {}: {}",
            duration::format(stage.after),
            parts.join("; ")
        )
    }

    /// A notify entry, with `oncall:NAME` followed by whoever holds that rotation at `now`.
    fn target(&self, notify: &str) -> String {
        let Some(name) = notify.strip_prefix("oncall:") else {
            return notify.to_owned();
        };
        // The parser rejects unknown rotation names; this only guards hand-built policies.
        match self.oncall.iter().find(|o| o.name == name) {
            Some(o) => {
                let s = o.shift_at(self.now);
                format!(
                    "{notify} (now {} until {})",
                    s.person,
                    format_instant(s.ends)
                )
            }
            None => format!("{notify} (no such rotation)"),
        }
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

impl fmt::Display for Explanation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.evaluation;
        match e.rule {
            Some(r) => writeln!(f, "matched rule {:?} (line {})", r.name, r.line)?,
            None => writeln!(
                f,
                "no rule matched: the default applies (on_no_match = \"{}\")",
                e.decision
            )?,
        }
        writeln!(f, "  decision:             {}", e.decision)?;
        let approvers = if e.approvers.is_empty() {
            "any Slack user".to_owned()
        } else {
            e.approvers.join(", ")
        };
        writeln!(f, "  approvers:            {approvers}")?;
        writeln!(f, "  min approvals:        {}", e.min_approvals)?;
        writeln!(
            f,
            "  self approval:        {}",
            if e.allow_self_approval {
                "allowed"
            } else {
                "not allowed"
            }
        )?;
        writeln!(
            f,
            "  channel:              {}",
            e.channel.as_deref().unwrap_or("(none)")
        )?;
        writeln!(f, "  ttl:                  {}", duration::format(e.max_ttl))?;
        writeln!(
            f,
            "  grant ttl:            {}",
            duration::format(e.grant_ttl)
        )?;
        let max_window = e
            .max_window
            .map_or_else(|| "(no windows)".to_owned(), duration::format);
        writeln!(f, "  max window:           {max_window}")?;
        writeln!(f, "  reason required:      {}", yes_no(e.reason_required))?;
        writeln!(
            f,
            "  deny reason required: {}",
            yes_no(e.deny_reason_required)
        )?;
        if let Some(r) = e.rule {
            if let Some(every) = r.remind_every {
                writeln!(f, "  remind every:         {}", duration::format(every))?;
            }
            if !r.escalate.is_empty() {
                writeln!(f, "  escalation:")?;
            }
            for stage in &r.escalate {
                writeln!(f, "    {}", self.stage(stage))?;
            }
        }
        if !self.checks.is_empty() {
            writeln!(f, "rules checked, in order:")?;
        }
        for c in &self.checks {
            match &c.result {
                Ok(()) => writeln!(f, "  line {}: {:?} matches", c.rule.line, c.rule.name)?,
                Err(why) => writeln!(
                    f,
                    "  line {}: {:?} does not match: {why}",
                    c.rule.line, c.rule.name
                )?,
            }
        }
        if self.not_reached > 0 {
            writeln!(
                f,
                "  ({} later rule(s) not consulted: the first match wins)",
                self.not_reached
            )?;
        }
        Ok(())
    }
}

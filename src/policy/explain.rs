//! `policy explain`: which rule a request hits, what that means, and why earlier rules missed.

use std::fmt;

use super::Evaluation;
use super::duration;
use super::matching::Mismatch;
use super::model::Rule;

/// The rules consulted for one request, in order, and the resulting evaluation.
#[derive(Debug, Clone)]
pub struct Explanation<'p> {
    /// Every rule up to and including the one that matched (all rules when none did).
    pub checks: Vec<RuleCheck<'p>>,
    pub evaluation: Evaluation<'p>,
    /// Rules after the match, never consulted because the first match wins.
    pub not_reached: usize,
}

#[derive(Debug, Clone)]
pub struct RuleCheck<'p> {
    pub rule: &'p Rule,
    /// `Err` names the first criterion that failed.
    pub result: Result<(), Mismatch>,
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
        writeln!(f, "  reason required:      {}", yes_no(e.reason_required))?;
        writeln!(
            f,
            "  deny reason required: {}",
            yes_no(e.deny_reason_required)
        )?;
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

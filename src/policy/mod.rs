//! The policy file: parsing with line-accurate errors, and rule evaluation.
//!
//! `Policy::parse`/`load` validate everything up front so the rest of the service never
//! re-checks raw strings; `evaluate` is pure and cheap enough to run on every intake request.

pub mod duration;
mod error;
mod explain;
mod matching;
mod model;
mod parse;
mod parse_rule;
mod raw;
#[cfg(test)]
mod tests_eval;
#[cfg(test)]
mod tests_oncall;
#[cfg(test)]
mod tests_parse;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use error::PolicyError;
pub use explain::{Explanation, RuleCheck};
pub use matching::Mismatch;
pub use model::{
    ClientSpec, DEFAULT_MAX_PENDING, Defaults, EscalationStage, Glob, MatchInput, NoMatch, Oncall,
    Policy, Role, Rule, RuleDecision, RuleMatch, Severity, Shift, format_instant,
};

/// What the policy decided for one request.
#[derive(Debug, Clone)]
pub struct Evaluation<'p> {
    /// `None` when nothing matched.
    pub rule: Option<&'p Rule>,
    /// The rule's name, or `"default"` when nothing matched.
    pub rule_name: String,
    /// `on_no_match` when nothing matched (`Require` or `Deny`, never `Approve`).
    pub decision: RuleDecision,
    /// The rule's approvers; empty means any Slack user (and always for no-match).
    pub approvers: Vec<String>,
    pub min_approvals: u32,
    /// Rule channel, else `defaults.channel`.
    pub channel: Option<String>,
    /// Caps the request's `ttl_seconds`, and is the ttl when the request gives none.
    pub max_ttl: Duration,
    pub grant_ttl: Duration,
    /// The rule's `max_window`: caps an access window; `None` refuses one.
    pub max_window: Option<Duration>,
    pub reason_required: bool,
    pub deny_reason_required: bool,
    pub allow_self_approval: bool,
}

impl Policy {
    pub fn parse(src: &str) -> Result<Policy, PolicyError> {
        parse::parse(src)
    }

    /// Reads and parses `path`; every error names the file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let src = std::fs::read_to_string(path).map_err(|error| PolicyError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(&src).map_err(|e| e.with_path(path.to_owned()))
    }

    /// The policy used when `GREENLIGHT_POLICY` is unset: every request needs one approval
    /// from any Slack user other than the requester, and one local all-powerful client.
    pub fn builtin(channel: Option<&str>) -> Policy {
        Policy {
            defaults: Defaults {
                channel: channel.map(str::to_owned),
                ..Defaults::default()
            },
            clients: vec![ClientSpec {
                id: "local".into(),
                secret_env: "GREENLIGHT_CLIENT_SECRET".into(),
                roles: vec![Role::Requester, Role::Admin, Role::Auditor],
                callback_hosts: vec!["localhost".into(), "127.0.0.1".into()],
                allow_insecure_callbacks: true,
                max_pending: DEFAULT_MAX_PENDING,
            }],
            oncall: Vec::new(),
            rules: Vec::new(),
        }
    }

    pub fn client(&self, id: &str) -> Option<&ClientSpec> {
        self.clients.iter().find(|c| c.id == id)
    }

    pub fn oncall(&self, name: &str) -> Option<&Oncall> {
        self.oncall.iter().find(|o| o.name == name)
    }

    /// The first matching rule decides; with none, `defaults.on_no_match` does.
    pub fn evaluate<'p>(&'p self, input: &MatchInput<'_>) -> Evaluation<'p> {
        self.resolve(self.rules.iter().find(|r| r.matcher.matches(input)))
    }

    /// Like `evaluate`, also saying why each rule before the winner did not match; on-call
    /// rotations named by the rule's escalation are resolved at the current time.
    pub fn explain(&self, input: &MatchInput<'_>) -> Explanation<'_> {
        self.explain_at(input, Utc::now())
    }

    /// [`Policy::explain`] with on-call rotations resolved at `now`.
    pub fn explain_at(&self, input: &MatchInput<'_>, now: DateTime<Utc>) -> Explanation<'_> {
        let mut checks = Vec::new();
        let mut matched = None;
        for rule in &self.rules {
            let result = rule.matcher.check(input);
            let hit = result.is_ok();
            checks.push(RuleCheck { rule, result });
            if hit {
                matched = Some(rule);
                break;
            }
        }
        let not_reached = self.rules.len() - checks.len();
        Explanation {
            checks,
            evaluation: self.resolve(matched),
            not_reached,
            oncall: &self.oncall,
            now,
        }
    }

    /// The rules (by name; `default` for requests that no rule matches, when those need
    /// approval) that ask people to approve but name no Slack channel, neither themselves
    /// nor in `[defaults]`: their approval messages go to `SLACK_DEFAULT_CHANNEL` or nowhere.
    pub fn rules_without_channel(&self) -> Vec<&str> {
        if self.defaults.channel.is_some() {
            return Vec::new();
        }
        let mut names: Vec<&str> = self
            .rules
            .iter()
            .filter(|r| r.decision == RuleDecision::Require && r.channel.is_none())
            .map(|r| r.name.as_str())
            .collect();
        if RuleDecision::from(self.defaults.on_no_match) == RuleDecision::Require {
            names.push("default");
        }
        names
    }

    fn resolve<'p>(&'p self, rule: Option<&'p Rule>) -> Evaluation<'p> {
        let d = &self.defaults;
        match rule {
            Some(r) => Evaluation {
                rule: Some(r),
                rule_name: r.name.clone(),
                decision: r.decision,
                approvers: r.approvers.clone(),
                min_approvals: r.min_approvals,
                channel: r.channel.clone().or_else(|| d.channel.clone()),
                max_ttl: r.ttl.unwrap_or(d.ttl),
                grant_ttl: r.grant_ttl.unwrap_or(d.grant_ttl),
                max_window: r.max_window,
                reason_required: r.reason_required,
                deny_reason_required: r.deny_reason_required,
                allow_self_approval: r.allow_self_approval,
            },
            None => Evaluation {
                rule: None,
                rule_name: "default".into(),
                decision: d.on_no_match.into(),
                approvers: Vec::new(),
                min_approvals: 1,
                channel: d.channel.clone(),
                max_ttl: d.ttl,
                grant_ttl: d.grant_ttl,
                max_window: None,
                reason_required: false,
                deny_reason_required: false,
                allow_self_approval: false,
            },
        }
    }
}

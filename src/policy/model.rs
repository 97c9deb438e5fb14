//! The validated policy: plain types the rest of the service reads, built only by `parse.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use wildmatch::WildMatch;

/// A parsed and validated policy file.
#[derive(Debug, Clone)]
pub struct Policy {
    pub defaults: Defaults,
    pub clients: Vec<ClientSpec>,
    pub oncall: Vec<Oncall>,
    pub rules: Vec<Rule>,
}

/// The `[defaults]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    pub channel: Option<String>,
    pub ttl: Duration,
    pub grant_ttl: Duration,
    pub on_no_match: NoMatch,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            channel: None,
            ttl: Duration::from_secs(15 * 60),
            grant_ttl: Duration::from_secs(15 * 60),
            on_no_match: NoMatch::Require,
        }
    }
}

/// What happens to a request no rule matches. There is deliberately no `Approve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoMatch {
    Require,
    Deny,
}

impl From<NoMatch> for RuleDecision {
    fn from(n: NoMatch) -> Self {
        match n {
            NoMatch::Require => RuleDecision::Require,
            NoMatch::Deny => RuleDecision::Deny,
        }
    }
}

/// A `[[client]]`: an API allowed to submit actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSpec {
    pub id: String,
    /// Name of the environment variable holding the secret, never the secret itself.
    pub secret_env: String,
    pub roles: Vec<Role>,
    pub callback_hosts: Vec<String>,
    pub allow_insecure_callbacks: bool,
    /// How many of its actions may be pending at once; a create beyond it is refused.
    pub max_pending: u32,
}

/// A client's `max_pending` when the policy does not set one.
pub const DEFAULT_MAX_PENDING: u32 = 1000;

impl ClientSpec {
    pub fn has_role(&self, r: Role) -> bool {
        self.roles.contains(&r)
    }
}

/// A request's `callback_url` is checked against the client that sent it.
impl crate::domain::CallbackRules for ClientSpec {
    fn callback_hosts(&self) -> &[String] {
        &self.callback_hosts
    }

    fn allow_insecure_callbacks(&self) -> bool {
        self.allow_insecure_callbacks
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Requester,
    Admin,
    Auditor,
}

/// An `[[oncall]]` rotation: `rotation[i]` is on call during the i-th `shift` after `start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oncall {
    pub name: String,
    pub rotation: Vec<String>,
    pub shift: Duration,
    pub start: DateTime<Utc>,
}

impl Oncall {
    /// Who is on call at `t`; times before `start` count backwards through the rotation.
    pub fn on_call_at(&self, t: DateTime<Utc>) -> &str {
        self.shift_at(t).person
    }

    /// The shift containing `t`: who holds it, when it began, when it hands over and to whom.
    ///
    /// Shifts tile the whole timeline from `start` in both directions, so `t` before `start`
    /// falls in an earlier shift, held by whoever precedes in the rotation.
    pub fn shift_at(&self, t: DateTime<Utc>) -> Shift<'_> {
        // Whole nanoseconds in i128: any chrono instant minus any other fits (chrono spans
        // about 2^73 ns), and so does a `Duration` shift (at most 2^94 ns). div_euclid rounds
        // towards negative infinity, so the shift just before `start` has number -1.
        let shift = i128::try_from(self.shift.as_nanos())
            .unwrap_or(i128::MAX)
            .max(1);
        let number = nanos(t - self.start).div_euclid(shift);
        let len = i128::try_from(self.rotation.len())
            .unwrap_or(i128::MAX)
            .max(1);
        let person = |n: i128| {
            // rem_euclid is in 0..len, so never negative and always a valid index.
            let idx = usize::try_from(n.rem_euclid(len)).unwrap_or(0);
            self.rotation.get(idx).map_or("", String::as_str)
        };
        Shift {
            person: person(number),
            started: self.offset(number * shift),
            ends: self.offset((number + 1) * shift),
            next_person: person(number + 1),
        }
    }

    /// `start + ns`, clamped to chrono's range: only a shift straddling year ±262143
    /// reaches the clamp, where `started`/`ends` would not be representable at all.
    fn offset(&self, ns: i128) -> DateTime<Utc> {
        let secs = i64::try_from(ns.div_euclid(NANOS_PER_SEC));
        let sub = u32::try_from(ns.rem_euclid(NANOS_PER_SEC)).unwrap_or(0);
        secs.ok()
            .and_then(|s| TimeDelta::new(s, sub))
            .and_then(|d| self.start.checked_add_signed(d))
            .unwrap_or(if ns < 0 {
                DateTime::<Utc>::MIN_UTC
            } else {
                DateTime::<Utc>::MAX_UTC
            })
    }
}

const NANOS_PER_SEC: i128 = 1_000_000_000;

fn nanos(d: TimeDelta) -> i128 {
    i128::from(d.num_seconds()) * NANOS_PER_SEC + i128::from(d.subsec_nanos())
}

/// One turn of an on-call rotation, as returned by [`Oncall::shift_at`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shift<'a> {
    pub person: &'a str,
    /// The hand-over that began this shift (inclusive).
    pub started: DateTime<Utc>,
    /// The next hand-over (exclusive): `started + shift`.
    pub ends: DateTime<Utc>,
    /// Who takes over at `ends` (the same person in a rotation of one).
    pub next_person: &'a str,
}

/// An instant as the policy file writes it: RFC 3339 in UTC, fractions only when present.
pub fn format_instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A `[[rule]]`, in file order; the first one whose `matcher` accepts a request decides.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub matcher: RuleMatch,
    pub decision: RuleDecision,
    /// Slack user ids, `@handle` / `S…` user groups, or emails. Empty means any Slack user.
    pub approvers: Vec<String>,
    pub min_approvals: u32,
    pub channel: Option<String>,
    pub ttl: Option<Duration>,
    pub grant_ttl: Option<Duration>,
    /// The longest access window this rule approves; `None` refuses windows.
    pub max_window: Option<Duration>,
    pub deny_reason_required: bool,
    pub reason_required: bool,
    pub allow_self_approval: bool,
    pub remind_every: Option<Duration>,
    pub severity: Severity,
    pub escalate: Vec<EscalationStage>,
    /// 1-based line of the `[[rule]]` header, for messages.
    pub line: usize,
}

/// The `match` table of a rule. Every absent criterion matches everything.
#[derive(Debug, Clone, Default)]
pub struct RuleMatch {
    pub action: Option<Glob>,
    pub resource: Option<Glob>,
    /// The request's client id must be one of these.
    pub client: Option<Vec<String>>,
    /// Each key must be present in the request context with an equal value.
    pub context: BTreeMap<String, serde_json::Value>,
}

/// A compiled glob: `*` is any run of characters (including `/` and `.`), `?` is one character.
#[derive(Debug, Clone)]
pub struct Glob {
    pattern: String,
    compiled: WildMatch,
}

impl Glob {
    pub fn new(pattern: &str) -> Self {
        Glob {
            pattern: pattern.to_owned(),
            compiled: WildMatch::new(pattern),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    pub fn matches(&self, s: &str) -> bool {
        self.compiled.matches(s)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleDecision {
    Approve,
    Deny,
    Require,
}

impl fmt::Display for RuleDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuleDecision::Approve => "approve",
            RuleDecision::Deny => "deny",
            RuleDecision::Require => "require",
        })
    }
}

/// PagerDuty Events v2 severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Critical,
    Error,
    Warning,
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}

/// One `escalate` entry: fires `after` the request was created if it is still pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationStage {
    pub after: Duration,
    /// Slack users/groups, or `oncall:NAME` for whoever is on call in that rotation.
    pub notify: Vec<String>,
    pub pagerduty: bool,
    /// An https URL (checked at load).
    pub webhook: Option<String>,
}

/// The parts of a request the policy looks at.
#[derive(Debug, Clone, Copy)]
pub struct MatchInput<'a> {
    pub action: &'a str,
    pub resource: &'a str,
    pub client: &'a str,
    pub context: &'a serde_json::Map<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn on_call_rotates_every_shift_and_backwards_before_start() {
        let o = Oncall {
            name: "dba".into(),
            rotation: vec!["A".into(), "B".into(), "C".into()],
            shift: std::time::Duration::from_secs(7 * 86400),
            start: at("2026-01-05T09:00:00Z"),
        };
        let week = TimeDelta::days(7);
        let ns = TimeDelta::nanoseconds(1);
        assert_eq!(o.on_call_at(o.start), "A");
        assert_eq!(
            o.on_call_at(o.start + week - ns),
            "A",
            "last instant of the first shift"
        );
        assert_eq!(
            o.on_call_at(o.start + week),
            "B",
            "handover happens exactly at the boundary"
        );
        assert_eq!(o.on_call_at(o.start + week * 2), "C");
        assert_eq!(o.on_call_at(o.start + week * 3), "A", "wraps around");
        assert_eq!(
            o.on_call_at(o.start + week * 700 + TimeDelta::hours(5)),
            "B",
            "700 shifts later: 700 mod 3 = 1"
        );
        assert_eq!(
            o.on_call_at(o.start - ns),
            "C",
            "just before start is the previous shift"
        );
        assert_eq!(o.on_call_at(o.start - week), "C");
        assert_eq!(o.on_call_at(o.start - week - ns), "B");
        assert_eq!(o.on_call_at(o.start - week * 3), "A");
        assert_eq!(
            o.on_call_at(at("2020-01-01T00:00:00Z")),
            o.on_call_at(at("2020-01-01T00:00:00Z") + week * 3)
        );
    }
}

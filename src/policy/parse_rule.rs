//! Validation of `[[rule]]` tables: decisions, approver counts, matchers and escalation stages.

use std::collections::{BTreeMap, HashSet};

use toml::Spanned;

use super::duration;
use super::error::{PolicyError, line_of};
use super::model::*;
use super::parse::{Cx, parse_enum};
use super::raw::*;

/// An https URL with a host; plain http only to a loopback host, for development.
fn is_https(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return false,
    };
    url.scheme() == "https" || (url.scheme() == "http" && loopback)
}

/// The approver forms Greenlight can resolve: a Slack user id (`U…`, `W…`), a user group
/// (`@handle` or its id `S…`) or an email. Anything else (`"bob"`) would never match a
/// clicker, so the rule could never be approved.
fn is_approver(a: &str) -> bool {
    let slack_id = |prefixes: &[char]| {
        a.len() >= 2
            && a.starts_with(prefixes)
            && a.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    };
    let no_space = !a.contains(char::is_whitespace);
    let handle = a
        .strip_prefix('@')
        .is_some_and(|h| !h.is_empty() && !h.contains('@'));
    let email = a
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    no_space && (slack_id(&['U', 'W']) || slack_id(&['S']) || handle || email)
}

/// Slack user ids can be counted; groups (`@handle`, `S…`) and emails can't, until resolved.
fn is_countable_user(approver: &str) -> bool {
    !(approver.starts_with('@') || approver.starts_with('S') || approver.contains('@'))
}

impl Cx<'_> {
    pub(super) fn rule(
        &self,
        r: Spanned<RawRule>,
        oncall: &HashSet<&str>,
    ) -> Result<Rule, PolicyError> {
        let line = line_of(self.src, r.span().start);
        let r = r.into_inner();
        let name = self.non_empty(&r.name, "rule", "name")?;
        let what = format!("rule {name:?}");
        if name == "default" {
            return Err(self.err(
                r.name.span(),
                &what,
                "name",
                "\"default\" is reserved for requests that no rule matches",
            ));
        }
        let decision: RuleDecision = parse_enum(r.decision.get_ref()).ok_or_else(|| {
            self.err(
                r.decision.span(),
                &what,
                "decision",
                format!(
                    "unknown value {:?}, expected approve, deny or require",
                    r.decision.get_ref()
                ),
            )
        })?;
        let mut approvers = Vec::with_capacity(r.approvers.len());
        for a in &r.approvers {
            let approver = self.non_empty(a, &what, "approvers")?;
            if !is_approver(&approver) {
                return Err(self.err(
                    a.span(),
                    &what,
                    "approvers",
                    format!(
                        "{approver:?} is not a Slack user id (U…, W…), a user group (@handle or S…) or an email"
                    ),
                ));
            }
            approvers.push(approver);
        }
        let min_approvals = match &r.min_approvals {
            None => 1,
            Some(v) => match u32::try_from(*v.get_ref()) {
                Ok(n) if n >= 1 => n,
                _ => return Err(self.err(v.span(), &what, "min_approvals", "must be at least 1")),
            },
        };
        if decision == RuleDecision::Require
            && !approvers.is_empty()
            && approvers.iter().all(|a| is_countable_user(a))
        {
            let distinct = approvers.iter().collect::<HashSet<_>>().len();
            if min_approvals as usize > distinct {
                let span = r
                    .min_approvals
                    .as_ref()
                    .map_or(r.decision.span(), |v| v.span());
                return Err(self.err(
                    span,
                    &what,
                    "min_approvals",
                    format!(
                        "{min_approvals} approvals required but only {distinct} approver(s) listed"
                    ),
                ));
            }
        }
        let severity = match &r.severity {
            None => Severity::default(),
            Some(v) => parse_enum(v.get_ref()).ok_or_else(|| {
                self.err(
                    v.span(),
                    &what,
                    "severity",
                    format!(
                        "unknown value {:?}, expected critical, error, warning or info",
                        v.get_ref()
                    ),
                )
            })?,
        };
        Ok(Rule {
            matcher: self.matcher(r.matcher, &what)?,
            decision,
            approvers,
            min_approvals,
            channel: r.channel,
            ttl: self.opt_duration(r.ttl.as_ref(), &what, "ttl")?,
            grant_ttl: self.opt_duration(r.grant_ttl.as_ref(), &what, "grant_ttl")?,
            max_window: self.opt_duration(r.max_window.as_ref(), &what, "max_window")?,
            deny_reason_required: r.deny_reason_required,
            reason_required: r.reason_required,
            allow_self_approval: r.allow_self_approval,
            remind_every: self.opt_duration(r.remind_every.as_ref(), &what, "remind_every")?,
            severity,
            escalate: self.escalate(&r.escalate, &what, oncall)?,
            line,
            name,
        })
    }

    fn matcher(&self, m: Option<RawMatch>, what: &str) -> Result<RuleMatch, PolicyError> {
        let Some(m) = m else {
            return Ok(RuleMatch::default());
        };
        if let Some(c) = &m.client
            && c.get_ref().is_empty()
        {
            return Err(self.err(
                c.span(),
                what,
                "match.client",
                "empty list can never match; omit it to match every client",
            ));
        }
        let mut context = BTreeMap::new();
        for (key, v) in m.context {
            let json = match v.get_ref() {
                toml::Value::String(s) => serde_json::Value::from(s.as_str()),
                toml::Value::Integer(i) => serde_json::Value::from(*i),
                toml::Value::Boolean(b) => serde_json::Value::from(*b),
                toml::Value::Float(f) if f.is_finite() => serde_json::Value::from(*f),
                _ => {
                    return Err(self.err(
                        v.span(),
                        what,
                        &format!("match.context.{key}"),
                        "must be a string, number or boolean",
                    ));
                }
            };
            context.insert(key, json);
        }
        Ok(RuleMatch {
            action: m.action.as_deref().map(Glob::new),
            resource: m.resource.as_deref().map(Glob::new),
            client: m.client.map(Spanned::into_inner),
            context,
        })
    }

    fn escalate(
        &self,
        raw: &[Spanned<RawStage>],
        what: &str,
        oncall: &HashSet<&str>,
    ) -> Result<Vec<EscalationStage>, PolicyError> {
        let mut out: Vec<EscalationStage> = Vec::with_capacity(raw.len());
        for (i, s) in raw.iter().enumerate() {
            let field = |f: &str| format!("escalate[{i}].{f}");
            let s_ref = s.get_ref();
            let after = self.duration(&s_ref.after, what, &field("after"))?;
            if let Some(prev) = out.last()
                && after <= prev.after
            {
                let msg = format!(
                    "must be later than the previous stage ({}); stages run in order",
                    duration::format(prev.after)
                );
                return Err(self.err(s_ref.after.span(), what, &field("after"), msg));
            }
            let mut notify = Vec::with_capacity(s_ref.notify.len());
            for n in &s_ref.notify {
                let target = self.non_empty(n, what, &field("notify"))?;
                if let Some(rotation) = target.strip_prefix("oncall:")
                    && !oncall.contains(rotation)
                {
                    return Err(self.err(
                        n.span(),
                        what,
                        &field("notify"),
                        format!("no [[oncall]] named {rotation:?}"),
                    ));
                }
                notify.push(target);
            }
            let webhook = match &s_ref.webhook {
                Some(w) if !is_https(w.get_ref()) => {
                    return Err(self.err(
                        w.span(),
                        what,
                        &field("webhook"),
                        format!(
                            "{:?} must be an https:// URL (http:// only to a loopback host)",
                            w.get_ref()
                        ),
                    ));
                }
                w => w.as_ref().map(|w| w.get_ref().clone()),
            };
            if notify.is_empty() && !s_ref.pagerduty && webhook.is_none() {
                return Err(self.err(
                    s.span(),
                    what,
                    &format!("escalate[{i}]"),
                    "does nothing: set notify, pagerduty or webhook",
                ));
            }
            out.push(EscalationStage {
                after,
                notify,
                pagerduty: s_ref.pagerduty,
                webhook,
            });
        }
        Ok(out)
    }
}

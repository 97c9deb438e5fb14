//! Turns policy TOML into a validated [`Policy`], naming the line and field of every problem.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::de::value::{Error as ValueError, StrDeserializer};
use toml::Spanned;

use super::duration;
use super::error::{PolicyError, line_of};
use super::model::*;
use super::raw::*;

/// Every semantic problem is reported, not only the first: each client, rotation, rule and
/// the defaults are checked on their own. A TOML syntax or shape error stops at once (what
/// follows it cannot be read reliably).
pub(super) fn parse(src: &str) -> Result<Policy, PolicyError> {
    let raw: RawPolicy = toml::from_str(src).map_err(|e| toml_error(src, &e))?;
    let cx = Cx { src };
    let mut errors = Vec::new();
    // Rules may name any rotation written in the file, even one with errors of its own, so
    // that one mistake is not reported again at every rule that escalates to it.
    let names: HashSet<String> = raw
        .oncall
        .iter()
        .map(|o| o.get_ref().name.get_ref().clone())
        .collect();
    let names: HashSet<&str> = names.iter().map(String::as_str).collect();
    let oncall = cx.oncalls(raw.oncall, &mut errors);
    let clients = cx.clients(raw.client, &mut errors);
    let defaults = match raw.defaults {
        Some(d) => keep(&mut errors, cx.defaults(d.into_inner())).unwrap_or_default(),
        None => Defaults::default(),
    };
    let mut rules = Vec::with_capacity(raw.rule.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in raw.rule {
        let Some(rule) = keep(&mut errors, cx.rule(r, &names)) else {
            continue;
        };
        if let Some(first) = seen.insert(rule.name.clone(), rule.line) {
            errors.push(cx.err_line(
                rule.line,
                format!(
                    "rule {:?}: field `name`: duplicate rule name (first defined at line {first})",
                    rule.name
                ),
            ));
            continue;
        }
        rules.push(rule);
    }
    if let Some(e) = PolicyError::all(errors) {
        return Err(e);
    }
    Ok(Policy {
        defaults,
        clients,
        oncall,
        rules,
    })
}

/// The value, or `None` with its error added to `errors`.
fn keep<T>(errors: &mut Vec<PolicyError>, result: Result<T, PolicyError>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}

/// Reports a TOML syntax or shape error in the same `LINE: message` form as our own checks,
/// quoting the offending line since serde's messages do not always name the key.
fn toml_error(src: &str, e: &toml::de::Error) -> PolicyError {
    let message = e.message().trim().to_owned();
    let Some(span) = e.span() else {
        return PolicyError::Invalid {
            path: None,
            line: None,
            message,
        };
    };
    let line = line_of(src, span.start);
    let text = src.lines().nth(line - 1).unwrap_or("").trim();
    let message = if text.is_empty() || text.len() > 100 {
        message
    } else {
        format!("{message} (in `{text}`)")
    };
    PolicyError::at(src, span.start, message)
}

/// Parses one of our lowercase enums through its serde names, so the accepted spellings
/// are defined in one place (`model.rs`).
pub(super) fn parse_enum<T: DeserializeOwned>(s: &str) -> Option<T> {
    T::deserialize(StrDeserializer::<ValueError>::new(s)).ok()
}

/// Validation context: the source text, so spans can become line numbers in messages.
pub(super) struct Cx<'a> {
    pub(super) src: &'a str,
}

impl Cx<'_> {
    fn err_line(&self, line: usize, message: String) -> PolicyError {
        PolicyError::Invalid {
            path: None,
            line: Some(line),
            message,
        }
    }

    /// `what: field `field`: msg`, located at `span`.
    pub(super) fn err(
        &self,
        span: Range<usize>,
        what: &str,
        field: &str,
        msg: impl std::fmt::Display,
    ) -> PolicyError {
        PolicyError::at(
            self.src,
            span.start,
            format!("{what}: field `{field}`: {msg}"),
        )
    }

    pub(super) fn duration(
        &self,
        v: &Spanned<String>,
        what: &str,
        field: &str,
    ) -> Result<Duration, PolicyError> {
        duration::parse(v.get_ref()).map_err(|m| self.err(v.span(), what, field, m))
    }

    pub(super) fn opt_duration(
        &self,
        v: Option<&Spanned<String>>,
        what: &str,
        field: &str,
    ) -> Result<Option<Duration>, PolicyError> {
        v.map(|v| self.duration(v, what, field)).transpose()
    }

    pub(super) fn non_empty(
        &self,
        v: &Spanned<String>,
        what: &str,
        field: &str,
    ) -> Result<String, PolicyError> {
        if v.get_ref().trim().is_empty() {
            return Err(self.err(v.span(), what, field, "must not be empty"));
        }
        Ok(v.get_ref().clone())
    }

    fn defaults(&self, d: RawDefaults) -> Result<Defaults, PolicyError> {
        let what = "[defaults]";
        let base = Defaults::default();
        let on_no_match = match &d.on_no_match {
            None => base.on_no_match,
            Some(v) if v.get_ref() == "approve" => {
                return Err(self.err(
                    v.span(),
                    what,
                    "on_no_match",
                    "\"approve\" is not allowed: Greenlight never silently approves; use \"require\" or \"deny\"",
                ));
            }
            Some(v) => parse_enum(v.get_ref()).ok_or_else(|| {
                self.err(
                    v.span(),
                    what,
                    "on_no_match",
                    format!(
                        "unknown value {:?}, expected \"require\" or \"deny\"",
                        v.get_ref()
                    ),
                )
            })?,
        };
        Ok(Defaults {
            channel: d.channel,
            ttl: self
                .opt_duration(d.ttl.as_ref(), what, "ttl")?
                .unwrap_or(base.ttl),
            grant_ttl: self
                .opt_duration(d.grant_ttl.as_ref(), what, "grant_ttl")?
                .unwrap_or(base.grant_ttl),
            on_no_match,
        })
    }

    fn clients(
        &self,
        raw: Vec<Spanned<RawClient>>,
        errors: &mut Vec<PolicyError>,
    ) -> Vec<ClientSpec> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        raw.into_iter()
            .filter_map(|c| keep(errors, self.client(c.into_inner(), &mut seen)))
            .collect()
    }

    fn client(
        &self,
        c: RawClient,
        seen: &mut HashMap<String, usize>,
    ) -> Result<ClientSpec, PolicyError> {
        let id = self.non_empty(&c.id, "client", "id")?;
        let what = format!("client {id:?}");
        let line = line_of(self.src, c.id.span().start);
        if let Some(first) = seen.insert(id.clone(), line) {
            return Err(self.err(
                c.id.span(),
                &what,
                "id",
                format!("duplicate client id (first defined at line {first})"),
            ));
        }
        let secret_env = self.non_empty(&c.secret_env, &what, "secret_env")?;
        let roles = match c.roles {
            None => vec![Role::Requester],
            Some(list) if list.get_ref().is_empty() => {
                return Err(self.err(
                    list.span(),
                    &what,
                    "roles",
                    "must list at least one of requester, admin, auditor",
                ));
            }
            Some(list) => list
                .into_inner()
                .iter()
                .map(|r| {
                    parse_enum(r.get_ref()).ok_or_else(|| {
                        self.err(
                            r.span(),
                            &what,
                            "roles",
                            format!(
                                "unknown role {:?}, expected requester, admin or auditor",
                                r.get_ref()
                            ),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let max_pending = match c.max_pending {
            None => DEFAULT_MAX_PENDING,
            Some(n) => u32::try_from(*n.get_ref())
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    self.err(
                        n.span(),
                        &what,
                        "max_pending",
                        "must be a whole number from 1 to 4294967295",
                    )
                })?,
        };
        Ok(ClientSpec {
            id,
            secret_env,
            roles,
            callback_hosts: c.callback_hosts,
            allow_insecure_callbacks: c.allow_insecure_callbacks,
            max_pending,
        })
    }

    fn oncalls(&self, raw: Vec<Spanned<RawOncall>>, errors: &mut Vec<PolicyError>) -> Vec<Oncall> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        raw.into_iter()
            .filter_map(|o| keep(errors, self.oncall(o.into_inner(), &mut seen)))
            .collect()
    }

    fn oncall(
        &self,
        o: RawOncall,
        seen: &mut HashMap<String, usize>,
    ) -> Result<Oncall, PolicyError> {
        let name = self.non_empty(&o.name, "oncall", "name")?;
        let what = format!("oncall {name:?}");
        if let Some(first) = seen.insert(name.clone(), line_of(self.src, o.name.span().start)) {
            return Err(self.err(
                o.name.span(),
                &what,
                "name",
                format!("duplicate on-call name (first defined at line {first})"),
            ));
        }
        if o.rotation.get_ref().is_empty()
            || o.rotation.get_ref().iter().any(|u| u.trim().is_empty())
        {
            return Err(self.err(
                o.rotation.span(),
                &what,
                "rotation",
                "must list at least one Slack user, and no empty entries",
            ));
        }
        let start = DateTime::parse_from_rfc3339(o.start.get_ref())
            .map_err(|e| {
                self.err(
                    o.start.span(),
                    &what,
                    "start",
                    format!("{e}; expected RFC 3339 such as \"2026-01-05T09:00:00Z\""),
                )
            })?
            .with_timezone(&Utc);
        Ok(Oncall {
            name,
            shift: self.duration(&o.shift, &what, "shift")?,
            rotation: o.rotation.into_inner(),
            start,
        })
    }
}

//! The policy file exactly as written: serde structs that reject unknown fields and keep
//! spans, so `parse.rs` can report semantic errors with the line they come from.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub defaults: Option<Spanned<RawDefaults>>,
    #[serde(default)]
    pub client: Vec<Spanned<RawClient>>,
    #[serde(default)]
    pub oncall: Vec<Spanned<RawOncall>>,
    #[serde(default)]
    pub rule: Vec<Spanned<RawRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    pub channel: Option<String>,
    pub ttl: Option<Spanned<String>>,
    pub grant_ttl: Option<Spanned<String>>,
    pub on_no_match: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    pub id: Spanned<String>,
    pub secret_env: Spanned<String>,
    pub roles: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub callback_hosts: Vec<String>,
    #[serde(default)]
    pub allow_insecure_callbacks: bool,
    pub max_pending: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOncall {
    pub name: Spanned<String>,
    pub rotation: Spanned<Vec<String>>,
    pub shift: Spanned<String>,
    pub start: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub name: Spanned<String>,
    #[serde(rename = "match")]
    pub matcher: Option<RawMatch>,
    pub decision: Spanned<String>,
    #[serde(default)]
    pub approvers: Vec<Spanned<String>>,
    /// Signed so that `0` and `-1` get a clear message rather than a type error.
    pub min_approvals: Option<Spanned<i64>>,
    pub channel: Option<String>,
    pub ttl: Option<Spanned<String>>,
    pub grant_ttl: Option<Spanned<String>>,
    pub max_window: Option<Spanned<String>>,
    #[serde(default)]
    pub deny_reason_required: bool,
    #[serde(default)]
    pub reason_required: bool,
    #[serde(default)]
    pub allow_self_approval: bool,
    pub remind_every: Option<Spanned<String>>,
    pub severity: Option<Spanned<String>>,
    #[serde(default)]
    pub escalate: Vec<Spanned<RawStage>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatch {
    pub action: Option<String>,
    pub resource: Option<String>,
    pub client: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub context: BTreeMap<String, Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStage {
    pub after: Spanned<String>,
    #[serde(default)]
    pub notify: Vec<Spanned<String>>,
    #[serde(default)]
    pub pagerduty: bool,
    pub webhook: Option<Spanned<String>>,
}

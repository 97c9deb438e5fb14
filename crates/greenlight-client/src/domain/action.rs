//! The action object of the HTTP API and its one-way status transition.

use super::{Binding, Window};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// `act_` followed by a ULID (26 Crockford base32 characters).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(
        value_type = String,
        pattern = "^act_[0-9A-HJKMNP-TV-Z]{26}$",
        example = "act_01JD8Y3M6QW9T3V7K2X5N4B1C0"
    )
)]
pub struct ActionId(String);

impl ActionId {
    pub fn generate() -> Self {
        Self(format!("act_{}", ulid::Ulid::new()))
    }

    /// A new id whose ULID ends in the bits of `shard` (of `shards`, a power of two), so a
    /// store that spreads actions over shards can choose the shard before the id exists.
    pub fn generate_in_shard(shard: u16, shards: u16) -> Self {
        debug_assert!(shards.is_power_of_two() && shard < shards);
        let mask = u128::from(shards - 1);
        let random = ulid::Ulid::new().0 & !mask;
        Self(format!(
            "act_{}",
            ulid::Ulid(random | (u128::from(shard) & mask))
        ))
    }

    /// The shard (of `shards`, a power of two) this id belongs to: its ULID's low bits.
    pub fn shard(&self, shards: u16) -> u16 {
        let ulid = ulid::Ulid::from_string(&self.0[4..]).expect("ids hold a canonical ULID");
        (ulid.0 & u128::from(shards - 1)) as u16
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
#[error("not an action id (expected `act_` followed by a ULID)")]
pub struct InvalidActionId;

impl FromStr for ActionId {
    type Err = InvalidActionId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ulid = s.strip_prefix("act_").ok_or(InvalidActionId)?;
        let parsed = ulid::Ulid::from_string(ulid).map_err(|_| InvalidActionId)?;
        // Canonical (upper-case) form, so one action has exactly one key.
        Ok(Self(format!("act_{parsed}")))
    }
}

impl fmt::Display for ActionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ActionId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ActionId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Approved,
    Denied,
    Expired,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Expired => "expired",
            Status::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The terminal statuses: where `pending` may go, once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Approved,
    Denied,
    Expired,
    Cancelled,
}

impl From<Outcome> for Status {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Approved => Status::Approved,
            Outcome::Denied => Status::Denied,
            Outcome::Expired => Status::Expired,
            Outcome::Cancelled => Status::Cancelled,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Requester {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The rule an action was created under, frozen into the action so a policy reload
/// never changes what a pending action needs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PolicySnapshot {
    pub rule: String,
    pub min_approvals: u32,
    /// Slack user ids, `@handle`/`S…` groups, emails; empty means anyone but the requester.
    pub approvers: Vec<String>,
    /// The Slack channel the approval message goes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default)]
    pub allow_self_approval: bool,
    #[serde(default)]
    pub deny_reason_required: bool,
    /// Escalation stages, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalate: Vec<StagePlan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remind_every_seconds: Option<u64>,
    /// PagerDuty severity for paging stages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// Lifetime of the grant an approval carries (the rule's `grant_ttl`).
    #[serde(default = "default_grant_ttl_seconds")]
    pub grant_ttl_seconds: u64,
}

/// The policy's default `grant_ttl` (15 minutes), for actions stored before grants.
fn default_grant_ttl_seconds() -> u64 {
    900
}

/// One escalation stage of a rule, frozen into the action at creation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StagePlan {
    pub after_seconds: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pagerduty: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
}

/// How far an unanswered action was escalated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Escalation {
    /// The last stage reached, from 1.
    pub stage: u32,
    #[serde(with = "rfc3339")]
    pub at: DateTime<Utc>,
    /// Some stage paged PagerDuty, so the incident is resolved at the decision.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paged: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum VoteKind {
    Approve,
    Deny,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Vote {
    pub user: String,
    pub vote: VoteKind,
    #[serde(with = "rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Grant {
    /// The signed JWT: a bearer token, shown only to the client that created the action
    /// (empty, and left out of the JSON, for anyone else: see [`Action::shown_to`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    #[serde(with = "rfc3339")]
    pub expires_at: DateTime<Utc>,
    pub action: String,
    pub resource: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Decision {
    pub outcome: Outcome,
    #[serde(with = "rfc3339")]
    pub decided_at: DateTime<Utc>,
    pub decided_by: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub by_policy: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Grant>,
}

/// Who or what made a decision.
#[derive(Clone, Debug, PartialEq)]
pub enum DecidedBy {
    /// An auto-decision by the named rule.
    Policy(String),
    /// People (Slack user ids, or the `by` of a break-glass decision).
    People(Vec<String>),
    /// The expiry timer.
    Timer,
    /// The creating client.
    Client(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Action {
    pub id: ActionId,
    pub status: Status,
    pub action: String,
    pub resource: String,
    pub requester: Requester,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub reason: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub context: serde_json::Map<String, serde_json::Value>,
    pub client: String,
    pub policy: PolicySnapshot,
    pub votes: Vec<Vote>,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "rfc3339")]
    pub expires_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<Escalation>,
    /// The one HTTP request a gate held for this action (see [`Binding`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<Binding>,
    /// Set when the request asked for an access window (`window_seconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub decision: Option<Decision>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("action is already {0}")]
pub struct AlreadyDecided(pub Status);

/// Why a vote changed nothing.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum VoteRejected {
    #[error("this action is already {0}")]
    Decided(Status),
    #[error("you already voted on this action")]
    AlreadyVoted,
}

impl Action {
    pub fn is_pending(&self) -> bool {
        self.status == Status::Pending
    }

    /// The action as client `client_id` may see it. A grant is a bearer token: whoever
    /// holds it can present it as the approval, so only the client that created the action
    /// gets the token; admins and auditors see the rest of the grant.
    pub fn shown_to(mut self, client_id: &str) -> Self {
        if self.client != client_id
            && let Some(grant) = self.decision.as_mut().and_then(|d| d.grant.as_mut())
        {
            grant.token.clear();
        }
        self
    }

    /// Moves a pending action to its one terminal status. A decided action never changes
    /// again: the store only accepts this change as a compare-and-set on the pending version.
    pub fn decide(
        &mut self,
        outcome: Outcome,
        by: DecidedBy,
        reason: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(), AlreadyDecided> {
        if !self.is_pending() {
            return Err(AlreadyDecided(self.status));
        }
        let (decided_by, by_policy) = match by {
            DecidedBy::Policy(rule) => (Vec::new(), Some(rule)),
            DecidedBy::People(people) => (people, None),
            DecidedBy::Timer => (Vec::new(), None),
            DecidedBy::Client(client) => (vec![client], None),
        };
        self.status = outcome.into();
        self.decision = Some(Decision {
            outcome,
            decided_at: now,
            decided_by,
            by_policy,
            reason,
            grant: None,
        });
        Ok(())
    }
}

impl Action {
    /// Records that stage `stage` (from 1) was reached, once: `false` when the action is
    /// no longer pending or already got that far.
    pub fn escalate(&mut self, stage: u32, now: DateTime<Utc>) -> bool {
        let reached = self.escalation.as_ref().map_or(0, |e| e.stage);
        if !self.is_pending() || stage <= reached {
            return false;
        }
        let paged = self.escalation.as_ref().is_some_and(|e| e.paged);
        self.escalation = Some(Escalation {
            stage,
            at: now,
            paged,
        });
        true
    }

    /// Records one person's vote. One deny denies; `min_approvals` distinct approvals
    /// approve. Who may vote at all is decided before this (approvers, self-approval).
    pub fn add_vote(
        &mut self,
        user: &str,
        vote: VoteKind,
        reason: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(), VoteRejected> {
        if !self.is_pending() {
            return Err(VoteRejected::Decided(self.status));
        }
        if self.votes.iter().any(|v| v.user == user) {
            return Err(VoteRejected::AlreadyVoted);
        }
        self.votes.push(Vote {
            user: user.to_owned(),
            vote,
            at: now,
        });
        let decided = match vote {
            VoteKind::Deny => Some((Outcome::Denied, vec![user.to_owned()])),
            VoteKind::Approve => {
                let approvers: Vec<String> = self
                    .votes
                    .iter()
                    .filter(|v| v.vote == VoteKind::Approve)
                    .map(|v| v.user.clone())
                    .collect();
                (approvers.len() >= self.policy.min_approvals.max(1) as usize)
                    .then_some((Outcome::Approved, approvers))
            }
        };
        if let Some((outcome, people)) = decided {
            let reason = reason.filter(|_| outcome == Outcome::Denied);
            self.decide(outcome, DecidedBy::People(people), reason, now)
                .expect("checked pending above");
        }
        Ok(())
    }
}

/// RFC 3339 UTC with second precision and a `Z`, as the API documents.
pub mod rfc3339 {
    use super::*;

    pub fn format(t: &DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_generated_in_a_shard_stay_in_it_through_parsing() {
        for shard in 0..16 {
            let id = ActionId::generate_in_shard(shard, 16);
            let parsed: ActionId = id.as_str().parse().unwrap();
            assert_eq!(parsed.shard(16), shard);
            assert_eq!(parsed, id);
        }
        assert_eq!(ActionId::generate().shard(1), 0);
    }

    fn pending() -> Action {
        let now = Utc::now();
        Action {
            id: ActionId::generate(),
            status: Status::Pending,
            action: "db.drop_table".into(),
            resource: "postgres://prod/users".into(),
            requester: Requester {
                id: "u-1".into(),
                email: None,
                slack_user_id: None,
                name: None,
            },
            reason: None,
            context: Default::default(),
            client: "payments-api".into(),
            policy: PolicySnapshot {
                rule: "default".into(),
                min_approvals: 2,
                ..Default::default()
            },
            votes: vec![],
            created_at: now,
            expires_at: now,
            callback_url: None,
            escalation: None,
            binding: None,
            window: None,
            decision: None,
        }
    }

    #[test]
    fn ids_are_act_plus_ulid_and_round_trip() {
        let id = ActionId::generate();
        assert!(id.as_str().starts_with("act_"));
        assert_eq!(id.as_str().len(), 30);
        assert_eq!(id.as_str().parse::<ActionId>().unwrap(), id);
        assert!("act_nope".parse::<ActionId>().is_err());
        assert!("01JD8Y3M6QW9T3V7K2X5N4B1C0".parse::<ActionId>().is_err());
        let lower = id.as_str().to_lowercase();
        assert_eq!(lower.parse::<ActionId>().unwrap(), id);
    }

    #[test]
    fn pending_leaves_exactly_once() {
        let mut a = pending();
        let now = Utc::now();
        a.decide(
            Outcome::Denied,
            DecidedBy::People(vec!["U1".into()]),
            Some("no".into()),
            now,
        )
        .unwrap();
        assert_eq!(a.status, Status::Denied);
        let err = a
            .decide(Outcome::Approved, DecidedBy::Timer, None, now)
            .unwrap_err();
        assert_eq!(err, AlreadyDecided(Status::Denied));
        assert_eq!(a.status, Status::Denied);
        assert_eq!(a.decision.as_ref().unwrap().reason.as_deref(), Some("no"));
    }

    #[test]
    fn quorum_approves_and_one_deny_denies() {
        let now = Utc::now();
        let mut a = pending();
        a.add_vote("U1", VoteKind::Approve, None, now).unwrap();
        assert_eq!(a.status, Status::Pending);
        assert_eq!(
            a.add_vote("U1", VoteKind::Approve, None, now),
            Err(VoteRejected::AlreadyVoted)
        );
        a.add_vote("U2", VoteKind::Approve, None, now).unwrap();
        assert_eq!(a.status, Status::Approved);
        assert_eq!(a.decision.as_ref().unwrap().decided_by, vec!["U1", "U2"]);
        assert_eq!(
            a.add_vote("U3", VoteKind::Deny, None, now),
            Err(VoteRejected::Decided(Status::Approved))
        );
        assert_eq!(a.votes.len(), 2);

        let mut b = pending();
        b.add_vote("U1", VoteKind::Approve, None, now).unwrap();
        b.add_vote("U2", VoteKind::Deny, Some("not today".into()), now)
            .unwrap();
        assert_eq!(b.status, Status::Denied);
        let d = b.decision.unwrap();
        assert_eq!(d.decided_by, vec!["U2"]);
        assert_eq!(d.reason.as_deref(), Some("not today"));
    }

    #[test]
    fn serializes_like_the_spec() {
        let mut a = pending();
        a.decide(
            Outcome::Approved,
            DecidedBy::Policy("auto".into()),
            None,
            a.created_at,
        )
        .unwrap();
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["status"], "approved");
        assert_eq!(v["decision"]["outcome"], "approved");
        assert_eq!(v["decision"]["by_policy"], "auto");
        assert!(v["decision"]["reason"].is_null());
        assert!(v["created_at"].as_str().unwrap().ends_with('Z'));
        let back: Action = serde_json::from_value(v).unwrap();
        assert_eq!(back.status, Status::Approved);
    }
}

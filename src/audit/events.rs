//! The event catalogue: every kind of audit event, and a builder per event that records
//! what it carries (`details`), so call sites never assemble an entry by hand. How an event
//! becomes a hashed entry is `entry.rs`.

use crate::domain::{Action, ActionId, Status, VoteKind};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest error text kept in an entry's details (the rest is cut, marked with `…`).
const MAX_ERROR_CHARS: usize = 500;

/// What happened. The names are the documented `event` strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Requested,
    AutoDecided,
    MessagePosted,
    Vote,
    VoteRejected,
    Approved,
    Denied,
    Expired,
    Cancelled,
    Escalated,
    Reminded,
    CallbackSent,
    CallbackFailed,
    GrantVerified,
    AccessUsed,
    AccessEnded,
    SlackError,
    PolicyReloaded,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Requested => "requested",
            EventKind::AutoDecided => "auto_decided",
            EventKind::MessagePosted => "message_posted",
            EventKind::Vote => "vote",
            EventKind::VoteRejected => "vote_rejected",
            EventKind::Approved => "approved",
            EventKind::Denied => "denied",
            EventKind::Expired => "expired",
            EventKind::Cancelled => "cancelled",
            EventKind::Escalated => "escalated",
            EventKind::Reminded => "reminded",
            EventKind::CallbackSent => "callback_sent",
            EventKind::CallbackFailed => "callback_failed",
            EventKind::GrantVerified => "grant_verified",
            EventKind::AccessUsed => "access_used",
            EventKind::AccessEnded => "access_ended",
            EventKind::SlackError => "slack_error",
            EventKind::PolicyReloaded => "policy_reloaded",
        }
    }

    /// The event that records an action reaching `status` (none for `pending`).
    pub fn for_status(status: Status) -> Option<Self> {
        match status {
            Status::Pending => None,
            Status::Approved => Some(EventKind::Approved),
            Status::Denied => Some(EventKind::Denied),
            Status::Expired => Some(EventKind::Expired),
            Status::Cancelled => Some(EventKind::Cancelled),
        }
    }
}

/// Something to record: what, about which action, by whom, with what details. The time
/// is taken when it is built, before it waits for its turn to be appended.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    pub kind: EventKind,
    pub time: DateTime<Utc>,
    pub action_id: Option<String>,
    pub client: Option<String>,
    pub actor: Option<String>,
    pub details: Map<String, Value>,
}

/// Why a pending action changed, as far as the audit trail tells it.
#[derive(Clone, Copy, Debug)]
pub enum Origin<'a> {
    /// A Slack vote by an authorized approver.
    Vote {
        user: &'a str,
        vote: VoteKind,
        reason: Option<&'a str>,
    },
    /// `POST /v1/actions/{id}/decision` by an admin client, in the name of `by`.
    BreakGlass { client: &'a str, by: &'a str },
    /// The creating client (cancel).
    Client(&'a str),
    /// The expiry deadline (the timer, or a read that found it overdue).
    Timer,
}

/// What decided an action, for the metrics: the origin of its last change.
impl From<&Origin<'_>> for crate::metrics::By {
    fn from(origin: &Origin<'_>) -> Self {
        use crate::metrics::By;
        match origin {
            Origin::Vote { .. } => By::Slack,
            Origin::BreakGlass { .. } => By::Admin,
            Origin::Client(_) => By::Cancel,
            Origin::Timer => By::Timer,
        }
    }
}

impl AuditEvent {
    pub fn new(kind: EventKind) -> Self {
        Self {
            kind,
            time: Utc::now(),
            action_id: None,
            client: None,
            actor: None,
            details: Map::new(),
        }
    }

    /// An event about `action`: its id and its client.
    pub fn about(kind: EventKind, action: &Action) -> Self {
        Self::new(kind).action_id(&action.id).client(&action.client)
    }

    pub fn action_id(mut self, id: &ActionId) -> Self {
        self.action_id = Some(id.to_string());
        self
    }

    pub fn client(mut self, client: &str) -> Self {
        self.client = Some(client.to_owned());
        self
    }

    pub fn actor(mut self, actor: &str) -> Self {
        self.actor = Some(actor.to_owned());
        self
    }

    /// Adds `key` to the details (a `null` value is left out).
    pub fn detail(mut self, key: &str, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value).expect("audit details serialize");
        if !value.is_null() {
            self.details.insert(key.to_owned(), value);
        }
        self
    }

    /// A new action was stored (pending, or already decided by the policy).
    pub fn requested(action: &Action) -> Self {
        Self::about(EventKind::Requested, action)
            .actor(&action.requester.id)
            .detail("action", &action.action)
            .detail("resource", &action.resource)
            .detail("requester", &action.requester)
            .detail("reason", &action.reason)
            .detail("rule", &action.policy.rule)
            .detail("min_approvals", action.policy.min_approvals)
            .detail("approvers", &action.policy.approvers)
            .detail(
                "expires_at",
                crate::domain::rfc3339::format(&action.expires_at),
            )
    }

    /// The events of an action created already decided: `auto_decided`, then the
    /// decision itself, both by `policy:{rule}`.
    pub fn auto_decided(action: &Action) -> Vec<Self> {
        let Some(decision) = &action.decision else {
            return Vec::new();
        };
        let actor = format!("policy:{}", action.policy.rule);
        let mut events = vec![
            Self::about(EventKind::AutoDecided, action)
                .actor(&actor)
                .detail("outcome", decision.outcome)
                .detail("rule", &action.policy.rule),
        ];
        events.extend(Self::decided(action, &actor, "policy"));
        events
    }

    /// `approved`, `denied`, `expired` or `cancelled`, by `actor`; `via` says through
    /// what (`policy`, `slack`, `break_glass`, `client`, `timer`).
    fn decided(action: &Action, actor: &str, via: &str) -> Option<Self> {
        let kind = EventKind::for_status(action.status)?;
        let decision = action.decision.as_ref()?;
        Some(
            Self::about(kind, action)
                .actor(actor)
                .detail("via", via)
                .detail("decided_by", &decision.decided_by)
                .detail("by_policy", &decision.by_policy)
                .detail("reason", &decision.reason)
                .detail(
                    "decided_at",
                    crate::domain::rfc3339::format(&decision.decided_at),
                )
                .detail(
                    "grant_expires_at",
                    decision
                        .grant
                        .as_ref()
                        .map(|g| crate::domain::rfc3339::format(&g.expires_at)),
                ),
        )
    }

    /// The events of a successful change of a pending action: the vote, if it was one,
    /// then the decision, if the change decided it.
    pub fn changed(action: &Action, origin: &Origin<'_>) -> Vec<Self> {
        let mut events = Vec::new();
        if let Origin::Vote { user, vote, reason } = origin {
            events.push(
                Self::about(EventKind::Vote, action)
                    .actor(user)
                    .detail("vote", vote)
                    .detail("reason", reason),
            );
        }
        let decided = match origin {
            Origin::Vote { user, .. } => Self::decided(action, user, "slack"),
            Origin::BreakGlass { client, by } => Self::decided(action, by, "break_glass")
                .map(|e| e.detail("break_glass", true).detail("admin_client", client)),
            Origin::Client(client) => Self::decided(action, client, "client"),
            Origin::Timer => Self::decided(action, "timer", "timer"),
        };
        events.extend(decided);
        events
    }

    /// A vote that changed nothing, and the reason the voter was told.
    pub fn vote_rejected(action: &Action, user: &str, why: &str) -> Self {
        Self::about(EventKind::VoteRejected, action)
            .actor(user)
            .detail("why", why)
            .detail("status", action.status)
    }

    /// A vote from a Slack workspace that is not the bot's (or sent before the bot's
    /// workspace was known): refused before the action was even read, so no status.
    pub fn vote_from_elsewhere(
        action_id: &ActionId,
        user: &str,
        team: Option<&str>,
        why: &str,
    ) -> Self {
        Self::new(EventKind::VoteRejected)
            .action_id(action_id)
            .actor(user)
            .detail("why", why)
            .detail("team", team)
    }

    /// The approval message was posted in Slack.
    pub fn message_posted(action: &Action, channel: &str, ts: &str) -> Self {
        Self::about(EventKind::MessagePosted, action)
            .detail("channel", channel)
            .detail("ts", ts)
    }

    /// Escalation stage `stage` was reached and is being notified.
    pub fn escalated(action: &Action, stage: u32, notify: &[String], targets: &[String]) -> Self {
        Self::about(EventKind::Escalated, action)
            .actor("timer")
            .detail("stage", stage)
            .detail("notify", notify)
            .detail("targets", targets)
    }

    /// The approvers were reminded in the message's thread.
    pub fn reminded(action: &Action) -> Self {
        Self::about(EventKind::Reminded, action).actor("timer")
    }

    /// The decision callback was delivered.
    pub fn callback_sent(action: &Action, url: &str) -> Self {
        Self::about(EventKind::CallbackSent, action)
            .detail("url", url)
            .detail("status", action.status)
    }

    /// A callback attempt failed; `retry_at` when another attempt is scheduled.
    pub fn callback_failed(
        action: &Action,
        url: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Self {
        Self::about(EventKind::CallbackFailed, action)
            .detail("url", url)
            .detail("error", truncate(error))
            .detail("retrying", retry_at.is_some())
            .detail(
                "retry_at",
                retry_at.map(|t| crate::domain::rfc3339::format(&t)),
            )
    }

    /// A Slack Web API call about `action` failed and was given up on.
    pub fn slack_error(action: &Action, call: &str, error: &str) -> Self {
        Self::about(EventKind::SlackError, action)
            .detail("call", call)
            .detail("error", truncate(error))
    }

    /// `POST /v1/grants/verify` answered. `client` is the client that asked; `action_id`
    /// the action the token names, when it could be read; `reason` why it is invalid.
    pub fn grant_verified(
        client: &str,
        action_id: Option<&ActionId>,
        valid: bool,
        reason: Option<&str>,
        consumed: bool,
    ) -> Self {
        let mut event = Self::new(EventKind::GrantVerified)
            .client(client)
            .actor(client)
            .detail("valid", valid)
            .detail("reason", reason)
            .detail("consumed", consumed);
        event.action_id = action_id.map(ToString::to_string);
        event
    }

    /// An access window's grant was used (`POST /v1/grants/verify` with `use`) by
    /// `caller` for a concrete action and resource within its scope.
    pub fn access_used(
        action_id: &ActionId,
        caller: &str,
        requester: &str,
        action: &str,
        resource: &str,
        uses: u64,
    ) -> Self {
        Self::new(EventKind::AccessUsed)
            .action_id(action_id)
            .client(caller)
            .actor(caller)
            .detail("requester", requester)
            .detail("action", action)
            .detail("resource", resource)
            .detail("uses", uses)
    }

    /// An access window ended (`expired` at its `ends_at`, or `revoked` by `actor`), after
    /// `uses` uses.
    pub fn access_ended(
        action: &Action,
        ended: crate::domain::WindowEnd,
        actor: &str,
        uses: u64,
    ) -> Self {
        Self::about(EventKind::AccessEnded, action)
            .actor(actor)
            .detail("ended", ended.as_str())
            .detail("uses", uses)
    }

    /// The policy file was reloaded (`SIGHUP`, or `POST /v1/admin/reload`, whose client
    /// the caller sets as the actor).
    pub fn policy_reloaded(file: Option<&str>, rules: usize, clients: usize) -> Self {
        Self::new(EventKind::PolicyReloaded)
            .actor("sighup")
            .detail("file", file)
            .detail("rules", rules)
            .detail("clients", clients)
    }
}

fn truncate(s: &str) -> String {
    match s.char_indices().nth(MAX_ERROR_CHARS) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

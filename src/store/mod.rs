//! Where actions, idempotency and replay keys, and timers live. Two real backends share
//! one contract: Redis (production, many replicas) and in-memory (one process, no setup).
//!
//! Every state change is a compare-and-set on the action's revision, and the store itself
//! publishes an action the moment it leaves `pending`, in the same atomic step: so a
//! decision is made, stored and announced exactly once.

mod at_rest;
mod audit;
mod memory;
mod redis;

pub use audit::parse_stream_id;

pub use memory::MemoryStore;
pub use redis::{Deployment, RedisStore, RedisStoreConfig};

use crate::domain::{Action, ActionId};
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use std::time::Duration;

/// How long a decided action stays readable (`GET /v1/actions/{id}`, `wait`).
pub const DECIDED_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long a `POST /v1/actions` `webhook-id` is remembered for idempotent repeats.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long any other request's `webhook-id` is remembered: twice the signature tolerance,
/// so a replay is either remembered or too old to verify.
pub const REPLAY_TTL: Duration = Duration::from_secs(2 * crate::signing::TOLERANCE_SECONDS as u64);

/// A counter that can be sealed once (an access window's uses and how it ended).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub count: u64,
    pub seal: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached or did not answer: callers fail closed (503).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data that does not parse: a bug or tampering, never the caller's fault.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// An action with the revision a compare-and-set must name.
#[derive(Clone, Debug)]
pub struct Versioned {
    pub action: Action,
    pub rev: u64,
    /// Where its Slack message is and what of it was announced (kept beside the action,
    /// outside its compare-and-set: it never changes what was decided).
    pub slack: Option<SlackState>,
}

/// The Slack message of an action and how far the thread and the requester were told.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SlackState {
    pub channel: String,
    pub ts: String,
    /// Votes already posted in the thread.
    pub votes_posted: usize,
    /// The outcome was posted in the thread.
    pub outcome_posted: bool,
    /// The requester was sent the outcome (or Slack does not know them).
    #[serde(default)]
    pub requester_told: bool,
}

/// A new action, keyed for idempotency by the sending client and its `webhook-id`.
pub struct NewAction<'a> {
    pub client: &'a str,
    pub idempotency_key: &'a str,
    /// SHA-256 (hex) of the request body, to tell a repeat from a conflicting reuse.
    pub body_hash: &'a str,
    pub action: &'a Action,
    pub json: &'a str,
    /// Timers to schedule with a pending action (none for an auto-decided one).
    pub timers: &'a [Timer],
    /// How many actions of this client may be pending at once, this one included.
    pub max_pending: u32,
}

#[derive(Debug, PartialEq)]
pub enum Created {
    New,
    /// This client already used this `webhook-id` for the given body and action.
    Existing {
        body_hash: String,
        action_id: ActionId,
    },
    /// Not stored: the client already has `max_pending` pending actions.
    TooManyPending,
}

/// What a timer does when it comes due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerKind {
    /// End the action at `expires_at`.
    Expire,
    /// Escalation stage N (from 1) of the action's rule.
    Escalate(u32),
    /// Nudge the approvers again (rescheduled every `remind_every`).
    Remind,
    /// Make the action's Slack message (and thread, and requester DM) match its state.
    /// An effect: scheduled with every change, runs on one replica at a time.
    SlackSync,
    /// Resolve the action's PagerDuty incident (an effect of deciding a paged action).
    PagerDutyResolve,
    /// POST the decided action to its `callback_url` (an effect of the decision).
    Callback,
    /// Record the end of an approved access window at its `ends_at`.
    WindowEnd,
    /// Show the end of an access window in its Slack message (an effect of the end, which
    /// leaves the decided action as it is, so the revision-keyed Slack sync cannot see it).
    SlackWindowEnd,
}

/// A durable deadline: one sorted-set member per (kind, action).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timer {
    pub kind: TimerKind,
    pub action_id: ActionId,
    pub due: DateTime<Utc>,
}

fn after(t: DateTime<Utc>, seconds: u64) -> DateTime<Utc> {
    t + chrono::Duration::seconds(seconds.min(i64::MAX as u64 / 1000) as i64)
}

impl Timer {
    pub fn new(kind: TimerKind, action_id: &ActionId, due: DateTime<Utc>) -> Self {
        Self {
            kind,
            action_id: action_id.clone(),
            due,
        }
    }

    pub fn expire(action: &Action) -> Self {
        Self::new(TimerKind::Expire, &action.id, action.expires_at)
    }

    /// The end of an approved access window (none for anything else).
    pub fn window_end(action: &Action) -> Option<Self> {
        let ends_at = action.window.as_ref()?.ends_at?;
        (action.status == crate::domain::Status::Approved)
            .then(|| Self::new(TimerKind::WindowEnd, &action.id, ends_at))
    }

    /// The deadlines of a pending action: expiry, each escalation stage, the first
    /// reminder. Stages and reminders due after the expiry never fire, so none is set.
    pub fn deadlines(action: &Action) -> Vec<Timer> {
        let mut timers = vec![Self::expire(action)];
        for (i, stage) in action.policy.escalate.iter().enumerate() {
            let due = after(action.created_at, stage.after_seconds);
            if due < action.expires_at {
                timers.push(Self::new(
                    TimerKind::Escalate(i as u32 + 1),
                    &action.id,
                    due,
                ));
            }
        }
        if let Some(every) = action.policy.remind_every_seconds {
            let due = after(action.created_at, every);
            if due < action.expires_at {
                timers.push(Self::new(TimerKind::Remind, &action.id, due));
            }
        }
        timers
    }

    pub fn member(&self) -> String {
        let id = &self.action_id;
        match self.kind {
            TimerKind::Expire => format!("expire:{id}"),
            TimerKind::Escalate(stage) => format!("escalate:{stage}:{id}"),
            TimerKind::Remind => format!("remind:{id}"),
            TimerKind::SlackSync => format!("slack:{id}"),
            TimerKind::PagerDutyResolve => format!("pdresolve:{id}"),
            TimerKind::Callback => format!("callback:{id}"),
            TimerKind::WindowEnd => format!("window:{id}"),
            TimerKind::SlackWindowEnd => format!("slackend:{id}"),
        }
    }

    pub fn due_ms(&self) -> i64 {
        self.due.timestamp_millis()
    }

    pub fn parse(member: &str, due_ms: i64) -> Option<Self> {
        let (kind, rest) = member.split_once(':')?;
        let (kind, id) = match kind {
            "expire" => (TimerKind::Expire, rest),
            "escalate" => {
                let (stage, id) = rest.split_once(':')?;
                (TimerKind::Escalate(stage.parse().ok()?), id)
            }
            "remind" => (TimerKind::Remind, rest),
            "slack" => (TimerKind::SlackSync, rest),
            "pdresolve" => (TimerKind::PagerDutyResolve, rest),
            "callback" => (TimerKind::Callback, rest),
            "window" => (TimerKind::WindowEnd, rest),
            "slackend" => (TimerKind::SlackWindowEnd, rest),
            _ => return None,
        };
        Some(Self {
            kind,
            action_id: id.parse().ok()?,
            due: Utc.timestamp_millis_opt(due_ms).single()?,
        })
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reachable and answering.
    async fn ping(&self) -> StoreResult<()>;

    /// Sets `key` in namespace `ns` for `ttl` unless it is set: `true` if this call set
    /// it, atomically across replicas (replay guards, single-use grants). A [`claim`]
    /// with an empty value: one mechanism for every write-once key.
    ///
    /// [`claim`]: Store::claim
    async fn set_once(&self, ns: &str, key: &str, ttl: Duration) -> StoreResult<bool> {
        Ok(self.claim(ns, key, "", ttl).await?.is_none())
    }

    /// Sets `key` in namespace `ns` to `value` for `ttl` unless it is set, atomically across
    /// replicas: `None` if this call set it, else the value that stands (which never
    /// changes until it expires). A `set_once` flag reads as an empty value.
    async fn claim(
        &self,
        ns: &str,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> StoreResult<Option<String>>;

    /// Whether `key` is set in namespace `ns` (and not expired).
    async fn is_set(&self, ns: &str, key: &str) -> StoreResult<bool>;

    /// The value a [`claim`](Store::claim) left on `key` in namespace `ns`, if it stands.
    async fn claimed(&self, ns: &str, key: &str) -> StoreResult<Option<String>>;

    /// Counts one more on the tally `key` of namespace `ns`, keeping it `ttl` from now,
    /// unless the tally is sealed: the new count, or `None` once sealed. Atomic with
    /// [`seal`](Store::seal) across replicas: a count lands before the seal (and the
    /// seal's count includes it) or is refused.
    async fn tally(&self, ns: &str, key: &str, ttl: Duration) -> StoreResult<Option<u64>>;

    /// Seals the tally `key` of namespace `ns` with `value` unless it is sealed, keeping it
    /// `ttl` from now: whether this call sealed it, and the tally as it then stands.
    async fn seal(
        &self,
        ns: &str,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> StoreResult<(bool, Tally)>;

    /// The tally `key` of namespace `ns`: nothing counted and no seal when never touched
    /// (or expired).
    async fn read_tally(&self, ns: &str, key: &str) -> StoreResult<Tally>;

    /// Lists `member` in the index `name` until `until` (an access window's end).
    async fn index_add(&self, name: &str, member: &str, until: DateTime<Utc>) -> StoreResult<()>;

    /// The members of the index `name` listed until after `now`; the rest are dropped.
    async fn index_live(&self, name: &str, now: DateTime<Utc>) -> StoreResult<Vec<String>>;

    /// The id for a new action of `client` sent with `idempotency_key`. Redis Cluster
    /// chooses it so the action lands in the hash slot of its idempotency key.
    fn new_action_id(&self, client: &str, idempotency_key: &str) -> ActionId {
        let _ = (client, idempotency_key);
        ActionId::generate()
    }

    /// Stores a new action with its idempotency key and timers, atomically; an action
    /// created already decided is published at once. A pending one is refused when its
    /// client already has `max_pending` pending (counted in the same atomic step, across
    /// replicas; an action frees its place when it leaves `pending`). The idempotency key
    /// is checked first, so a repeat is answered even when the client is at its limit.
    async fn create(&self, new: NewAction<'_>) -> StoreResult<Created>;

    async fn load(&self, id: &ActionId) -> StoreResult<Option<Versioned>>;

    /// Replaces a pending action if it is still at `rev`. When `action` is no longer
    /// pending, it is published on its decision channel in the same atomic step.
    /// `effects` are scheduled in that step too, unless already scheduled (their worker
    /// re-runs them if the action changed while it worked: see [`Store::finish_if_current`]);
    /// `dropped` timers are removed in that step (a decided action's deadlines).
    /// Returns `false` when someone else changed it first.
    async fn replace(
        &self,
        expected_rev: u64,
        action: &Action,
        json: &str,
        effects: &[Timer],
        dropped: &[Timer],
    ) -> StoreResult<bool>;

    /// Records where the action's Slack message is and what was announced.
    async fn set_slack(&self, id: &ActionId, state: &SlackState) -> StoreResult<()>;

    /// Ids of pending actions, at most `limit`.
    async fn pending_ids(&self, limit: usize) -> StoreResult<Vec<ActionId>>;

    /// How many actions are pending, across replicas (the `greenlight_pending_actions` gauge).
    async fn pending_count(&self) -> StoreResult<u64>;

    /// Claims up to `limit` timers due at `now` for `lease`: a claimed timer is invisible
    /// to other replicas until the lease runs out, so a crash mid-work only delays it.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> StoreResult<Vec<Timer>>;

    /// Removes a timer whose work is done.
    async fn finish(&self, timer: &Timer) -> StoreResult<()>;

    /// Removes an effect timer if the action is still at `rev` (the state its work
    /// reflected); otherwise makes it due now, so the change is reflected too.
    async fn finish_if_current(&self, timer: &Timer, rev: u64) -> StoreResult<()>;

    /// Moves a claimed timer to `due` (a retry later).
    async fn reschedule(&self, timer: &Timer, due: DateTime<Utc>) -> StoreResult<()>;

    /// Adds `timer` unless it is already scheduled (then it keeps its due time, and its
    /// lease if claimed): an effect of something that does not change the action.
    async fn schedule(&self, timer: &Timer) -> StoreResult<()>;

    /// When the earliest timer is due, if any.
    async fn next_due(&self) -> StoreResult<Option<DateTime<Utc>>>;

    /// The hash of the last audit entry (the chain's head); `None` before the first.
    async fn audit_head(&self) -> StoreResult<Option<String>>;

    /// Appends `entries` to the audit stream, in order, if the head is still
    /// `expected_head` (a compare-and-set across replicas), and makes the last one's hash
    /// the head; trims the oldest beyond about `maxlen` entries (0 keeps all).
    async fn audit_append(
        &self,
        expected_head: Option<&str>,
        entries: &[NewAuditEntry<'_>],
        maxlen: u64,
    ) -> StoreResult<AuditAppend>;

    /// Up to `count` audit entries after the stream id `after` (a well-formed id: see
    /// [`parse_stream_id`]), or from the oldest kept; oldest first, as (id, stored JSON).
    async fn audit_range(
        &self,
        after: Option<&str>,
        count: usize,
    ) -> StoreResult<Vec<(String, String)>>;
}

/// An audit entry ready to append: its hash (the head once appended) and its JSON.
pub struct NewAuditEntry<'a> {
    pub hash: &'a str,
    pub json: &'a str,
}

#[derive(Debug, PartialEq)]
pub enum AuditAppend {
    /// Appended, with these stream ids.
    Appended(Vec<String>),
    /// Another writer moved the head first: this is the head now.
    HeadMoved(Option<String>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_members_round_trip() {
        let id = ActionId::generate();
        let due = Utc.timestamp_millis_opt(1_700_000_000_123).unwrap();
        for kind in [
            TimerKind::Expire,
            TimerKind::Escalate(3),
            TimerKind::Remind,
            TimerKind::SlackSync,
            TimerKind::PagerDutyResolve,
            TimerKind::Callback,
            TimerKind::WindowEnd,
            TimerKind::SlackWindowEnd,
        ] {
            let t = Timer::new(kind, &id, due);
            assert_eq!(Timer::parse(&t.member(), t.due_ms()), Some(t));
        }
        assert_eq!(
            Timer::new(TimerKind::Escalate(2), &id, due).member(),
            format!("escalate:2:{id}")
        );
        assert_eq!(Timer::parse("nap:act_x", 0), None);
        assert_eq!(Timer::parse(&format!("escalate:x:{id}"), 0), None);
    }
}

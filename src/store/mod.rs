//! Where actions, idempotency and replay keys, and timers live. Two real backends share
//! one contract: Redis (production, many replicas) and in-memory (one process, no setup).
//!
//! Every state change is a compare-and-set on the action's revision, and the store itself
//! publishes an action the moment it leaves `pending`, in the same atomic step: so a
//! decision is made, stored and announced exactly once.

mod memory;
mod redis;

pub use memory::MemoryStore;
pub use redis::{RedisStore, RedisStoreConfig};

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
}

#[derive(Debug, PartialEq)]
pub enum Created {
    New,
    /// This client already used this `webhook-id` for the given body and action.
    Existing {
        body_hash: String,
        action_id: ActionId,
    },
}

/// What a timer does when it comes due. New kinds (escalation stages, reminders) are
/// added here and in [`Timer::member`] / [`Timer::parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerKind {
    Expire,
    /// Make the action's Slack message (and thread, and requester DM) match its state.
    /// Scheduled with every change; runs on one replica at a time.
    SlackSync,
}

/// A durable deadline: one sorted-set member per (kind, action).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timer {
    pub kind: TimerKind,
    pub action_id: ActionId,
    pub due: DateTime<Utc>,
}

impl Timer {
    pub fn expire(action: &Action) -> Self {
        Self {
            kind: TimerKind::Expire,
            action_id: action.id.clone(),
            due: action.expires_at,
        }
    }

    pub fn slack_sync(action_id: &ActionId, due: DateTime<Utc>) -> Self {
        Self {
            kind: TimerKind::SlackSync,
            action_id: action_id.clone(),
            due,
        }
    }

    pub fn member(&self) -> String {
        let kind = match self.kind {
            TimerKind::Expire => "expire",
            TimerKind::SlackSync => "slack",
        };
        format!("{kind}:{}", self.action_id)
    }

    pub fn due_ms(&self) -> i64 {
        self.due.timestamp_millis()
    }

    pub fn parse(member: &str, due_ms: i64) -> Option<Self> {
        let (kind, id) = member.split_once(':')?;
        let kind = match kind {
            "expire" => TimerKind::Expire,
            "slack" => TimerKind::SlackSync,
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

    /// Remembers a request id for `ttl`; `false` if it was already seen (a replay).
    async fn remember_request(
        &self,
        client: &str,
        request_id: &str,
        ttl: Duration,
    ) -> StoreResult<bool>;

    /// Stores a new action with its idempotency key and timers, atomically; an action
    /// created already decided is published at once.
    async fn create(&self, new: NewAction<'_>) -> StoreResult<Created>;

    async fn load(&self, id: &ActionId) -> StoreResult<Option<Versioned>>;

    /// Replaces a pending action if it is still at `rev`. When `action` is no longer
    /// pending, it is published on its decision channel in the same atomic step.
    /// `effects` are scheduled in that step too, unless already scheduled (their worker
    /// re-runs them if the action changed while it worked: see [`Store::finish_if_current`]).
    /// Returns `false` when someone else changed it first.
    async fn replace(
        &self,
        expected_rev: u64,
        action: &Action,
        json: &str,
        effects: &[Timer],
    ) -> StoreResult<bool>;

    /// Records where the action's Slack message is and what was announced.
    async fn set_slack(&self, id: &ActionId, state: &SlackState) -> StoreResult<()>;

    /// Ids of pending actions, at most `limit`.
    async fn pending_ids(&self, limit: usize) -> StoreResult<Vec<ActionId>>;

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

    /// When the earliest timer is due, if any.
    async fn next_due(&self) -> StoreResult<Option<DateTime<Utc>>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_members_round_trip() {
        let id = ActionId::generate();
        let t = Timer {
            kind: TimerKind::Expire,
            action_id: id.clone(),
            due: Utc.timestamp_millis_opt(1_700_000_000_123).unwrap(),
        };
        assert_eq!(t.member(), format!("expire:{id}"));
        assert_eq!(Timer::parse(&t.member(), t.due_ms()), Some(t));
        assert_eq!(Timer::parse("nap:act_x", 0), None);
    }
}

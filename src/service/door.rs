//! Everything outside the service reaches the store through these methods: reads that
//! apply the expiry rule, the Slack message state, one-shot marks (replayed request ids,
//! revoked and spent grants) and the timer queue. None of them can change what an action
//! is; that happens only in `cas.rs`.

use super::grants::{REVOKED, USED};
use super::{Service, ServiceError};
use crate::domain::ActionId;
use crate::store::{SlackState, Store, StoreError, StoreResult, Timer, Versioned};
use chrono::{DateTime, Utc};
use std::time::Duration;

impl Service {
    /// The action with its revision and Slack message state; a pending action past its
    /// `expires_at` is expired first, so every reader sees the same rule.
    pub async fn load(&self, id: &ActionId) -> StoreResult<Option<Versioned>> {
        let Some(v) = self.store.load(id).await? else {
            return Ok(None);
        };
        if !(v.action.is_pending() && Utc::now() >= v.action.expires_at) {
            return Ok(Some(v));
        }
        match self.expire(id).await {
            Ok(_) => self.store.load(id).await,
            Err(ServiceError::NotFound) => Ok(None),
            Err(ServiceError::Store(e)) => Err(e),
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }

    /// Records where the action's Slack message is and what of it was announced.
    pub async fn set_slack(&self, id: &ActionId, state: &SlackState) -> StoreResult<()> {
        self.store.set_slack(id, state).await
    }

    /// The store answers (readiness).
    pub async fn ping(&self) -> StoreResult<()> {
        self.store.ping().await
    }

    /// How many actions are pending, across replicas.
    pub async fn pending_count(&self) -> StoreResult<u64> {
        self.store.pending_count().await
    }

    /// Whether the grant of this action was revoked.
    pub async fn grant_revoked(&self, action_id: &str) -> StoreResult<bool> {
        self.store.is_set(REVOKED, action_id).await
    }

    /// Revokes the grant of this action for `ttl` (longer than any grant of it lives).
    pub async fn revoke_grant(&self, action_id: &str, ttl: Duration) -> StoreResult<()> {
        self.store.set_once(REVOKED, action_id, ttl).await.map(drop)
    }

    /// Spends the single-use grant `jti`, remembered for `ttl`: `true` for exactly one
    /// caller across replicas.
    pub async fn consume_grant(&self, jti: &str, ttl: Duration) -> StoreResult<bool> {
        self.store.set_once(USED, jti, ttl).await
    }

    /// Whether the grant `jti` was already spent.
    pub async fn grant_consumed(&self, jti: &str) -> StoreResult<bool> {
        self.store.is_set(USED, jti).await
    }

    /// The durable timer queue, for the scheduler.
    pub fn timers(&self) -> Timers<'_> {
        Timers {
            store: self.store.as_ref(),
        }
    }
}

/// The timer queue: claiming due timers under a lease and settling them. What a timer
/// does to its action goes through the service like any other change.
pub struct Timers<'a> {
    store: &'a dyn Store,
}

impl Timers<'_> {
    /// Claims up to `limit` timers due at `now` for `lease` (see [`Store::claim_due`]).
    pub async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> StoreResult<Vec<Timer>> {
        self.store.claim_due(now, limit, lease).await
    }

    /// Removes a timer whose work is done.
    pub async fn finish(&self, timer: &Timer) -> StoreResult<()> {
        self.store.finish(timer).await
    }

    /// Removes an effect timer whose work reflected revision `rev`, unless the action
    /// changed since (then it is due again at once).
    pub async fn finish_if_current(&self, timer: &Timer, rev: u64) -> StoreResult<()> {
        self.store.finish_if_current(timer, rev).await
    }

    /// Moves a claimed timer to `due`.
    pub async fn reschedule(&self, timer: &Timer, due: DateTime<Utc>) -> StoreResult<()> {
        self.store.reschedule(timer, due).await
    }

    /// When the earliest timer is due, if any.
    pub async fn next_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
        self.store.next_due().await
    }
}

//! Waiting for a decision: by long-poll, or on Redis (subscribe, then read), and in both
//! cases taking a decision as an approval only when its grant verifies.

use super::{Client, ClientError, is_transient};
use crate::domain::{Action, ActionId, Status};
use crate::retry::Backoff;
use std::time::Duration;
use tokio::time::Instant;

/// A long-poll that ends this close to the deadline ends the wait: another poll would
/// overshoot it by a whole second.
const WAIT_SLACK: Duration = Duration::from_millis(250);
/// A long-poll that failed for a passing reason is tried again from 200 ms, doubling, at
/// most 5 s apart.
const TRANSIENT: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

impl Client {
    /// Waits until the action is decided or `timeout` passes (then it answers the action
    /// still pending). On Redis when the client has it, by long-poll otherwise, riding out
    /// transient failures (a restarting server, a load balancer hiccup).
    ///
    /// An `approved` answer always carries a grant that verified against the JWKS; an
    /// approval whose grant does not verify is [`ClientError::Grant`], never `Ok`.
    pub async fn wait(&self, id: &ActionId, timeout: Duration) -> Result<Action, ClientError> {
        let deadline = Instant::now() + timeout;
        #[cfg(feature = "redis")]
        if let Some(redis) = &self.redis {
            return self.wait_on_redis(redis, id, deadline).await;
        }
        self.long_poll(id, deadline).await
    }

    pub(super) async fn long_poll(
        &self,
        id: &ActionId,
        deadline: Instant,
    ) -> Result<Action, ClientError> {
        let mut delays = TRANSIENT.delays();
        loop {
            // Whole seconds rounded up: rounded down, `--timeout 1s` would not wait at all
            // and every timeout would give up to a second early.
            let left = deadline.saturating_duration_since(Instant::now());
            let seconds = left.as_millis().div_ceil(1000).min(60) as u64;
            match self.wait_once(id, seconds).await {
                Ok(action) => {
                    let last_poll = Instant::now() + WAIT_SLACK >= deadline;
                    match self.confirm(id, action).await? {
                        Some(done) => return Ok(done),
                        None if last_poll => return self.get(id).await,
                        None => delays.reset(),
                    }
                }
                Err(e) if is_transient(&e) && Instant::now() + delays.peek() < deadline => {
                    tokio::time::sleep(delays.next_delay()).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// An action the server answered as stored: `None` while pending, the action once
    /// decided, an error when it is approved without a grant that verifies.
    pub(super) async fn settle(&self, action: Action) -> Result<Option<Action>, ClientError> {
        match action.status {
            Status::Pending => Ok(None),
            Status::Approved => {
                self.grants.verify_action(&action).await?;
                Ok(Some(action))
            }
            _ => Ok(Some(action)),
        }
    }

    /// A decision as a notification brought it (the Redis channel, or a long-poll relaying
    /// it). Anyone who can reach Redis can publish there, so only an approval whose grant
    /// verifies is taken as is; anything else is checked against the server's stored copy,
    /// and a "decision" the server does not have is ignored.
    pub(super) async fn confirm(
        &self,
        id: &ActionId,
        candidate: Action,
    ) -> Result<Option<Action>, ClientError> {
        if candidate.is_pending() {
            return Ok(None);
        }
        if candidate.id == *id
            && candidate.status == Status::Approved
            && self.grants.verify_action(&candidate).await.is_ok()
        {
            return Ok(Some(candidate));
        }
        let stored = self.get(id).await?;
        if stored.is_pending() {
            tracing::warn!(action_id = %id, claimed = %candidate.status,
                "ignoring a decision the server does not have (published by someone else?)");
        }
        self.settle(stored).await
    }
}

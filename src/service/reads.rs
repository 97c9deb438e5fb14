//! Reading: an action, a client's pending ones, waiting for a decision, the audit trail;
//! who may read what is decided here.

use super::{ActionBody, Client, Permission, Service, ServiceError, ServiceResult};
use crate::audit::Audit;
use crate::domain::{Action, ActionId};
use crate::store::StoreError;
use chrono::Utc;
use std::time::Duration;

impl Service {
    /// Reads an action for a caller already entitled to it (Slack users, workers),
    /// expiring it first if its deadline has passed (so nobody sees a pending action past
    /// `expires_at`, even before the timer runs).
    /// An access window shows its uses and how it ended.
    pub async fn read(&self, id: &ActionId) -> ServiceResult<Action> {
        let action = self.load(id).await?.ok_or(ServiceError::NotFound)?.action;
        Ok(self.with_window_state(action).await?)
    }

    fn authorize_read(client: &Client, action: &Action) -> ServiceResult<()> {
        // Another client's action answers like a missing one: ids are not disclosed.
        if action.client == client.id() || client.may(Permission::ReadAllActions) {
            Ok(())
        } else {
            Err(ServiceError::NotFound)
        }
    }

    /// The action as `client` may see it (without the grant's token unless it created it).
    pub async fn get(&self, client: &Client, id: &ActionId) -> ServiceResult<Action> {
        let action = self.read(id).await?;
        Self::authorize_read(client, &action)?;
        Ok(action.shown_to(client.id()))
    }

    /// Long-poll: registers the waiter first, then reads, so a decision in between is
    /// never missed. Answers at the decision, at `timeout`, or at shutdown.
    pub async fn wait(
        &self,
        client: &Client,
        id: &ActionId,
        timeout: Duration,
    ) -> ServiceResult<ActionBody> {
        let deadline = tokio::time::Instant::now() + timeout.min(self.max_wait);
        loop {
            let mut waiter = self.waiters.register(id.as_str());
            // The store reads are boxed: inline, the largest of them sizes the future that
            // every idle waiter keeps allocated for its whole wait (heaptrack: ~5 KiB a waiter).
            let action = Box::pin(self.get(client, id)).await?;
            if !action.is_pending() {
                return Ok(ActionBody::Parsed(Box::new(action)));
            }
            // `expires_at` ends the wait too, however late the expiry timer is: the read
            // after it expires the action (one timer for both, to keep waiters small).
            let expiry = tokio::time::Instant::now()
                + (action.expires_at - Utc::now())
                    .to_std()
                    .unwrap_or_default()
                + Duration::from_millis(5);
            let wake = deadline.min(expiry);
            tokio::select! {
                published = &mut waiter.receiver => match published {
                    // An empty message: one this deployment could not vouch for. Look again.
                    Ok(json) if json.is_empty() => continue,
                    // Published as stored, grant token included: only its creator
                    // gets it as is.
                    Ok(json) if action.client == client.id() => {
                        return Ok(ActionBody::Published(json));
                    }
                    Ok(json) => {
                        let published: Action = serde_json::from_slice(&json)
                            .map_err(|e| StoreError::Corrupt(format!("published action: {e}")))?;
                        return Ok(ActionBody::Parsed(Box::new(published.shown_to(client.id()))));
                    }
                    Err(_) => {
                        return Ok(ActionBody::Parsed(Box::new(Box::pin(self.get(client, id)).await?)));
                    }
                },
                _ = tokio::time::sleep_until(wake) => {
                    if wake < deadline {
                        continue;
                    }
                    return Ok(ActionBody::Parsed(Box::new(Box::pin(self.get(client, id)).await?)));
                }
                // On shutdown, answer with the current state so the caller retries elsewhere:
                // read again (the decision channel stops with the process), or, if the store
                // does not answer, the state read when the wait began.
                _ = self.shutdown.cancelled() => {
                    return Ok(ActionBody::Parsed(Box::new(
                        Box::pin(self.get(client, id)).await.unwrap_or(action),
                    )));
                }
            }
        }
    }

    /// Pending actions, oldest first, at most `limit`.
    /// The pending actions `client` may read (all of them for admins and auditors, its
    /// own otherwise), at most `limit`.
    pub async fn pending_for(&self, client: &Client, limit: usize) -> ServiceResult<Vec<Action>> {
        // Pending actions carry no grant, so there is no token to hide.
        let mut actions = self
            .pending(if client.may(Permission::ReadAllActions) {
                limit
            } else {
                usize::MAX
            })
            .await?;
        actions.retain(|a| Self::authorize_read(client, a).is_ok());
        actions.truncate(limit);
        Ok(actions)
    }

    pub async fn pending(&self, limit: usize) -> ServiceResult<Vec<Action>> {
        let mut actions = Vec::new();
        for id in self.store.pending_ids(limit).await? {
            if let Some(v) = self.load(&id).await?
                && v.action.is_pending()
            {
                actions.push(v.action);
            }
        }
        Ok(actions)
    }

    /// The audit trail, for a client allowed to read it.
    pub fn audit_for(&self, client: &Client) -> ServiceResult<&Audit> {
        client.authorize(Permission::ReadAudit)?;
        Ok(&self.audit)
    }
}

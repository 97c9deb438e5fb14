//! Access windows beyond their grant: the uses counted and how a window ended, kept
//! beside the (decided, never changing) action and shown in it; the end of a window,
//! recorded once whether it is revoked or runs out; and the list of active windows.

use super::{Client, Permission, Service, ServiceResult};
use crate::audit::AuditEvent;
use crate::domain::{Action, ActionId, Status, WindowEnd};
use crate::store::{DECIDED_RETENTION, StoreResult};
use chrono::Utc;

/// Store namespace of the use counts of windows, keyed by action id.
const USES: &str = "window-uses";
/// Store namespace of how windows ended (`expired` or `revoked`), keyed by action id:
/// written once, so the end is recorded once.
const ENDED: &str = "window-ended";
/// The index of approved windows, listed until their `ends_at`.
const ACTIVE: &str = "windows";

impl Service {
    /// Counts one use of the window of `id`: the count with it.
    pub(super) async fn count_window_use(&self, id: &ActionId) -> StoreResult<u64> {
        self.store
            .increment(USES, id.as_str(), DECIDED_RETENTION)
            .await
    }

    /// `action` with its window's live state: the uses counted so far and, once over,
    /// how it ended (revoked, or expired at `ends_at` even before its timer ran).
    pub(super) async fn with_window_state(&self, mut action: Action) -> StoreResult<Action> {
        let Some(window) = action.window.as_mut() else {
            return Ok(action);
        };
        if window.starts_at.is_none() {
            return Ok(action);
        }
        let id = action.id.as_str();
        window.uses = self.store.count(USES, id).await?;
        let recorded = self.store.claimed(ENDED, id).await?;
        window.ended = match recorded.as_deref() {
            Some("revoked") => Some(WindowEnd::Revoked),
            Some(_) => Some(WindowEnd::Expired),
            None if self.store.is_set(super::grants::REVOKED, id).await? => {
                Some(WindowEnd::Revoked)
            }
            None if !window.is_active(Utc::now()) => Some(WindowEnd::Expired),
            None => None,
        };
        Ok(action)
    }

    /// Ends the window of `action` as `how` (by `actor`), unless it already ended: then
    /// records `access_ended` with its uses. `false` when it had ended before.
    pub(super) async fn end_window(
        &self,
        action: &Action,
        how: WindowEnd,
        actor: &str,
    ) -> StoreResult<bool> {
        let id = action.id.as_str();
        let first = self
            .store
            .claim(ENDED, id, how.as_str(), DECIDED_RETENTION)
            .await?
            .is_none();
        if first {
            let uses = self.store.count(USES, id).await?;
            self.audit
                .record(AuditEvent::access_ended(action, how, actor, uses))
                .await;
            tracing::info!(action_id = %action.id, ended = how.as_str(), uses, "access window ended");
        }
        self.announce_window_end(&action.id).await?;
        Ok(first)
    }

    /// The window timer: at `ends_at`, a window not revoked meanwhile ends as `expired`.
    pub async fn window_ended(&self, id: &ActionId) -> super::ServiceResult<()> {
        let action = match self.read(id).await {
            Ok(a) => a,
            Err(super::ServiceError::NotFound) => return Ok(()),
            Err(e) => return Err(e),
        };
        if action.status == Status::Approved && action.window.is_some() {
            self.end_window(&action, WindowEnd::Expired, "timer")
                .await?;
        }
        Ok(())
    }

    /// Lists an approved window until its end (best effort: its grant works regardless).
    pub(super) async fn list_window(&self, action: &Action) {
        let Some(ends_at) = action.window.as_ref().and_then(|w| w.ends_at) else {
            return;
        };
        if action.status != Status::Approved {
            return;
        }
        if let Err(e) = self
            .store
            .index_add(ACTIVE, action.id.as_str(), ends_at)
            .await
        {
            tracing::warn!(action_id = %action.id, error = %e,
                "cannot list the access window; it works, but `GET /v1/access` misses it");
        }
    }

    /// `GET /v1/access?active=true`: the windows in force that `client` may see (its own;
    /// every one for admins and auditors), soonest to end first.
    pub async fn active_windows(&self, client: &Client) -> ServiceResult<Vec<Action>> {
        let all = client.may(Permission::ReadAllActions);
        let mut windows = Vec::new();
        for member in self.store.index_live(ACTIVE, Utc::now()).await? {
            let Ok(id) = member.parse::<ActionId>() else {
                continue;
            };
            let Some(v) = self.load(&id).await? else {
                continue;
            };
            if !(all || v.action.client == client.id()) {
                continue;
            }
            let action = self.with_window_state(v.action).await?;
            if action.window.as_ref().is_some_and(|w| w.ended.is_none()) {
                windows.push(action.shown_to(client.id()));
            }
        }
        Ok(windows)
    }
}

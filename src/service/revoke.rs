//! Revoking an approved action's grant, however it is asked: by a client
//! (`POST /v1/actions/{id}/revoke`, which the CLI calls) or by a person in Slack (the
//! **Revoke** button). Both end an access window the same way, here; who may ask is
//! decided by each caller (`authz.rs` for clients, the Slack layer for people, as for votes).
//! Also what Slack needs to show a window's end: who revoked it, and the effect that
//! updates its message.

use super::{Service, ServiceError, ServiceResult};
use crate::domain::{Action, ActionId, Status, WindowEnd};
use crate::store::{DECIDED_RETENTION, StoreResult, Timer, TimerKind};
use chrono::Utc;
use std::time::Duration;

/// How long a revocation is remembered past the grant's lifetime.
const REVOKED_MARGIN: Duration = Duration::from_secs(24 * 3600);
/// Store namespace of the windows whose end their Slack message shows: written once, so a
/// re-run of the update repeats nothing.
const END_SHOWN: &str = "slack-window-end";

/// Who revokes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revoker {
    /// A client of the policy, through the API (the CLI included).
    Client(String),
    /// A person, by Slack user id (the **Revoke** button).
    SlackUser(String),
}

impl Revoker {
    /// The audit trail's `actor`: the client id or the Slack user id, as for votes.
    pub fn actor(&self) -> &str {
        match self {
            Revoker::Client(id) | Revoker::SlackUser(id) => id,
        }
    }

    /// As the window's end records it (see `windows.rs`).
    pub(super) fn stored(&self) -> String {
        match self {
            Revoker::Client(id) => format!("client:{id}"),
            Revoker::SlackUser(id) => format!("slack:{id}"),
        }
    }

    pub(super) fn parse(stored: &str) -> Option<Self> {
        match stored.split_once(':')? {
            ("client", id) => Some(Revoker::Client(id.to_owned())),
            ("slack", id) => Some(Revoker::SlackUser(id.to_owned())),
            _ => None,
        }
    }
}

impl Service {
    /// Revokes the grant of `action` on behalf of `by`, already authorized: from now on
    /// every verification of it answers `revoked`, on every replica. Only an approved
    /// action has a grant (`409` otherwise); revoking twice is harmless. An access window
    /// ends then (once: `access_ended` by `by`, unless it had ended already).
    pub(super) async fn revoke_approved(
        &self,
        action: &Action,
        by: &Revoker,
        reason: Option<&str>,
    ) -> ServiceResult<()> {
        if action.status != Status::Approved {
            return Err(ServiceError::NoGrant(action.status));
        }
        // Outlives any grant of the action: its lifetime counts from the decision.
        let lifetime = action
            .window
            .as_ref()
            .map_or(action.policy.grant_ttl_seconds, |w| w.seconds);
        let ttl = Duration::from_secs(lifetime) + REVOKED_MARGIN;
        let started = std::time::Instant::now();
        self.revoke_grant(action.id.as_str(), ttl).await?;
        tracing::warn!(action_id = %action.id, by = ?by, reason, "grant revoked");
        if action.window.is_some() {
            self.end_window(action, WindowEnd::Revoked, Some(by))
                .await?;
            crate::metrics::revoked(started.elapsed());
        }
        Ok(())
    }

    /// A person revokes the access window of `id` from Slack; the Slack layer decided they
    /// may (an approver of its rule, or its requester). The window as it now stands.
    pub async fn revoke_window_as(&self, id: &ActionId, user: &str) -> ServiceResult<Action> {
        let action = self.read(id).await?;
        if action.window.is_none() {
            return Err(ServiceError::NoGrant(action.status));
        }
        self.revoke_approved(&action, &Revoker::SlackUser(user.to_owned()), None)
            .await?;
        self.read(id).await
    }

    /// Schedules the Slack update of a window's end (when Slack is on). Called whenever a
    /// window is ended, even again: the timer runs once at a time, and the update once.
    pub(super) async fn announce_window_end(&self, id: &ActionId) -> StoreResult<()> {
        if !self.slack {
            return Ok(());
        }
        let timer = Timer::new(TimerKind::SlackWindowEnd, id, Utc::now());
        self.store.schedule(&timer).await?;
        self.timers_changed.notify_one();
        Ok(())
    }

    /// Whether the Slack message of `id` already shows its window's end.
    pub async fn window_end_shown(&self, id: &ActionId) -> StoreResult<bool> {
        self.store.is_set(END_SHOWN, id.as_str()).await
    }

    /// Records that the Slack message of `id` shows its window's end.
    pub async fn set_window_end_shown(&self, id: &ActionId) -> StoreResult<()> {
        self.store
            .set_once(END_SHOWN, id.as_str(), DECIDED_RETENTION)
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::Revoker;

    #[test]
    fn a_revoker_round_trips_through_the_store() {
        for by in [
            Revoker::Client("ops-tools".into()),
            Revoker::SlackUser("U0ALICE".into()),
        ] {
            assert_eq!(Revoker::parse(&by.stored()), Some(by.clone()));
        }
        assert_eq!(Revoker::parse("nobody"), None);
        assert_eq!(Revoker::parse("team:T1"), None);
    }
}

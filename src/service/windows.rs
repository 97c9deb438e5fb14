//! Access windows beyond their grant: the uses counted and how a window ended, kept
//! beside the (decided, never changing) action and shown in it; the end of a window,
//! recorded once whether it is revoked or runs out; and the list of active windows.

use super::{Client, Permission, Revoker, Service, ServiceResult};
use crate::audit::AuditEvent;
use crate::domain::{Action, ActionId, Status, WindowEnd};
use crate::policy::{MatchInput, RuleDecision};
use crate::store::{DECIDED_RETENTION, StoreResult};
use chrono::Utc;

/// Store namespace of windows' tallies, keyed by action id: the uses counted, sealed once
/// with how the window ended (`expired`, or `revoked client:{id}` / `revoked slack:{user}`). A use and the end are
/// atomic with each other: no use is counted after the end, and the end's count is final.
const TALLY: &str = "window";
/// The index of windows, listed from their request until their latest possible end.
const ACTIVE: &str = "windows";

/// How a window ended, as its seal reads: expired, or revoked (by whom, when known).
fn parse_seal(seal: &str) -> (WindowEnd, Option<Revoker>) {
    match seal.split_once(' ') {
        Some(("revoked", by)) => (WindowEnd::Revoked, Revoker::parse(by)),
        _ if seal == "revoked" => (WindowEnd::Revoked, None),
        _ => (WindowEnd::Expired, None),
    }
}

/// What a use of a window ran into instead of being counted.
pub(super) enum UseRefused {
    /// The policy in force does not let the window's rule govern this action and
    /// resource (an earlier rule does, or none does).
    NotGoverned,
    /// The window already ended.
    Ended(WindowEnd),
}

impl Service {
    /// Counts one use of the window of `action` for the concrete `name` on `resource`: the
    /// count with it, unless the policy in force refuses it or the window has ended.
    ///
    /// The patterns of a window were matched against the rules as text; a concrete use
    /// must also be the window's rule's to govern: the first rule matching it (for the
    /// window's client and context) must be that rule, still allowing windows, or a rule
    /// that approves it anyway. So a rule before it (a deny, or stricter approvers) keeps
    /// its part of the pattern out of the window.
    pub(super) async fn count_window_use(
        &self,
        action: &Action,
        name: &str,
        resource: &str,
    ) -> StoreResult<Result<u64, UseRefused>> {
        let loaded = self.loaded();
        let eval = loaded.policy.evaluate(&MatchInput {
            action: name,
            resource,
            client: &action.client,
            context: &action.context,
        });
        let governed = match eval.rule {
            Some(rule) if rule.decision == RuleDecision::Approve => true,
            Some(rule) => rule.name == action.policy.rule && rule.max_window.is_some(),
            None => false,
        };
        if !governed {
            return Ok(Err(UseRefused::NotGoverned));
        }
        let id = action.id.as_str();
        Ok(
            match self.store.tally(TALLY, id, DECIDED_RETENTION).await? {
                Some(uses) => Ok(uses),
                None => {
                    let seal = self.store.read_tally(TALLY, id).await?.seal;
                    let (how, _) = parse_seal(seal.as_deref().unwrap_or_default());
                    Err(UseRefused::Ended(how))
                }
            },
        )
    }

    /// `action` with its window's live state: the uses counted so far and, once over,
    /// how it ended (revoked, or expired at `ends_at` even before its timer ran).
    pub(super) async fn with_window_state(&self, action: Action) -> StoreResult<Action> {
        Ok(self.with_window_end(action).await?.0)
    }

    /// `action` with its window's live state and, when it was revoked, by whom (what its
    /// Slack message shows).
    pub async fn with_window_end(
        &self,
        mut action: Action,
    ) -> StoreResult<(Action, Option<Revoker>)> {
        let Some(window) = action.window.as_mut() else {
            return Ok((action, None));
        };
        if window.starts_at.is_none() {
            return Ok((action, None));
        }
        let id = action.id.as_str();
        let tally = self.store.read_tally(TALLY, id).await?;
        window.uses = tally.count;
        let (ended, by) = match tally.seal.as_deref().map(parse_seal) {
            Some((how, by)) => (Some(how), by),
            None if self.grant_revoked(id).await? => (Some(WindowEnd::Revoked), None),
            None if !window.is_active(Utc::now()) => (Some(WindowEnd::Expired), None),
            None => (None, None),
        };
        window.ended = ended;
        window.ended_by = by.as_ref().map(|b| b.actor().to_owned());
        Ok((action, by))
    }

    /// Ends the window of `action` as `how` (revoked `by` someone, or by the timer),
    /// unless it already ended: then records `access_ended` with its final count of uses.
    /// Either way its Slack message is brought to show the end. `false` when it had ended
    /// before.
    pub(super) async fn end_window(
        &self,
        action: &Action,
        how: WindowEnd,
        by: Option<&Revoker>,
    ) -> StoreResult<bool> {
        let actor = by.map_or("timer", Revoker::actor);
        let seal = match (how, by) {
            (WindowEnd::Revoked, Some(by)) => format!("revoked {}", by.stored()),
            (WindowEnd::Revoked, None) => "revoked".to_owned(),
            (WindowEnd::Expired, _) => "expired".to_owned(),
        };
        let (first, tally) = self
            .store
            .seal(TALLY, action.id.as_str(), &seal, DECIDED_RETENTION)
            .await?;
        if first {
            let uses = tally.count;
            self.audit
                .record(AuditEvent::access_ended(action, how, actor, uses))
                .await;
            crate::metrics::window_ended(how);
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
            // A revocation whose end was not recorded (a crash between the two) stays one.
            let how = if self.grant_revoked(id.as_str()).await? {
                WindowEnd::Revoked
            } else {
                WindowEnd::Expired
            };
            self.end_window(&action, how, None).await?;
        }
        Ok(())
    }

    /// Lists a window in the index of windows, before it is stored (so a stored window is
    /// never missing from the list) until the latest it can end: its request's expiry plus
    /// its length. Pending and ended windows are skipped when listing.
    pub(super) async fn list_window(&self, action: &Action) -> StoreResult<()> {
        let Some(window) = &action.window else {
            return Ok(());
        };
        let latest = action.expires_at.max(action.created_at)
            + chrono::Duration::seconds(window.seconds as i64);
        self.store
            .index_add(ACTIVE, action.id.as_str(), latest)
            .await
    }

    /// Every window in force, soonest to end first.
    async fn windows_in_force(&self) -> StoreResult<Vec<Action>> {
        let now = Utc::now();
        let mut windows = Vec::new();
        for member in self.store.index_live(ACTIVE, now).await? {
            let Ok(id) = member.parse::<ActionId>() else {
                continue;
            };
            let Some(v) = self.load(&id).await? else {
                continue;
            };
            let action = self.with_window_state(v.action).await?;
            if action.window.as_ref().is_some_and(|w| w.is_active(now)) {
                windows.push(action);
            }
        }
        // Listed by their latest possible end; shown by their actual one.
        windows.sort_by_key(|a| a.window.as_ref().and_then(|w| w.ends_at));
        Ok(windows)
    }

    /// How many windows are in force, on every replica (for the metrics).
    pub async fn active_window_count(&self) -> StoreResult<usize> {
        Ok(self.windows_in_force().await?.len())
    }

    /// `GET /v1/access?active=true`: the windows in force that `client` may see (its own;
    /// every one for admins and auditors), soonest to end first.
    pub async fn active_windows(&self, client: &Client) -> ServiceResult<Vec<Action>> {
        let all = client.may(Permission::ReadAllActions);
        Ok(self
            .windows_in_force()
            .await?
            .into_iter()
            .filter(|a| all || a.client == client.id())
            .map(|a| a.shown_to(client.id()))
            .collect())
    }
}

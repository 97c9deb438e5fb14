//! Moving an action out of `pending`: cancel by its client, a break-glass decision, a vote,
//! the expiry deadline. Each is one compare-and-set step (`cas.rs`).

use super::{
    CasError, Client, Forbidden, Permission, Service, ServiceError, ServiceResult, VoteError,
};
use crate::audit::Origin;
use crate::domain::{Action, ActionId, DecidedBy, Outcome, VoteKind, VoteRejected};
use crate::store::StoreError;

impl Service {
    /// The creating client withdraws its pending action.
    pub async fn cancel(
        &self,
        client: &Client,
        id: &ActionId,
        reason: Option<String>,
    ) -> ServiceResult<Action> {
        let action = self.get(client, id).await?;
        if action.client != client.id() {
            return Err(Forbidden::NotTheCreator.into());
        }
        let by = client.id().to_owned();
        self.transition(id, Origin::Client(client.id()), |a, now| {
            a.decide(
                Outcome::Cancelled,
                DecidedBy::Client(by.clone()),
                reason.clone(),
                now,
            )
        })
        .await
    }

    /// Break-glass decision by an admin client (`POST /v1/actions/{id}/decision`).
    pub async fn decide(
        &self,
        client: &Client,
        id: &ActionId,
        outcome: Outcome,
        by: &str,
        reason: Option<String>,
    ) -> ServiceResult<Action> {
        client.authorize(Permission::DecideActions)?;
        if !matches!(outcome, Outcome::Approved | Outcome::Denied) {
            return Err(ServiceError::BreakGlassOutcome(outcome));
        }
        self.read(id).await?;
        let origin = Origin::BreakGlass {
            client: client.id(),
            by,
        };
        let action = self
            .transition(id, origin, |a, now| {
                a.decide(
                    outcome,
                    DecidedBy::People(vec![by.to_owned()]),
                    reason.clone(),
                    now,
                )
            })
            .await?;
        tracing::warn!(action_id = %id, client = client.id(), by, outcome = %action.status,
            "break-glass decision");
        Ok(action.shown_to(client.id()))
    }

    /// The expiry timer (or a late read) ends a pending action; a decided one answers
    /// with its decision, which stands.
    pub async fn expire(&self, id: &ActionId) -> ServiceResult<Action> {
        let expired = self
            .audited_change(id, Origin::Timer, |a, now| {
                a.decide(Outcome::Expired, DecidedBy::Timer, None, now)
            })
            .await;
        match expired {
            Ok(Some(action)) => {
                tracing::info!(action_id = %id, "action expired");
                Ok(action)
            }
            Err(CasError::Expired(action)) => Ok(*action),
            Ok(None) => Err(ServiceError::NotFound),
            // Decided meanwhile: that decision stands; answer with it.
            Err(CasError::Change(_)) => self
                .store
                .load(id)
                .await?
                .map(|v| v.action)
                .ok_or(ServiceError::NotFound),
            Err(CasError::Store(e)) => Err(ServiceError::Store(e)),
            Err(CasError::Contended) => Err(ServiceError::Contended),
        }
    }

    /// Records a vote whose voter was already authorized (approver, not the requester
    /// unless allowed). Deciding votes decide the action, exactly once.
    pub async fn vote(
        &self,
        id: &ActionId,
        user: &str,
        vote: VoteKind,
        reason: Option<String>,
    ) -> Result<Action, VoteError> {
        let origin = Origin::Vote {
            user,
            vote,
            reason: reason.as_deref(),
        };
        let result = self
            .audited_change(id, origin, |a, now| {
                a.add_vote(user, vote, reason.clone(), now)
            })
            .await;
        match result {
            Ok(Some(action)) => {
                tracing::info!(action_id = %id, user, ?vote, status = %action.status, "vote recorded");
                Ok(action)
            }
            Ok(None) => Err(VoteError::NotFound),
            Err(CasError::Change(e)) => Err(VoteError::Rejected(e)),
            Err(CasError::Expired(_)) => Err(VoteError::Rejected(VoteRejected::Decided(
                crate::domain::Status::Expired,
            ))),
            Err(CasError::Store(e)) => Err(VoteError::Store(e)),
            Err(CasError::Contended) => Err(VoteError::Store(StoreError::Unavailable(
                "the action kept changing".into(),
            ))),
        }
    }
}

//! The **Revoke** button of an active access window. Its requester (recognised as for
//! self-approval: by Slack user id, or by email through Slack) and the approvers of its
//! rule may press it; it then ends the window exactly as `POST /v1/actions/{id}/revoke`
//! does. Anyone else is told why not, and nothing changes.

use super::Slack;
use super::api::SlackError;
use super::interactions::Reply;
use crate::domain::{Action, ActionId, Status};
use crate::service::{Service, ServiceError};

impl Slack {
    /// A click on **Revoke** by `user` (its signature and workspace already checked).
    pub(super) async fn revoke_click(
        &self,
        service: &Service,
        user: &str,
        value: &str,
        response_url: Option<String>,
    ) {
        let reply = Reply {
            response_url: response_url.as_deref(),
        };
        let Ok(id) = value.parse::<ActionId>() else {
            return self
                .tell(
                    &reply,
                    "This button does not belong to a Greenlight action.",
                )
                .await;
        };
        let action = match service.read(&id).await {
            Ok(a) => a,
            Err(ServiceError::NotFound) => {
                return self.tell(&reply, "This action no longer exists.").await;
            }
            Err(e) => {
                tracing::warn!(action_id = %id, error = %e, "cannot load an action to revoke");
                return self
                    .tell(
                        &reply,
                        "Greenlight cannot reach its store; nothing changed. Please try again.",
                    )
                    .await;
            }
        };
        let window = match &action.window {
            Some(w) if action.status == Status::Approved && w.starts_at.is_some() => w,
            _ => {
                return self
                    .tell(&reply, "This action has no active access to revoke.")
                    .await;
            }
        };
        if let Some(ended) = window.ended {
            let text = format!("This access already ended ({}).", ended.as_str());
            return self.tell(&reply, &text).await;
        }
        match self.may_revoke(&action, user).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(action_id = %id, user, "revoke refused: neither the requester nor an approver");
                let text = format!(
                    "Only the requester or an approver for rule `{}` may revoke this access.",
                    super::render::escape(&action.policy.rule)
                );
                return self.tell(&reply, &text).await;
            }
            Err(e) => {
                tracing::warn!(action_id = %id, error = %e, "cannot check who may revoke");
                return self
                    .tell(&reply, "Greenlight cannot check the approvers with Slack right now; nothing changed. Please try again.")
                    .await;
            }
        }
        match service.revoke_window_as(&id, user).await {
            Ok(_) => tracing::info!(action_id = %id, user, "access window revoked from Slack"),
            Err(e) => {
                tracing::warn!(action_id = %id, error = %e, "cannot revoke an access window");
                self.tell(
                    &reply,
                    "Greenlight could not revoke this access right now. Please try again.",
                )
                .await
            }
        }
    }

    /// The requester, or an approver of the action's rule. When Slack cannot say whether
    /// `user` owns the requester's email, only being an approver counts.
    async fn may_revoke(&self, action: &Action, user: &str) -> Result<bool, SlackError> {
        let requester = self.requester_is(action, user).await;
        if matches!(requester, Ok(true)) {
            return Ok(true);
        }
        if self
            .directory
            .is_approver(&action.policy.approvers, user)
            .await?
        {
            return Ok(true);
        }
        requester.map(|_| false)
    }
}

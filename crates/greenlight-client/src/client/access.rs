//! Access windows from the requesting side, beyond asking for one (an
//! [`ActionRequest`](crate::domain::ActionRequest) with `window_seconds`, through
//! [`Client::request`]): list those in force, revoke one.
//! Using a window's grant is the enforcement point's business (`POST /v1/grants/verify`
//! with `use`), not the requester's.

use super::{Client, ClientError};
use crate::domain::{Action, ActionId};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

impl Client {
    /// The access windows in force (`GET /v1/access?active=true`) this client may see: the
    /// ones it requested, or all of them with the admin or auditor role. Soonest to end
    /// first.
    pub async fn active_windows(&self) -> Result<Vec<Action>, ClientError> {
        #[derive(Deserialize)]
        struct Windows {
            windows: Vec<Action>,
        }
        let list: Windows = self
            .call(
                Method::GET,
                "/v1/access?active=true",
                None,
                Self::CALL_TIMEOUT,
            )
            .await?;
        Ok(list.windows)
    }

    /// Revokes the grant of an approved action (`POST /v1/actions/{id}/revoke`): an access
    /// window ends at once, on every replica. The admin role may revoke any grant, the
    /// creating client its own windows. The answer is the action, with how its window ended
    /// and its uses.
    pub async fn revoke(&self, id: &ActionId, reason: Option<&str>) -> Result<Action, ClientError> {
        let body = reason.map(|r| json!({ "reason": r }).to_string().into_bytes());
        self.call(
            Method::POST,
            &format!("/v1/actions/{id}/revoke"),
            body,
            Self::CALL_TIMEOUT,
        )
        .await
    }
}

//! Using an access window's grant: one `POST /v1/grants/verify` with `"use": true` per
//! request an enforcement point (the grant's audience) lets through. The server checks
//! the scope, the expiry and the revocation, counts the use and audits it; nothing here
//! is cached, so a revocation stops the very next use.

use super::{Client, ClientError};
use crate::Claims;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

/// The server's answer to one use of a window's grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WindowUse {
    /// Valid: the concrete action and resource fall within the window, which is in force
    /// and issued to this client. The use is counted (`uses`, this one included) and
    /// audited as `access_used`.
    Granted { claims: Box<Claims>, uses: u64 },
    /// Not valid, with the server's reason: `wrong_scope`, `wrong_audience`, `expired`,
    /// `revoked`, `bad_signature`. Nothing was counted.
    Refused { reason: String },
}

impl WindowUse {
    /// The claims of a granted use.
    pub fn granted(&self) -> Option<&Claims> {
        match self {
            WindowUse::Granted { claims, .. } => Some(claims),
            WindowUse::Refused { .. } => None,
        }
    }
}

/// `{"valid": true, "claims": {...}, "uses": n}` or `{"valid": false, "reason": "..."}`.
#[derive(Deserialize)]
struct Answer {
    valid: bool,
    claims: Option<Box<Claims>>,
    uses: Option<u64>,
    reason: Option<String>,
}

impl Client {
    /// One use of the access window's grant `token` for the concrete `action` on
    /// `resource`, by this client (which must be the grant's audience): `POST
    /// /v1/grants/verify` with `"use": true`. A use the server refuses is
    /// [`WindowUse::Refused`]; an error (Greenlight unreachable, or a `400` for a grant
    /// that is not a window's) is an `Err`: never a use.
    pub async fn use_grant(
        &self,
        token: &str,
        action: &str,
        resource: &str,
    ) -> Result<WindowUse, ClientError> {
        let body = json!({
            "token": token, "action": action, "resource": resource, "use": true,
        });
        let answer: Answer = self
            .call(
                Method::POST,
                "/v1/grants/verify",
                Some(body.to_string().into_bytes()),
                Self::CALL_TIMEOUT,
            )
            .await?;
        match answer {
            Answer {
                valid: true,
                claims: Some(claims),
                uses: Some(uses),
                ..
            } => Ok(WindowUse::Granted { claims, uses }),
            Answer { valid: false, .. } => Ok(WindowUse::Refused {
                reason: answer.reason.unwrap_or_default(),
            }),
            // "Valid" without the claims or the count is not an answer to a use.
            Answer { valid: true, .. } => Err(ClientError::Api {
                status: 200,
                code: crate::error::ErrorCode::BadResponse,
                message: "a valid use without its claims or count".into(),
            }),
        }
    }
}

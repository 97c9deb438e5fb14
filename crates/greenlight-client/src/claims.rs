//! The claims of a grant: what the server signs and a client verifies.

use serde::{Deserialize, Serialize};

/// The claims of a grant token. `aud` is the client that asked; `approvers` are the people
/// who approved, or `policy:<rule>` for an auto-approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Claims {
    /// `GREENLIGHT_PUBLIC_URL`, or `greenlight` when it is unset.
    pub iss: String,
    /// The requester's id.
    pub sub: String,
    /// The client id that created the action.
    pub aud: String,
    /// The action id.
    pub aid: String,
    /// The action name.
    pub act: String,
    /// The resource.
    pub res: String,
    pub approvers: Vec<String>,
    /// Issued at, unix seconds (the decision time).
    pub iat: i64,
    /// Expires at, unix seconds: `iat` + the rule's `grant_ttl`.
    pub exp: i64,
    /// A ULID, unique per grant: the key of single use.
    pub jti: String,
    /// The digest of the one HTTP request a gate held for this approval: a gate
    /// forwards only a request with this digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dig: Option<String>,
}

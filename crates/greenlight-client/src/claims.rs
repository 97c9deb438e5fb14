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
    /// Set on the grant of an access window (its length in seconds): `act` and `res` are
    /// then patterns (see [`scope_covers`]), and the grant is used many times, never consumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub win: Option<u64>,
}

impl Claims {
    /// Whether this grant covers a concrete `action` on `resource`.
    pub fn covers(&self, action: &str, resource: &str) -> bool {
        self.covers_action(action) && self.covers_resource(resource)
    }

    /// Whether `action` is this grant's, or within its window's pattern.
    pub fn covers_action(&self, action: &str) -> bool {
        match self.win {
            Some(_) => scope_covers(&self.act, action),
            None => self.act == action,
        }
    }

    /// Whether `resource` is this grant's, or within its window's pattern.
    pub fn covers_resource(&self, resource: &str) -> bool {
        match self.win {
            Some(_) => scope_covers(&self.res, resource),
            None => self.res == resource,
        }
    }
}

/// Whether `value` falls within the scope `pattern` of an access window: a pattern ending
/// in `*` covers every value that starts with what precedes the `*` (the policy's glob,
/// where a `*` may stand only at the end); any other pattern covers only itself.
pub fn scope_covers(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}

#[cfg(test)]
mod tests {
    use super::scope_covers;

    #[test]
    fn a_trailing_star_covers_what_starts_with_its_prefix() {
        assert!(scope_covers("db.*", "db.select"));
        assert!(scope_covers("db.*", "db."));
        assert!(scope_covers("*", "anything"));
        assert!(scope_covers("postgres://prod/*", "postgres://prod/users"));
        assert!(!scope_covers("db.*", "db"));
        assert!(!scope_covers("db.*", "dbx.select"));
        assert!(!scope_covers("db.select", "db.select2"));
        assert!(scope_covers("db.select", "db.select"));
    }
}

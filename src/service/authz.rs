//! Who may do what: every role check of the server, decided here once. Use cases ask
//! [`Client::authorize`]; the HTTP layer only maps the typed refusal to a 403.

use super::Client;
use crate::policy::Role;

/// Something a client may be allowed to do, by the roles the policy file gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// Create actions: `requester` or `admin`.
    CreateActions,
    /// Read every client's actions (others read only their own): `auditor` or `admin`.
    ReadAllActions,
    /// Decide any action by break-glass: `admin`.
    DecideActions,
    /// Verify any client's grant (others verify only their own): `admin`.
    VerifyAnyGrant,
    /// Revoke an approved action's grant: `admin` (the creator of an access window may
    /// revoke that window: see [`Client::authorize_revoke`]).
    RevokeGrants,
    /// Reload the policy file and client secrets: `admin`.
    ReloadPolicy,
    /// Read the audit trail: `auditor` or `admin`.
    ReadAudit,
}

impl Permission {
    /// The roles that grant it (any one suffices).
    pub fn roles(self) -> &'static [Role] {
        match self {
            Permission::CreateActions => &[Role::Requester, Role::Admin],
            Permission::ReadAllActions | Permission::ReadAudit => &[Role::Auditor, Role::Admin],
            Permission::DecideActions
            | Permission::VerifyAnyGrant
            | Permission::RevokeGrants
            | Permission::ReloadPolicy => &[Role::Admin],
        }
    }
}

/// Why a client was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Forbidden {
    /// None of its roles grants the permission.
    #[error("the client lacks {0:?}")]
    Lacks(Permission),
    /// Only the client that created an action may cancel it.
    #[error("the client did not create this action")]
    NotTheCreator,
}

impl Client {
    /// Whether one of the client's roles grants `permission`.
    pub fn may(&self, permission: Permission) -> bool {
        permission.roles().iter().any(|r| self.spec.has_role(*r))
    }

    /// Revoking `action`'s grant: an admin, or the client that created it when it is an
    /// access window (ending its own access early, as `greenlight access revoke` does).
    pub fn authorize_revoke(&self, action: &crate::domain::Action) -> Result<(), Forbidden> {
        if action.window.is_some() && action.client == self.id() {
            return Ok(());
        }
        self.authorize(Permission::RevokeGrants)
    }

    pub fn authorize(&self, permission: Permission) -> Result<(), Forbidden> {
        if self.may(permission) {
            Ok(())
        } else {
            Err(Forbidden::Lacks(permission))
        }
    }
}

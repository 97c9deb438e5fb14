//! Grants: the signed token every approval carries, so that a service
//! can check offline, against the published JWKS, that an action really was approved.
//!
//! `keys` holds the Ed25519 keys and turns an approved action into a JWT and back; what
//! needs the store (scope, revocation and single use) is a use case of the service
//! (`service/grants.rs`).

mod keys;
mod provider;

pub use greenlight_client::Claims;
pub use keys::{GrantKeys, generate_signing_key};

use serde::{Deserialize, Serialize};

/// Why a grant is not valid, as `POST /v1/grants/verify` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
#[derive(utoipa::ToSchema)]
pub enum GrantRejection {
    #[error("the grant has expired")]
    Expired,
    /// Not a token, not signed by a current or previous key, or not issued by us.
    #[error("the grant's signature does not verify")]
    BadSignature,
    /// Issued to another client (its `aud`): only that client, or an admin, may check or
    /// consume it, so nobody can spend another client's single-use grant.
    #[error("the grant was issued to another client")]
    WrongAudience,
    #[error("the grant is for another action or resource")]
    WrongScope,
    #[error("the grant was already used")]
    AlreadyUsed,
    #[error("the grant was revoked")]
    Revoked,
}

/// Whether a message published on a decision channel could have come from this
/// deployment. Anyone who can reach Redis can publish there, so an approval counts only
/// with a grant these keys signed for that very action (its expiry aside: a waiter
/// re-reading after a reconnect may get an old decision). Other outcomes carry no grant
/// and pass: a forged one can only end a wait early, with a refusal (fail closed).
pub fn vouches_for(keys: &keys::GrantKeys, published: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Published {
        id: String,
        status: String,
        decision: Option<PublishedDecision>,
    }
    #[derive(serde::Deserialize)]
    struct PublishedDecision {
        grant: Option<PublishedGrant>,
    }
    #[derive(serde::Deserialize)]
    struct PublishedGrant {
        token: String,
    }
    let Ok(message) = serde_json::from_slice::<Published>(published) else {
        return false;
    };
    if message.status != "approved" {
        return true;
    }
    message
        .decision
        .and_then(|d| d.grant)
        .and_then(|g| keys.verify_at(&g.token, i64::MIN).ok())
        .is_some_and(|claims| claims.aid == message.id)
}

//! The caller's side of grants: a decision is an approval only when its grant
//! verifies, offline, against the server's JWKS. Anyone who can reach Redis can publish
//! an "approved" action object on a decision channel; nobody but Greenlight can sign it.

use super::jwks::{JwksCache, JwksError};
use crate::Claims;
use crate::domain::{Action, Status};
use jsonwebtoken::{Algorithm, Validation};

/// Why an approved-looking action is not taken as approved.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("the action is {0}, not approved: it has no grant")]
    NotApproved(Status),
    #[error("the approval carries no grant")]
    Missing,
    #[error("the grant has no key id")]
    NoKeyId,
    #[error(transparent)]
    Jwks(#[from] JwksError),
    /// Bad signature, expired, wrong audience or issuer, or not a JWT at all.
    #[error("the grant does not verify: {0}")]
    Invalid(String),
    /// The token is genuine but was issued for something else.
    #[error("the grant is for {claim} `{found}`, not `{expected}`")]
    WrongScope {
        claim: &'static str,
        found: String,
        expected: String,
    },
}

impl GrantError {
    /// A failure to check (the key server is unreachable), as opposed to a grant that is
    /// checked and found wanting.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, GrantError::Jwks(JwksError::Fetch { .. }))
    }
}

/// Checks grants against one server's JWKS, for one client (the grant's `aud`).
pub struct GrantVerifier {
    jwks: JwksCache,
    audience: String,
    issuer: Option<String>,
}

impl GrantVerifier {
    pub fn new(jwks: JwksCache, audience: &str) -> Self {
        Self {
            jwks,
            audience: audience.to_owned(),
            issuer: None,
        }
    }

    /// Also require this `iss` (the server's `GREENLIGHT_PUBLIC_URL`).
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The claims of `action`'s grant when `action` is approved and its grant is signed by
    /// a key of the JWKS, unexpired, issued to the client that created the action (`aud`;
    /// so an admin or auditor can check another client's action too; for an access window,
    /// to the window's audience), and names this very action, action name and resource
    /// (a window's patterns).
    pub async fn verify_action(&self, action: &Action) -> Result<Claims, GrantError> {
        if action.status != Status::Approved {
            return Err(GrantError::NotApproved(action.status));
        }
        let grant = action
            .decision
            .as_ref()
            .and_then(|d| d.grant.as_ref())
            .ok_or(GrantError::Missing)?;
        // A window's grant is issued to its audience, the enforcement point that accepts
        // it (the creating client unless the request named another).
        let audience = action
            .window
            .as_ref()
            .map_or(action.client.as_str(), |w| w.audience.as_str());
        let claims = self.verify(&grant.token, audience).await?;
        scope("aid", &claims.aid, action.id.as_str())?;
        scope("act", &claims.act, &action.action)?;
        scope("res", &claims.res, &action.resource)?;
        if let Some(binding) = &action.binding {
            scope(
                "dig",
                claims.dig.as_deref().unwrap_or_default(),
                &binding.digest,
            )?;
        }
        Ok(claims)
    }

    /// The claims of a grant token signed by a key of the JWKS, unexpired and issued to
    /// this client. Scope (which action) is the caller's to check.
    pub async fn verify_token(&self, token: &str) -> Result<Claims, GrantError> {
        self.verify(token, &self.audience).await
    }

    async fn verify(&self, token: &str, audience: &str) -> Result<Claims, GrantError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| GrantError::Invalid(e.to_string()))?;
        let kid = header.kid.ok_or(GrantError::NoKeyId)?;
        let (key, _) = self.jwks.key(&kid).await?;
        // EdDSA only, whatever the header says: the algorithm is ours to choose.
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = 0;
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
        }
        jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| GrantError::Invalid(e.to_string()))
    }
}

fn scope(claim: &'static str, found: &str, expected: &str) -> Result<(), GrantError> {
    if found == expected {
        return Ok(());
    }
    Err(GrantError::WrongScope {
        claim,
        found: found.to_owned(),
        expected: expected.to_owned(),
    })
}

//! Letting a gated request through on an access window's grant, without asking anyone:
//! the part the [`RequireApproval`](super::RequireApproval) layer and `greenlight proxy`
//! share.
//!
//! The caller sends `Greenlight-Grant: <window grant>`. The request goes through only
//! when the grant is a window's, issued to this gate (its `aud`), for this very requester
//! (its `sub`, compared with the requester the route extracts, never with anything the
//! grant says about itself), and when Greenlight accepts one use of it for the route's
//! concrete action and resource (`POST /v1/grants/verify` with `"use": true`). Every such
//! request asks Greenlight: nothing is cached, so a revocation stops the next request,
//! and every request let through is one audited use. Anything else (no grant, another
//! kind of grant, a refusal, Greenlight unreachable) is held for approval as any request.

use super::Holder;
use super::headers::{ACTION_ID, GRANT};
use crate::Claims;
use crate::client::window::WindowUse;
use crate::domain::ActionRequest;
use http::{HeaderMap, HeaderValue};

/// The longest `Greenlight-Grant` taken as a token to check (a grant is under 2 KiB).
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The grant a caller offers: its one `Greenlight-Grant` header, as text. Several such
/// headers offer nothing (which one would the upstream read?).
pub fn offered_grant(headers: &HeaderMap) -> Option<String> {
    let mut values = headers.get_all(GRANT).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    let token = value.to_str().ok()?.trim();
    (!token.is_empty() && token.len() <= MAX_TOKEN_BYTES).then(|| token.to_owned())
}

/// A request let through on an access window: forward it with [`WindowPass::headers`].
#[derive(Debug)]
pub struct WindowPass {
    token: HeaderValue,
    claims: Claims,
    uses: u64,
}

impl WindowPass {
    /// The headers the request is forwarded with: the window's grant (the one checked)
    /// and the window's action id, replacing whatever the caller sent under those names.
    pub fn headers(&self) -> [(&'static str, HeaderValue); 2] {
        [
            (GRANT, self.token.clone()),
            (
                ACTION_ID,
                HeaderValue::from_str(&self.claims.aid).expect("an id is a header value"),
            ),
        ]
    }

    /// The window grant's claims, as Greenlight answered them.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// How many times the window has been used, this request included.
    pub fn uses(&self) -> u64 {
        self.uses
    }
}

impl Holder {
    /// Whether `request` (what the route would ask approval for) goes through on the
    /// window grant `token`: `Some` only when Greenlight counted this use. `None` means
    /// "ask for approval as usual", including when Greenlight cannot be asked.
    pub async fn window_pass(&self, token: &str, request: &ActionRequest) -> Option<WindowPass> {
        let client = self.client();
        let (action, resource) = (request.action.as_str(), request.resource.as_str());
        let requester = request.requester.id.as_str();
        // Checked here first, offline (signature, expiry, audience): so that the requester
        // is compared before Greenlight counts a use, and a use it counts is a request
        // this gate forwards.
        let offered = match client.verify_grant_token(token).await {
            Ok(claims) => claims,
            Err(e) => {
                tracing::info!(error = %e, "Greenlight-Grant does not verify; asking for approval");
                return None;
            }
        };
        if let Err(why) = fits(&offered, action, resource, requester) {
            tracing::info!(action_id = %offered.aid, action, resource, requester, why,
                "Greenlight-Grant does not cover this request; asking for approval");
            return None;
        }
        match client.use_grant(token, action, resource).await {
            Ok(WindowUse::Granted { claims, uses }) => {
                // The same token, so the same claims; checked again all the same, on
                // exactly what Greenlight vouched for.
                if let Err(why) = fits(&claims, action, resource, requester) {
                    tracing::warn!(action_id = %claims.aid, why,
                        "Greenlight accepted a use this gate does not match; asking for approval");
                    return None;
                }
                let token = HeaderValue::from_str(token).ok()?;
                tracing::info!(action_id = %claims.aid, action, resource, requester, uses,
                    "let through on an access window");
                Some(WindowPass {
                    token,
                    claims: *claims,
                    uses,
                })
            }
            Ok(WindowUse::Refused { reason }) => {
                tracing::info!(action_id = %offered.aid, action, resource, requester, reason,
                    "access window refused; asking for approval");
                None
            }
            Err(e) => {
                tracing::warn!(action_id = %offered.aid, error = %e,
                    "cannot check the access window; asking for approval");
                None
            }
        }
    }
}

/// Whether a window grant's claims cover `action` on `resource` for `requester`.
fn fits(
    claims: &Claims,
    action: &str,
    resource: &str,
    requester: &str,
) -> Result<(), &'static str> {
    if claims.win.is_none() {
        return Err("not an access window's grant");
    }
    if claims.sub != requester {
        return Err("the window is another requester's");
    }
    if !claims.covers(action, resource) {
        return Err("outside the window's action and resource");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            iss: "greenlight".into(),
            sub: "alice".into(),
            aud: "db-proxy".into(),
            aid: "01J0000000000000000000000A".into(),
            act: "db.*".into(),
            res: "postgres://prod/*".into(),
            approvers: vec!["U0BOB".into()],
            iat: 0,
            exp: 1,
            jti: "01J0000000000000000000000B".into(),
            dig: None,
            win: Some(3600),
        }
    }

    #[test]
    fn a_window_fits_its_requester_within_its_scope_only() {
        let c = claims();
        assert!(fits(&c, "db.update", "postgres://prod/orders", "alice").is_ok());
        assert!(fits(&c, "db.update", "postgres://prod/orders", "bob").is_err());
        assert!(fits(&c, "db.update", "postgres://staging/orders", "alice").is_err());
        assert!(fits(&c, "deploy.prod", "postgres://prod/orders", "alice").is_err());
        // A requester id is compared whole, never as a prefix or a pattern.
        assert!(fits(&c, "db.update", "postgres://prod/orders", "alice2").is_err());
        assert!(fits(&c, "db.update", "postgres://prod/orders", "").is_err());
        let single = Claims {
            win: None,
            act: "db.update".into(),
            res: "postgres://prod/orders".into(),
            ..claims()
        };
        assert!(fits(&single, "db.update", "postgres://prod/orders", "alice").is_err());
    }

    #[test]
    fn only_one_grant_header_is_an_offer() {
        let mut headers = HeaderMap::new();
        assert_eq!(offered_grant(&headers), None);
        headers.insert(GRANT, HeaderValue::from_static(" eyJ.a.b "));
        assert_eq!(offered_grant(&headers).as_deref(), Some("eyJ.a.b"));
        headers.append(GRANT, HeaderValue::from_static("eyJ.c.d"));
        assert_eq!(offered_grant(&headers), None);
        headers.insert(GRANT, HeaderValue::from_static(""));
        assert_eq!(offered_grant(&headers), None);
        headers.insert(GRANT, HeaderValue::from_bytes(b"\xffbad").unwrap());
        assert_eq!(offered_grant(&headers), None);
    }
}

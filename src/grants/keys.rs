//! The Ed25519 keys that sign grants: loading them (or making a development one), the
//! JWKS that publishes them, and signing and checking one token with `jsonwebtoken`.
//!
//! Each key's `kid` is its RFC 7638 JWK thumbprint, so a verifier finds the key in the
//! JWKS and nobody has to invent names. During a rotation the previous key is still
//! published and accepted, but only the current one signs.

use super::{Claims, GrantRejection};
use crate::config::Settings;
use crate::domain::{Action, Grant};
use anyhow::{Context, anyhow};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::TryRngCore;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::fmt;
use std::time::Duration;

/// The issuer when `GREENLIGHT_PUBLIC_URL` is unset: a constant, so that replicas agree.
const DEFAULT_ISSUER: &str = "greenlight";
/// The longest grant lifetime honoured (a typo like `grant_ttl = "9999999d"` is capped).
const MAX_TTL: Duration = Duration::from_secs(366 * 24 * 3600);
const HOW_TO_GENERATE: &str = "generate one with `openssl genpkey -algorithm ed25519`";

/// A public key as the JWKS shows it, ready to verify with.
struct PublicKey {
    kid: String,
    /// base64url of the 32 key bytes: the JWK `x`.
    x: String,
    decoding: DecodingKey,
}

impl PublicKey {
    fn new(key: &VerifyingKey) -> Self {
        let x = URL_SAFE_NO_PAD.encode(key.as_bytes());
        // RFC 7638: the required members in lexicographic order, without whitespace.
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        // The same `x` the JWKS publishes: what we check is what others check.
        let decoding = DecodingKey::from_ed_components(&x).expect("base64url of 32 bytes");
        Self { kid, x, decoding }
    }

    fn jwk(&self) -> Value {
        json!({
            "kty": "OKP", "crv": "Ed25519", "x": self.x, "kid": self.kid,
            "alg": "EdDSA", "use": "sig",
        })
    }
}

/// The keys that sign and verify grants. `Debug` shows key ids only.
pub struct GrantKeys {
    issuer: String,
    signing: EncodingKey,
    current: PublicKey,
    previous: Option<PublicKey>,
    generated: bool,
}

impl fmt::Debug for GrantKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantKeys")
            .field("issuer", &self.issuer)
            .field("kid", &self.current.kid)
            .field("previous_kid", &self.previous.as_ref().map(|p| &p.kid))
            .field("generated", &self.generated)
            .finish_non_exhaustive()
    }
}

/// A new random Ed25519 private key as PKCS#8 PEM (what `GREENLIGHT_GRANT_SIGNING_KEY`
/// holds), from the operating system's random source.
pub fn generate_signing_key() -> anyhow::Result<SecretString> {
    let pem = random_key()?
        .to_pkcs8_pem(LineEnding::LF)
        .context("encoding a generated key")?;
    Ok(SecretString::from(pem.as_str()))
}

fn random_key() -> anyhow::Result<SigningKey> {
    let mut seed = secrecy::zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng
        .try_fill_bytes(seed.as_mut())
        .context("reading the operating system's random source")?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Environment variables often carry a PEM on one line with literal `\n`s.
fn unescape(pem: &str) -> String {
    let pem = pem.trim();
    if pem.contains('\n') {
        pem.to_owned()
    } else {
        pem.replace("\\n", "\n")
    }
}

fn parse_private(pem: &str) -> anyhow::Result<SigningKey> {
    SigningKey::from_pkcs8_pem(&unescape(pem))
        .map_err(|e| anyhow!("not an Ed25519 private key in PKCS#8 PEM ({e}); {HOW_TO_GENERATE}"))
}

/// A previous key may be given as the old private key (simply moved over from
/// `GREENLIGHT_GRANT_SIGNING_KEY`) or as its public key.
fn parse_public(pem: &str) -> anyhow::Result<VerifyingKey> {
    let pem = unescape(pem);
    if let Ok(private) = SigningKey::from_pkcs8_pem(&pem) {
        return Ok(private.verifying_key());
    }
    VerifyingKey::from_public_key_pem(&pem).map_err(|e| {
        anyhow!(
            "not an Ed25519 key in PEM, neither PKCS#8 private nor SPKI public ({e}); \
             use the previous value of GREENLIGHT_GRANT_SIGNING_KEY"
        )
    })
}

impl GrantKeys {
    /// Loads `GREENLIGHT_GRANT_SIGNING_KEY` and `GREENLIGHT_GRANT_PREVIOUS_KEY`. Without a
    /// signing key, a development key is generated (with a warning): its grants stop
    /// verifying when the process exits, and replicas do not accept each other's.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let issuer = settings
            .public_url
            .as_deref()
            .map(|u| u.trim().trim_end_matches('/'))
            .filter(|u| !u.is_empty())
            .unwrap_or(DEFAULT_ISSUER)
            .to_owned();
        let (signing, generated) = match &settings.grant_signing_key {
            Some(pem) => (
                parse_private(pem.expose_secret()).context("GREENLIGHT_GRANT_SIGNING_KEY")?,
                false,
            ),
            None => (random_key()?, true),
        };
        let previous = settings
            .grant_previous_key
            .as_ref()
            .map(|pem| parse_public(pem.expose_secret()))
            .transpose()
            .context("GREENLIGHT_GRANT_PREVIOUS_KEY")?;
        let mut keys = Self::new(issuer, &signing, previous.as_ref())?;
        keys.generated = generated;
        if generated {
            tracing::warn!(
                kid = %keys.current.kid,
                "GREENLIGHT_GRANT_SIGNING_KEY is not set: grants are signed with a key generated \
                 at start. They stop verifying when this process exits, and other replicas \
                 reject them. Set a key in production ({HOW_TO_GENERATE})"
            );
        } else {
            tracing::info!(kid = %keys.current.kid,
                previous_kid = keys.previous.as_ref().map(|p| p.kid.as_str()),
                issuer = %keys.issuer, "grant signing key loaded");
        }
        Ok(keys)
    }

    /// Keys from a private key and, during a rotation, the previous public key.
    pub fn new(
        issuer: impl Into<String>,
        signing: &SigningKey,
        previous: Option<&VerifyingKey>,
    ) -> anyhow::Result<Self> {
        let der = signing
            .to_pkcs8_der()
            .context("encoding the signing key as PKCS#8")?;
        let public = signing.verifying_key();
        let known: Vec<VerifyingKey> = std::iter::once(public).chain(previous.copied()).collect();
        super::provider::register(der.as_bytes(), signing, &known);
        let keys = Self {
            issuer: issuer.into(),
            signing: EncodingKey::from_ed_der(der.as_bytes()),
            current: PublicKey::new(&public),
            previous: previous.filter(|p| **p != public).map(PublicKey::new),
            generated: false,
        };
        // Sign and check once, so a key the JWT library cannot use fails the start,
        // not an approval.
        let probe = Claims {
            iss: keys.issuer.clone(),
            sub: "probe".into(),
            aud: "probe".into(),
            aid: "probe".into(),
            act: "probe".into(),
            res: "probe".into(),
            approvers: Vec::new(),
            iat: 0,
            exp: 1,
            jti: ulid::Ulid::new().to_string(),
            dig: None,
            win: None,
        };
        let token = keys.sign(&probe).context("signing with the grant key")?;
        keys.verify_at(&token, 0)
            .map_err(|e| anyhow!("the grant key does not verify its own signature: {e}"))?;
        Ok(keys)
    }

    /// The `iss` of every grant.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The key id (`kid`) of the signing key.
    pub fn kid(&self) -> &str {
        &self.current.kid
    }

    /// The signing key was generated at start (no `GREENLIGHT_GRANT_SIGNING_KEY`).
    pub fn is_generated(&self) -> bool {
        self.generated
    }

    /// `GET /.well-known/jwks.json`: the current key, then the previous one if any.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = std::iter::once(&self.current)
            .chain(&self.previous)
            .map(PublicKey::jwk)
            .collect();
        json!({ "keys": keys })
    }

    /// The grant of an approved action, issued at `now` and valid for `ttl`.
    pub fn issue(&self, action: &Action, ttl: Duration, now: DateTime<Utc>) -> Grant {
        let approvers = match &action.decision {
            Some(d) => match &d.by_policy {
                Some(rule) => vec![format!("policy:{rule}")],
                None => d.decided_by.clone(),
            },
            None => Vec::new(),
        };
        // A window's grant lives as long as the window and answers to its audience.
        let (ttl, aud, win) = match &action.window {
            Some(w) => (
                Duration::from_secs(w.seconds),
                w.audience.clone(),
                Some(w.seconds),
            ),
            None => (ttl, action.client.clone(), None),
        };
        let iat = now.timestamp();
        let exp = iat + ttl.min(MAX_TTL).as_secs() as i64;
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: action.requester.id.clone(),
            aud,
            aid: action.id.to_string(),
            act: action.action.clone(),
            res: action.resource.clone(),
            approvers,
            iat,
            exp,
            jti: ulid::Ulid::new().to_string(),
            dig: action.binding.as_ref().map(|b| b.digest.clone()),
            win,
        };
        // The key was checked by signing at start, and the claims are plain strings and
        // numbers: signing cannot fail here.
        let token = self.sign(&claims).expect("a checked Ed25519 key signs");
        Grant {
            token,
            expires_at: DateTime::from_timestamp(exp, 0).expect("within a year of now"),
            action: action.action.clone(),
            resource: action.resource.clone(),
        }
    }

    fn sign(&self, claims: &Claims) -> jsonwebtoken::errors::Result<String> {
        let header = Header {
            typ: Some("JWT".into()),
            kid: Some(self.current.kid.clone()),
            ..Header::new(Algorithm::EdDSA)
        };
        jsonwebtoken::encode(&header, claims, &self.signing)
    }

    fn key(&self, kid: &str) -> Option<&PublicKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.kid == kid)
    }

    /// Checks the signature (current or previous key, chosen by `kid`), the issuer and the
    /// expiry at the current time.
    pub fn verify(&self, token: &str) -> Result<Claims, GrantRejection> {
        self.verify_at(token, Utc::now().timestamp())
    }

    /// [`GrantKeys::verify`] at `now` (unix seconds): the signature first, then expiry.
    pub fn verify_at(&self, token: &str, now: i64) -> Result<Claims, GrantRejection> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| GrantRejection::BadSignature)?;
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.key(kid))
            .ok_or(GrantRejection::BadSignature)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        // Expiry is checked below against `now`, with no leeway: a grant's lifetime is
        // what the policy says.
        validation.validate_exp = false;
        // Any client may verify a grant; `aud` is in the claims for whoever cares.
        validation.validate_aud = false;
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map_err(|_| GrantRejection::BadSignature)?
            .claims;
        if now >= claims.exp {
            return Err(GrantRejection::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;

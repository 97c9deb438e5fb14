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
        let iat = now.timestamp();
        let exp = iat + ttl.min(MAX_TTL).as_secs() as i64;
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: action.requester.id.clone(),
            aud: action.client.clone(),
            aid: action.id.to_string(),
            act: action.action.clone(),
            res: action.resource.clone(),
            approvers,
            iat,
            exp,
            jti: ulid::Ulid::new().to_string(),
            dig: action.binding.as_ref().map(|b| b.digest.clone()),
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
mod tests {
    use super::*;
    use crate::domain::{ActionId, DecidedBy, Outcome, PolicySnapshot, Requester, Status};

    fn key() -> SigningKey {
        random_key().unwrap()
    }

    fn approved(by: DecidedBy) -> Action {
        let now = Utc::now();
        let mut action = Action {
            id: ActionId::generate(),
            status: Status::Pending,
            action: "db.drop_table".into(),
            resource: "postgres://prod/users".into(),
            requester: Requester {
                id: "u-123".into(),
                ..Default::default()
            },
            reason: None,
            context: Default::default(),
            client: "payments-api".into(),
            policy: PolicySnapshot::default(),
            votes: Vec::new(),
            created_at: now,
            expires_at: now,
            callback_url: None,
            escalation: None,
            binding: None,
            decision: None,
        };
        action.decide(Outcome::Approved, by, None, now).unwrap();
        action
    }

    fn decode_part(part: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn kid_is_the_rfc_7638_thumbprint() {
        // RFC 8037 appendix A.3: the thumbprint of its example Ed25519 public key.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let public = VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
        assert_eq!(
            PublicKey::new(&public).kid,
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn issues_a_token_whose_claims_and_header_match() {
        let keys = GrantKeys::new("https://greenlight.example", &key(), None).unwrap();
        let action = approved(DecidedBy::People(vec!["U0BOB".into(), "U0CAROL".into()]));
        let now = Utc::now();
        let grant = keys.issue(&action, Duration::from_secs(900), now);
        assert_eq!(grant.action, "db.drop_table");
        assert_eq!(grant.expires_at.timestamp(), now.timestamp() + 900);

        let parts: Vec<&str> = grant.token.split('.').collect();
        let header = decode_part(parts[0]);
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["kid"], keys.kid());

        let claims = keys.verify(&grant.token).unwrap();
        assert_eq!(claims.iss, "https://greenlight.example");
        assert_eq!(claims.sub, "u-123");
        assert_eq!(claims.aud, "payments-api");
        assert_eq!(claims.aid, action.id.to_string());
        assert_eq!(claims.approvers, ["U0BOB", "U0CAROL"]);
        assert_eq!(claims.exp - claims.iat, 900);
        assert!(ulid::Ulid::from_string(&claims.jti).is_ok());

        let auto = keys.issue(
            &approved(DecidedBy::Policy("reads".into())),
            Duration::from_secs(60),
            now,
        );
        assert_eq!(
            keys.verify(&auto.token).unwrap().approvers,
            ["policy:reads"]
        );
    }

    #[test]
    fn rejects_expired_tampered_and_foreign_tokens() {
        let keys = GrantKeys::new("greenlight", &key(), None).unwrap();
        let action = approved(DecidedBy::People(vec!["U0BOB".into()]));
        let now = Utc::now();
        let token = keys.issue(&action, Duration::from_secs(60), now).token;
        let t = now.timestamp();
        assert!(keys.verify_at(&token, t + 59).is_ok());
        assert_eq!(keys.verify_at(&token, t + 60), Err(GrantRejection::Expired));

        // Another resource in the payload: the signature no longer matches.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut claims = decode_part(&parts[1]);
        claims["res"] = "postgres://prod/payments".into();
        parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
        let tampered = parts.join(".");
        assert_eq!(keys.verify(&tampered), Err(GrantRejection::BadSignature));
        assert_eq!(
            keys.verify("not a token"),
            Err(GrantRejection::BadSignature)
        );

        // Another key, even one claiming our `kid`.
        let other = GrantKeys::new("greenlight", &key(), None).unwrap();
        let foreign = other.issue(&action, Duration::from_secs(60), now).token;
        assert_eq!(keys.verify(&foreign), Err(GrantRejection::BadSignature));
        let forged = jsonwebtoken::encode(
            &Header {
                kid: Some(keys.kid().to_owned()),
                ..Header::new(Algorithm::EdDSA)
            },
            &other.verify(&foreign).unwrap(),
            &other.signing,
        )
        .unwrap();
        assert_eq!(keys.verify(&forged), Err(GrantRejection::BadSignature));

        // Our key, another issuer.
        let elsewhere = GrantKeys::new("https://elsewhere.example", &key(), None).unwrap();
        let token = elsewhere.issue(&action, Duration::from_secs(60), now).token;
        let same_key_other_issuer = GrantKeys {
            issuer: "greenlight".into(),
            ..elsewhere
        };
        assert_eq!(
            same_key_other_issuer.verify(&token),
            Err(GrantRejection::BadSignature)
        );
    }

    #[test]
    fn the_previous_key_still_verifies_and_is_published() {
        let (old, new) = (key(), key());
        let before = GrantKeys::new("greenlight", &old, None).unwrap();
        let action = approved(DecidedBy::People(vec!["U0BOB".into()]));
        let token = before
            .issue(&action, Duration::from_secs(60), Utc::now())
            .token;
        let after = GrantKeys::new("greenlight", &new, Some(&old.verifying_key())).unwrap();
        assert_eq!(after.verify(&token).unwrap().aid, action.id.to_string());
        let kids: Vec<Value> = after.jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].clone())
            .collect();
        assert_eq!(kids, [after.kid(), before.kid()]);
        // Without it, the old grant is just a foreign token.
        let forgot = GrantKeys::new("greenlight", &new, None).unwrap();
        assert_eq!(forgot.verify(&token), Err(GrantRejection::BadSignature));
    }

    #[test]
    fn loads_pem_settings_and_never_shows_keys() {
        let pem = generate_signing_key().unwrap();
        let mut settings = Settings::embedded();
        settings.grant_signing_key = Some(pem.clone());
        let keys = GrantKeys::from_settings(&settings).unwrap();
        assert!(!keys.is_generated());
        assert_eq!(keys.issuer(), "greenlight");
        let debug = format!("{keys:?}");
        assert!(debug.contains(keys.kid()));
        assert!(!debug.contains("PRIVATE"));

        // The old key moved to the previous slot, as PEM on one line with `\n`s.
        let mut rotated = Settings::embedded();
        rotated.grant_signing_key = Some(generate_signing_key().unwrap());
        rotated.grant_previous_key = Some(pem.expose_secret().replace('\n', "\\n").into());
        rotated.public_url = Some("https://greenlight.example/".into());
        let rotated = GrantKeys::from_settings(&rotated).unwrap();
        assert_eq!(rotated.issuer(), "https://greenlight.example");
        assert_eq!(rotated.jwks()["keys"][1]["kid"], keys.kid());

        let mut bad = Settings::embedded();
        bad.grant_signing_key = Some("-----BEGIN PRIVATE KEY-----\nnope\n".into());
        let err = format!("{:#}", GrantKeys::from_settings(&bad).unwrap_err());
        assert!(err.contains("GREENLIGHT_GRANT_SIGNING_KEY"), "{err}");
        assert!(err.contains("openssl genpkey"), "{err}");

        let generated = GrantKeys::from_settings(&Settings::embedded()).unwrap();
        assert!(generated.is_generated());
    }

    #[test]
    fn accepts_keys_made_by_openssl() {
        // `openssl genpkey -algorithm ed25519` (PKCS#8 v1) and its `-pubout` form.
        let private = "-----BEGIN PRIVATE KEY-----\n\
                       MC4CAQAwBQYDK2VwBCIEIJCYHk5hyN3aP/EKUMsUzU9U49prrMAZK0RPkIWgOGxW\n\
                       -----END PRIVATE KEY-----\n";
        let public = "-----BEGIN PUBLIC KEY-----\n\
                      MCowBQYDK2VwAyEA4/GZt8nlzAJ+35G4siyENUE5ZuJlCHeyoXzC9jLMIOw=\n\
                      -----END PUBLIC KEY-----\n";
        let signing = parse_private(private).unwrap();
        assert_eq!(parse_public(public).unwrap(), signing.verifying_key());
        assert_eq!(parse_public(private).unwrap(), signing.verifying_key());
    }
}

//! Standard Webhooks signatures: one implementation, used by the server
//! to verify clients, by the CLI and client library to sign, and for what the server sends
//! (decision callbacks, escalation webhooks) with keys derived for that purpose.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::borrow::Cow;
use std::fmt;
use subtle::ConstantTimeEq;

pub const HEADER_CLIENT: &str = "greenlight-client";
pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// How far a timestamp may be from our clock, either way.
pub const TOLERANCE_SECONDS: i64 = 300;

/// A `whsec_`-prefixed, base64 secret. Its bytes never appear in `Debug` output.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SecretError {
    #[error("must start with `whsec_`")]
    Prefix,
    #[error("is not valid base64 after `whsec_`")]
    Base64,
    #[error("is too short (at least 16 bytes of key)")]
    Short,
}

impl Secret {
    pub fn parse(s: &str) -> Result<Self, SecretError> {
        let b64 = s.trim().strip_prefix("whsec_").ok_or(SecretError::Prefix)?;
        let bytes = B64.decode(b64).map_err(|_| SecretError::Base64)?;
        if bytes.len() < 16 {
            return Err(SecretError::Short);
        }
        Ok(Self(bytes))
    }

    /// A fresh random secret in `whsec_` form, for development.
    pub fn generate() -> (Self, String) {
        let bytes: [u8; 32] = rand::random();
        let text = format!("whsec_{}", B64.encode(bytes));
        (Self(bytes.to_vec()), text)
    }

    /// The `whsec_` form of this secret, as Standard Webhooks libraries take it.
    pub fn to_whsec(&self) -> String {
        format!("whsec_{}", B64.encode(&self.0))
    }

    /// The key for one `purpose`: HKDF-SHA256 (RFC 5869) of this secret, without salt,
    /// with the purpose's fixed `info` string, 32 bytes. Whoever holds a derived key can
    /// verify what the server sent for that purpose, but cannot sign client requests,
    /// nor messages of another purpose.
    pub fn derive(&self, purpose: KeyPurpose) -> Secret {
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(None, &self.0)
            .expand(purpose.info().as_bytes(), &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Secret(key.to_vec())
    }

    fn tag(&self, msg_id: &str, timestamp: &str, content: &[u8]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(content);
        mac.finalize().into_bytes().into()
    }

    /// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{content}">`
    pub fn sign(&self, msg_id: &str, timestamp: i64, content: &[u8]) -> String {
        let tag = self.tag(msg_id, &timestamp.to_string(), content);
        format!("v1,{}", B64.encode(tag))
    }
}

/// What a key derived from a secret is for. Each has a fixed `info` string, part of the
/// wire contract: receivers derive the same key from the same secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyPurpose {
    /// Decision callbacks, derived from the creating client's secret.
    Callback,
    /// Escalation webhooks, derived from `GREENLIGHT_NOTIFY_SECRET`.
    EscalationWebhook,
}

impl KeyPurpose {
    /// The HKDF `info` string of this purpose.
    pub const fn info(self) -> &'static str {
        match self {
            KeyPurpose::Callback => "greenlight callback v1",
            KeyPurpose::EscalationWebhook => "greenlight escalation webhook v1",
        }
    }
}

/// The `whsec_` key that verifies what the server sends for `purpose`, from the secret it
/// is derived from (a client's secret for callbacks, `GREENLIGHT_NOTIFY_SECRET` for
/// escalation webhooks), for receivers to give their Standard Webhooks library.
pub fn derive_whsec(secret: &str, purpose: KeyPurpose) -> Result<String, SecretError> {
    Ok(Secret::parse(secret)?.derive(purpose).to_whsec())
}

/// What a request signs: its raw body, or `{METHOD} {path-and-query}` when it has none.
pub fn signed_content<'a>(body: &'a [u8], method: &str, path_and_query: &str) -> Cow<'a, [u8]> {
    if body.is_empty() {
        Cow::Owned(format!("{method} {path_and_query}").into_bytes())
    } else {
        Cow::Borrowed(body)
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum VerifyError {
    #[error("webhook-timestamp is not a unix time in seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is more than 300 s away from the server's clock")]
    Stale,
    #[error("no valid v1 signature in webhook-signature")]
    Mismatch,
}

/// Checks `signatures` (a space-separated list, so secrets can rotate) against every secret
/// given, in constant time, with `now` passed in so fixed vectors can test it.
pub fn verify(
    secrets: &[Secret],
    msg_id: &str,
    timestamp: &str,
    signatures: &str,
    content: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    // `abs_diff`: a subtraction could overflow on extreme timestamps (found by fuzzing),
    // which panics in debug builds and in release wraps into a window that always passes.
    if now.abs_diff(ts) > TOLERANCE_SECONDS.unsigned_abs() {
        return Err(VerifyError::Stale);
    }
    let candidates: Vec<Vec<u8>> = signatures
        .split_ascii_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| B64.decode(b64).ok())
        .collect();
    let mut ok = subtle::Choice::from(0);
    for secret in secrets {
        let expected = secret.tag(msg_id, timestamp.trim(), content);
        for candidate in &candidates {
            ok |= expected.as_slice().ct_eq(candidate.as_slice());
        }
    }
    if bool::from(ok) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// The four headers a signed request carries, ready to attach.
pub fn headers(
    client_id: &str,
    secret: &Secret,
    body: &[u8],
    method: &str,
    path_and_query: &str,
    now: i64,
) -> [(&'static str, String); 4] {
    let msg_id = format!("msg_{}", ulid::Ulid::new());
    let content = signed_content(body, method, path_and_query);
    let signature = secret.sign(&msg_id, now, &content);
    [
        (HEADER_CLIENT, client_id.to_owned()),
        (HEADER_ID, msg_id),
        (HEADER_TIMESTAMP, now.to_string()),
        (HEADER_SIGNATURE, signature),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const PAYLOAD: &[u8] = br#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn matches_the_standard_webhooks_test_vector() {
        let secret = Secret::parse(SECRET).unwrap();
        assert_eq!(secret.sign(ID, TS, PAYLOAD), EXPECTED);
        verify(&[secret], ID, "1614265330", EXPECTED, PAYLOAD, TS).unwrap();
    }

    #[test]
    fn rejects_tampering_staleness_and_wrong_secrets() {
        let secret = Secret::parse(SECRET).unwrap();
        let (other, _) = Secret::generate();
        let s = std::slice::from_ref(&secret);
        assert_eq!(
            verify(s, ID, "1614265330", EXPECTED, b"{\"test\": 1}", TS),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(s, ID, "1614265330", EXPECTED, PAYLOAD, TS + 301),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify(s, ID, "1614265330", EXPECTED, PAYLOAD, TS - 301),
            Err(VerifyError::Stale)
        );
        assert!(verify(s, ID, "1614265330", EXPECTED, PAYLOAD, TS + 300).is_ok());
        assert_eq!(
            verify(&[other], ID, "1614265330", EXPECTED, PAYLOAD, TS),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(s, ID, "yesterday", EXPECTED, PAYLOAD, TS),
            Err(VerifyError::BadTimestamp)
        );
        assert_eq!(
            verify(s, "msg_other", "1614265330", EXPECTED, PAYLOAD, TS),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn extreme_timestamps_are_stale_not_a_panic() {
        let secret = Secret::parse(SECRET).unwrap();
        let s = std::slice::from_ref(&secret);
        for (ts, now) in [
            (i64::MIN, TS),
            (i64::MAX, TS),
            (i64::MIN + TS, TS),
            (TS, i64::MIN),
        ] {
            let signature = secret.sign(ID, ts, PAYLOAD);
            assert_eq!(
                verify(s, ID, &ts.to_string(), &signature, PAYLOAD, now),
                Err(VerifyError::Stale),
                "{ts} at {now}"
            );
        }
    }

    #[test]
    fn accepts_any_of_several_signatures_for_rotation() {
        let secret = Secret::parse(SECRET).unwrap();
        let list = format!("v1,AAAA v2,whatever {EXPECTED}");
        verify(&[secret], ID, "1614265330", &list, PAYLOAD, TS).unwrap();
        let (old, _) = Secret::generate();
        let new = Secret::parse(SECRET).unwrap();
        verify(&[old, new], ID, "1614265330", EXPECTED, PAYLOAD, TS).unwrap();
    }

    #[test]
    fn empty_bodies_sign_method_and_path() {
        assert_eq!(
            &*signed_content(b"", "GET", "/v1/actions/act_1/wait?timeout=30"),
            b"GET /v1/actions/act_1/wait?timeout=30"
        );
        assert_eq!(&*signed_content(b"{}", "POST", "/x"), b"{}");
    }

    #[test]
    fn derived_keys_are_fixed_per_purpose_and_differ_from_the_secret() {
        let secret = Secret::parse(SECRET).unwrap();
        let callback = secret.derive(KeyPurpose::Callback);
        let escalation = secret.derive(KeyPurpose::EscalationWebhook);
        // Fixed vectors, computed independently (Python's hmac, RFC 5869 by hand):
        // receivers in any language must derive the same keys.
        assert_eq!(
            derive_whsec(SECRET, KeyPurpose::Callback).unwrap(),
            "whsec_S9VBJMRt6PfQmoKyJts8gTtP48ISdzb/klH3JT7IR7Q="
        );
        assert_eq!(
            escalation.to_whsec(),
            "whsec_rbYIz2hcPyqb+nIchKsPPRNNlqadZJVVqTW0GxgeRO4="
        );
        assert_eq!(callback.0.len(), 32);
        assert_ne!(callback.0, secret.0);
        assert_ne!(callback.0, escalation.0);
        // What the derived key signs does not verify with the secret, nor the other way.
        let sig = callback.sign(ID, TS, PAYLOAD);
        assert_eq!(
            verify(
                std::slice::from_ref(&secret),
                ID,
                "1614265330",
                &sig,
                PAYLOAD,
                TS
            ),
            Err(VerifyError::Mismatch)
        );
        verify(
            std::slice::from_ref(&callback),
            ID,
            "1614265330",
            &sig,
            PAYLOAD,
            TS,
        )
        .unwrap();
        assert_eq!(
            verify(&[callback], ID, "1614265330", EXPECTED, PAYLOAD, TS),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(secret.to_whsec(), SECRET);
    }

    #[test]
    fn secrets_parse_strictly_and_never_print() {
        assert_eq!(Secret::parse("MfKQ9r8G").unwrap_err(), SecretError::Prefix);
        assert_eq!(Secret::parse("whsec_***").unwrap_err(), SecretError::Base64);
        assert_eq!(Secret::parse("whsec_AAAA").unwrap_err(), SecretError::Short);
        let (s, text) = Secret::generate();
        assert!(Secret::parse(&text).is_ok());
        assert_eq!(format!("{s:?}"), "Secret(..)");
    }
}

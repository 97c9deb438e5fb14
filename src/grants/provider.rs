//! jsonwebtoken's own RustCrypto provider, with Ed25519 keys decoded once.
//!
//! For every token the library builds its signer from the key's PKCS#8 bytes (and its
//! verifier from the public key's bytes). For Ed25519 that derives the public key again (a
//! scalar multiplication), about half the cost of signing a grant: `perf` showed grant
//! signing at a quarter of the server's CPU under auto-approved load
//! (docs/benchmarks.md). This provider, installed through the library's documented
//! extension point, keeps the keys Greenlight registered, decoded, and hands everything
//! else to the library's provider. The signing and the JWT format stay the library's.

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, rust_crypto};
use jsonwebtoken::signature::{Error, Signer, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use std::sync::{LazyLock, Once, RwLock};

/// Keys registered by [`register`], by their encoded bytes (PKCS#8 for signing keys, the
/// raw 32 bytes for public keys). A handful per process (tests start many apps).
static SIGNING: RwLock<Vec<(Vec<u8>, SigningKey)>> = RwLock::new(Vec::new());
static VERIFYING: RwLock<Vec<([u8; 32], VerifyingKey)>> = RwLock::new(Vec::new());

static PROVIDER: LazyLock<CryptoProvider> = LazyLock::new(|| CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    key_utils: rust_crypto::DEFAULT_PROVIDER.key_utils.clone(),
});

/// Installs the provider (once per process) and remembers `signing` (as the PKCS#8 bytes
/// its `EncodingKey` holds) and `verifying` keys decoded.
pub fn register(pkcs8: &[u8], signing: &SigningKey, verifying: &[VerifyingKey]) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Another provider installed first (none is, in this crate) keeps working too.
        let _ = LazyLock::force(&PROVIDER).install_default();
    });
    let mut keys = SIGNING.write().unwrap_or_else(|p| p.into_inner());
    if !keys.iter().any(|(der, _)| der == pkcs8) {
        keys.push((pkcs8.to_vec(), signing.clone()));
    }
    let mut keys = VERIFYING.write().unwrap_or_else(|p| p.into_inner());
    for key in verifying {
        if !keys.iter().any(|(bytes, _)| bytes == key.as_bytes()) {
            keys.push((*key.as_bytes(), *key));
        }
    }
}

struct CachedSigner(SigningKey);

impl Signer<Vec<u8>> for CachedSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(ed25519_dalek::Signer::sign(&self.0, msg)
            .to_bytes()
            .to_vec())
    }
}

impl JwtSigner for CachedSigner {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

struct CachedVerifier(VerifyingKey);

impl Verifier<Vec<u8>> for CachedVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), Error> {
        let signature = Signature::from_slice(signature)?;
        ed25519_dalek::Verifier::verify(&self.0, msg, &signature)
    }
}

impl JwtVerifier for CachedVerifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

fn signer(
    algorithm: &Algorithm,
    key: &EncodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    if *algorithm == Algorithm::EdDSA {
        let keys = SIGNING.read().unwrap_or_else(|p| p.into_inner());
        if let Some((_, k)) = keys.iter().find(|(der, _)| der == key.as_bytes()) {
            return Ok(Box::new(CachedSigner(k.clone())));
        }
    }
    (rust_crypto::DEFAULT_PROVIDER.signer_factory)(algorithm, key)
}

fn verifier(
    algorithm: &Algorithm,
    key: &DecodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    if *algorithm == Algorithm::EdDSA
        && let Ok(bytes) = key.try_get_as_bytes()
    {
        let keys = VERIFYING.read().unwrap_or_else(|p| p.into_inner());
        if let Some((_, k)) = keys.iter().find(|(b, _)| b.as_slice() == bytes) {
            return Ok(Box::new(CachedVerifier(*k)));
        }
    }
    (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(algorithm, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Header, Validation};

    #[test]
    fn registered_keys_sign_and_verify_as_the_library_does() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let der = ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_der(&key).unwrap();
        register(der.as_bytes(), &key, &[key.verifying_key()]);
        let encoding = EncodingKey::from_ed_der(der.as_bytes());
        let decoding = DecodingKey::from_ed_der(key.verifying_key().as_bytes());
        let claims = serde_json::json!({"sub": "x", "exp": 4_000_000_000u64});
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &encoding).unwrap();
        // The library's own provider verifies what this one signed, and vice versa.
        let signature = token.rsplit('.').next().unwrap();
        let message = &token[..token.len() - signature.len() - 1];
        let sig = jsonwebtoken::signature::Signer::try_sign(
            &*(rust_crypto::DEFAULT_PROVIDER.signer_factory)(&Algorithm::EdDSA, &encoding).unwrap(),
            message.as_bytes(),
        )
        .unwrap();
        assert_eq!(
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig),
            signature,
            "Ed25519 signatures are deterministic: the same bytes either way"
        );
        let decoded = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &decoding,
            &Validation::new(Algorithm::EdDSA),
        )
        .unwrap();
        assert_eq!(decoded.claims["sub"], "x");
        // A tampered signature still fails.
        let first = if signature.starts_with('A') { "B" } else { "A" };
        let tampered = format!("{message}.{first}{}", &signature[1..]);
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(
                &tampered,
                &decoding,
                &Validation::new(Algorithm::EdDSA)
            )
            .is_err()
        );
    }
}

//! A cached JSON Web Key Set fetched over HTTP: the keys a token is checked against.
//!
//! The set is fetched on first use and kept; a token whose `kid` is not in it makes one
//! refetch (keys rotate), but no more often than [`REFETCH_EVERY`], so a stream of tokens
//! with made-up key ids cannot turn every check into a request to the key server.

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// The shortest time between two fetches caused by unknown key ids.
const REFETCH_EVERY: Duration = Duration::from_secs(5);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot fetch the JWKS from {url}: {reason}")]
    Fetch { url: String, reason: String },
    /// No key of the set has this id, even after a refetch.
    #[error("no key with id `{0}` in the JWKS")]
    UnknownKey(String),
    #[error("the JWKS key `{0}` cannot be used: {1}")]
    BadKey(String, String),
}

struct Fetched {
    set: JwkSet,
    at: Instant,
}

/// The key set at one URL, cached. Cheap to share behind an `Arc`.
pub struct JwksCache {
    url: String,
    http: reqwest::Client,
    // A tokio mutex: held across the fetch so that concurrent checks of a token with a
    // new `kid` make one request, not one each.
    cached: Mutex<Option<Fetched>>,
}

impl JwksCache {
    pub fn new(url: impl Into<String>, http: reqwest::Client) -> Self {
        Self {
            url: url.into(),
            http,
            cached: Mutex::new(None),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key with id `kid` and its JWK (for its `alg`), fetching the set when it is not
    /// cached yet or does not hold `kid`.
    pub async fn key(&self, kid: &str) -> Result<(DecodingKey, Jwk), JwksError> {
        let mut cached = self.cached.lock().await;
        let stale = match cached.as_ref() {
            None => true,
            Some(f) => f.set.find(kid).is_none() && f.at.elapsed() >= REFETCH_EVERY,
        };
        if stale {
            let set = self.fetch().await?;
            *cached = Some(Fetched {
                set,
                at: Instant::now(),
            });
        }
        let jwk = cached
            .as_ref()
            .and_then(|f| f.set.find(kid))
            .ok_or_else(|| JwksError::UnknownKey(kid.to_owned()))?;
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|e| JwksError::BadKey(kid.to_owned(), e.to_string()))?;
        Ok((key, jwk.clone()))
    }

    async fn fetch(&self) -> Result<JwkSet, JwksError> {
        let fail = |reason: String| JwksError::Fetch {
            url: self.url.clone(),
            reason,
        };
        let resp = self
            .http
            .get(&self.url)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("HTTP {}", resp.status())));
        }
        resp.json::<JwkSet>()
            .await
            .map_err(|e| fail(format!("not a JWK set: {e}")))
    }
}

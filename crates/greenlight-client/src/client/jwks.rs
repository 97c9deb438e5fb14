//! A cached JSON Web Key Set fetched over HTTP: the keys a token is checked against.
//!
//! The set is fetched on first use and kept for at most [`MAX_AGE`] (5 minutes, the
//! server's `Cache-Control`; settable lower), so a key removed from the set stops
//! verifying within that time. A token whose `kid` is not in it makes one refetch (keys
//! rotate), but no more often than [`REFETCH_EVERY`], so a stream of tokens with made-up
//! key ids cannot turn every check into a request to the key server. When a refetch
//! fails, nothing verifies until one succeeds (fail closed).

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// The shortest time between two fetches caused by unknown key ids.
const REFETCH_EVERY: Duration = Duration::from_secs(5);
/// The longest a fetched set is used: the server's `Cache-Control: max-age=300`.
pub const MAX_AGE: Duration = Duration::from_secs(300);
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
    /// How long a fetched set is used, at most [`MAX_AGE`].
    max_age: Duration,
}

impl JwksCache {
    pub fn new(url: impl Into<String>, http: reqwest::Client) -> Self {
        Self {
            url: url.into(),
            http,
            cached: Mutex::new(None),
            max_age: MAX_AGE,
        }
    }

    /// Uses a fetched set for at most `max_age` (capped at [`MAX_AGE`]).
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age.min(MAX_AGE);
        self
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
            Some(f) => {
                f.at.elapsed() >= self.max_age
                    || (f.set.find(kid).is_none() && f.at.elapsed() >= REFETCH_EVERY)
            }
        };
        if stale {
            // An old set is dropped before the fetch: if the fetch fails, nothing verifies
            // with keys that may have been removed.
            *cached = None;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::sync::{Arc, Mutex as StdMutex};

    fn jwk(kid: &str, seed: u8) -> Value {
        use base64::Engine;
        let public = ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
            .verifying_key()
            .to_bytes();
        json!({
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid,
            "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public),
        })
    }

    /// A JWKS endpoint on a free port whose set the test can change.
    async fn jwks_server(set: Arc<StdMutex<Value>>) -> String {
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let set = set.clone();
                async move { axum::Json(set.lock().unwrap().clone()) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[tokio::test]
    async fn a_removed_key_stops_verifying_once_the_set_expires() {
        let set = Arc::new(StdMutex::new(json!({"keys": [jwk("k1", 1)]})));
        let url = jwks_server(set.clone()).await;
        let cache =
            JwksCache::new(url, reqwest::Client::new()).with_max_age(Duration::from_millis(300));
        assert!(cache.key("k1").await.is_ok());
        // Rotated out on the server: still cached for a moment...
        *set.lock().unwrap() = json!({"keys": [jwk("k2", 2)]});
        assert!(cache.key("k1").await.is_ok());
        // ...and unknown once the cached set is too old.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(matches!(
            cache.key("k1").await,
            Err(JwksError::UnknownKey(_))
        ));
        assert!(cache.key("k2").await.is_ok());
    }

    #[tokio::test]
    async fn an_expired_set_that_cannot_be_refetched_verifies_nothing() {
        let set = Arc::new(StdMutex::new(json!({"keys": [jwk("k1", 1)]})));
        let url = jwks_server(set.clone()).await;
        let cache =
            JwksCache::new(url, reqwest::Client::new()).with_max_age(Duration::from_millis(200));
        assert!(cache.key("k1").await.is_ok());
        *set.lock().unwrap() = json!("not a key set");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(matches!(
            cache.key("k1").await,
            Err(JwksError::Fetch { .. })
        ));
    }

    #[test]
    fn the_age_is_at_most_five_minutes() {
        let cache = JwksCache::new("http://127.0.0.1:9/jwks.json", reqwest::Client::new());
        assert_eq!(cache.max_age, Duration::from_secs(300));
        let cache = cache.with_max_age(Duration::from_secs(3600));
        assert_eq!(cache.max_age, Duration::from_secs(300));
    }
}

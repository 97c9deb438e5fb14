//! Every `webhook-id` is single-use across the whole API, per client. A signature covers
//! the body (or, without one, the method and path), not the endpoint it was sent to; so
//! the first use of an id binds it to one method, path and body, and any other use is a
//! replay. Only `POST /v1/actions` repeats, as an idempotent retry of the same request.

use super::{Client, Service, ServiceResult};
use crate::store::{IDEMPOTENCY_TTL, REPLAY_TTL};
use sha2::{Digest, Sha256};

/// Store namespace of used `webhook-id`s, keyed `{client}:{webhook-id}`.
const NAMESPACE: &str = "seen";

/// One signed request, as its `webhook-id` is bound to: method, path (without the query)
/// and body.
pub struct SignedUse<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub body: &'a [u8],
    /// Whether the endpoint takes a repeat of the same request as an idempotent retry
    /// (`POST /v1/actions` only); then the id is remembered for as long as that holds.
    pub idempotent: bool,
}

impl SignedUse<'_> {
    /// `{METHOD} {path} {sha256 of body}`: what a later use of the id is compared with.
    fn binding(&self) -> String {
        format!(
            "{} {} {}",
            self.method,
            self.path,
            hex::encode(Sha256::digest(self.body))
        )
    }

    fn endpoint(&self) -> String {
        format!("{} {} ", self.method, self.path)
    }
}

/// What the claim of a `webhook-id` found.
#[derive(Debug, PartialEq, Eq)]
pub enum WebhookIdUse {
    /// The first use of this id by this client.
    First,
    /// A repeat on the same method and path of an endpoint that takes repeats; the
    /// endpoint tells a retry of the same body from a conflicting one.
    Repeat,
    /// Used before, on another endpoint or on one that takes no repeats: refused.
    Replay,
}

impl Service {
    /// Claims `webhook_id` for this use, atomically across replicas (the first of two
    /// racing uses wins; the other is a replay, or a repeat on the same endpoint).
    pub async fn claim_webhook_id(
        &self,
        client: &Client,
        webhook_id: &str,
        signed: &SignedUse<'_>,
    ) -> ServiceResult<WebhookIdUse> {
        // Remembered past the 300 s signature window, or for the whole idempotency window
        // when repeats are allowed, so the id cannot be spent elsewhere meanwhile.
        let ttl = if signed.idempotent {
            IDEMPOTENCY_TTL
        } else {
            REPLAY_TTL
        };
        let key = format!("{}:{webhook_id}", client.id());
        let standing = self
            .store
            .claim(NAMESPACE, &key, &signed.binding(), ttl)
            .await?;
        Ok(match standing {
            None => WebhookIdUse::First,
            Some(bound) if signed.idempotent && bound.starts_with(&signed.endpoint()) => {
                WebhookIdUse::Repeat
            }
            Some(_) => WebhookIdUse::Replay,
        })
    }
}

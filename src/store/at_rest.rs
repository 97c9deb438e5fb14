//! Records as both backends keep them at rest, written and read back here once, so the
//! in-memory store and Redis agree on every format.

use super::{Created, StoreError, StoreResult, Timer};
use crate::domain::ActionId;

/// An idempotency record: `"{body sha256} {action id}"`.
pub fn idempotency_record(body_hash: &str, id: &ActionId) -> String {
    format!("{body_hash} {id}")
}

/// Reads an idempotency record: `"{body sha256} {action id}"`.
pub fn parse_existing(value: &str) -> StoreResult<Created> {
    let (hash, id) = value
        .split_once(' ')
        .ok_or_else(|| StoreError::Corrupt("idempotency record".into()))?;
    Ok(Created::Existing {
        body_hash: hash.to_owned(),
        action_id: id
            .parse()
            .map_err(|_| StoreError::Corrupt("idempotency record".into()))?,
    })
}

/// A claimed timer this version knows. One it does not (written by a newer replica
/// during a rolling upgrade) is left under its lease for a replica that knows it.
pub fn parse_claimed(member: &str, due_ms: i64) -> Option<Timer> {
    let timer = Timer::parse(member, due_ms);
    if timer.is_none() {
        tracing::warn!(
            member,
            "leaving a timer of a kind this version does not know"
        );
    }
    timer
}

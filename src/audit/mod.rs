//! The audit trail: every event appended to one hash-chained stream,
//! readable through `GET /v1/audit`, exported and checked by `greenlight audit`.
//!
//! Each entry carries the SHA-256 of the entry before it (`prev`) and of itself (`hash`,
//! over the canonical form defined in [`entry`]). The head (the last hash) lives in the
//! store beside the stream; a writer reads it, computes the new entries' hashes here (Redis
//! Lua has no SHA-256) and appends them only if the head has not moved meanwhile, a
//! compare-and-set in one Lua script, retrying against the new head when another
//! replica won. So any number of replicas write one unbroken chain.
//!
//! Within a process, entries are group-committed: whoever finds entries queued appends
//! them all in one script call, so a busy process makes one round trip per batch rather
//! than per entry, and contends with other replicas once per batch.
//!
//! What the trail does not promise:
//! - An entry is appended after the state change it records, not atomically with it. If
//!   the store fails in between (or the process dies), the change stands and its entry is
//!   lost; the loss is logged as a warning with the events' names and action ids.
//! - Retention (`GREENLIGHT_AUDIT_MAXLEN`, approximate trimming of the oldest entries):
//!   a verifier starts from the oldest entry kept and trusts its `prev`. It proves that
//!   the kept entries were not changed, removed or reordered since they were written; it
//!   cannot prove anything about what was trimmed, nor detect the newest entries being cut
//!   off, unless a head printed earlier by `greenlight audit verify` is compared.
//! - Whoever can write to Redis can rewrite the whole chain consistently. Keeping the head
//!   printed by `verify` somewhere else (a ticket, write-once storage) is what makes such
//!   a rewrite detectable later.

pub mod entry;
pub mod events;
pub mod verify;

pub use entry::{Entry, GENESIS};
pub use events::{AuditEvent, EventKind, Origin};
pub use verify::{Broken, Problem, Verified, Verifier, verify_lines};

use crate::domain::ActionId;
use crate::retry::Backoff;
use crate::store::{AuditAppend, NewAuditEntry, Store, StoreResult};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// Entries kept when `GREENLIGHT_AUDIT_MAXLEN` is not set.
pub const DEFAULT_MAXLEN: u64 = 1_000_000;
/// `GET /v1/audit` page size when `limit` is not given, and its largest.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
/// How many entries one `GET /v1/audit?action_id=` request reads at most: past this it
/// answers with what it found and a cursor to carry on from, so a rare action's entries
/// in a long trail cost several bounded requests rather than one unbounded one.
pub const SCAN_BUDGET: usize = 10_000;
const SCAN_CHUNK: usize = 1000;
/// Most entries appended in one script call.
const BATCH: usize = 256;
/// Appends retried against a moved head before the batch is given up (logged).
const APPEND_ATTEMPTS: usize = 100;
/// Failed Redis calls retried per batch (backing off to 1 s: about 15 s in all).
const ERROR_RETRIES: usize = 20;
/// Between retries of a failed Redis call: from 50 ms, doubling, to 1 s.
const ERROR_BACKOFF: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));

/// The audit trail of this process: cheap to clone, shared by everything that records.
#[derive(Clone)]
pub struct Audit {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    maxlen: u64,
    /// Entries waiting to be appended, in the order they were recorded. A std `Mutex`:
    /// held only to push or take, never across an `.await`.
    queue: Mutex<VecDeque<Queued>>,
    /// Held by whoever is appending for this process, with the head it last saw
    /// (`None`: unknown, read it from the store first).
    writer: tokio::sync::Mutex<Option<Option<String>>>,
}

struct Queued {
    event: AuditEvent,
    /// Told once this entry (and the ones recorded with it) are appended or given up.
    done: Option<oneshot::Sender<()>>,
}

/// One page of `GET /v1/audit`: entries oldest first, each the stored entry with its
/// `id`, passed through as stored (so a damaged entry reaches the verifier rather than
/// being hidden); `next` is the cursor to continue after, `null` at the end of the trail.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page {
    #[schema(value_type = Vec<Entry>)]
    pub entries: Vec<Box<RawValue>>,
    pub next: Option<String>,
}

impl Audit {
    /// `maxlen` entries are kept (approximately; 0 keeps all).
    pub fn new(store: Arc<dyn Store>, maxlen: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                maxlen,
                queue: Mutex::default(),
                writer: tokio::sync::Mutex::new(None),
            }),
        }
    }

    pub fn maxlen(&self) -> u64 {
        self.inner.maxlen
    }

    /// Appends one entry. Never fails the caller: a store error is logged (see the module
    /// documentation for what that loses).
    pub async fn record(&self, event: AuditEvent) {
        self.record_all(vec![event]).await
    }

    /// Appends entries in this order, after everything this process recorded before.
    pub async fn record_all(&self, events: Vec<AuditEvent>) {
        let Some(last) = events.len().checked_sub(1) else {
            return;
        };
        let (tx, rx) = oneshot::channel();
        let mut tx = Some(tx);
        {
            let mut queue = self.inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            for (i, event) in events.into_iter().enumerate() {
                let done = if i == last { tx.take() } else { None };
                queue.push_back(Queued { event, done });
            }
        }
        // The append runs in a task of its own: a caller that is cancelled (an HTTP client
        // hanging up) loses neither its entries nor a batch half-appended for others.
        let inner = self.inner.clone();
        tokio::spawn(async move { inner.drain().await });
        if rx.await.is_err() {
            tracing::error!("the audit writer stopped before appending an entry");
        }
    }

    /// One page of the trail after the cursor `after` (a stream id, already checked with
    /// [`crate::store::parse_stream_id`]), at most `limit` entries; with `action_id`, only
    /// that action's, reading at most [`SCAN_BUDGET`] entries.
    pub async fn page(
        &self,
        after: Option<&str>,
        limit: usize,
        action_id: Option<&ActionId>,
    ) -> StoreResult<Page> {
        let limit = limit.clamp(1, MAX_LIMIT);
        let store = &self.inner.store;
        let Some(wanted) = action_id else {
            let rows = store.audit_range(after, limit).await?;
            let next = (rows.len() == limit).then(|| rows[rows.len() - 1].0.clone());
            let entries = rows.iter().map(|(id, json)| with_id(id, json)).collect();
            return Ok(Page { entries, next });
        };
        let mut cursor = after.map(str::to_owned);
        let mut entries = Vec::new();
        let mut scanned = 0;
        loop {
            let chunk = SCAN_CHUNK.min(SCAN_BUDGET - scanned);
            let rows = store.audit_range(cursor.as_deref(), chunk).await?;
            for (id, json) in &rows {
                scanned += 1;
                if concerns(json, wanted) {
                    entries.push(with_id(id, json));
                    if entries.len() == limit {
                        return Ok(Page {
                            entries,
                            next: Some(id.clone()),
                        });
                    }
                }
            }
            if rows.len() < chunk {
                return Ok(Page {
                    entries,
                    next: None,
                });
            }
            cursor = rows.last().map(|(id, _)| id.clone());
            if scanned >= SCAN_BUDGET {
                return Ok(Page {
                    entries,
                    next: cursor,
                });
            }
        }
    }
}

impl Inner {
    /// Appends whatever is queued, batch after batch, then returns. Whoever holds the
    /// writer lock appends for everyone; tasks that get it later find the queue empty.
    async fn drain(&self) {
        let mut head = self.writer.lock().await;
        loop {
            let batch: Vec<Queued> = {
                let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                let n = queue.len().min(BATCH);
                queue.drain(..n).collect()
            };
            if batch.is_empty() {
                return;
            }
            self.append(&mut head, &batch).await;
            for queued in batch {
                if let Some(done) = queued.done {
                    let _ = done.send(());
                }
            }
        }
    }

    /// Chains `batch` onto the head and appends it, retrying while other replicas move the
    /// head first. `known` is the head this process last saw.
    ///
    /// When Redis fails mid-append (a reply lost, a failover) the append may or may not
    /// have applied: the head is read again, and if it is this batch's last hash the batch
    /// is in; otherwise it is chained again. Errors are retried with backoff for about
    /// [`ERROR_RETRIES`] steps before the batch is reported lost.
    async fn append(&self, known: &mut Option<Option<String>>, batch: &[Queued]) {
        let mut errors = 0;
        let mut delays = ERROR_BACKOFF.delays();
        let mut last_attempt: Option<String> = None;
        for attempt in 0..APPEND_ATTEMPTS {
            let head = match known.take() {
                Some(head) => head,
                None => match self.store.audit_head().await {
                    Ok(head) => head,
                    Err(e) => {
                        errors += 1;
                        if errors > ERROR_RETRIES {
                            return lost(batch, &e.to_string());
                        }
                        tokio::time::sleep(delays.next_delay()).await;
                        continue;
                    }
                },
            };
            if last_attempt.is_some() && head == last_attempt {
                // The failed attempt did apply.
                *known = Some(head);
                return;
            }
            let mut prev = head.clone().unwrap_or_else(|| GENESIS.to_owned());
            let sealed: Vec<(String, String)> = batch
                .iter()
                .map(|q| {
                    let entry = Entry::seal(&q.event, &prev);
                    prev.clone_from(&entry.hash);
                    let json = serde_json::to_string(&entry).expect("entries serialize");
                    (entry.hash, json)
                })
                .collect();
            let new: Vec<NewAuditEntry<'_>> = sealed
                .iter()
                .map(|(hash, json)| NewAuditEntry { hash, json })
                .collect();
            match self
                .store
                .audit_append(head.as_deref(), &new, self.maxlen)
                .await
            {
                Ok(AuditAppend::Appended(_)) => {
                    *known = Some(Some(prev));
                    return;
                }
                Ok(AuditAppend::HeadMoved(current)) => {
                    tracing::debug!(
                        attempt,
                        "another writer moved the audit head; chaining again"
                    );
                    *known = Some(current);
                    if attempt >= 3 {
                        // Several replicas keep winning: step aside a little.
                        let jitter = rand::random::<u64>() % (5 * attempt as u64);
                        tokio::time::sleep(Duration::from_millis(jitter)).await;
                    }
                }
                // The head is unknown again: the append may or may not have applied.
                Err(e) => {
                    errors += 1;
                    if errors > ERROR_RETRIES {
                        return lost(batch, &e.to_string());
                    }
                    tracing::warn!(error = %e, "audit append failed; checking the head and retrying");
                    last_attempt = Some(prev);
                    tokio::time::sleep(delays.next_delay()).await;
                }
            }
        }
        lost(batch, "the head kept moving");
    }
}

fn lost(batch: &[Queued], error: &str) {
    let events: Vec<String> = batch
        .iter()
        .map(|q| match &q.event.action_id {
            Some(id) => format!("{}:{id}", q.event.kind.as_str()),
            None => q.event.kind.as_str().to_owned(),
        })
        .collect();
    tracing::warn!(
        error,
        ?events,
        "audit entries may be lost: cannot append to the audit trail"
    );
}

/// Whether the stored entry `json` is about `wanted`. An entry that does not parse is
/// kept, since it may be; the verifier will report it.
fn concerns(json: &str, wanted: &ActionId) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        action_id: Option<String>,
    }
    match serde_json::from_str::<Probe>(json) {
        Ok(p) => p.action_id.as_deref() == Some(wanted.as_str()),
        Err(_) => true,
    }
}

/// The stored entry with its stream id spliced in as the first member, its stored bytes
/// otherwise untouched. Something that is not a JSON object is shown as
/// `{"id": …, "unreadable": "<stored text>"}`, which no verifier accepts.
fn with_id(id: &str, stored: &str) -> Box<RawValue> {
    let id_json = serde_json::to_string(id).expect("strings serialize");
    if let Ok(raw) = serde_json::from_str::<&RawValue>(stored)
        && let Some(rest) = raw.get().strip_prefix('{')
    {
        let rest = rest.trim_start();
        let spliced = if rest.starts_with('}') {
            format!("{{\"id\":{id_json}}}")
        } else {
            format!("{{\"id\":{id_json},{rest}")
        };
        if let Ok(value) = RawValue::from_string(spliced) {
            return value;
        }
    }
    let shown = serde_json::json!({ "id": id, "unreadable": stored }).to_string();
    RawValue::from_string(shown).expect("serde_json writes valid JSON")
}

#[cfg(test)]
mod tests;

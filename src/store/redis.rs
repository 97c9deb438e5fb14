//! The Redis backend: one multiplexed connection for commands and one pub/sub connection
//! per process, whose single task fans decisions out to local waiters.
//!
//! Keys (prefix `GREENLIGHT_REDIS_PREFIX`, default `greenlight`), documented in docs/redis.md:
//! - `{p}:action:{id}`: hash `rev`, `status`, `json` (the action object), `slack` (message state)
//! - `{p}:idem:{client}:{webhook-id}`: `"{body sha256} {action id}"`, 24 h
//! - `{p}:{ns}:{key}`: one-shot flags with a TTL (`seen:{client}:{webhook-id}`, the
//!   replay guard, 10 min; others per feature)
//! - `{p}:pending`: set of pending action ids
//! - `{p}:timers`: sorted set, member `{kind}:{action id}`, score due unix ms
//! - `{p}:audit`: stream of audit entries; `{p}:audit:head`: the last entry's hash
//! - channel `{p}:decision:{id}`: the action JSON, once, when it leaves `pending`

use super::{
    Created, DECIDED_RETENTION, IDEMPOTENCY_TTL, NewAction, SlackState, Store, StoreError,
    StoreResult, Timer, Versioned, memory::parse_existing,
};
use crate::domain::{Action, ActionId};
use crate::waiters::Waiters;
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, cmd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const CREATE: &str = include_str!("scripts/create.lua");
const REPLACE: &str = include_str!("scripts/replace.lua");
const CLAIM: &str = include_str!("scripts/claim.lua");
const FINISH_IF_CURRENT: &str = include_str!("scripts/finish_if_current.lua");
const SET_SLACK: &str = include_str!("scripts/set_slack.lua");

#[derive(Clone, Debug)]
pub struct RedisStoreConfig {
    pub url: String,
    pub prefix: String,
}

pub struct RedisStore {
    conn: ConnectionManager,
    keys: Keys,
    create: Script,
    replace: Script,
    claim: Script,
    finish_if_current: Script,
    set_slack: Script,
    audit_append: Script,
    subscribed: Arc<AtomicBool>,
}

#[derive(Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn action(&self, id: &str) -> String {
        format!("{}:action:{id}", self.prefix)
    }
    fn channel(&self, id: &str) -> String {
        format!("{}:decision:{id}", self.prefix)
    }
    fn channel_pattern(&self) -> String {
        format!("{}:decision:*", self.prefix)
    }
    fn idempotency(&self, client: &str, request: &str) -> String {
        format!("{}:idem:{client}:{request}", self.prefix)
    }
    fn flag(&self, ns: &str, key: &str) -> String {
        format!("{}:{ns}:{key}", self.prefix)
    }
    fn pending(&self) -> String {
        format!("{}:pending", self.prefix)
    }
    fn timers(&self) -> String {
        format!("{}:timers", self.prefix)
    }
    fn audit(&self) -> String {
        format!("{}:audit", self.prefix)
    }
    fn audit_head(&self) -> String {
        format!("{}:audit:head", self.prefix)
    }
}

fn unavailable(e: redis::RedisError) -> StoreError {
    crate::metrics::redis_error();
    StoreError::Unavailable(e.to_string())
}

impl RedisStore {
    /// Builds the store without waiting for Redis: commands fail (and callers fail closed)
    /// until it answers. Spawns the subscriber task, which stops on `shutdown`.
    pub fn start(
        config: &RedisStoreConfig,
        waiters: Arc<Waiters>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| anyhow::anyhow!("REDIS_URL is not a valid Redis URL: {e}"))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let conn = client.get_connection_manager_lazy(manager_config)?;
        let store = Arc::new(Self {
            conn,
            keys: Keys {
                prefix: config.prefix.clone(),
            },
            create: Script::new(CREATE),
            replace: Script::new(REPLACE),
            claim: Script::new(CLAIM),
            finish_if_current: Script::new(FINISH_IF_CURRENT),
            set_slack: Script::new(SET_SLACK),
            audit_append: Script::new(super::audit::APPEND),
            subscribed: Arc::default(),
        });
        tokio::spawn(subscriber(client, store.clone(), waiters, shutdown));
        Ok(store)
    }

    /// Whether the pub/sub connection is subscribed right now.
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn ping(&self) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        let _: String = cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn set_once(&self, ns: &str, key: &str, ttl: Duration) -> StoreResult<bool> {
        let mut conn = self.conn.clone();
        let set: Option<String> = cmd("SET")
            .arg(self.keys.flag(ns, key))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(set.is_some())
    }

    async fn is_set(&self, ns: &str, key: &str) -> StoreResult<bool> {
        let mut conn = self.conn.clone();
        let n: i64 = cmd("EXISTS")
            .arg(self.keys.flag(ns, key))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(n > 0)
    }

    async fn create(&self, new: NewAction<'_>) -> StoreResult<Created> {
        let id = new.action.id.as_str();
        let mut inv = self.create.prepare_invoke();
        inv.key(self.keys.idempotency(new.client, new.idempotency_key))
            .key(self.keys.action(id))
            .key(self.keys.pending())
            .key(self.keys.timers())
            .arg(format!("{} {id}", new.body_hash))
            .arg(IDEMPOTENCY_TTL.as_secs())
            .arg(id)
            .arg(new.action.status.as_str())
            .arg(new.json)
            .arg(self.keys.channel(id))
            .arg(DECIDED_RETENTION.as_secs());
        for t in new.timers {
            inv.arg(t.due_ms()).arg(t.member());
        }
        let mut conn = self.conn.clone();
        let existing: Option<String> = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        match existing {
            None => Ok(Created::New),
            Some(v) => parse_existing(&v),
        }
    }

    async fn load(&self, id: &ActionId) -> StoreResult<Option<Versioned>> {
        let mut conn = self.conn.clone();
        let (rev, json, slack): (Option<u64>, Option<String>, Option<String>) = cmd("HMGET")
            .arg(self.keys.action(id.as_str()))
            .arg("rev")
            .arg("json")
            .arg("slack")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let (Some(rev), Some(json)) = (rev, json) else {
            return Ok(None);
        };
        let action = serde_json::from_str(&json)
            .map_err(|e| StoreError::Corrupt(format!("action {id}: {e}")))?;
        let slack = slack
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("slack state of {id}: {e}")))?;
        Ok(Some(Versioned { action, rev, slack }))
    }

    async fn replace(
        &self,
        expected_rev: u64,
        action: &Action,
        json: &str,
        effects: &[Timer],
        dropped: &[Timer],
    ) -> StoreResult<bool> {
        let id = action.id.as_str();
        let mut inv = self.replace.prepare_invoke();
        inv.key(self.keys.action(id))
            .key(self.keys.pending())
            .key(self.keys.timers())
            .arg(expected_rev)
            .arg(action.status.as_str())
            .arg(json)
            .arg(self.keys.channel(id))
            .arg(DECIDED_RETENTION.as_secs())
            .arg(id)
            .arg(effects.len());
        for t in effects {
            inv.arg(t.due_ms()).arg(t.member());
        }
        for t in dropped {
            inv.arg(t.member());
        }
        let mut conn = self.conn.clone();
        let applied: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(applied > 0)
    }

    async fn set_slack(&self, id: &ActionId, state: &SlackState) -> StoreResult<()> {
        let json = serde_json::to_string(state).expect("slack state serializes");
        let mut conn = self.conn.clone();
        let _: i64 = self
            .set_slack
            .key(self.keys.action(id.as_str()))
            .arg(json)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn pending_count(&self) -> StoreResult<u64> {
        let mut conn = self.conn.clone();
        cmd("SCARD")
            .arg(self.keys.pending())
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn pending_ids(&self, limit: usize) -> StoreResult<Vec<ActionId>> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = cmd("SMEMBERS")
            .arg(self.keys.pending())
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut ids: Vec<ActionId> = ids.iter().filter_map(|id| id.parse().ok()).collect();
        // ULIDs sort by creation time: oldest first.
        ids.sort();
        ids.truncate(limit);
        Ok(ids)
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> StoreResult<Vec<Timer>> {
        let now_ms = now.timestamp_millis();
        let mut conn = self.conn.clone();
        let claimed: Vec<(String, i64)> = self
            .claim
            .key(self.keys.timers())
            .arg(now_ms)
            .arg(limit)
            .arg(now_ms + lease.as_millis() as i64)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(claimed
            .into_iter()
            .filter_map(|(member, due)| parse_claimed(&member, due))
            .collect())
    }

    async fn finish(&self, timer: &Timer) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        let _: i64 = cmd("ZREM")
            .arg(self.keys.timers())
            .arg(timer.member())
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn finish_if_current(&self, timer: &Timer, rev: u64) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .finish_if_current
            .key(self.keys.timers())
            .key(self.keys.action(timer.action_id.as_str()))
            .arg(timer.member())
            .arg(rev)
            .arg(Utc::now().timestamp_millis())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn reschedule(&self, timer: &Timer, due: DateTime<Utc>) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        let _: i64 = cmd("ZADD")
            .arg(self.keys.timers())
            .arg("XX")
            .arg(due.timestamp_millis())
            .arg(timer.member())
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn next_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let mut conn = self.conn.clone();
        let first: Vec<(String, i64)> = cmd("ZRANGE")
            .arg(self.keys.timers())
            .arg(0)
            .arg(0)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(first
            .first()
            .and_then(|(_, ms)| DateTime::from_timestamp_millis(*ms)))
    }

    async fn audit_head(&self) -> StoreResult<Option<String>> {
        let mut conn = self.conn.clone();
        super::audit::redis_head(&mut conn, &self.keys.audit_head())
            .await
            .map_err(unavailable)
    }

    async fn audit_append(
        &self,
        expected_head: Option<&str>,
        entries: &[super::NewAuditEntry<'_>],
        maxlen: u64,
    ) -> StoreResult<super::AuditAppend> {
        let mut conn = self.conn.clone();
        let keys = (self.keys.audit(), self.keys.audit_head());
        super::audit::redis_append(
            &mut conn,
            &self.audit_append,
            (&keys.0, &keys.1),
            expected_head,
            entries,
            maxlen,
        )
        .await
        .map_err(unavailable)
    }

    async fn audit_range(
        &self,
        after: Option<&str>,
        count: usize,
    ) -> StoreResult<Vec<(String, String)>> {
        let mut conn = self.conn.clone();
        super::audit::redis_range(&mut conn, &self.keys.audit(), after, count)
            .await
            .map_err(unavailable)
    }
}

/// A claimed timer this version knows. One it does not (written by a newer replica
/// during a rolling upgrade) is left under its lease for a replica that knows it.
pub(super) fn parse_claimed(member: &str, due_ms: i64) -> Option<Timer> {
    let timer = Timer::parse(member, due_ms);
    if timer.is_none() {
        tracing::warn!(
            member,
            "leaving a timer of a kind this version does not know"
        );
    }
    timer
}

/// The one pub/sub task of this process. It pattern-subscribes to every decision channel,
/// hands each message to the local waiters, and after every (re)connect re-reads the state
/// of every action someone here waits on, so nothing published while it was away is lost.
async fn subscriber(
    client: redis::Client,
    store: Arc<RedisStore>,
    waiters: Arc<Waiters>,
    shutdown: CancellationToken,
) {
    const PING_EVERY: Duration = Duration::from_secs(15);
    let pattern = store.keys.channel_pattern();
    let mut backoff = Duration::from_millis(100);
    loop {
        let connected = async {
            let mut pubsub =
                tokio::time::timeout(Duration::from_secs(3), client.get_async_pubsub())
                    .await
                    .map_err(|_| anyhow::anyhow!("timed out connecting"))??;
            pubsub.psubscribe(&pattern).await?;
            anyhow::Ok(pubsub)
        };
        let pubsub = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = connected => r,
        };
        match pubsub {
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "decision subscriber cannot connect to Redis");
            }
            Ok(pubsub) => {
                backoff = Duration::from_millis(100);
                store.subscribed.store(true, Ordering::Relaxed);
                tracing::info!(pattern, "decision subscriber connected");
                let (mut sink, mut messages) = pubsub.split();
                if !resync(&store, &waiters).await {
                    // Some waiter could not be re-read: start over, so none is forgotten.
                    store.subscribed.store(false, Ordering::Relaxed);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    continue;
                }
                let mut ping = tokio::time::interval(PING_EVERY);
                ping.tick().await;
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        msg = messages.next() => match msg {
                            Some(msg) => waiters.deliver(Bytes::copy_from_slice(msg.get_payload_bytes())),
                            None => break,
                        },
                        _ = ping.tick() => {
                            let alive = tokio::time::timeout(Duration::from_secs(5), sink.ping::<String>()).await;
                            if !matches!(alive, Ok(Ok(_))) {
                                break;
                            }
                        }
                    }
                }
                store.subscribed.store(false, Ordering::Relaxed);
                tracing::warn!("decision subscriber lost its Redis connection; reconnecting");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Re-reads every locally awaited action (64 at a time on the multiplexed connection) and
/// answers the ones decided meanwhile. Returns `false` if some could not be read.
async fn resync(store: &RedisStore, waiters: &Waiters) -> bool {
    let ids: Vec<ActionId> = waiters
        .action_ids()
        .iter()
        .filter_map(|id| id.parse().ok())
        .collect();
    let mut reads = futures::stream::iter(ids)
        .map(|id| async move { (store.load(&id).await, id) })
        .buffer_unordered(64);
    let mut complete = true;
    while let Some((read, id)) = reads.next().await {
        match read {
            Ok(Some(v)) if !v.action.is_pending() => match serde_json::to_vec(&v.action) {
                Ok(json) => waiters.deliver(json.into()),
                Err(e) => tracing::error!(error = %e, "cannot serialize action"),
            },
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(action_id = %id, error = %e, "cannot re-read awaited action");
                complete = false;
            }
        }
    }
    complete
}

//! The Redis backend: one multiplexed command connection and one pub/sub connection per
//! process (on Cluster, one of each per node), whose single task fans decisions out to
//! local waiters. A single server, Sentinel and Cluster are supported (connection.rs);
//! the key layout is in keys.rs and docs/redis.md.
//!
//! How a decision is announced depends on the deployment ([`Announce`]). On a single server
//! the decision's script publishes the action on its public channel itself, so deciding and
//! announcing are one atomic step. Under Sentinel a decision is announced only once a
//! replica holds it (`WAIT`), so a failover cannot take back a decision someone was told
//! of. On Cluster a script may only publish within its own slot: it publishes (`SPUBLISH`)
//! on its shard's channel, which every Greenlight process hears. In both latter cases the
//! script also schedules a `publish:` outbox timer and the deciding process then publishes
//! on the public decision channel and clears it; if it dies in between, whichever replica claims the
//! timer publishes instead.

mod connection;
mod deployment;
mod keys;
mod subscriber;

pub use deployment::Deployment;
pub use keys::CLUSTER_SHARDS;

use super::at_rest::{idempotency_record, parse_claimed, parse_existing};
use super::{
    Created, DECIDED_RETENTION, IDEMPOTENCY_TTL, NewAction, SlackState, Store, StoreError,
    StoreResult, Timer, Versioned,
};
use crate::domain::{Action, ActionId};
use crate::waiters::Waiters;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use connection::Conn;
use keys::Keys;
use redis::{Script, cmd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const CREATE: &str = include_str!("../scripts/create.lua");
const REPLACE: &str = include_str!("../scripts/replace.lua");
const CLAIM: &str = include_str!("../scripts/claim.lua");
const FINISH_IF_CURRENT: &str = include_str!("../scripts/finish_if_current.lua");
const SET_SLACK: &str = include_str!("../scripts/set_slack.lua");

/// The outbox timer of a Cluster decision's public-channel publication (store-internal).
const PUBLISH_TIMER: &str = "publish:";
/// How long the deciding process has to publish before another replica does it.
const PUBLISH_GRACE: Duration = Duration::from_secs(10);
/// How long a write whose replication went unconfirmed may take to find out what stands.
const RESOLVE_FOR: Duration = Duration::from_secs(15);
/// Writes retried when a failover (Sentinel) took them back.
const WRITE_ATTEMPTS: usize = 3;

pub struct RedisStoreConfig {
    pub deployment: Deployment,
    pub prefix: String,
}

/// Where and when a decision is published (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Announce {
    /// `PUBLISH` on the public decision channel from the decision's script.
    InScript,
    /// `PUBLISH` on the public decision channel after a replica acknowledged the decision.
    AfterReplication,
    /// `SPUBLISH` on the shard channel from the script, then on the public decision channel.
    ShardThenChannel,
}

impl Announce {
    /// The publish command the decision scripts run ('' for none).
    fn script_command(self) -> &'static str {
        match self {
            Self::InScript => "PUBLISH",
            Self::AfterReplication => "",
            Self::ShardThenChannel => "SPUBLISH",
        }
    }

    fn command(self) -> &'static str {
        match self {
            Self::ShardThenChannel => "SPUBLISH",
            _ => "PUBLISH",
        }
    }
}

pub struct RedisStore {
    conn: Conn,
    announce: Announce,
    keys: Keys,
    create: Script,
    replace: Script,
    claim: Script,
    finish_if_current: Script,
    set_slack: Script,
    audit_append: Script,
    subscribed: Arc<AtomicBool>,
}

fn unavailable(e: redis::RedisError) -> StoreError {
    crate::metrics::redis_error();
    StoreError::Unavailable(e.to_string())
}

impl RedisStore {
    /// Builds the store; on a single server or Sentinel without waiting for Redis (commands
    /// fail, and callers fail closed, until it answers); on Cluster after discovering the
    /// topology. Spawns the subscriber task, which stops on `shutdown`.
    pub async fn start(
        config: RedisStoreConfig,
        waiters: Arc<Waiters>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        let (conn, pubsub) = connection::open(&config.deployment).await?;
        tracing::info!(
            deployment = config.deployment.describe(),
            prefix = config.prefix,
            "using Redis"
        );
        let (cluster, announce) = match config.deployment {
            Deployment::Single { .. } => (false, Announce::InScript),
            Deployment::Sentinel { .. } => (false, Announce::AfterReplication),
            Deployment::Cluster { .. } => (true, Announce::ShardThenChannel),
        };
        let store = Arc::new(Self {
            conn,
            announce,
            keys: Keys::new(&config.prefix, cluster),
            create: Script::new(CREATE),
            replace: Script::new(REPLACE),
            claim: Script::new(CLAIM),
            finish_if_current: Script::new(FINISH_IF_CURRENT),
            set_slack: Script::new(SET_SLACK),
            audit_append: Script::new(super::audit::APPEND),
            subscribed: Arc::default(),
        });
        subscriber::spawn(pubsub, store.clone(), waiters, shutdown);
        Ok(store)
    }

    /// Whether the pub/sub connection is subscribed right now.
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }

    /// The outbox timer a decision's script schedules with it, unless the script itself
    /// announces the decision.
    fn publish_outbox(&self, id: &ActionId) -> Option<(i64, String)> {
        (self.announce != Announce::InScript).then(|| {
            let due = Utc::now() + PUBLISH_GRACE;
            (due.timestamp_millis(), format!("{PUBLISH_TIMER}{id}"))
        })
    }

    /// After a decision's script (and its replication): publish on the public decision channel, then
    /// clear the outbox timer. A failure leaves the timer for a replica to finish.
    async fn publish_decided(&self, id: &ActionId, json: &str) {
        if self.announce == Announce::InScript {
            return;
        }
        let mut conn = self.conn.clone();
        let published: redis::RedisResult<i64> = cmd(self.announce.command())
            .arg(self.keys.channel(id))
            .arg(json)
            .query_async(&mut conn)
            .await;
        let cleared: redis::RedisResult<i64> = match published {
            Ok(_) => {
                cmd("ZREM")
                    .arg(self.keys.timers(self.keys.shard_of(id)))
                    .arg(format!("{PUBLISH_TIMER}{id}"))
                    .query_async(&mut conn)
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = cleared {
            crate::metrics::redis_error();
            tracing::warn!(action_id = %id, error = %e, "decision publication left to the outbox timer");
        }
    }

    /// A claimed Cluster outbox timer: publish the decided action, then clear the timer.
    async fn finish_outbox(&self, member: &str) -> StoreResult<()> {
        let Some(id) = member
            .strip_prefix(PUBLISH_TIMER)
            .and_then(|id| id.parse::<ActionId>().ok())
        else {
            return Ok(());
        };
        match self.load(&id).await? {
            Some(v) if !v.action.is_pending() => {
                let json = serde_json::to_string(&v.action).expect("actions serialize");
                self.publish_decided(&id, &json).await;
            }
            // Gone (retention over) or never decided: nothing to announce.
            _ => {
                let mut conn = self.conn.clone();
                let _: i64 = cmd("ZREM")
                    .arg(self.keys.timers(self.keys.shard_of(&id)))
                    .arg(member)
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
            }
        }
        Ok(())
    }

    /// After a write whose replication was not confirmed (Sentinel, around a failover):
    /// reads what stands with [`Conn::durable_read`], retrying with backoff while the
    /// deployment settles, for up to [`RESOLVE_FOR`].
    async fn what_stands<T: redis::FromRedisValue>(&self, read: &redis::Cmd) -> StoreResult<T> {
        let deadline = tokio::time::Instant::now() + RESOLVE_FOR;
        let mut backoff = Duration::from_millis(100);
        let fence = self.keys.flag("fence", "replication");
        loop {
            let mut conn = self.conn.clone();
            match conn.durable_read(read, &fence).await {
                Ok(value) => return Ok(value),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(unavailable(e)),
                Err(e) => {
                    tracing::debug!(error = %e, "waiting for Redis to settle after a failover");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Whether revision `rev` of action `id`, as `json`, stands after an unconfirmed write.
    async fn action_stands(&self, id: &ActionId, rev: u64, json: &str) -> StoreResult<bool> {
        let (stored_rev, stored_json): (Option<u64>, Option<String>) = self
            .what_stands(
                cmd("HMGET")
                    .arg(self.keys.action(id))
                    .arg("rev")
                    .arg("json"),
            )
            .await?;
        Ok(stored_rev == Some(rev) && stored_json.as_deref() == Some(json))
    }

    /// How many pending actions `client` has outside `shard` (Cluster only: a single
    /// server has one shard, counted inside the create script). Read before the script,
    /// so on Cluster two creates racing in different shards may both pass the limit.
    async fn pending_elsewhere(&self, client: &str, shard: u16) -> StoreResult<u64> {
        let mut total = 0;
        for other in self.keys.shards().filter(|s| *s != shard) {
            let mut conn = self.conn.clone();
            let n: u64 = cmd("SCARD")
                .arg(self.keys.client_pending(other, client))
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            total += n;
        }
        Ok(total)
    }

    async fn claim_shard(
        &self,
        shard: u16,
        now_ms: i64,
        limit: usize,
        lease: Duration,
    ) -> StoreResult<Vec<Timer>> {
        let mut conn = self.conn.clone();
        let claimed: Vec<(String, i64)> = self
            .claim
            .key(self.keys.timers(shard))
            .arg(now_ms)
            .arg(limit)
            .arg(now_ms + lease.as_millis() as i64)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut timers = Vec::with_capacity(claimed.len());
        for (member, due) in claimed {
            if member.starts_with(PUBLISH_TIMER) {
                self.finish_outbox(&member).await?;
            } else if let Some(timer) = parse_claimed(&member, due) {
                timers.push(timer);
            }
        }
        Ok(timers)
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

    fn new_action_id(&self, client: &str, idempotency_key: &str) -> ActionId {
        if self.keys.is_cluster() {
            let shard = self.keys.idempotency_shard(client, idempotency_key);
            ActionId::generate_in_shard(shard, CLUSTER_SHARDS)
        } else {
            ActionId::generate()
        }
    }

    async fn claim(
        &self,
        ns: &str,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> StoreResult<Option<String>> {
        let key = self.keys.flag(ns, key);
        // Stored as `{token} {value}`: the token of this call tells, after an unconfirmed
        // write (a failover), whether the value that stands is its own. Flags written
        // before `set_once` became a claim are a bare token, which reads as an empty value.
        let token = ulid::Ulid::new().to_string();
        let stored = format!("{token} {value}");
        let value_of = |s: String| {
            s.split_once(' ')
                .map(|(_, v)| v.to_owned())
                .unwrap_or_default()
        };
        for _ in 0..WRITE_ATTEMPTS {
            let mut conn = self.conn.clone();
            let set: Option<String> = cmd("SET")
                .arg(&key)
                .arg(&stored)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let standing: Option<String> = if set.is_some() {
                if conn.replicated().await.is_ok() {
                    return Ok(None);
                }
                self.what_stands(cmd("GET").arg(&key)).await?
            } else {
                // The value never changes once set, so reading it after `SET NX` is as good
                // as reading it atomically; unless it just expired: then try again.
                cmd("GET")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?
            };
            match standing {
                Some(s) if s == stored => return Ok(None),
                Some(s) => return Ok(Some(value_of(s))),
                None => continue,
            }
        }
        Err(StoreError::Unavailable("Redis kept failing over".into()))
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
        let id = &new.action.id;
        let shard = self.keys.shard_of(id);
        let decided = !new.action.is_pending();
        let elsewhere = if decided {
            0
        } else {
            self.pending_elsewhere(new.client, shard).await?
        };
        for _ in 0..WRITE_ATTEMPTS {
            let outbox = decided.then(|| self.publish_outbox(id)).flatten();
            let mut inv = self.create.prepare_invoke();
            inv.key(self.keys.idempotency(new.client, new.idempotency_key))
                .key(self.keys.action(id))
                .key(self.keys.pending(shard))
                .key(self.keys.timers(shard))
                .key(self.keys.client_pending(shard, new.client))
                .arg(idempotency_record(new.body_hash, id))
                .arg(IDEMPOTENCY_TTL.as_secs())
                .arg(id.as_str())
                .arg(new.action.status.as_str())
                .arg(new.json)
                .arg(self.keys.script_channel(id))
                .arg(DECIDED_RETENTION.as_secs())
                .arg(self.announce.script_command())
                .arg(new.max_pending)
                .arg(elsewhere);
            for t in new.timers {
                inv.arg(t.due_ms()).arg(t.member());
            }
            if let Some((due, member)) = &outbox {
                inv.arg(*due).arg(member);
            }
            let mut conn = self.conn.clone();
            let existing: Option<String> =
                inv.invoke_async(&mut conn).await.map_err(unavailable)?;
            match existing.as_deref() {
                Some("full") => return Ok(Created::TooManyPending),
                Some(existing) => return parse_existing(existing),
                None => {}
            }
            if conn.replicated().await.is_err() && !self.action_stands(id, 1, new.json).await? {
                continue; // taken back by a failover, idempotency key and all: again
            }
            if decided {
                self.publish_decided(id, new.json).await;
            }
            return Ok(Created::New);
        }
        Err(StoreError::Unavailable("Redis kept failing over".into()))
    }

    async fn load(&self, id: &ActionId) -> StoreResult<Option<Versioned>> {
        let mut conn = self.conn.clone();
        let (rev, json, slack): (Option<u64>, Option<String>, Option<String>) = cmd("HMGET")
            .arg(self.keys.action(id))
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
        let id = &action.id;
        let shard = self.keys.shard_of(id);
        let decided = !action.is_pending();
        let outbox = decided.then(|| self.publish_outbox(id)).flatten();
        let mut inv = self.replace.prepare_invoke();
        inv.key(self.keys.action(id))
            .key(self.keys.pending(shard))
            .key(self.keys.timers(shard))
            .key(self.keys.client_pending(shard, &action.client))
            .arg(expected_rev)
            .arg(action.status.as_str())
            .arg(json)
            .arg(self.keys.script_channel(id))
            .arg(DECIDED_RETENTION.as_secs())
            .arg(id.as_str())
            .arg(effects.len() + usize::from(outbox.is_some()))
            .arg(self.announce.script_command());
        for t in effects {
            inv.arg(t.due_ms()).arg(t.member());
        }
        if let Some((due, member)) = &outbox {
            inv.arg(*due).arg(member);
        }
        for t in dropped {
            inv.arg(t.member());
        }
        let mut conn = self.conn.clone();
        let applied: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        if applied <= 0 {
            return Ok(false);
        }
        // Unconfirmed: if a failover took it back, the caller's compare-and-set sees a
        // conflict, reads again and makes the change again.
        if conn.replicated().await.is_err()
            && !self.action_stands(id, expected_rev + 1, json).await?
        {
            return Ok(false);
        }
        if decided {
            self.publish_decided(id, json).await;
        }
        Ok(true)
    }

    async fn set_slack(&self, id: &ActionId, state: &SlackState) -> StoreResult<()> {
        let json = serde_json::to_string(state).expect("slack state serializes");
        let mut conn = self.conn.clone();
        let _: i64 = self
            .set_slack
            .key(self.keys.action(id))
            .arg(json)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn pending_count(&self) -> StoreResult<u64> {
        let mut total = 0;
        for shard in self.keys.shards() {
            let mut conn = self.conn.clone();
            let n: u64 = cmd("SCARD")
                .arg(self.keys.pending(shard))
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            total += n;
        }
        Ok(total)
    }

    async fn pending_ids(&self, limit: usize) -> StoreResult<Vec<ActionId>> {
        let mut ids = Vec::new();
        for shard in self.keys.shards() {
            let mut conn = self.conn.clone();
            let members: Vec<String> = cmd("SMEMBERS")
                .arg(self.keys.pending(shard))
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            ids.extend(members.iter().filter_map(|id| id.parse::<ActionId>().ok()));
        }
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
        let mut timers = Vec::new();
        for shard in self.keys.shards() {
            if timers.len() >= limit {
                break;
            }
            let claimed = self
                .claim_shard(shard, now_ms, limit - timers.len(), lease)
                .await?;
            timers.extend(claimed);
        }
        Ok(timers)
    }

    async fn finish(&self, timer: &Timer) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        let _: i64 = cmd("ZREM")
            .arg(self.keys.timers(self.keys.shard_of(&timer.action_id)))
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
            .key(self.keys.timers(self.keys.shard_of(&timer.action_id)))
            .key(self.keys.action(&timer.action_id))
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
            .arg(self.keys.timers(self.keys.shard_of(&timer.action_id)))
            .arg("XX")
            .arg(due.timestamp_millis())
            .arg(timer.member())
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn next_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let mut next: Option<i64> = None;
        for shard in self.keys.shards() {
            let mut conn = self.conn.clone();
            let first: Vec<(String, i64)> = cmd("ZRANGE")
                .arg(self.keys.timers(shard))
                .arg(0)
                .arg(0)
                .arg("WITHSCORES")
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if let Some((_, ms)) = first.first() {
                next = Some(next.map_or(*ms, |n| n.min(*ms)));
            }
        }
        Ok(next.and_then(DateTime::from_timestamp_millis))
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
        let appended = super::audit::redis_append(
            &mut conn,
            &self.audit_append,
            (&keys.0, &keys.1),
            expected_head,
            entries,
            maxlen,
        )
        .await
        .map_err(unavailable)?;
        // Unconfirmed: whether the entries stand shows in the head. If a failover took
        // them back, the writer chains them again on the head that stands.
        if matches!(appended, super::AuditAppend::Appended(_)) && conn.replicated().await.is_err() {
            let head: Option<String> = self.what_stands(cmd("GET").arg(&keys.1)).await?;
            if head.as_deref() != entries.last().map(|e| e.hash) {
                return Ok(super::AuditAppend::HeadMoved(head));
            }
        }
        Ok(appended)
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

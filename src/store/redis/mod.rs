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
mod operations;
mod scripts;
mod subscriber;

pub use deployment::Deployment;
pub use keys::CLUSTER_SHARDS;

use super::at_rest::parse_claimed;
use super::{Store, StoreError, StoreResult, Timer};
use crate::domain::ActionId;
use crate::retry::Backoff;
use crate::waiters::Waiters;
use chrono::Utc;
use connection::Conn;
use keys::Keys;
use redis::cmd;
use scripts::Scripts;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The outbox timer of a Cluster decision's public-channel publication (store-internal).
const PUBLISH_TIMER: &str = "publish:";
/// How long the deciding process has to publish before another replica does it.
const PUBLISH_GRACE: Duration = Duration::from_secs(10);
/// How long a write whose replication went unconfirmed may take to find out what stands.
const RESOLVE_FOR: Duration = Duration::from_secs(15);
/// Between reads while a deployment settles after a failover: from 100 ms, doubling, to 1 s.
const SETTLE: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
/// Writes retried when a failover (Sentinel) took them back.
const WRITE_ATTEMPTS: usize = 3;

pub struct RedisStoreConfig {
    pub deployment: Deployment,
    pub prefix: String,
    /// PEM of the CA that signed a `rediss://` server's certificate (GREENLIGHT_REDIS_CA_FILE),
    /// when the system's trust store does not vouch for it.
    pub tls_ca: Option<Vec<u8>>,
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
    scripts: Scripts,
    subscribed: Arc<AtomicBool>,
    /// Where Redis is (`host:port`, never a password), named when it cannot be reached.
    address: String,
}

impl RedisStore {
    /// A command failed: counted, and the error names where Redis is (never a password),
    /// so every log line and answer that carries it says which Redis did not answer.
    fn unavailable(&self, e: redis::RedisError) -> StoreError {
        crate::metrics::redis_error();
        StoreError::Unavailable(format!("redis at {}: {e}", self.address))
    }

    /// Builds the store; on a single server or Sentinel without waiting for Redis (commands
    /// fail, and callers fail closed, until it answers); on Cluster after discovering the
    /// topology. Spawns the subscriber task, which stops on `shutdown`.
    pub async fn start(
        config: RedisStoreConfig,
        waiters: Arc<Waiters>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        let (conn, pubsub) = connection::open(&config.deployment, config.tls_ca).await?;
        let address = config.deployment.address();
        tracing::info!(
            deployment = config.deployment.describe(),
            address,
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
            scripts: Scripts::new(),
            subscribed: Arc::default(),
            address,
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
                    .map_err(|e| self.unavailable(e))?;
            }
        }
        Ok(())
    }

    /// After a write whose replication was not confirmed (Sentinel, around a failover):
    /// reads what stands with [`Conn::durable_read`], retrying with backoff while the
    /// deployment settles, for up to [`RESOLVE_FOR`].
    async fn what_stands<T: redis::FromRedisValue>(&self, read: &redis::Cmd) -> StoreResult<T> {
        let deadline = tokio::time::Instant::now() + RESOLVE_FOR;
        let mut delays = SETTLE.delays();
        let fence = self.keys.flag("fence", "replication");
        loop {
            let mut conn = self.conn.clone();
            match conn.durable_read(read, &fence).await {
                Ok(value) => return Ok(value),
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(self.unavailable(e));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "waiting for Redis to settle after a failover");
                    tokio::time::sleep(delays.next_delay()).await;
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
                .map_err(|e| self.unavailable(e))?;
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
        let call = scripts::Claim {
            keys: &self.keys,
            shard,
            now_ms,
            limit,
            lease_until_ms: now_ms + lease.as_millis() as i64,
        };
        let claimed: Vec<(String, i64)> = call
            .invocation(&self.scripts)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.unavailable(e))?;
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

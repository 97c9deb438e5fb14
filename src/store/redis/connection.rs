//! The one command connection of a process, to whichever deployment is configured, and
//! where its pub/sub connection comes from.
//!
//! - single server: a `ConnectionManager` (multiplexed, reconnects with backoff);
//! - Sentinel: a multiplexed connection to the master the sentinels name; a connection
//!   error, `READONLY` or `MASTERDOWN` (the master was demoted or is gone) drops it, and the
//!   next command asks the sentinels again, so a failover is followed without a restart;
//! - Cluster: redis-rs's cluster connection (one multiplexed connection per node, routing by
//!   slot, following `MOVED`/`ASK` and topology changes).

use super::deployment::{Credentials, Deployment};
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ErrorKind, Pipeline, RedisFuture, RedisResult,
    ServerErrorKind, Value,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a write waits for a replica's acknowledgement under Sentinel (`WAIT 1 …`).
const REPLICA_ACK_TIMEOUT_MS: u64 = 500;
const REPLICA_ACK_ATTEMPTS: u64 = 4;

#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Sentinel(SentinelConn),
    Cluster(ClusterConnection),
}

/// Where the pub/sub task gets a connection from, each time it (re)connects.
#[derive(Clone)]
pub enum PubSubSource {
    /// A single server, or the Sentinel master resolved afresh on every connect.
    Node(NodeSource),
    /// The cluster's seed nodes and credentials: the subscriber builds a RESP3 cluster
    /// connection with a push channel (`SSUBSCRIBE` needs both).
    Cluster(ClusterSeeds),
}

/// What a cluster connection is built from (the builder itself cannot be cloned).
#[derive(Clone)]
pub struct ClusterSeeds {
    urls: Vec<String>,
    credentials: Credentials,
}

impl ClusterSeeds {
    pub fn builder(&self) -> ClusterClientBuilder {
        let mut builder = ClusterClientBuilder::new(self.urls.clone())
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(2);
        if let Some(user) = &self.credentials.username {
            builder = builder.username(user);
        }
        if let Some(password) = &self.credentials.password {
            builder = builder.password(password);
        }
        builder
    }
}

#[derive(Clone)]
pub enum NodeSource {
    /// Boxed: with TLS built in, a `redis::Client` is some 240 bytes.
    Fixed(Box<redis::Client>),
    Sentinel(SentinelConn),
}

impl NodeSource {
    pub async fn client(&self) -> RedisResult<redis::Client> {
        match self {
            Self::Fixed(client) => Ok(client.as_ref().clone()),
            Self::Sentinel(s) => s.shared.sentinel.lock().await.async_get_client().await,
        }
    }
}

/// Opens the command connection lazily (commands fail, and callers fail closed, until
/// Redis answers) and says where pub/sub connects.
pub async fn open(
    deployment: &Deployment,
    tls_ca: Option<Vec<u8>>,
) -> anyhow::Result<(Conn, PubSubSource)> {
    if tls_ca.is_some()
        && !matches!(deployment, Deployment::Single { url } if url.starts_with("rediss://"))
    {
        anyhow::bail!("GREENLIGHT_REDIS_CA_FILE is for a rediss:// REDIS_URL (TLS) only");
    }
    Ok(match deployment {
        Deployment::Single { url } => {
            let client = match tls_ca {
                Some(ca) => redis::Client::build_with_tls(
                    url.as_str(),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(ca),
                    },
                )
                .map_err(|e| anyhow::anyhow!("REDIS_URL with GREENLIGHT_REDIS_CA_FILE: {e}"))?,
                None => redis::Client::open(url.as_str())
                    .map_err(|e| anyhow::anyhow!("REDIS_URL is not a valid Redis URL: {e}"))?,
            };
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(RESPONSE_TIMEOUT))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_secs(2));
            let conn = client.get_connection_manager_lazy(config)?;
            (
                Conn::Single(conn),
                PubSubSource::Node(NodeSource::Fixed(Box::new(client))),
            )
        }
        Deployment::Sentinel {
            sentinels,
            master,
            db,
            credentials,
        } => {
            let conn = SentinelConn::new(sentinels, master, *db, credentials)?;
            (
                Conn::Sentinel(conn.clone()),
                PubSubSource::Node(NodeSource::Sentinel(conn)),
            )
        }
        Deployment::Cluster { nodes, credentials } => {
            let seeds = ClusterSeeds {
                urls: nodes
                    .iter()
                    .map(|(host, port)| format!("redis://{}/", host_port(host, *port)))
                    .collect(),
                credentials: credentials.clone(),
            };
            // The cluster connection discovers the topology on connect; connecting here
            // makes a wrong seed list fail at start, naming the variable.
            let conn = tokio::time::timeout(
                CONNECT_TIMEOUT * 3,
                seeds.builder().build()?.get_async_connection(),
            )
            .await
            .map_err(|_| anyhow::anyhow!("GREENLIGHT_REDIS_CLUSTER: timed out connecting"))?
            .map_err(|e| anyhow::anyhow!("GREENLIGHT_REDIS_CLUSTER: cannot connect: {e}"))?;
            (Conn::Cluster(conn), PubSubSource::Cluster(seeds))
        }
    })
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl Conn {
    /// After a write that must survive a failover (an action, a change, a flag, an audit
    /// append): under Sentinel, waits until a replica has it, so losing the master cannot
    /// take it along. Without an acknowledgement the write may be lost (this master may be
    /// a demoted one): the connection is dropped, so the next command asks the sentinels
    /// again, and the caller must find out what stands ([`Conn::durable_read`]).
    pub async fn replicated(&mut self) -> RedisResult<()> {
        let Self::Sentinel(sentinel) = self else {
            return Ok(());
        };
        let sentinel = sentinel.clone();
        let acked = wait_for_replica(self).await;
        if acked.is_err() {
            sentinel.forget();
        }
        acked
    }

    /// Reads with `read` what stands after a failover: on one connection, `read` and a
    /// write of `fence` run in one `MULTI`, then a replica must acknowledge the fence.
    /// Replication is ordered, so the replica then holds everything `read` saw. Elsewhere
    /// than under Sentinel it is a plain read.
    pub async fn durable_read<T: redis::FromRedisValue>(
        &mut self,
        read: &Cmd,
        fence: &str,
    ) -> RedisResult<T> {
        let Self::Sentinel(sentinel) = self else {
            return read.query_async(self).await;
        };
        let (generation, mut conn) = sentinel.connection().await?;
        let result = async {
            let (value,): (T,) = redis::pipe()
                .atomic()
                .add_command(read.clone())
                .cmd("INCR")
                .arg(fence)
                .ignore()
                .query_async(&mut conn)
                .await?;
            wait_for_replica(&mut conn).await?;
            Ok(value)
        }
        .await;
        if result.is_err() {
            sentinel.forget_generation(generation);
        }
        result
    }
}

/// `WAIT 1` until one replica acknowledged this connection's writes; a replica resyncing
/// (just after a failover) acknowledges nothing for a while, hence a few tries.
async fn wait_for_replica(conn: &mut (impl ConnectionLike + Send)) -> RedisResult<()> {
    for _ in 0..REPLICA_ACK_ATTEMPTS {
        let acked: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(REPLICA_ACK_TIMEOUT_MS)
            .query_async(conn)
            .await?;
        if acked >= 1 {
            return Ok(());
        }
    }
    tracing::warn!(
        "no replica acknowledged a write within {} ms",
        REPLICA_ACK_TIMEOUT_MS * REPLICA_ACK_ATTEMPTS
    );
    Err(redis::RedisError::from((
        ErrorKind::Server(ServerErrorKind::MasterDown),
        "no replica acknowledged the write",
    )))
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Sentinel(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Sentinel(c) => c.shared.db,
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The number of replicas in a master's `ROLE` reply; `None` when it is not a master's.
fn replicas_of_master(role: &Value) -> Option<usize> {
    let Value::Array(items) = role else {
        return None;
    };
    match (items.first(), items.get(2)) {
        (Some(Value::BulkString(kind)), Some(Value::Array(replicas))) if kind == b"master" => {
            Some(replicas.len())
        }
        _ => None,
    }
}

/// A connection to the master the sentinels name, re-resolved after it fails.
#[derive(Clone)]
pub struct SentinelConn {
    shared: Arc<SentinelShared>,
}

struct SentinelShared {
    /// Held while asking the sentinels, so one failover triggers one lookup.
    sentinel: tokio::sync::Mutex<SentinelClient>,
    /// The master's connection and its generation; a std `Mutex`, never held across `.await`.
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    generations: AtomicU64,
    config: AsyncConnectionConfig,
    db: i64,
}

impl SentinelConn {
    fn new(
        sentinels: &[(String, u16)],
        master: &str,
        db: i64,
        credentials: &Credentials,
    ) -> anyhow::Result<Self> {
        let addrs = sentinels
            .iter()
            .map(|(host, port)| ConnectionAddr::Tcp(host.clone(), *port));
        let mut builder = SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)
            .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?
            .set_client_to_redis_db(db);
        if let Some(user) = &credentials.username {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(password) = &credentials.password {
            builder = builder.set_client_to_redis_password(password);
        }
        let client = builder
            .build()
            .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
        Ok(Self {
            shared: Arc::new(SentinelShared {
                sentinel: tokio::sync::Mutex::new(client),
                current: Mutex::default(),
                generations: AtomicU64::new(0),
                config: AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT)),
                db,
            }),
        })
    }

    fn current(&self) -> Option<(u64, MultiplexedConnection)> {
        self.shared
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn connection(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let mut sentinel = self.shared.sentinel.lock().await;
        // Another task may have connected while this one waited for the lock.
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let client = sentinel.async_get_client().await?;
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&self.shared.config)
            .await?;
        // A master whose replicas left it is most likely one just demoted whose own
        // demotion has not reached it yet: writes there would be lost. Fail closed until the
        // sentinels name a master with a replica.
        let role: Value = redis::cmd("ROLE").query_async(&mut conn).await?;
        if replicas_of_master(&role).unwrap_or(0) == 0 {
            return Err(redis::RedisError::from((
                ErrorKind::Server(ServerErrorKind::MasterDown),
                "the master named by Sentinel has no replica connected",
            )));
        }
        let generation = self.shared.generations.fetch_add(1, Ordering::Relaxed);
        *self
            .shared
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((generation, conn.clone()));
        tracing::info!(
            addr = ?client.get_connection_info().addr(),
            "connected to the master named by Redis Sentinel"
        );
        Ok((generation, conn))
    }

    /// Forgets the current master: the next command asks the sentinels.
    fn forget(&self) {
        *self
            .shared
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn forget_generation(&self, generation: u64) {
        let mut slot = self
            .shared
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if matches!(&*slot, Some((g, _)) if *g == generation) {
            *slot = None;
        }
    }

    /// Forgets generation `generation` after `error`, when the error says the master is
    /// gone or is one no longer.
    fn after_error(&self, generation: u64, error: &redis::RedisError) {
        let master_lost = error.is_io_error()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_timeout()
            || matches!(
                error.kind(),
                ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
            )
            || error.to_string().contains("READONLY");
        if master_lost {
            tracing::warn!(error = %error, "lost the Sentinel master; asking the sentinels again");
            self.forget_generation(generation);
        }
    }

    fn req_packed_command<'a>(&'a self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (generation, mut conn) = self.connection().await?;
            let result = conn.req_packed_command(cmd).await;
            if let Err(e) = &result {
                self.after_error(generation, e);
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (generation, mut conn) = self.connection().await?;
            let result = conn.req_packed_commands(pipeline, offset, count).await;
            if let Err(e) = &result {
                self.after_error(generation, e);
            }
            result
        })
    }
}

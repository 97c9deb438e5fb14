//! The one pub/sub task of a process. It hears every decision published on the deployment,
//! hands each to the local waiters, and after every (re)connect re-reads the state of every
//! action someone here waits on, so nothing published while it was away is lost.
//!
//! On a single server (and Sentinel's master) it pattern-subscribes to the public decision channels,
//! `{p}:decision:*`. Cluster has no sharded pattern subscription, so there it subscribes
//! (`SSUBSCRIBE`) to the fixed set of shard channels the decision scripts publish to.

use super::RedisStore;
use super::connection::{ClusterSeeds, NodeSource, PubSubSource};
use crate::domain::ActionId;
use crate::retry::{Backoff, Delays};
use crate::waiters::Waiters;
use bytes::Bytes;
use futures::StreamExt;
use redis::{ProtocolVersion, PushInfo, PushKind, Value};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Between reconnection attempts: from 100 ms, doubling, to 5 s.
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

pub fn spawn(
    source: PubSubSource,
    store: Arc<RedisStore>,
    waiters: Arc<Waiters>,
    shutdown: CancellationToken,
) {
    match source {
        PubSubSource::Node(node) => tokio::spawn(node_subscriber(node, store, waiters, shutdown)),
        PubSubSource::Cluster(seeds) => {
            tokio::spawn(cluster_subscriber(seeds, store, waiters, shutdown))
        }
    };
}

/// Sleeps out a backoff step; `false` when shutting down.
async fn back_off(delays: &mut Delays, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(delays.next_delay()) => true,
    }
}

async fn node_subscriber(
    source: NodeSource,
    store: Arc<RedisStore>,
    waiters: Arc<Waiters>,
    shutdown: CancellationToken,
) {
    const PING_EVERY: Duration = Duration::from_secs(15);
    let pattern = store.keys.channel_pattern();
    let mut delays = RECONNECT.delays();
    loop {
        let connected = async {
            let client = source.client().await?;
            let mut pubsub = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
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
                tracing::warn!(error = %e, retry_in = ?delays.peek(), "decision subscriber cannot connect to Redis at {}", store.address);
            }
            Ok(pubsub) => {
                tracing::info!(pattern, "decision subscriber connected");
                let (mut sink, mut messages) = pubsub.split();
                if resync(&store, &waiters).await {
                    delays.reset();
                    store.subscribed.store(true, Ordering::Relaxed);
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
                                let alive = tokio::time::timeout(Duration::from_secs(5), sink.ping::<redis::Value>()).await;
                                if !matches!(alive, Ok(Ok(_))) {
                                    break;
                                }
                            }
                        }
                    }
                    store.subscribed.store(false, Ordering::Relaxed);
                    tracing::warn!(
                        "decision subscriber lost its connection to Redis at {}; reconnecting",
                        store.address
                    );
                }
                // Else some waiter could not be re-read: start over, so none is forgotten.
            }
        }
        if !back_off(&mut delays, &shutdown).await {
            return;
        }
    }
}

/// On Cluster the connection (one per node, RESP3) delivers messages through a push
/// channel and re-subscribes by itself after a node reconnects or a slot moves; each
/// re-subscription confirmation schedules a re-read of the awaited actions.
async fn cluster_subscriber(
    seeds: ClusterSeeds,
    store: Arc<RedisStore>,
    waiters: Arc<Waiters>,
    shutdown: CancellationToken,
) {
    /// Confirmations arrive one per channel: re-read once they have settled.
    const SETTLE: Duration = Duration::from_millis(100);
    let channels: Vec<String> = store
        .keys
        .shards()
        .map(|shard| store.keys.shard_channel(shard))
        .collect();
    let mut delays = RECONNECT.delays();
    loop {
        let (tx, mut pushes) = tokio::sync::mpsc::unbounded_channel::<PushInfo>();
        let connected = async {
            let client = seeds
                .builder()
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(tx)
                .build()?;
            let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_connection())
                .await
                .map_err(|_| anyhow::anyhow!("timed out connecting"))??;
            // One command per channel: the channels live in different slots.
            for channel in &channels {
                conn.ssubscribe(channel).await?;
            }
            anyhow::Ok(conn)
        };
        let conn = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = connected => r,
        };
        match conn {
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delays.peek(), "decision subscriber cannot connect to Redis Cluster at {}", store.address);
            }
            Ok(_conn) => {
                tracing::info!(
                    channels = channels.len(),
                    "decision subscriber connected to Redis Cluster"
                );
                delays.reset();
                let mut resync_at = Some(Instant::now());
                loop {
                    let due =
                        resync_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        push = pushes.recv() => match push {
                            None => break,
                            Some(push) => match push.kind {
                                PushKind::SMessage => match push.data.get(1) {
                                    Some(Value::BulkString(payload)) => {
                                        waiters.deliver(Bytes::copy_from_slice(payload));
                                    }
                                    _ => tracing::warn!("ignoring a malformed shard message"),
                                },
                                PushKind::Disconnection => {
                                    store.subscribed.store(false, Ordering::Relaxed);
                                    tracing::warn!("decision subscriber lost a Redis Cluster node; it re-subscribes");
                                }
                                PushKind::SSubscribe => resync_at = Some(Instant::now() + SETTLE),
                                _ => {}
                            },
                        },
                        _ = tokio::time::sleep_until(due), if resync_at.is_some() => {
                            if resync(&store, &waiters).await {
                                resync_at = None;
                                store.subscribed.store(true, Ordering::Relaxed);
                            } else {
                                resync_at = Some(Instant::now() + Duration::from_secs(1));
                            }
                        }
                    }
                }
                store.subscribed.store(false, Ordering::Relaxed);
            }
        }
        if !back_off(&mut delays, &shutdown).await {
            return;
        }
    }
}

/// Re-reads every locally awaited action (64 at a time on the multiplexed connection) and
/// answers the ones decided meanwhile. Returns `false` if some could not be read.
async fn resync(store: &RedisStore, waiters: &Waiters) -> bool {
    use crate::store::Store;
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

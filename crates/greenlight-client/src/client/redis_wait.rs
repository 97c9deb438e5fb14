//! Waiting on Redis pub/sub: one pub/sub connection per [`Client`](super::Client),
//! shared by all its waits, each of which subscribes to `{prefix}:decision:{id}` and then
//! reads the action over HTTP, so a decision published in between is not missed.
//!
//! One task reads the connection and hands each message to the waits on its channel.
//! When the connection drops, every wait's receiver closes and the wait carries on by
//! long-poll; the next wait reconnects. Only a single Redis server is supported here
//! (no Sentinel or Cluster discovery).

use super::{Client, ClientError};
use crate::domain::{Action, ActionId};
use futures::StreamExt;
use redis::aio::PubSubSink;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How often a wait on Redis also reads the action over HTTP: a fallback for a decision
/// published where this client does not listen (a wrong prefix), never the main path.
const REDIS_WAIT_POLL: Duration = Duration::from_secs(30);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

type Routes = HashMap<String, HashMap<u64, mpsc::UnboundedSender<Vec<u8>>>>;

/// The Redis side of a client's waits.
pub struct RedisWaits {
    client: redis::Client,
    prefix: String,
    // A tokio mutex: held across connecting, so concurrent first waits share one connection.
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

/// One live pub/sub connection and the waits it feeds.
struct Connection {
    sink: PubSubSink,
    routes: Arc<Mutex<Routes>>,
    alive: Arc<AtomicBool>,
    next: AtomicU64,
    // Serialises SUBSCRIBE and UNSUBSCRIBE: an unsubscribe decided when a channel's last
    // wait left must not overtake the subscribe of a wait that has just arrived.
    ops: tokio::sync::Mutex<()>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A subscription to one action's channel. Messages arrive on `messages`; `None` means
/// the connection is gone. Dropping it leaves the channel.
pub struct Subscription {
    pub messages: mpsc::UnboundedReceiver<Vec<u8>>,
    connection: Arc<Connection>,
    channel: String,
    token: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let empty = {
            let mut routes = lock(&self.connection.routes);
            match routes.get_mut(&self.channel) {
                Some(waits) => {
                    waits.remove(&self.token);
                    let empty = waits.is_empty();
                    if empty {
                        routes.remove(&self.channel);
                    }
                    empty
                }
                None => false,
            }
        };
        if empty && self.connection.alive.load(Ordering::Relaxed) {
            let connection = self.connection.clone();
            let channel = std::mem::take(&mut self.channel);
            // Best effort, off the dropping task: a channel left subscribed costs nothing
            // but a message nobody reads.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _guard = connection.ops.lock().await;
                    if !lock(&connection.routes).contains_key(&channel) {
                        let _ = connection.sink.clone().unsubscribe(&channel).await;
                    }
                });
            }
        }
    }
}

fn lock(routes: &Mutex<Routes>) -> std::sync::MutexGuard<'_, Routes> {
    // Held for a map operation only, never across an `.await`.
    routes.lock().unwrap_or_else(|p| p.into_inner())
}

impl RedisWaits {
    pub fn new(url: &str, prefix: &str) -> redis::RedisResult<Self> {
        Ok(Self {
            client: redis::Client::open(url)?,
            prefix: prefix.to_owned(),
            connection: tokio::sync::Mutex::new(None),
        })
    }

    pub fn channel(&self, id: &str) -> String {
        format!("{}:decision:{id}", self.prefix)
    }

    /// Subscribes to the decision channel of action `id`; returns once Redis confirmed
    /// the subscription, so anything published from now on is received.
    pub async fn subscribe(&self, id: &str) -> redis::RedisResult<Subscription> {
        let connection = self.connection().await?;
        let channel = self.channel(id);
        let (tx, rx) = mpsc::unbounded_channel();
        let token = connection.next.fetch_add(1, Ordering::Relaxed);
        let _guard = connection.ops.lock().await;
        lock(&connection.routes)
            .entry(channel.clone())
            .or_default()
            .insert(token, tx);
        let subscription = Subscription {
            messages: rx,
            connection: connection.clone(),
            channel: channel.clone(),
            token,
        };
        connection.sink.clone().subscribe(&channel).await?;
        Ok(subscription)
    }

    async fn connection(&self) -> redis::RedisResult<Arc<Connection>> {
        let mut slot = self.connection.lock().await;
        if let Some(c) = slot.as_ref()
            && c.alive.load(Ordering::Relaxed)
        {
            return Ok(c.clone());
        }
        let pubsub = tokio::time::timeout(CONNECT_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| {
                redis::RedisError::from((redis::ErrorKind::Io, "timed out connecting to Redis"))
            })??;
        let (sink, mut stream) = pubsub.split();
        let routes: Arc<Mutex<Routes>> = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        let reader = {
            let routes = routes.clone();
            let alive = alive.clone();
            tokio::spawn(async move {
                while let Some(msg) = stream.next().await {
                    let routes = lock(&routes);
                    if let Some(waits) = routes.get(msg.get_channel_name()) {
                        for tx in waits.values() {
                            let _ = tx.send(msg.get_payload_bytes().to_vec());
                        }
                    }
                }
                // Gone: closing every receiver sends its wait to long-poll.
                alive.store(false, Ordering::Relaxed);
                lock(&routes).clear();
                tracing::warn!("greenlight client lost its Redis pub/sub connection");
            })
        };
        let connection = Arc::new(Connection {
            sink,
            routes,
            alive,
            next: AtomicU64::new(0),
            ops: tokio::sync::Mutex::new(()),
            reader,
        });
        *slot = Some(connection.clone());
        Ok(connection)
    }
}

impl Client {
    /// Subscribe, then read: a decision published after the subscription is received, one
    /// published before it is in what the server answers.
    pub(super) async fn wait_on_redis(
        &self,
        redis: &RedisWaits,
        id: &ActionId,
        deadline: Instant,
    ) -> Result<Action, ClientError> {
        let mut subscription = match redis.subscribe(id.as_str()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, action_id = %id, "cannot subscribe on Redis; waiting by long-poll");
                return self.long_poll(id, deadline).await;
            }
        };
        let current = self.get(id).await?;
        if let Some(done) = self.settle(current).await? {
            return Ok(done);
        }
        let mut poll = tokio::time::interval_at(Instant::now() + REDIS_WAIT_POLL, REDIS_WAIT_POLL);
        loop {
            tokio::select! {
                message = subscription.messages.recv() => match message {
                    // The connection is gone: the rest of the wait is a long-poll.
                    None => return self.long_poll(id, deadline).await,
                    Some(bytes) => match serde_json::from_slice::<Action>(&bytes) {
                        Ok(candidate) => {
                            if let Some(done) = self.confirm(id, candidate).await? {
                                return Ok(done);
                            }
                        }
                        Err(e) => tracing::warn!(action_id = %id, error = %e,
                            "ignoring a message on the decision channel that is not an action object"),
                    },
                },
                _ = poll.tick() => {
                    if let Some(done) = self.settle(self.get(id).await?).await? {
                        return Ok(done);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let last = self.get(id).await?;
                    return Ok(self.settle(last.clone()).await?.unwrap_or(last));
                }
            }
        }
    }
}

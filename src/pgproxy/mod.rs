//! `greenlight pg-proxy`: a PostgreSQL wire-protocol proxy that any client connects to
//! instead of the database. Statements a `[[statement]]` rule holds wait on the wire until
//! approved in Greenlight, then run as sent; a refusal comes back as an ordinary
//! PostgreSQL error and the session goes on. Everything else, and every byte the
//! database sends, passes through untouched. See `docs/pg-proxy.md`.
//!
//! SQL is classified by [`crate::sql`], the same judgement as `greenlight proxy`'s `sql`
//! condition: PostgreSQL's own grammar.

mod approval;
mod batch;
pub mod config;
mod extended;
mod link;
mod session;
mod template;
mod window;
mod wire;

pub use config::PgConfig;

use crate::client::Client;
use crate::middleware::Holder;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The proxy: its rules, the Greenlight client and the upstream. Cheap to share.
pub struct PgProxy {
    shared: Arc<Shared>,
}

struct Shared {
    config: PgConfig,
    client: Client,
    /// Lets a statement through on a session's access window (`SET greenlight.grant`).
    holder: Holder,
    /// `HOST:PORT` of the database.
    upstream: String,
    /// One permit per statement held at once.
    held: Semaphore,
    /// Statements held now, by their session's cancel key.
    waits: Waits,
}

/// The held statements a `CancelRequest` can stop: by the session's cancel key.
#[derive(Default)]
struct Waits {
    by_key: std::sync::Mutex<HashMap<Vec<u8>, CancellationToken>>,
}

/// A registered wait; unregistered on drop.
struct Wait<'a> {
    waits: &'a Waits,
    key: Vec<u8>,
    token: CancellationToken,
}

impl Waits {
    fn register(&self, key: Vec<u8>) -> Wait<'_> {
        let token = CancellationToken::new();
        if !key.is_empty() {
            let mut by_key = self.by_key.lock().expect("not poisoned");
            by_key.insert(key.clone(), token.clone());
        }
        Wait {
            waits: self,
            key,
            token,
        }
    }

    fn cancel(&self, key: &[u8]) {
        if let Some(token) = self.by_key.lock().expect("not poisoned").get(key) {
            token.cancel();
        }
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        self.waits
            .by_key
            .lock()
            .expect("not poisoned")
            .remove(&self.key);
    }
}

impl PgProxy {
    pub fn new(config: PgConfig, client: Client, upstream: String) -> Self {
        let held = Semaphore::new(config.limits.max_held);
        let holder = Holder::new(client.clone(), config.limits.hold_timeout);
        Self {
            shared: Arc::new(Shared {
                config,
                holder,
                client,
                upstream,
                held,
                waits: Waits::default(),
            }),
        }
    }

    /// Accepts connections on `listener` until `shutdown`; sessions in progress are
    /// ended with the process (a database session cannot be handed over).
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let sessions = TaskTracker::new();
        loop {
            let (socket, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: the next accept may work.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = shutdown.cancelled() => break,
            };
            let shared = self.shared.clone();
            sessions.spawn(async move {
                if let Err(e) = session::run(&shared, socket).await {
                    tracing::debug!(%peer, error = %e, "session ended");
                }
            });
        }
        sessions.close();
        Ok(())
    }
}

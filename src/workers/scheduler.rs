//! The one timer loop of a process. Deadlines live in the store (a Redis sorted set), so
//! they survive restarts; each due timer is claimed atomically under a lease, so exactly
//! one replica fires it and a crash only delays it. The loop sleeps until the next
//! deadline, woken early when this process schedules a nearer one or a run ends, and polls
//! at least every [`MAX_SLEEP`] for deadlines other replicas added.
//!
//! Claimed timers run concurrently, in one bounded pool per kind of work ([`Pool`]): a
//! slow callback receiver or a slow Slack can fill its own pool, never delay an expiry.
//! Each run is cut off at [`RUN_TIMEOUT`](super::RUN_TIMEOUT), well inside the [`LEASE`], so no timer is ever
//! run by two replicas at once.

use super::LEASE;
use super::run::{Pool, Worker};
use crate::retry::Backoff;
use crate::service::Service;
use crate::store::StoreError;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub const MAX_SLEEP: Duration = Duration::from_secs(1);
/// The sleep after a step failed to reach the store: from 200 ms, doubling, to 5 s.
const STORE_ERROR: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
const BATCH: usize = 100;
/// When a claimed timer whose pool is full is tried again: it goes back to the store,
/// behind what is due now, so a full pool never holds up another pool's timers.
const BUSY_RETRY: chrono::Duration = chrono::Duration::seconds(1);

/// What one step did.
#[derive(Debug, PartialEq)]
pub struct Step {
    /// Runs started.
    pub started: usize,
    /// Whether as many were claimed as asked for (more may be due right now).
    pub full_batch: bool,
    /// Whether fewer were asked for than a batch for want of free slots: a run that ends
    /// then is worth a new step.
    pub short_of_slots: bool,
    pub next_due: Option<DateTime<Utc>>,
}

pub struct Scheduler {
    worker: Arc<Worker>,
    /// Free run slots, per [`Pool`].
    slots: [Arc<Semaphore>; Pool::COUNT],
}

impl Scheduler {
    /// Samples what lives in the store, the pending actions of every replica, for the
    /// metrics; a failure leaves the last value (and counts as a Redis error).
    async fn sample_pending(&self) {
        match self.service().pending_count().await {
            Ok(n) => crate::metrics::pending_actions(n),
            Err(e) => tracing::debug!(error = %e, "cannot count pending actions"),
        }
    }

    pub fn new(worker: Worker, concurrency: usize) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            worker: Arc::new(worker),
            slots: std::array::from_fn(|_| Arc::new(Semaphore::new(concurrency))),
        }
    }

    fn service(&self) -> &Service {
        &self.worker.service
    }

    /// Claims the timers due at `now` and starts each in its pool (in `running`); one
    /// whose pool is full goes back to the store, due again in a moment.
    pub async fn step(
        &self,
        now: DateTime<Utc>,
        running: &mut JoinSet<()>,
    ) -> Result<Step, StoreError> {
        let timers = self.service().timers();
        // No more than there are free slots: what is claimed can mostly start at once.
        let free: usize = self.slots.iter().map(|s| s.available_permits()).sum();
        let limit = BATCH.min(free);
        let claimed = if limit == 0 {
            Vec::new()
        } else {
            timers.claim_due(now, limit, LEASE).await?
        };
        let full_batch = limit > 0 && claimed.len() == limit;
        let short_of_slots = free < BATCH && claimed.len() == limit;
        let mut started = 0;
        for timer in claimed {
            let pool = Pool::of(timer.kind);
            match self.slots[pool as usize].clone().try_acquire_owned() {
                Ok(slot) => {
                    let worker = self.worker.clone();
                    running.spawn(async move {
                        worker.run(&timer).await;
                        drop(slot);
                    });
                    started += 1;
                }
                Err(_) => {
                    tracing::debug!(timer = %timer.member(), ?pool, "pool full; timer handed back");
                    timers.reschedule(&timer, Utc::now() + BUSY_RETRY).await?;
                }
            }
        }
        Ok(Step {
            started,
            full_batch,
            short_of_slots,
            next_due: timers.next_due().await?,
        })
    }

    /// Steps until `shutdown`, then waits for the runs in flight (the caller bounds that
    /// wait; dropping this future abandons them to their leases). Nothing is claimed
    /// after the signal, so nothing claimed is left unstarted.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut running = JoinSet::new();
        let mut delays = STORE_ERROR.delays();
        loop {
            while let Some(ended) = running.try_join_next() {
                log_panic(ended);
            }
            let mut wake_on_end = false;
            let sleep = match self.step(Utc::now(), &mut running).await {
                Ok(step) => {
                    delays.reset();
                    wake_on_end = step.short_of_slots;
                    self.sample_pending().await;
                    if step.full_batch && step.started > 0 {
                        Duration::ZERO
                    } else {
                        step.next_due
                            .map(|due| (due - Utc::now()).to_std().unwrap_or_default())
                            .map_or(MAX_SLEEP, |d| d.min(MAX_SLEEP))
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler cannot reach the store");
                    delays.next_delay()
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.service().timers_changed.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                Some(ended) = running.join_next(), if wake_on_end => log_panic(ended),
            }
        }
        while let Some(ended) = running.join_next().await {
            log_panic(ended);
        }
    }

    /// Runs every timer due at `now` and waits for them: one step, for tests.
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<Step, StoreError> {
        let mut running = JoinSet::new();
        let step = self.step(now, &mut running).await?;
        while let Some(ended) = running.join_next().await {
            log_panic(ended);
        }
        Ok(step)
    }
}

/// A run's panic is logged, never lost; its timer is left to its lease.
fn log_panic(ended: Result<(), tokio::task::JoinError>) {
    if let Err(e) = ended
        && e.is_panic()
    {
        tracing::error!(error = %e, "a timer's run panicked; it runs again when its lease ends");
    }
}

//! Local waiters: callers of this process blocked on an action's decision.
//!
//! One subscriber per process (the store's) feeds [`Waiters::deliver`]; each waiter holds
//! a oneshot receiver and nothing else, so an idle waiter costs a few hundred bytes and
//! never a Redis subscription. A std `Mutex` is right here: it is held for a map operation,
//! never across an `.await`.

use bytes::Bytes;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

type Slots = HashMap<u64, oneshot::Sender<Bytes>>;

/// What a published message must pass before waiters get it (see [`Waiters::with_check`]).
pub type Check = Box<dyn Fn(&[u8]) -> bool + Send + Sync>;

#[derive(Default)]
pub struct Waiters {
    by_action: Mutex<HashMap<String, Slots>>,
    next_token: AtomicU64,
    check: Option<Check>,
}

/// A registered waiter. Dropping it (answered, timed out, or the caller went away)
/// removes its slot.
pub struct Waiter {
    waiters: Arc<Waiters>,
    action_id: String,
    token: u64,
    pub receiver: oneshot::Receiver<Bytes>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        crate::metrics::waiter_removed();
        let mut map = self.waiters.lock();
        if let Some(slots) = map.get_mut(&self.action_id) {
            slots.remove(&self.token);
            if slots.is_empty() {
                map.remove(&self.action_id);
            }
        }
    }
}

#[derive(Deserialize)]
struct IdOnly<'a> {
    #[serde(borrow)]
    id: &'a str,
}

impl Waiters {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Waiters that only take messages passing `check`, run once per message: anyone who
    /// can reach Redis can publish on a decision channel. The waiters of a message that
    /// fails it receive an empty message instead: "read the action again".
    pub fn with_check(check: Check) -> Arc<Self> {
        Arc::new(Self {
            check: Some(check),
            ..Self::default()
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slots>> {
        // A panic while holding this lock cannot leave the map half-updated.
        self.by_action.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers interest in an action. Register *before* reading the action's state, so a
    /// decision published in between is not missed.
    pub fn register(self: &Arc<Self>, action_id: &str) -> Waiter {
        let (tx, rx) = oneshot::channel();
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        self.lock()
            .entry(action_id.to_owned())
            .or_default()
            .insert(token, tx);
        crate::metrics::waiter_added();
        Waiter {
            waiters: self.clone(),
            action_id: action_id.to_owned(),
            token,
            receiver: rx,
        }
    }

    /// Hands a published action (its full JSON) to every local waiter on it.
    pub fn deliver(&self, json: Bytes) {
        let Ok(IdOnly { id }) = serde_json::from_slice::<IdOnly>(&json) else {
            tracing::warn!("ignoring a decision message without an action id");
            return;
        };
        // A message that fails the check is not passed on: its waiters get an empty one,
        // which tells them to read the action from the store instead.
        // Most messages concern actions nobody here waits on: check only the others.
        let Some(slots) = self.lock().remove(id) else {
            return;
        };
        let vouched = self.check.as_ref().is_none_or(|check| check(&json));
        if !vouched {
            tracing::warn!(
                action_id = id,
                "a decision message without a grant of this deployment; waiters read the action again"
            );
        }
        let json = if vouched { json.clone() } else { Bytes::new() };
        for (_, tx) in slots {
            let _ = tx.send(json.clone());
        }
    }

    /// The actions someone here waits on: re-read after the subscriber reconnects.
    pub fn action_ids(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    pub fn count(&self) -> usize {
        self.lock().values().map(HashMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivers_to_every_waiter_of_that_action_only() {
        let w = Waiters::new();
        let mut a1 = w.register("act_A");
        let mut a2 = w.register("act_A");
        let b = w.register("act_B");
        assert_eq!(w.count(), 3);
        w.deliver(Bytes::from_static(br#"{"id":"act_A","status":"approved"}"#));
        assert!(
            (&mut a1.receiver)
                .await
                .unwrap()
                .starts_with(b"{\"id\":\"act_A\"")
        );
        assert!((&mut a2.receiver).await.unwrap().ends_with(b"}"));
        assert_eq!(w.action_ids(), vec!["act_B".to_string()]);
        drop(b);
        assert_eq!(w.count(), 0);
    }

    #[test]
    fn dropped_waiters_leave_nothing_behind() {
        let w = Waiters::new();
        let many: Vec<_> = (0..100).map(|_| w.register("act_A")).collect();
        assert_eq!(w.count(), 100);
        drop(many);
        assert_eq!(w.count(), 0);
        assert!(w.action_ids().is_empty());
    }
}

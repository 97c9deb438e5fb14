//! The embedded backend: everything in one process's memory, lost on exit. It keeps the
//! Redis backend's contract (JSON at rest, revisions, publish-on-decide, leased timers) so
//! every behaviour test runs the same on both.

use super::at_rest::{idempotency_record, parse_claimed, parse_existing};
use super::{
    Created, DECIDED_RETENTION, NewAction, SlackState, Store, StoreError, StoreResult, Tally,
    Timer, Versioned,
};
use crate::domain::{Action, ActionId};
use crate::waiters::Waiters;
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Record {
    rev: u64,
    json: Bytes,
    /// When a decided action is forgotten.
    forget_at: Option<Instant>,
    slack: Option<SlackState>,
}

#[derive(Default)]
struct Inner {
    actions: HashMap<String, Record>,
    pending: BTreeSet<String>,
    /// Pending actions per client (for `max_pending`), kept by create and replace.
    pending_per_client: HashMap<String, u32>,
    /// (client, request id) -> (value, expires)
    idempotency: HashMap<(String, String), (String, Instant)>,
    /// (namespace, key) -> (expires, value): `set_once` flags hold an empty value.
    flags: HashMap<(String, String), (Instant, String)>,
    /// (due ms, member) ordered, plus member -> due ms.
    timers: BTreeSet<(i64, String)>,
    timer_due: HashMap<String, i64>,
    /// (namespace, key) -> (expires, tally)
    tallies: HashMap<(String, String), (Instant, Tally)>,
    /// index name -> member -> listed until (unix ms)
    indexes: HashMap<String, HashMap<String, i64>>,
    inserts: u64,
    audit: super::audit::MemoryAuditLog,
}

impl Inner {
    fn remove_timer(&mut self, member: &str) {
        if let Some(ms) = self.timer_due.remove(member) {
            self.timers.remove(&(ms, member.to_owned()));
        }
    }

    fn set_timer_if_absent(&mut self, member: String, due_ms: i64) {
        if !self.timer_due.contains_key(&member) {
            self.set_timer(member, due_ms);
        }
    }

    fn set_timer(&mut self, member: String, due_ms: i64) {
        if let Some(old) = self.timer_due.insert(member.clone(), due_ms) {
            self.timers.remove(&(old, member.clone()));
        }
        self.timers.insert((due_ms, member));
    }

    /// The tally `key` of `ns` as it stands at `now` (a fresh one when absent or expired),
    /// with its expiry.
    fn live_tally(&mut self, ns: &str, key: &str, now: Instant) -> &mut (Instant, Tally) {
        self.sweep(now);
        let entry = self
            .tallies
            .entry((ns.to_owned(), key.to_owned()))
            .or_insert((now, Tally::default()));
        if entry.0 <= now {
            entry.1 = Tally::default();
        }
        entry
    }

    /// Drops expired keys now and then, so memory stays bounded without a sweeper task.
    fn sweep(&mut self, now: Instant) {
        self.inserts += 1;
        if !self.inserts.is_multiple_of(1024) {
            return;
        }
        self.idempotency.retain(|_, (_, exp)| *exp > now);
        self.flags.retain(|_, (exp, _)| *exp > now);
        self.tallies.retain(|_, (exp, _)| *exp > now);
        self.actions
            .retain(|_, r| r.forget_at.is_none_or(|t| t > now));
    }
}

pub struct MemoryStore {
    inner: Mutex<Inner>,
    waiters: Arc<Waiters>,
}

impl MemoryStore {
    pub fn new(waiters: Arc<Waiters>) -> Self {
        Self {
            inner: Mutex::default(),
            waiters,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }

    async fn claim(
        &self,
        ns: &str,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> StoreResult<Option<String>> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.sweep(now);
        let key = (ns.to_owned(), key.to_owned());
        match inner.flags.get(&key) {
            Some((exp, stored)) if *exp > now => Ok(Some(stored.clone())),
            _ => {
                inner.flags.insert(key, (now + ttl, value.to_owned()));
                Ok(None)
            }
        }
    }

    async fn is_set(&self, ns: &str, key: &str) -> StoreResult<bool> {
        let now = Instant::now();
        let inner = self.lock();
        Ok(inner
            .flags
            .get(&(ns.to_owned(), key.to_owned()))
            .is_some_and(|(exp, _)| *exp > now))
    }

    async fn claimed(&self, ns: &str, key: &str) -> StoreResult<Option<String>> {
        let now = Instant::now();
        let inner = self.lock();
        Ok(inner
            .flags
            .get(&(ns.to_owned(), key.to_owned()))
            .filter(|(exp, _)| *exp > now)
            .map(|(_, value)| value.clone()))
    }

    async fn tally(&self, ns: &str, key: &str, ttl: Duration) -> StoreResult<Option<u64>> {
        let now = Instant::now();
        let mut inner = self.lock();
        let entry = inner.live_tally(ns, key, now);
        if entry.1.seal.is_some() {
            return Ok(None);
        }
        entry.0 = now + ttl;
        entry.1.count += 1;
        Ok(Some(entry.1.count))
    }

    async fn seal(
        &self,
        ns: &str,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> StoreResult<(bool, Tally)> {
        let now = Instant::now();
        let mut inner = self.lock();
        let entry = inner.live_tally(ns, key, now);
        let first = entry.1.seal.is_none();
        if first {
            entry.0 = now + ttl;
            entry.1.seal = Some(value.to_owned());
        }
        Ok((first, entry.1.clone()))
    }

    async fn read_tally(&self, ns: &str, key: &str) -> StoreResult<Tally> {
        let now = Instant::now();
        let inner = self.lock();
        Ok(inner
            .tallies
            .get(&(ns.to_owned(), key.to_owned()))
            .filter(|(exp, _)| *exp > now)
            .map(|(_, tally)| tally.clone())
            .unwrap_or_default())
    }

    async fn index_add(&self, name: &str, member: &str, until: DateTime<Utc>) -> StoreResult<()> {
        let mut inner = self.lock();
        inner
            .indexes
            .entry(name.to_owned())
            .or_default()
            .insert(member.to_owned(), until.timestamp_millis());
        Ok(())
    }

    async fn index_live(&self, name: &str, now: DateTime<Utc>) -> StoreResult<Vec<String>> {
        let now_ms = now.timestamp_millis();
        let mut inner = self.lock();
        let Some(index) = inner.indexes.get_mut(name) else {
            return Ok(Vec::new());
        };
        index.retain(|_, until| *until > now_ms);
        let mut live: Vec<(i64, String)> = index.iter().map(|(m, u)| (*u, m.clone())).collect();
        live.sort();
        Ok(live.into_iter().map(|(_, m)| m).collect())
    }

    async fn create(&self, new: NewAction<'_>) -> StoreResult<Created> {
        let now = Instant::now();
        let json = Bytes::copy_from_slice(new.json.as_bytes());
        {
            let mut inner = self.lock();
            inner.sweep(now);
            let key = (new.client.to_owned(), new.idempotency_key.to_owned());
            if let Some((value, exp)) = inner.idempotency.get(&key)
                && *exp > now
            {
                return parse_existing(value);
            }
            let decided = !new.action.is_pending();
            if !decided {
                let pending = inner
                    .pending_per_client
                    .entry(new.client.to_owned())
                    .or_default();
                if *pending >= new.max_pending {
                    return Ok(Created::TooManyPending);
                }
                *pending += 1;
            }
            let value = idempotency_record(new.body_hash, &new.action.id);
            inner
                .idempotency
                .insert(key, (value, now + super::IDEMPOTENCY_TTL));
            inner.actions.insert(
                new.action.id.to_string(),
                Record {
                    rev: 1,
                    json: json.clone(),
                    forget_at: decided.then(|| now + DECIDED_RETENTION),
                    slack: None,
                },
            );
            if !decided {
                inner.pending.insert(new.action.id.to_string());
            }
            // As Redis does: a decided action's timers too (the end of an auto-approved window).
            for t in new.timers {
                inner.set_timer(t.member(), t.due_ms());
            }
        }
        if !new.action.is_pending() {
            // Published outside the lock: delivery wakes other tasks.
            self.waiters.deliver(json);
        }
        Ok(Created::New)
    }

    async fn load(&self, id: &ActionId) -> StoreResult<Option<Versioned>> {
        let record = {
            let inner = self.lock();
            inner
                .actions
                .get(id.as_str())
                .map(|r| (r.rev, r.json.clone(), r.slack.clone()))
        };
        record
            .map(|(rev, json, slack)| {
                let action: Action = serde_json::from_slice(&json)
                    .map_err(|e| StoreError::Corrupt(format!("action {id}: {e}")))?;
                Ok(Versioned { action, rev, slack })
            })
            .transpose()
    }

    async fn replace(
        &self,
        expected_rev: u64,
        action: &Action,
        json: &str,
        effects: &[Timer],
        dropped: &[Timer],
    ) -> StoreResult<bool> {
        let json = Bytes::copy_from_slice(json.as_bytes());
        let decided = !action.is_pending();
        {
            let mut inner = self.lock();
            let Some(record) = inner.actions.get_mut(action.id.as_str()) else {
                return Ok(false);
            };
            if record.rev != expected_rev || record.forget_at.is_some() {
                return Ok(false);
            }
            record.rev += 1;
            record.json = json.clone();
            if decided {
                record.forget_at = Some(Instant::now() + DECIDED_RETENTION);
                inner.pending.remove(action.id.as_str());
                if let Some(n) = inner.pending_per_client.get_mut(&action.client) {
                    *n = n.saturating_sub(1);
                }
            }
            for t in effects {
                inner.set_timer_if_absent(t.member(), t.due_ms());
            }
            for t in dropped {
                inner.remove_timer(&t.member());
            }
        }
        if decided {
            self.waiters.deliver(json);
        }
        Ok(true)
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> StoreResult<Vec<Timer>> {
        let now_ms = now.timestamp_millis();
        let lease_until = now_ms + lease.as_millis() as i64;
        let mut inner = self.lock();
        let due: Vec<(i64, String)> = inner
            .timers
            .iter()
            .take_while(|(ms, _)| *ms <= now_ms)
            .take(limit)
            .cloned()
            .collect();
        let mut claimed = Vec::with_capacity(due.len());
        for (ms, member) in due {
            inner.set_timer(member.clone(), lease_until);
            claimed.extend(parse_claimed(&member, ms));
        }
        Ok(claimed)
    }

    async fn finish(&self, timer: &Timer) -> StoreResult<()> {
        self.lock().remove_timer(&timer.member());
        Ok(())
    }

    async fn set_slack(&self, id: &ActionId, state: &SlackState) -> StoreResult<()> {
        if let Some(record) = self.lock().actions.get_mut(id.as_str()) {
            record.slack = Some(state.clone());
        }
        Ok(())
    }

    async fn pending_count(&self) -> StoreResult<u64> {
        Ok(self.lock().pending.len() as u64)
    }

    async fn pending_ids(&self, limit: usize) -> StoreResult<Vec<ActionId>> {
        Ok(self
            .lock()
            .pending
            .iter()
            .filter_map(|id| id.parse().ok())
            .take(limit)
            .collect())
    }

    async fn finish_if_current(&self, timer: &Timer, rev: u64) -> StoreResult<()> {
        let mut inner = self.lock();
        let current = inner
            .actions
            .get(timer.action_id.as_str())
            .is_none_or(|r| r.rev == rev);
        let member = timer.member();
        if current {
            inner.remove_timer(&member);
        } else if inner.timer_due.contains_key(&member) {
            inner.set_timer(member, Utc::now().timestamp_millis());
        }
        Ok(())
    }

    async fn reschedule(&self, timer: &Timer, due: DateTime<Utc>) -> StoreResult<()> {
        let mut inner = self.lock();
        let member = timer.member();
        if inner.timer_due.contains_key(&member) {
            inner.set_timer(member, due.timestamp_millis());
        }
        Ok(())
    }

    async fn schedule(&self, timer: &Timer) -> StoreResult<()> {
        self.lock()
            .set_timer_if_absent(timer.member(), timer.due_ms());
        Ok(())
    }

    async fn next_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let inner = self.lock();
        Ok(inner
            .timers
            .first()
            .and_then(|(ms, _)| DateTime::from_timestamp_millis(*ms)))
    }

    async fn audit_head(&self) -> StoreResult<Option<String>> {
        Ok(self.lock().audit.head())
    }

    async fn audit_append(
        &self,
        expected_head: Option<&str>,
        entries: &[super::NewAuditEntry<'_>],
        maxlen: u64,
    ) -> StoreResult<super::AuditAppend> {
        let now_ms = Utc::now().timestamp_millis().max(0) as u64;
        Ok(self
            .lock()
            .audit
            .append(expected_head, entries, maxlen, now_ms))
    }

    async fn audit_range(
        &self,
        after: Option<&str>,
        count: usize,
    ) -> StoreResult<Vec<(String, String)>> {
        Ok(self.lock().audit.range(after, count))
    }
}

//! The [`Store`] operations on Redis: plain commands, or one script call (`scripts.rs`)
//! where a change must be atomic.

use super::{CLUSTER_SHARDS, RedisStore, WRITE_ATTEMPTS, scripts};
use crate::domain::{Action, ActionId};
use crate::store::at_rest::{idempotency_record, parse_existing};
use crate::store::{
    AuditAppend, Created, NewAction, NewAuditEntry, SlackState, Store, StoreError, StoreResult,
    Tally, Timer, Versioned, audit,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::cmd;
use std::time::Duration;

#[async_trait]
impl Store for RedisStore {
    async fn ping(&self) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        // What `/readyz` answers with: where Redis was expected, and why it did not answer.
        let _: String = cmd("PING").query_async(&mut conn).await.map_err(|e| {
            crate::metrics::redis_error();
            StoreError::Unavailable(format!("redis unreachable at {}: {e}", self.address))
        })?;
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
                .map_err(|e| self.unavailable(e))?;
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
                    .map_err(|e| self.unavailable(e))?
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
            .map_err(|e| self.unavailable(e))?;
        Ok(n > 0)
    }

    async fn claimed(&self, ns: &str, key: &str) -> StoreResult<Option<String>> {
        let mut conn = self.conn.clone();
        let stored: Option<String> = cmd("GET")
            .arg(self.keys.flag(ns, key))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.unavailable(e))?;
        // Stored as `{token} {value}` (see `claim`).
        Ok(stored.map(|s| {
            s.split_once(' ')
                .map(|(_, v)| v.to_owned())
                .unwrap_or_default()
        }))
    }

    async fn tally(&self, ns: &str, key: &str, ttl: Duration) -> StoreResult<Option<u64>> {
        let key = self.keys.flag(ns, key);
        let call = scripts::CountTally {
            key: &key,
            ttl_ms: ttl.as_millis().max(1) as u64,
        };
        let mut conn = self.conn.clone();
        let count: i64 = call
            .invocation(&self.scripts)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(u64::try_from(count).ok())
    }

    async fn seal(
        &self,
        ns: &str,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> StoreResult<(bool, Tally)> {
        let key = self.keys.flag(ns, key);
        let call = scripts::SealTally {
            key: &key,
            value,
            ttl_ms: ttl.as_millis().max(1) as u64,
        };
        let mut conn = self.conn.clone();
        let (sealed, seal, count): (i64, String, u64) = call
            .invocation(&self.scripts)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.unavailable(e))?;
        let tally = Tally {
            count,
            seal: Some(seal),
        };
        Ok((sealed == 1, tally))
    }

    async fn read_tally(&self, ns: &str, key: &str) -> StoreResult<Tally> {
        let mut conn = self.conn.clone();
        let (count, seal): (Option<u64>, Option<String>) = cmd("HMGET")
            .arg(self.keys.flag(ns, key))
            .arg("count")
            .arg("seal")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(Tally {
            count: count.unwrap_or(0),
            seal,
        })
    }

    async fn index_add(&self, name: &str, member: &str, until: DateTime<Utc>) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        let _: i64 = cmd("ZADD")
            .arg(self.keys.index(name))
            .arg(until.timestamp_millis())
            .arg(member)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(())
    }

    async fn index_live(&self, name: &str, now: DateTime<Utc>) -> StoreResult<Vec<String>> {
        let key = self.keys.index(name);
        let now_ms = now.timestamp_millis();
        let mut conn = self.conn.clone();
        let (_, live): (i64, Vec<String>) = redis::pipe()
            .atomic()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(now_ms)
            .cmd("ZRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(live)
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
            let call = scripts::Create {
                keys: &self.keys,
                id,
                client: new.client,
                idempotency_key: new.idempotency_key,
                record: idempotency_record(new.body_hash, id),
                status: new.action.status.as_str(),
                json: new.json,
                publish: self.announce.script_command(),
                max_pending: new.max_pending,
                pending_elsewhere: elsewhere,
                timers: new.timers,
                outbox: outbox.as_ref(),
            };
            let mut conn = self.conn.clone();
            let existing: Option<String> = call
                .invocation(&self.scripts)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.unavailable(e))?;
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
            .map_err(|e| self.unavailable(e))?;
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
        let decided = !action.is_pending();
        let outbox = decided.then(|| self.publish_outbox(id)).flatten();
        let call = scripts::Replace {
            keys: &self.keys,
            id,
            client: &action.client,
            expected_rev,
            status: action.status.as_str(),
            json,
            publish: self.announce.script_command(),
            effects,
            outbox: outbox.as_ref(),
            dropped,
        };
        let mut conn = self.conn.clone();
        let applied: i64 = call
            .invocation(&self.scripts)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.unavailable(e))?;
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
        let call = scripts::SetSlack {
            keys: &self.keys,
            id,
            json: &json,
        };
        let _: i64 = call
            .invocation(&self.scripts)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.unavailable(e))?;
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
                .map_err(|e| self.unavailable(e))?;
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
                .map_err(|e| self.unavailable(e))?;
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
            .map_err(|e| self.unavailable(e))?;
        Ok(())
    }

    async fn finish_if_current(&self, timer: &Timer, rev: u64) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        let call = scripts::FinishIfCurrent {
            keys: &self.keys,
            timer,
            rev,
            now_ms: Utc::now().timestamp_millis(),
        };
        let _: i64 = call
            .invocation(&self.scripts)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.unavailable(e))?;
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
            .map_err(|e| self.unavailable(e))?;
        Ok(())
    }

    async fn schedule(&self, timer: &Timer) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        let _: i64 = cmd("ZADD")
            .arg(self.keys.timers(self.keys.shard_of(&timer.action_id)))
            .arg("NX")
            .arg(timer.due_ms())
            .arg(timer.member())
            .query_async(&mut conn)
            .await
            .map_err(|e| self.unavailable(e))?;
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
                .map_err(|e| self.unavailable(e))?;
            if let Some((_, ms)) = first.first() {
                next = Some(next.map_or(*ms, |n| n.min(*ms)));
            }
        }
        Ok(next.and_then(DateTime::from_timestamp_millis))
    }

    async fn audit_head(&self) -> StoreResult<Option<String>> {
        // The head tells the writer whether an append that failed midway applied. Under
        // Sentinel a demoted master that has not heard of the failover yet still answers
        // with entries the new master never got, so read only what a replica also holds.
        self.what_stands(cmd("GET").arg(self.keys.audit_head()))
            .await
    }

    async fn audit_append(
        &self,
        expected_head: Option<&str>,
        entries: &[NewAuditEntry<'_>],
        maxlen: u64,
    ) -> StoreResult<AuditAppend> {
        let mut conn = self.conn.clone();
        let call = scripts::AppendAudit {
            keys: &self.keys,
            expected_head,
            maxlen,
            entries,
        };
        let reply: Vec<String> = call
            .invocation(&self.scripts)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.unavailable(e))?;
        let appended = audit::redis_append_reply(reply);
        // Unconfirmed: whether the entries stand shows in the head. If a failover took
        // them back, the writer chains them again on the head that stands.
        if matches!(appended, AuditAppend::Appended(_)) && conn.replicated().await.is_err() {
            let head: Option<String> = self
                .what_stands(cmd("GET").arg(self.keys.audit_head()))
                .await?;
            if head.as_deref() != entries.last().map(|e| e.hash) {
                return Ok(AuditAppend::HeadMoved(head));
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
        audit::redis_range(&mut conn, &self.keys.audit(), after, count)
            .await
            .map_err(|e| self.unavailable(e))
    }
}

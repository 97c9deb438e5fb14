//! Where Greenlight keeps things in Redis (documented in docs/redis.md).
//!
//! A single server (or a Sentinel-managed master) uses one layout with plain names. Redis
//! Cluster runs a script only when all its keys share a hash slot, and a decision must
//! update the action, the pending set and the timers together. So on Cluster every action
//! belongs to one of [`CLUSTER_SHARDS`] shards, and the action, its idempotency key, its
//! shard's pending set, timers and internal decision channel carry the shard's hash tag
//! (`greenlight:{7}:action:act_…`). The shard is chosen from the idempotency key and
//! written into the action id's low bits, so both are known before the action exists.

use crate::domain::ActionId;
use sha2::{Digest, Sha256};

/// Shards on Redis Cluster: enough to spread actions over up to 16 masters. Fixed, since
/// the shard is part of every stored id.
pub const CLUSTER_SHARDS: u16 = 16;

#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
    cluster: bool,
}

impl Keys {
    pub fn new(prefix: &str, cluster: bool) -> Self {
        Self {
            prefix: prefix.to_owned(),
            cluster,
        }
    }

    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// The shards to visit for deployment-wide work (timers, pending actions).
    pub fn shards(&self) -> std::ops::Range<u16> {
        0..if self.cluster { CLUSTER_SHARDS } else { 1 }
    }

    pub fn shard_of(&self, id: &ActionId) -> u16 {
        if self.cluster {
            id.shard(CLUSTER_SHARDS)
        } else {
            0
        }
    }

    /// The shard of a (client, webhook-id) pair: where its action will live.
    pub fn idempotency_shard(&self, client: &str, request: &str) -> u16 {
        if !self.cluster {
            return 0;
        }
        let digest = Sha256::new()
            .chain_update(client)
            .chain_update(b":")
            .chain_update(request)
            .finalize();
        u16::from_be_bytes([digest[0], digest[1]]) % CLUSTER_SHARDS
    }

    /// `{p}:` or, on Cluster, `{p}:{shard}:`.
    fn base(&self, shard: u16) -> String {
        if self.cluster {
            format!("{}:{{{shard}}}:", self.prefix)
        } else {
            format!("{}:", self.prefix)
        }
    }

    pub fn action(&self, id: &ActionId) -> String {
        format!("{}action:{id}", self.base(self.shard_of(id)))
    }

    pub fn idempotency(&self, client: &str, request: &str) -> String {
        let shard = self.idempotency_shard(client, request);
        format!("{}idem:{client}:{request}", self.base(shard))
    }

    pub fn pending(&self, shard: u16) -> String {
        format!("{}pending", self.base(shard))
    }

    pub fn timers(&self, shard: u16) -> String {
        format!("{}timers", self.base(shard))
    }

    /// The ids of a client's pending actions in a shard (its `max_pending` count).
    pub fn client_pending(&self, shard: u16, client: &str) -> String {
        format!("{}pending:{client}", self.base(shard))
    }

    /// One-shot flags: single-key commands, so no tag is needed on Cluster.
    pub fn flag(&self, ns: &str, key: &str) -> String {
        format!("{}:{ns}:{key}", self.prefix)
    }

    /// A deployment-wide index (a sorted set by the time its members stay listed).
    pub fn index(&self, name: &str) -> String {
        format!("{}:index:{name}", self.prefix)
    }

    /// The public decision channel, `{p}:decision:{id}`, the one callers subscribe to.
    pub fn channel(&self, id: &ActionId) -> String {
        format!("{}:decision:{id}", self.prefix)
    }

    /// What this process subscribes to on a single server: every decision channel.
    pub fn channel_pattern(&self) -> String {
        format!("{}:decision:*", self.prefix)
    }

    /// On Cluster, the shard channel the decision scripts publish to (`SPUBLISH` from a
    /// script must stay in its slot); every process subscribes to all of them.
    pub fn shard_channel(&self, shard: u16) -> String {
        format!("{}decisions", self.base(shard))
    }

    /// Where a decision's script publishes: the public decision channel on a single server, the
    /// shard channel on Cluster (a script may only publish within its slot).
    pub fn script_channel(&self, id: &ActionId) -> String {
        if self.cluster {
            self.shard_channel(self.shard_of(id))
        } else {
            self.channel(id)
        }
    }

    /// The audit stream and its head share a slot on Cluster (`{p:audit}`).
    pub fn audit(&self) -> String {
        if self.cluster {
            format!("{{{}:audit}}", self.prefix)
        } else {
            format!("{}:audit", self.prefix)
        }
    }

    pub fn audit_head(&self) -> String {
        format!("{}:head", self.audit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The part of a key Redis Cluster hashes: the first non-empty `{…}`, else all of it.
    fn hash_tag(key: &str) -> &str {
        if let Some(open) = key.find('{')
            && let Some(len) = key[open + 1..].find('}')
            && len > 0
        {
            return &key[open + 1..open + 1 + len];
        }
        key
    }

    #[test]
    fn a_single_server_keeps_the_documented_names() {
        let keys = Keys::new("greenlight", false);
        let id: ActionId = "act_01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().unwrap();
        assert_eq!(
            keys.action(&id),
            "greenlight:action:act_01ARZ3NDEKTSV4RRFFQ69G5FAV"
        );
        assert_eq!(keys.pending(0), "greenlight:pending");
        assert_eq!(keys.timers(0), "greenlight:timers");
        assert_eq!(keys.client_pending(0, "ci"), "greenlight:pending:ci");
        assert_eq!(keys.idempotency("ci", "msg_1"), "greenlight:idem:ci:msg_1");
        assert_eq!(keys.audit(), "greenlight:audit");
        assert_eq!(keys.audit_head(), "greenlight:audit:head");
        assert_eq!(keys.script_channel(&id), keys.channel(&id));
        assert_eq!(keys.shards().count(), 1);
    }

    #[test]
    fn on_cluster_every_key_a_script_touches_shares_the_actions_tag() {
        let keys = Keys::new("greenlight", true);
        for (client, request) in [("ci", "msg_1"), ("payments-api", "msg_2"), ("x", "y")] {
            let shard = keys.idempotency_shard(client, request);
            let id = ActionId::generate_in_shard(shard, CLUSTER_SHARDS);
            let tag = hash_tag(&keys.action(&id)).to_owned();
            for key in [
                keys.idempotency(client, request),
                keys.pending(shard),
                keys.timers(shard),
                keys.client_pending(shard, client),
                keys.shard_channel(shard),
                keys.script_channel(&id),
            ] {
                assert_eq!(hash_tag(&key), tag, "{key}");
            }
        }
        assert_eq!(hash_tag(&keys.audit()), hash_tag(&keys.audit_head()));
        // The channel callers subscribe to keeps its documented name.
        let id = ActionId::generate();
        assert_eq!(keys.channel(&id), format!("greenlight:decision:{id}"));
    }

    #[test]
    fn idempotency_keys_spread_over_every_shard() {
        let keys = Keys::new("greenlight", true);
        let mut seen = [false; CLUSTER_SHARDS as usize];
        for i in 0..1000 {
            seen[keys.idempotency_shard("ci", &format!("msg_{i}")) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}

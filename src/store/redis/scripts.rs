//! The Lua scripts of the Redis backend (`src/store/scripts/*.lua`, each opening with its
//! KEYS/ARGV header) and a typed call for each: a struct that says what the call is about,
//! whose `invocation` lays out KEYS and ARGV in the header's order, in this one place.

use super::keys::Keys;
use crate::domain::ActionId;
use crate::store::{DECIDED_RETENTION, IDEMPOTENCY_TTL, NewAuditEntry, Timer};
use redis::{Script, ScriptInvocation};

/// The scripts, loaded once per store (`EVALSHA`, falling back to `EVAL` on a new node).
pub(super) struct Scripts {
    create: Script,
    replace: Script,
    claim: Script,
    finish_if_current: Script,
    set_slack: Script,
    audit_append: Script,
    tally: Script,
    seal: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            create: Script::new(include_str!("../scripts/create.lua")),
            replace: Script::new(include_str!("../scripts/replace.lua")),
            claim: Script::new(include_str!("../scripts/claim.lua")),
            finish_if_current: Script::new(include_str!("../scripts/finish_if_current.lua")),
            set_slack: Script::new(include_str!("../scripts/set_slack.lua")),
            audit_append: Script::new(include_str!("../scripts/audit_append.lua")),
            tally: Script::new(include_str!("../scripts/tally.lua")),
            seal: Script::new(include_str!("../scripts/seal.lua")),
        }
    }
}

/// A timer scheduled with a change, as `(due ms, member)`.
pub(super) type ScheduledTimer = (i64, String);

/// `create.lua`: creates an action once per (client, `webhook-id`), a pending one only
/// while the client is under its `max_pending`.
pub(super) struct Create<'a> {
    pub keys: &'a Keys,
    pub id: &'a ActionId,
    pub client: &'a str,
    pub idempotency_key: &'a str,
    /// The idempotency record (`at_rest::idempotency_record`).
    pub record: String,
    pub status: &'a str,
    pub json: &'a str,
    /// `PUBLISH`, `SPUBLISH`, or '' when the caller publishes after replication.
    pub publish: &'static str,
    pub max_pending: u32,
    /// The client's pending actions in other shards (Cluster; else 0).
    pub pending_elsewhere: u64,
    pub timers: &'a [Timer],
    /// The outbox timer of a decision published after the script.
    pub outbox: Option<&'a ScheduledTimer>,
}

impl Create<'_> {
    pub(super) fn invocation<'s>(&self, scripts: &'s Scripts) -> ScriptInvocation<'s> {
        let shard = self.keys.shard_of(self.id);
        let mut inv = scripts.create.prepare_invoke();
        inv.key(self.keys.idempotency(self.client, self.idempotency_key))
            .key(self.keys.action(self.id))
            .key(self.keys.pending(shard))
            .key(self.keys.timers(shard))
            .key(self.keys.client_pending(shard, self.client))
            .arg(&self.record)
            .arg(IDEMPOTENCY_TTL.as_secs())
            .arg(self.id.as_str())
            .arg(self.status)
            .arg(self.json)
            .arg(self.keys.script_channel(self.id))
            .arg(DECIDED_RETENTION.as_secs())
            .arg(self.publish)
            .arg(self.max_pending)
            .arg(self.pending_elsewhere);
        for t in self.timers {
            inv.arg(t.due_ms()).arg(t.member());
        }
        if let Some((due, member)) = self.outbox {
            inv.arg(*due).arg(member);
        }
        inv
    }
}

/// `replace.lua`: the compare-and-set of a pending action, which publishes it when it
/// leaves pending.
pub(super) struct Replace<'a> {
    pub keys: &'a Keys,
    pub id: &'a ActionId,
    pub client: &'a str,
    pub expected_rev: u64,
    pub status: &'a str,
    pub json: &'a str,
    /// `PUBLISH`, `SPUBLISH`, or '' when the caller publishes after replication.
    pub publish: &'static str,
    /// Scheduled unless already scheduled.
    pub effects: &'a [Timer],
    pub outbox: Option<&'a ScheduledTimer>,
    pub dropped: &'a [Timer],
}

impl Replace<'_> {
    pub(super) fn invocation<'s>(&self, scripts: &'s Scripts) -> ScriptInvocation<'s> {
        let shard = self.keys.shard_of(self.id);
        let mut inv = scripts.replace.prepare_invoke();
        inv.key(self.keys.action(self.id))
            .key(self.keys.pending(shard))
            .key(self.keys.timers(shard))
            .key(self.keys.client_pending(shard, self.client))
            .arg(self.expected_rev)
            .arg(self.status)
            .arg(self.json)
            .arg(self.keys.script_channel(self.id))
            .arg(DECIDED_RETENTION.as_secs())
            .arg(self.id.as_str())
            .arg(self.effects.len() + usize::from(self.outbox.is_some()))
            .arg(self.publish);
        for t in self.effects {
            inv.arg(t.due_ms()).arg(t.member());
        }
        if let Some((due, member)) = self.outbox {
            inv.arg(*due).arg(member);
        }
        for t in self.dropped {
            inv.arg(t.member());
        }
        inv
    }
}

/// `claim.lua`: claims up to `limit` due timers of one shard until `lease_until_ms`.
pub(super) struct Claim<'a> {
    pub keys: &'a Keys,
    pub shard: u16,
    pub now_ms: i64,
    pub limit: usize,
    pub lease_until_ms: i64,
}

impl Claim<'_> {
    pub(super) fn invocation<'s>(&self, scripts: &'s Scripts) -> ScriptInvocation<'s> {
        let mut inv = scripts.claim.prepare_invoke();
        inv.key(self.keys.timers(self.shard))
            .arg(self.now_ms)
            .arg(self.limit)
            .arg(self.lease_until_ms);
        inv
    }
}

/// `finish_if_current.lua`: ends an effect timer whose work reflected revision `rev`, or
/// makes it due at once if the action moved on.
pub(super) struct FinishIfCurrent<'a> {
    pub keys: &'a Keys,
    pub timer: &'a Timer,
    pub rev: u64,
    pub now_ms: i64,
}

impl FinishIfCurrent<'_> {
    pub(super) fn invocation<'s>(&self, scripts: &'s Scripts) -> ScriptInvocation<'s> {
        let id = &self.timer.action_id;
        let mut inv = scripts.finish_if_current.prepare_invoke();
        inv.key(self.keys.timers(self.keys.shard_of(id)))
            .key(self.keys.action(id))
            .arg(self.timer.member())
            .arg(self.rev)
            .arg(self.now_ms);
        inv
    }
}

/// `set_slack.lua`: records an action's Slack message state, only while the action exists.
pub(super) struct SetSlack<'a> {
    pub keys: &'a Keys,
    pub id: &'a ActionId,
    pub json: &'a str,
}

impl SetSlack<'_> {
    pub(super) fn invocation<'s>(&self, scripts: &'s Scripts) -> ScriptInvocation<'s> {
        let mut inv = scripts.set_slack.prepare_invoke();
        inv.key(self.keys.action(self.id)).arg(self.json);
        inv
    }
}

/// `audit_append.lua`: appends entries only if the chain's head is still `expected_head`
/// (compare-and-set), then makes the last one's hash the head.
pub(super) struct AppendAudit<'a> {
    pub keys: &'a Keys,
    pub expected_head: Option<&'a str>,
    /// Trims the stream to about this many entries (0: keep everything).
    pub maxlen: u64,
    pub entries: &'a [NewAuditEntry<'a>],
}

impl AppendAudit<'_> {
    pub(super) fn invocation<'s>(&self, scripts: &'s Scripts) -> ScriptInvocation<'s> {
        let mut inv = scripts.audit_append.prepare_invoke();
        inv.key(self.keys.audit())
            .key(self.keys.audit_head())
            .arg(self.expected_head.unwrap_or(""))
            .arg(self.maxlen);
        for entry in self.entries {
            inv.arg(entry.hash).arg(entry.json);
        }
        inv
    }
}

/// `tally.lua`: counts one more on a tally unless it is sealed.
pub(super) struct CountTally<'a> {
    pub key: &'a str,
    pub ttl_ms: u64,
}

impl CountTally<'_> {
    pub(super) fn invocation<'s>(&self, scripts: &'s Scripts) -> ScriptInvocation<'s> {
        let mut inv = scripts.tally.prepare_invoke();
        inv.key(self.key).arg(self.ttl_ms);
        inv
    }
}

/// `seal.lua`: seals a tally with `value` unless it is sealed.
pub(super) struct SealTally<'a> {
    pub key: &'a str,
    pub value: &'a str,
    pub ttl_ms: u64,
}

impl SealTally<'_> {
    pub(super) fn invocation<'s>(&self, scripts: &'s Scripts) -> ScriptInvocation<'s> {
        let mut inv = scripts.seal.prepare_invoke();
        inv.key(self.key).arg(self.value).arg(self.ttl_ms);
        inv
    }
}

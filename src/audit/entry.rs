//! One audit entry, its canonical form and its hash: the part of the audit trail that a
//! verifier (ours, or one written in another language) must reproduce byte for byte.
//!
//! # Canonical form
//!
//! The hash of an entry is the lower-case hex SHA-256 of its canonical form, the UTF-8
//! bytes of one compact JSON object (no whitespace) with exactly these members, in this
//! order:
//!
//! ```text
//! {"time":…,"event":…,"action_id":…,"client":…,"actor":…,"details":{…},"prev":…}
//! ```
//!
//! - `time`, `event`, `prev` are strings; `action_id`, `client`, `actor` are strings or
//!   `null` (never left out).
//! - `details` is an object whose keys are sorted by their UTF-8 bytes, at every depth;
//!   arrays keep their order.
//! - Strings are escaped as serde_json writes them: `\"`, `\\`, `\b`, `\f`, `\n`, `\r`,
//!   `\t`, other control characters as `\u00XX` (lower-case hex); everything else,
//!   including `/` and non-ASCII, as is. Numbers as serde_json writes them (integers in
//!   decimal; details hold no floats today).
//!
//! The entry's `id` (its stream id) and `hash` are not part of it: the id is assigned by
//! the store after the hash is computed, and the hash cannot cover itself. `prev` is the
//! `hash` of the entry before, or [`GENESIS`] for the first entry ever written.

use super::events::AuditEvent;
use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The `prev` of the first entry of a trail: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An entry as stored and as `GET /v1/audit` and `greenlight audit export` show it.
///
/// `event` is a plain string so that a verifier accepts events added by newer versions;
/// unknown members are refused, since the hash would not cover them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The stream id (`{unix ms}-{n}`): the entry's place in the trail and the cursor
    /// after it. Absent in the stored form (the store assigns it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// When it happened, RFC 3339 UTC with milliseconds.
    #[schema(format = DateTime)]
    pub time: String,
    pub event: String,
    pub action_id: Option<String>,
    /// The client the action belongs to (or that made the call, for client-level events).
    pub client: Option<String>,
    /// Who did it: a Slack user id, a break-glass `by`, a requester id, `timer`,
    /// `policy:{rule}`, `sighup`.
    pub actor: Option<String>,
    #[schema(value_type = Object)]
    pub details: Map<String, Value>,
    /// The hash of the entry before.
    pub prev: String,
    /// The SHA-256 (hex) of this entry's canonical form.
    pub hash: String,
}

impl Entry {
    /// The canonical form (see the module documentation): the bytes that are hashed.
    pub fn canonical(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push_str("{\"time\":");
        push_str(&mut out, &self.time);
        out.push_str(",\"event\":");
        push_str(&mut out, &self.event);
        for (name, value) in [
            ("action_id", &self.action_id),
            ("client", &self.client),
            ("actor", &self.actor),
        ] {
            out.push_str(",\"");
            out.push_str(name);
            out.push_str("\":");
            match value {
                Some(s) => push_str(&mut out, s),
                None => out.push_str("null"),
            }
        }
        out.push_str(",\"details\":");
        push_object(&mut out, &self.details);
        out.push_str(",\"prev\":");
        push_str(&mut out, &self.prev);
        out.push('}');
        out
    }

    /// The hash this entry should carry: hex SHA-256 of [`Entry::canonical`].
    pub fn compute_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical().as_bytes()))
    }

    /// Whether its `hash` is the hash of its content.
    pub fn hash_matches(&self) -> bool {
        self.hash == self.compute_hash()
    }

    /// An entry for `event` following `prev`, hashed.
    pub fn seal(event: &AuditEvent, prev: &str) -> Self {
        let mut entry = Entry {
            id: None,
            time: event.time.to_rfc3339_opts(SecondsFormat::Millis, true),
            event: event.kind.as_str().to_owned(),
            action_id: event.action_id.clone(),
            client: event.client.clone(),
            actor: event.actor.clone(),
            details: event.details.clone(),
            prev: prev.to_owned(),
            hash: String::new(),
        };
        entry.hash = entry.compute_hash();
        entry
    }
}

fn push_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("strings serialize"));
}

fn push_object(out: &mut String, map: &Map<String, Value>) {
    // Sorted here rather than trusting `Map`'s order, which depends on serde_json's
    // `preserve_order` feature (any crate in the build may turn it on).
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    out.push('{');
    for (i, key) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, key);
        out.push(':');
        push_value(out, &map[key]);
    }
    out.push('}');
}

fn push_value(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) => push_object(out, map),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_value(out, item);
            }
            out.push(']');
        }
        scalar => out.push_str(&serde_json::to_string(scalar).expect("scalars serialize")),
    }
}

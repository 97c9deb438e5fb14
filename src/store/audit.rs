//! The audit stream in both backends. The chain's hashes are computed by the caller (Lua
//! in Redis has no SHA-256); the store only appends them when the head they were
//! computed from is still the head, so concurrent writers on many replicas keep one chain.
//!
//! Redis: `{p}:audit`, a stream of entries (one field, `entry`, the entry JSON without its
//! id), trimmed with `MAXLEN ~`; `{p}:audit:head`, a string holding the last entry's hash.
//! Both are written only by `audit_append.lua` (called from `redis/scripts.rs`).

use super::{AuditAppend, NewAuditEntry};
use std::collections::VecDeque;

/// A stream id, `{ms}-{seq}`, as Redis writes and orders them.
pub fn parse_stream_id(s: &str) -> Option<(u64, u64)> {
    let (ms, seq) = s.split_once('-')?;
    let digits = |p: &str| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(ms) || !digits(seq) {
        return None;
    }
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// The in-memory stream: the same ids, order, compare-and-set and trimming as Redis
/// (trimming here is exact, which `MAXLEN ~` allows: it keeps at least `maxlen`).
#[derive(Default)]
pub(super) struct MemoryAuditLog {
    entries: VecDeque<((u64, u64), String)>,
    head: Option<String>,
    last_id: (u64, u64),
}

impl MemoryAuditLog {
    pub fn head(&self) -> Option<String> {
        self.head.clone()
    }

    pub fn append(
        &mut self,
        expected_head: Option<&str>,
        entries: &[NewAuditEntry<'_>],
        maxlen: u64,
        now_ms: u64,
    ) -> AuditAppend {
        if self.head.as_deref() != expected_head {
            return AuditAppend::HeadMoved(self.head.clone());
        }
        let mut ids = Vec::with_capacity(entries.len());
        for entry in entries {
            let (last_ms, last_seq) = self.last_id;
            let id = if now_ms > last_ms {
                (now_ms, 0)
            } else {
                (last_ms, last_seq + 1)
            };
            self.last_id = id;
            self.entries.push_back((id, entry.json.to_owned()));
            ids.push(format!("{}-{}", id.0, id.1));
            self.head = Some(entry.hash.to_owned());
        }
        if maxlen > 0 {
            while self.entries.len() as u64 > maxlen {
                self.entries.pop_front();
            }
        }
        AuditAppend::Appended(ids)
    }

    pub fn range(&self, after: Option<&str>, count: usize) -> Vec<(String, String)> {
        let start = match after.and_then(parse_stream_id) {
            Some(after) => self.entries.partition_point(|(id, _)| *id <= after),
            None => 0,
        };
        self.entries
            .range(start..)
            .take(count)
            .map(|((ms, seq), json)| (format!("{ms}-{seq}"), json.clone()))
            .collect()
    }
}

/// What `audit_append.lua` answered: `appended` and the new ids, or `moved` and the head
/// that stands ('' for none).
pub(super) fn redis_append_reply(reply: Vec<String>) -> AuditAppend {
    let mut reply = reply.into_iter();
    match reply.next().as_deref() {
        Some("appended") => AuditAppend::Appended(reply.collect()),
        _ => AuditAppend::HeadMoved(reply.next().filter(|h| !h.is_empty())),
    }
}

pub(super) async fn redis_range(
    conn: &mut (impl redis::aio::ConnectionLike + Send),
    stream_key: &str,
    after: Option<&str>,
    count: usize,
) -> redis::RedisResult<Vec<(String, String)>> {
    // `(id` is an exclusive start (Redis 6.2+).
    let start = after.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
    let rows: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(stream_key)
        .arg(start)
        .arg("+")
        .arg("COUNT")
        .arg(count.max(1))
        .query_async(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, fields)| {
            let json = fields
                .into_iter()
                .find(|(k, _)| k == "entry")
                .map(|(_, v)| v)
                .unwrap_or_default();
            (id, json)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(hash: &'a str, json: &'a str) -> NewAuditEntry<'a> {
        NewAuditEntry { hash, json }
    }

    #[test]
    fn stream_ids_parse_strictly() {
        assert_eq!(
            parse_stream_id("1700000000000-0"),
            Some((1_700_000_000_000, 0))
        );
        assert_eq!(parse_stream_id("0-12"), Some((0, 12)));
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "1-2-3",
            "a-1",
            "1-+2",
            " 1-2",
            "1700000000000",
        ] {
            assert_eq!(parse_stream_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn memory_log_compares_the_head_orders_ids_and_trims() {
        let mut log = MemoryAuditLog::default();
        assert_eq!(log.head(), None);
        let AuditAppend::Appended(ids) =
            log.append(None, &[entry("h1", "a"), entry("h2", "b")], 3, 5)
        else {
            panic!("first append applies");
        };
        assert_eq!(ids, ["5-0", "5-1"]);
        assert_eq!(log.head().as_deref(), Some("h2"));
        // A writer that computed from an older head is told the current one.
        assert!(matches!(
            log.append(Some("h1"), &[entry("x", "x")], 3, 6),
            AuditAppend::HeadMoved(Some(h)) if h == "h2"
        ));
        assert!(matches!(
            log.append(None, &[entry("x", "x")], 3, 6),
            AuditAppend::HeadMoved(Some(_))
        ));
        // The clock going backwards never reorders ids.
        let AuditAppend::Appended(ids) =
            log.append(Some("h2"), &[entry("h3", "c"), entry("h4", "d")], 3, 4)
        else {
            panic!("append at the head applies");
        };
        assert_eq!(ids, ["5-2", "5-3"]);
        let all = log.range(None, 10);
        assert_eq!(
            all.iter().map(|(_, j)| j.as_str()).collect::<Vec<_>>(),
            ["b", "c", "d"],
            "trimmed to the newest 3"
        );
        assert_eq!(log.range(Some("5-1"), 10).len(), 2);
        assert_eq!(
            log.range(Some("5-2"), 1),
            [("5-3".to_owned(), "d".to_owned())]
        );
        assert!(log.range(Some("5-3"), 10).is_empty());
        assert_eq!(
            log.range(Some("0-0"), 10).len(),
            3,
            "before the oldest kept"
        );
    }
}

//! The canonical form against fixed vectors, the verifier against every kind of damage,
//! and the writer and reader on the in-memory store.

use super::verify::{Problem, verify_lines};
use super::*;
use crate::domain::{Action, DecidedBy, Outcome, VoteKind};
use crate::store::MemoryStore;
use crate::waiters::Waiters;
use serde_json::{Value, json};

/// The canonical form written out by hand, and its SHA-256 computed outside Rust
/// (`python3 -c 'import hashlib; print(hashlib.sha256(s.encode()).hexdigest())'`).
const VECTOR_CANONICAL: &str = concat!(
    r#"{"time":"2026-11-22T10:00:00.000Z","event":"vote","#,
    r#""action_id":"act_01JD8Y3M6QW9T3V7K2X5N4B1C0","client":"payments-api","actor":"U0BOB","#,
    r#""details":{"nested":{"a":[2,{"y":"é","z":null}],"b":1},"reason":"ok \"quoted\"\n\u0001","vote":"approve"},"#,
    r#""prev":"0000000000000000000000000000000000000000000000000000000000000000"}"#
);
const VECTOR_HASH: &str = "b84c9ecb4cc41272a4ee00c30d2850a84b577abf809e2cd85cf4fa311734b887";

fn vector() -> Entry {
    // Keys deliberately out of order: the canonical form sorts them.
    let details = json!({
        "vote": "approve",
        "reason": "ok \"quoted\"\n\u{1}",
        "nested": {"b": 1, "a": [2, {"z": null, "y": "é"}]},
    });
    Entry {
        id: Some("1700000000000-0".into()),
        time: "2026-11-22T10:00:00.000Z".into(),
        event: "vote".into(),
        action_id: Some("act_01JD8Y3M6QW9T3V7K2X5N4B1C0".into()),
        client: Some("payments-api".into()),
        actor: Some("U0BOB".into()),
        details: details.as_object().unwrap().clone(),
        prev: GENESIS.into(),
        hash: VECTOR_HASH.into(),
    }
}

#[test]
fn canonical_form_matches_the_fixed_vector() {
    let entry = vector();
    assert_eq!(entry.canonical(), VECTOR_CANONICAL);
    assert_eq!(entry.compute_hash(), VECTOR_HASH);
    assert!(entry.hash_matches());
    // The id and the hash itself are outside the hashed form.
    let mut other = entry.clone();
    other.id = Some("1-1".into());
    other.hash = "x".into();
    assert_eq!(other.compute_hash(), VECTOR_HASH);
}

#[test]
fn absent_fields_are_null_and_every_field_counts() {
    let entry = Entry {
        id: None,
        time: "2026-11-22T10:00:01.000Z".into(),
        event: "policy_reloaded".into(),
        action_id: None,
        client: None,
        actor: None,
        details: Default::default(),
        prev: "abc".into(),
        hash: String::new(),
    };
    assert_eq!(
        entry.canonical(),
        r#"{"time":"2026-11-22T10:00:01.000Z","event":"policy_reloaded","action_id":null,"client":null,"actor":null,"details":{},"prev":"abc"}"#
    );
    assert_eq!(
        entry.compute_hash(),
        "a6146d7d800f2e8d6b3f6272390eb8ed1455fa061abf8ad44d11376c9eafae57"
    );
    let base = vector();
    let changes: [fn(&mut Entry); 7] = [
        |e| e.time.push('0'),
        |e| e.event = "approved".into(),
        |e| e.action_id = None,
        |e| e.client = Some("other".into()),
        |e| e.actor = Some("U0EVE".into()),
        |e| {
            e.details.insert("vote".into(), json!("deny"));
        },
        |e| e.prev = VECTOR_HASH.into(),
    ];
    for change in changes {
        let mut e = base.clone();
        change(&mut e);
        assert_ne!(e.compute_hash(), VECTOR_HASH, "{e:?}");
    }
    // `null` and an absent string are different content.
    let mut empty = base.clone();
    empty.actor = Some(String::new());
    let mut none = base.clone();
    none.actor = None;
    assert_ne!(empty.compute_hash(), none.compute_hash());
}

fn action(json: Value) -> Action {
    let mut base = json!({
        "id": "act_01JD8Y3M6QW9T3V7K2X5N4B1C0", "status": "pending",
        "action": "db.drop_table", "resource": "postgres://prod/users",
        "requester": {"id": "u-123"}, "reason": "cleanup", "context": {},
        "client": "payments-api",
        "policy": {"rule": "prod-db", "min_approvals": 2, "approvers": ["U0BOB", "U0CAROL"]},
        "votes": [], "created_at": "2026-11-22T10:00:00Z", "expires_at": "2026-11-22T10:10:00Z",
        "decision": null,
    });
    for (k, v) in json.as_object().unwrap() {
        base[k] = v.clone();
    }
    serde_json::from_value(base).unwrap()
}

fn summary(events: &[AuditEvent]) -> Vec<(&'static str, Option<&str>)> {
    events
        .iter()
        .map(|e| (e.kind.as_str(), e.actor.as_deref()))
        .collect()
}

#[test]
fn events_name_who_did_what() {
    let now = chrono::Utc::now();
    let mut a = action(json!({}));
    let requested = AuditEvent::requested(&a);
    assert_eq!(requested.actor.as_deref(), Some("u-123"));
    assert_eq!(requested.client.as_deref(), Some("payments-api"));
    assert_eq!(requested.details["rule"], "prod-db");

    a.add_vote("U0BOB", VoteKind::Approve, None, now).unwrap();
    let origin = Origin::Vote {
        user: "U0BOB",
        vote: VoteKind::Approve,
        reason: None,
    };
    assert_eq!(
        summary(&AuditEvent::changed(&a, &origin)),
        [("vote", Some("U0BOB"))]
    );
    a.add_vote("U0CAROL", VoteKind::Approve, None, now).unwrap();
    let origin = Origin::Vote {
        user: "U0CAROL",
        vote: VoteKind::Approve,
        reason: None,
    };
    let events = AuditEvent::changed(&a, &origin);
    assert_eq!(
        summary(&events),
        [("vote", Some("U0CAROL")), ("approved", Some("U0CAROL"))]
    );
    assert_eq!(events[1].details["via"], "slack");
    assert_eq!(events[1].details["decided_by"], json!(["U0BOB", "U0CAROL"]));

    let mut b = action(json!({}));
    b.decide(
        Outcome::Denied,
        DecidedBy::People(vec!["ops@example.com".into()]),
        Some("incident".into()),
        now,
    )
    .unwrap();
    let events = AuditEvent::changed(
        &b,
        &Origin::BreakGlass {
            client: "admin",
            by: "ops@example.com",
        },
    );
    assert_eq!(summary(&events), [("denied", Some("ops@example.com"))]);
    assert_eq!(events[0].details["break_glass"], true);
    assert_eq!(events[0].details["admin_client"], "admin");
    assert_eq!(events[0].details["reason"], "incident");

    let mut c = action(json!({}));
    c.decide(Outcome::Expired, DecidedBy::Timer, None, now)
        .unwrap();
    assert_eq!(
        summary(&AuditEvent::changed(&c, &Origin::Timer)),
        [("expired", Some("timer"))]
    );

    let mut d = action(json!({}));
    d.decide(
        Outcome::Approved,
        DecidedBy::Policy("prod-db".into()),
        None,
        now,
    )
    .unwrap();
    assert_eq!(
        summary(&AuditEvent::auto_decided(&d)),
        [
            ("auto_decided", Some("policy:prod-db")),
            ("approved", Some("policy:prod-db"))
        ]
    );
    assert!(AuditEvent::auto_decided(&action(json!({}))).is_empty());
}

/// A chain of `n` sealed entries, as export lines with ids.
fn chain(n: usize, first_prev: &str) -> Vec<String> {
    let mut prev = first_prev.to_owned();
    (0..n)
        .map(|i| {
            let event = AuditEvent::new(EventKind::Vote)
                .actor(&format!("U{i}"))
                .detail("n", i);
            let mut entry = Entry::seal(&event, &prev);
            prev.clone_from(&entry.hash);
            entry.id = Some(format!("1700000000000-{i}"));
            serde_json::to_string(&entry).unwrap()
        })
        .collect()
}

fn check(lines: &[String]) -> Result<Verified, Broken> {
    let text = lines.join("\n") + "\n";
    verify_lines(text.as_bytes()).unwrap()
}

#[test]
fn verifier_accepts_an_intact_chain() {
    let lines = chain(5, GENESIS);
    let ok = check(&lines).unwrap();
    assert_eq!(ok.entries, 5);
    let last: Entry = serde_json::from_str(&lines[4]).unwrap();
    assert_eq!(ok.head, last.hash);
    assert_eq!(ok.first_prev.as_deref(), Some(GENESIS));
    // A trimmed trail starts at an entry whose prev is not in the file: trusted.
    let ok = check(&lines[2..]).unwrap();
    assert_eq!(ok.entries, 3);
    assert_ne!(ok.first_prev.as_deref(), Some(GENESIS));
    let empty = verify_lines(&b""[..]).unwrap().unwrap();
    assert_eq!((empty.entries, empty.head.as_str()), (0, GENESIS));
}

#[test]
fn verifier_names_the_changed_line() {
    let mut lines = chain(5, GENESIS);
    lines[2] = lines[2].replace("\"U2\"", "\"U9\"");
    let broken = check(&lines).unwrap_err();
    assert_eq!(broken.position, 3);
    assert_eq!(broken.id.as_deref(), Some("1700000000000-2"));
    assert!(matches!(broken.problem, Problem::HashMismatch { .. }));
    assert!(
        broken
            .describe("line")
            .starts_with("broken at line 3 (entry 1700000000000-2): hash mismatch")
    );
}

#[test]
fn verifier_names_the_line_after_a_gap_or_a_swap() {
    let mut lines = chain(5, GENESIS);
    lines.remove(2);
    let broken = check(&lines).unwrap_err();
    assert_eq!(
        (broken.position, broken.id.as_deref()),
        (3, Some("1700000000000-3"))
    );
    assert!(matches!(broken.problem, Problem::PrevMismatch { .. }));
    assert!(broken.describe("line").contains("--action-id"));

    let mut lines = chain(5, GENESIS);
    lines.swap(1, 2);
    assert_eq!(check(&lines).unwrap_err().position, 2);

    // A rewritten entry with a recomputed hash breaks the link to the next one.
    let mut lines = chain(5, GENESIS);
    let mut entry: Entry = serde_json::from_str(&lines[1]).unwrap();
    entry.actor = Some("U0EVE".into());
    entry.hash = entry.compute_hash();
    lines[1] = serde_json::to_string(&entry).unwrap();
    let broken = check(&lines).unwrap_err();
    assert_eq!(broken.position, 3);
    assert!(matches!(broken.problem, Problem::PrevMismatch { .. }));
}

#[test]
fn verifier_refuses_what_is_not_an_entry() {
    let lines = chain(3, GENESIS);
    for (bad, why) in [
        ("not json".to_owned(), "garbage"),
        (String::new(), "an empty line"),
        (
            lines[1].replacen('{', "{\"extra\":1,", 1),
            "an unknown member",
        ),
        (
            lines[1].replace("\"details\":{", "\"details\":[],\"x\":{"),
            "details not an object",
        ),
    ] {
        let mut damaged = lines.clone();
        damaged[1] = bad;
        let broken = check(&damaged).unwrap_err();
        assert_eq!(broken.position, 2, "{why}");
        assert!(
            matches!(broken.problem, Problem::Unparsable(_)),
            "{why}: {broken:?}"
        );
    }
}

fn memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new(Waiters::new()))
}

async fn all_lines(audit: &Audit) -> Vec<String> {
    let mut lines = Vec::new();
    let mut after = None;
    loop {
        let page = audit.page(after.as_deref(), MAX_LIMIT, None).await.unwrap();
        lines.extend(page.entries.iter().map(|e| e.get().to_owned()));
        match page.next {
            Some(next) => after = Some(next),
            None => return lines,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_keep_one_chain_in_order() {
    let store = memory();
    // Two writers on one store, as two replicas on one Redis.
    let writers = [Audit::new(store.clone(), 0), Audit::new(store.clone(), 0)];
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let audit = writers[i % 2].clone();
            tokio::spawn(async move {
                let a = AuditEvent::new(EventKind::Requested).detail("i", i);
                let b = AuditEvent::new(EventKind::AutoDecided).detail("i", i);
                audit.record_all(vec![a, b]).await;
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let lines = all_lines(&writers[0]).await;
    assert_eq!(lines.len(), 400);
    let ok = check(&lines).unwrap();
    assert_eq!(ok.first_prev.as_deref(), Some(GENESIS));
    assert_eq!(store.audit_head().await.unwrap(), Some(ok.head));
    // Entries recorded together stay together and in order.
    let entries: Vec<Entry> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for pair in entries.chunks(2) {
        assert_eq!(pair[0].event, "requested");
        assert_eq!(pair[1].event, "auto_decided");
        assert_eq!(pair[0].details["i"], pair[1].details["i"]);
    }
}

#[tokio::test]
async fn retention_keeps_the_newest_and_they_still_verify() {
    let audit = Audit::new(memory(), 10);
    for i in 0..35 {
        audit
            .record(AuditEvent::new(EventKind::Reminded).detail("i", i))
            .await;
    }
    let lines = all_lines(&audit).await;
    assert_eq!(lines.len(), 10);
    let ok = check(&lines).unwrap();
    assert_ne!(ok.first_prev.as_deref(), Some(GENESIS));
    let first: Entry = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first.details["i"], 25);
}

#[tokio::test]
async fn pages_follow_the_cursor_and_filter_by_action() {
    let audit = Audit::new(memory(), 0);
    let a = action(json!({}));
    let b = action(json!({"id": "act_01JD8Y3M6QW9T3V7K2X5N4B1C1"}));
    for i in 0..5 {
        audit
            .record(AuditEvent::about(EventKind::Vote, &a).detail("i", i))
            .await;
        audit
            .record(AuditEvent::about(EventKind::Vote, &b).detail("i", i))
            .await;
    }
    let page = audit.page(None, 4, None).await.unwrap();
    assert_eq!(page.entries.len(), 4);
    let fourth: Entry = serde_json::from_str(page.entries[3].get()).unwrap();
    assert_eq!(page.next, fourth.id);
    let rest = audit.page(page.next.as_deref(), 100, None).await.unwrap();
    assert_eq!((rest.entries.len(), rest.next), (6, None));

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = audit.page(after.as_deref(), 2, Some(&b.id)).await.unwrap();
        for e in &page.entries {
            let e: Entry = serde_json::from_str(e.get()).unwrap();
            assert_eq!(e.action_id.as_deref(), Some(b.id.as_str()));
            seen.push(e.details["i"].as_u64().unwrap());
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, [0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn a_filtered_page_reads_a_bounded_number_of_entries() {
    let audit = Audit::new(memory(), 0);
    let noise = action(json!({}));
    let wanted = action(json!({"id": "act_01JD8Y3M6QW9T3V7K2X5N4B1C1"}));
    let events = (0..SCAN_BUDGET + 50)
        .map(|_| AuditEvent::about(EventKind::Reminded, &noise))
        .collect();
    audit.record_all(events).await;
    audit
        .record(AuditEvent::about(EventKind::Expired, &wanted))
        .await;
    let first = audit.page(None, 10, Some(&wanted.id)).await.unwrap();
    assert!(first.entries.is_empty());
    let cursor = first.next.expect("a cursor to carry on from");
    let second = audit
        .page(Some(&cursor), 10, Some(&wanted.id))
        .await
        .unwrap();
    assert_eq!(second.entries.len(), 1);
    assert_eq!(second.next, None);
}

#[test]
fn entries_are_passed_through_with_their_id() {
    assert_eq!(
        with_id("1-0", r#"{"time":"t","a":1}"#).get(),
        r#"{"id":"1-0","time":"t","a":1}"#
    );
    assert_eq!(with_id("1-0", " { } ").get(), r#"{"id":"1-0"}"#);
    for damaged in ["[1,2]", "{\"time\":", ""] {
        let shown: Value = serde_json::from_str(with_id("1-0", damaged).get()).unwrap();
        assert_eq!(shown["id"], "1-0");
        assert_eq!(shown["unreadable"], damaged);
    }
}

//! The audit trail: every event recorded once, in order, with who did it; read through
//! `GET /v1/audit` (auditors and admins only); exported and verified by the real binary;
//! one unbroken hash chain even with two server processes writing to one Redis at once.

use crate::common::pagerduty::FakeWebhook;
use crate::common::slack::{
    FakeSlack, Fault, block_action, interaction_body, signed_slack_headers,
};
use crate::common::{
    AppOptions, Backend, POLICY, RedisServer, SLACK_SIGNING_SECRET, TestApp, free_port, request,
    spawn_app, spawn_app_with,
};
use greenlight::audit::{Entry, GENESIS, Verified};
use greenlight::cli::audit::fetch_and_verify;
use greenlight::client::Client;
use greenlight::domain::{ActionRequest, Outcome, Status};
use greenlight::signing::Secret;
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(15);
const BIN: &str = env!("CARGO_BIN_EXE_greenlight");

/// One `GET /v1/audit{query}` as `client`.
async fn audit_as(app: &TestApp, client: &str, query: &str) -> crate::common::Resp {
    app.send_as(client, "GET", &format!("/v1/audit{query}"), &Value::Null)
        .await
}

/// Every entry about `id`, oldest first, paging as the auditor.
pub(crate) async fn entries_of(app: &TestApp, id: &str) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut after = String::new();
    loop {
        let r = audit_as(app, "auditor", &format!("?action_id={id}&limit=2{after}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        entries.extend(r.body["entries"].as_array().unwrap().iter().cloned());
        match r.body["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => return entries,
        }
    }
}

/// The entries about `id` once one of them is `event`.
pub(crate) async fn entries_until(app: &TestApp, id: &str, event: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let entries = entries_of(app, id).await;
        if entries.iter().any(|e| e["event"] == event) {
            return entries;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no `{event}` for {id}: {entries:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// (event, actor) of each entry.
fn story(entries: &[Value]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(e, a)| (e.to_string(), a.to_string()))
        .collect()
}

fn auditor(app: &TestApp) -> Client {
    Client::new(&app.base, "auditor", app.secret("auditor"))
}

/// The whole trail fetched through the API and checked.
async fn verified(app: &TestApp) -> Verified {
    fetch_and_verify(&auditor(app))
        .await
        .expect("the trail can be read")
        .unwrap_or_else(|b| panic!("{}", b.describe("position")))
}

async fn created(app: &TestApp, action: &str) -> (String, Value) {
    let r = app.create(&request(action, "svc/x")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    (r.body["id"].as_str().unwrap().to_owned(), r.body)
}

async fn every_outcome_is_recorded_with_its_actor(backend: Backend) {
    let app = spawn_app(backend).await;

    // Pending, then a break-glass approval.
    let (glass, _) = created(&app, "deploy.prod").await;
    assert_eq!(app.decide(&glass, "approved").await.status, 200);
    // Decided by the policy at once, either way.
    let (auto, body) = created(&app, "read.logs").await;
    assert_eq!(body["status"], "approved");
    let (denied, body) = created(&app, "db.drop_database").await;
    assert_eq!(body["status"], "denied");
    // Cancelled by its client; expired by the timer (rule `short`, 2 s).
    let (cancelled, _) = created(&app, "deploy.staging").await;
    assert_eq!(app.cancel("app", &cancelled).await.status, 200);
    let (expired, _) = created(&app, "short.lived").await;

    let entries = entries_of(&app, &glass).await;
    assert_eq!(
        story(&entries),
        pairs(&[("requested", "u-123"), ("approved", "ops-lead@example.com")])
    );
    assert!(entries.iter().all(|e| e["client"] == "app"));
    assert!(entries.iter().all(|e| e["action_id"] == glass.as_str()));
    let approval = &entries[1]["details"];
    assert_eq!(approval["via"], "break_glass");
    assert_eq!(approval["break_glass"], true);
    assert_eq!(approval["admin_client"], "admin");
    assert_eq!(approval["reason"], "break-glass test");
    assert_eq!(entries[0]["details"]["rule"], "default");
    assert_eq!(entries[0]["details"]["action"], "deploy.prod");

    assert_eq!(
        story(&entries_of(&app, &auto).await),
        pairs(&[
            ("requested", "u-123"),
            ("auto_decided", "policy:reads"),
            ("approved", "policy:reads"),
        ])
    );
    assert_eq!(
        story(&entries_of(&app, &denied).await),
        pairs(&[
            ("requested", "u-123"),
            ("auto_decided", "policy:never-drop-databases"),
            ("denied", "policy:never-drop-databases"),
        ])
    );
    assert_eq!(
        story(&entries_of(&app, &cancelled).await),
        pairs(&[("requested", "u-123"), ("cancelled", "app")])
    );
    assert_eq!(
        story(&entries_until(&app, &expired, "expired").await),
        pairs(&[("requested", "u-123"), ("expired", "timer")])
    );

    // A refused second decision and an idempotent repeat record nothing.
    assert_eq!(app.decide(&glass, "denied").await.status, 409);
    let body = serde_json::to_vec(&request("read.logs", "svc/y")).unwrap();
    let headers = app.signed_headers("app", "POST", "/v1/actions", &body);
    let first = app
        .send_raw("POST", "/v1/actions", body.clone(), &headers)
        .await;
    let again = app.send_raw("POST", "/v1/actions", body, &headers).await;
    assert_eq!((first.status, again.status), (201, 200));
    let repeated = first.body["id"].as_str().unwrap();
    assert_eq!(entries_of(&app, repeated).await.len(), 3);
    assert_eq!(entries_of(&app, &glass).await.len(), 2);

    // 2 + 3 + 3 + 2 + 2 + 3 entries, one chain from the start.
    let trail = verified(&app).await;
    assert_eq!(trail.entries, 15);
    assert_eq!(trail.first_prev.as_deref(), Some(GENESIS));
}

async fn only_auditors_and_admins_read_the_trail(backend: Backend) {
    let app = spawn_app(backend).await;
    created(&app, "read.logs").await;
    for client in ["app", "other"] {
        let r = audit_as(&app, client, "").await;
        assert_eq!((r.status, r.error_code()), (403, "forbidden"), "{client}");
    }
    for client in ["auditor", "admin"] {
        let r = audit_as(&app, client, "").await;
        assert_eq!(r.status, 200, "{client}: {}", r.body);
        assert_eq!(r.body["entries"].as_array().unwrap().len(), 3);
        assert!(r.body["next"].is_null());
        let entry: Entry = serde_json::from_value(r.body["entries"][0].clone()).unwrap();
        assert!(entry.hash_matches());
        assert_eq!(entry.prev, GENESIS);
    }
    let unsigned = app
        .http
        .get(format!("{}/v1/audit", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    for bad in [
        "?after=yesterday",
        "?after=1-2-3",
        "?action_id=act_nope",
        "?limit=0",
        "?limit=many",
        "?colour=red",
    ] {
        let r = audit_as(&app, "auditor", bad).await;
        assert_eq!(
            (r.status, r.error_code()),
            (400, "invalid_request"),
            "{bad}"
        );
    }
    // A page ends with the cursor of its last entry; past the end, nothing.
    let r = audit_as(&app, "auditor", "?limit=2").await;
    let entries = r.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(r.body["next"], entries[1]["id"]);
    let next = r.body["next"].as_str().unwrap();
    let r = audit_as(&app, "auditor", &format!("?limit=5000&after={next}")).await;
    assert_eq!(r.body["entries"].as_array().unwrap().len(), 1);
    assert!(r.body["next"].is_null());
}

mod away;
mod export;
mod processes;

on_both_backends!(
    every_outcome_is_recorded_with_its_actor,
    only_auditors_and_admins_read_the_trail,
);

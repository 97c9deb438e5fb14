//! The audit trail: every event recorded once, in order, with who did it; read through
//! `GET /v1/audit` (auditors and admins only); exported and verified by the real binary;
//! one unbroken hash chain even with two server processes writing to one Redis at once.

mod common;

use common::pagerduty::FakeWebhook;
use common::slack::{FakeSlack, Fault, block_action, interaction_body, signed_slack_headers};
use common::{
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
async fn audit_as(app: &TestApp, client: &str, query: &str) -> common::Resp {
    app.send_as(client, "GET", &format!("/v1/audit{query}"), &Value::Null)
        .await
}

/// Every entry about `id`, oldest first, paging as the auditor.
async fn entries_of(app: &TestApp, id: &str) -> Vec<Value> {
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
async fn entries_until(app: &TestApp, id: &str, event: &str) -> Vec<Value> {
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

// ---------------------------------------------------------------------------------------
// The command line: export, verify, and what verify says about damage.

fn greenlight(app: &TestApp, client: &str) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("GREENLIGHT_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("GREENLIGHT_URL", &app.base)
        .env("GREENLIGHT_CLIENT_ID", client)
        .env("GREENLIGHT_CLIENT_SECRET", &app.secrets[client])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn run(mut cmd: Command, args: &[&str]) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.args(args).output())
        .await
        .expect("finishes within 30 s")
        .expect("the binary runs");
    Run {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn lines_of(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn id_of(line: &str) -> String {
    serde_json::from_str::<Value>(line).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn export_then_verify_and_detect_damage(backend: Backend) {
    let app = spawn_app(backend).await;
    // Interleaved, so one action's entries are not contiguous.
    let (a, _) = created(&app, "deploy.prod").await;
    created(&app, "read.logs").await;
    assert_eq!(app.decide(&a, "approved").await.status, 200);
    created(&app, "db.drop_database").await;

    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("audit.jsonl");
    let path = export.to_str().unwrap();
    let r = run(
        greenlight(&app, "auditor"),
        &["audit", "export", "--output", path],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("exported 8 entries"), "{}", r.stderr);
    let lines = lines_of(&export);
    assert_eq!(lines.len(), 8);
    let head: Entry = serde_json::from_str(&lines[7]).unwrap();

    let ok = run(greenlight(&app, "auditor"), &["audit", "verify", path]).await;
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
    assert_eq!(
        ok.stdout.trim(),
        format!("ok: 8 entries, head {}", head.hash)
    );
    // The same trail, fetched live.
    let live = run(greenlight(&app, "auditor"), &["audit", "verify", "--live"]).await;
    assert_eq!((live.code, live.stdout.trim()), (0, ok.stdout.trim()));
    // Standard output works too, identically.
    let stdout = run(greenlight(&app, "admin"), &["audit", "export"]).await;
    assert_eq!(stdout.code, 0);
    assert_eq!(stdout.stdout.lines().collect::<Vec<_>>(), lines);

    // One field of line 3 changed.
    let edited = dir.path().join("edited.jsonl");
    let mut changed = lines.clone();
    let mut entry: Value = serde_json::from_str(&changed[2]).unwrap();
    entry["actor"] = json!("U0MALLORY");
    changed[2] = entry.to_string();
    std::fs::write(&edited, changed.join("\n") + "\n").unwrap();
    let r = run(
        greenlight(&app, "auditor"),
        &["audit", "verify", edited.to_str().unwrap()],
    )
    .await;
    assert_eq!(r.code, 1);
    let expected = format!(
        "broken at line 3 (entry {}): hash mismatch",
        id_of(&lines[2])
    );
    assert!(r.stdout.starts_with(&expected), "{}", r.stdout);

    // Line 4 deleted: the entry after the gap, now line 4, is named.
    let gap = dir.path().join("gap.jsonl");
    let mut shortened = lines.clone();
    shortened.remove(3);
    std::fs::write(&gap, shortened.join("\n") + "\n").unwrap();
    let r = run(
        greenlight(&app, "auditor"),
        &["audit", "verify", gap.to_str().unwrap()],
    )
    .await;
    assert_eq!(r.code, 1);
    let expected = format!(
        "broken at line 4 (entry {}): prev mismatch",
        id_of(&lines[4])
    );
    assert!(r.stdout.starts_with(&expected), "{}", r.stdout);

    // A line that is not an entry.
    let garbage = dir.path().join("garbage.jsonl");
    let mut damaged = lines.clone();
    damaged[5] = "{\"id\": \"1-0\", \"time\": ".into();
    std::fs::write(&garbage, damaged.join("\n")).unwrap();
    let r = run(
        greenlight(&app, "auditor"),
        &["audit", "verify", garbage.to_str().unwrap()],
    )
    .await;
    assert_eq!(r.code, 1);
    assert!(
        r.stdout
            .starts_with("broken at line 6 (entry ?): unparsable entry"),
        "{}",
        r.stdout
    );

    // One action's entries: they have gaps, and verify says why it fails.
    let only_a = dir.path().join("a.jsonl");
    let r = run(
        greenlight(&app, "auditor"),
        &[
            "audit",
            "export",
            "--action-id",
            &a,
            "-o",
            only_a.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let a_lines = lines_of(&only_a);
    assert_eq!(a_lines.len(), 2);
    assert!(a_lines.iter().all(|l| l.contains(&a)));
    let r = run(
        greenlight(&app, "auditor"),
        &["audit", "verify", only_a.to_str().unwrap()],
    )
    .await;
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.starts_with("broken at line 2") && r.stdout.contains("--action-id"),
        "{}",
        r.stdout
    );

    // --since: from the first entry at or after that time, still verifiable.
    let all = run(
        greenlight(&app, "auditor"),
        &["audit", "export", "--since", "2000-01-01T00:00:00Z"],
    )
    .await;
    assert_eq!(all.stdout.lines().count(), 8);
    let later = run(
        greenlight(&app, "auditor"),
        &["audit", "export", "--since", "2999-01-01T00:00:00Z"],
    )
    .await;
    assert_eq!((later.code, later.stdout.as_str()), (0, ""));

    // A requester may not export; bad arguments are usage errors.
    let r = run(greenlight(&app, "app"), &["audit", "export"]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("forbidden"), "{}", r.stderr);
    let r = run(greenlight(&app, "auditor"), &["audit", "verify"]).await;
    assert_eq!(r.code, 2);
    let r = run(
        greenlight(&app, "auditor"),
        &["audit", "export", "--since", "yesterday"],
    )
    .await;
    assert_eq!(r.code, 2);
}

// ---------------------------------------------------------------------------------------
// Slack, timers and callbacks: the events that happen away from the intake.

const SLACK_POLICY: &str = concat!(
    r##"
[defaults]
channel = "#approvals"

"##,
    test_clients!(),
    r##"
[[rule]]
name = "chased"
match = { action = "chase.*" }
decision = "require"
approvers = ["U0BOB"]
ttl = "60s"
remind_every = "1s"
escalate = [{ after = "1s", notify = ["U0LEAD", "@dba-leads"] }]

[[rule]]
name = "bob"
match = { action = "*" }
decision = "require"
approvers = ["U0BOB"]
"##
);

async fn slack_app(backend: Backend) -> (TestApp, FakeSlack) {
    let slack = FakeSlack::start().await;
    let app = spawn_app_with(
        backend,
        AppOptions {
            policy: SLACK_POLICY.into(),
            slack_api_base: Some(slack.base.clone()),
            ..Default::default()
        },
    )
    .await;
    (app, slack)
}

async fn click(app: &TestApp, slack: &FakeSlack, user: &str, button: &str, id: &str) {
    let payload = block_action(
        user,
        button,
        id,
        "C0APPROVALS",
        "1700000000.000001",
        &slack.response_url(),
    );
    let body = interaction_body(&payload);
    let now = chrono::Utc::now().timestamp();
    let headers = signed_slack_headers(SLACK_SIGNING_SECRET, now, &body);
    let r = app
        .send_raw("POST", "/slack/interactions", body, &headers)
        .await;
    assert_eq!(r.status, 200);
}

async fn slack_votes_and_chasing_are_recorded(backend: Backend) {
    let (app, slack) = slack_app(backend).await;
    // Slack refusing to post: given up on at once, and audited.
    slack.fail(
        "chat.postMessage",
        Fault::SlackError("channel_not_found"),
        1,
    );
    let (refused, _) = created(&app, "deploy.nowhere").await;
    let entries = entries_until(&app, &refused, "slack_error").await;
    assert_eq!(entries[1]["details"]["call"], "chat.postMessage");
    let error = entries[1]["details"]["error"].as_str().unwrap();
    assert!(error.contains("channel_not_found"), "{error}");

    let (id, _) = created(&app, "deploy.prod").await;
    let posted = entries_until(&app, &id, "message_posted").await;
    assert_eq!(posted[1]["details"]["channel"], "C0APPROVALS");
    click(&app, &slack, "U0EVE", "greenlight_approve", &id).await;
    entries_until(&app, &id, "vote_rejected").await;
    click(&app, &slack, "U0BOB", "greenlight_approve", &id).await;
    let entries = entries_until(&app, &id, "approved").await;
    assert_eq!(
        story(&entries),
        pairs(&[
            ("requested", "u-123"),
            ("message_posted", "-"),
            ("vote_rejected", "U0EVE"),
            ("vote", "U0BOB"),
            ("approved", "U0BOB"),
        ])
    );
    assert_eq!(
        entries[2]["details"]["why"],
        "You are not an approver for rule `bob`."
    );
    assert_eq!(entries[3]["details"]["vote"], "approve");
    assert_eq!(entries[4]["details"]["via"], "slack");
    // A click on the decided action is a rejected vote too.
    click(&app, &slack, "U0BOB", "greenlight_deny", &id).await;
    let entries = entries_until(&app, &id, "vote_rejected").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut rejected = entries
        .iter()
        .filter(|e| e["event"] == "vote_rejected")
        .count();
    while rejected < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        rejected = entries_of(&app, &id)
            .await
            .iter()
            .filter(|e| e["event"] == "vote_rejected")
            .count();
    }
    assert_eq!(rejected, 2);

    // Escalation and reminders, by the timer.
    let (chased, _) = created(&app, "chase.me").await;
    entries_until(&app, &chased, "escalated").await;
    let entries = entries_until(&app, &chased, "reminded").await;
    let escalated = entries.iter().find(|e| e["event"] == "escalated").unwrap();
    assert_eq!(escalated["actor"], "timer");
    assert_eq!(escalated["details"]["stage"], 1);
    assert_eq!(
        escalated["details"]["targets"],
        json!(["U0LEAD", "@dba-leads"])
    );
    assert_eq!(app.cancel("app", &chased).await.status, 200);
    verified(&app).await;
}

async fn callbacks_are_recorded(backend: Backend) {
    let app = spawn_app(backend).await;
    let hook = FakeWebhook::start().await;
    hook.fail(500, 1);
    let mut body = request("deploy.prod", "svc/x");
    body["callback_url"] = json!(hook.url);
    let r = app.create(&body).await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(app.decide(&id, "denied").await.status, 200);
    let entries = entries_until(&app, &id, "callback_sent").await;
    let events: Vec<_> = story(&entries).into_iter().map(|(e, _)| e).collect();
    assert_eq!(
        events,
        ["requested", "denied", "callback_failed", "callback_sent"]
    );
    assert_eq!(entries[2]["details"]["retrying"], true);
    assert_eq!(entries[3]["details"]["url"], hook.url.as_str());
    verified(&app).await;
}

on_both_backends!(
    every_outcome_is_recorded_with_its_actor,
    only_auditors_and_admins_read_the_trail,
    export_then_verify_and_detect_damage,
    slack_votes_and_chasing_are_recorded,
    callbacks_are_recorded,
);

// ---------------------------------------------------------------------------------------
// Two server processes, one Redis, many writers at once: one chain.

struct Server {
    child: tokio::process::Child,
    base: String,
}

async fn serve(
    redis: &RedisServer,
    prefix: &str,
    policy: &str,
    secrets: &[(&str, String)],
) -> Server {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env("GREENLIGHT_LISTEN", &listen)
        .env("REDIS_URL", redis.url())
        .env("GREENLIGHT_REDIS_PREFIX", prefix)
        .env("GREENLIGHT_POLICY", policy)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for (client, secret) in secrets {
        cmd.env(format!("TEST_{}_SECRET", client.to_uppercase()), secret);
    }
    let child = cmd.spawn().unwrap();
    let base = format!("http://{listen}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            return Server { child, base };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_redis_write_one_chain() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let secrets: Vec<(&str, Secret, String)> = common::CLIENTS
        .into_iter()
        .map(|c| {
            let (secret, text) = Secret::generate();
            (c, secret, text)
        })
        .collect();
    let env: Vec<(&str, String)> = secrets.iter().map(|(c, _, t)| (*c, t.clone())).collect();
    let policy = policy.to_str().unwrap();
    let servers = [
        serve(&redis, "twoproc", policy, &env).await,
        serve(&redis, "twoproc", policy, &env).await,
    ];
    let client = |server: &Server, name: &str| {
        let secret = secrets.iter().find(|(c, ..)| *c == name).unwrap().1.clone();
        Client::new(&server.base, name, secret)
    };

    const N: usize = 120;
    let work: Vec<_> = (0..N)
        .map(|i| {
            let here = &servers[i % 2];
            let there = &servers[(i + 1) % 2];
            let app = client(here, "app");
            let admin = client(there, "admin");
            async move {
                let auto = i % 2 == 0;
                let action = if auto { "read.logs" } else { "deploy.prod" };
                let request: ActionRequest =
                    serde_json::from_value(request(action, &format!("svc/{i}"))).unwrap();
                let created = app.request(&request).await.unwrap();
                if !auto {
                    // Decided on the other process.
                    let decided = admin
                        .decide(&created.id, Outcome::Approved, "ops", None)
                        .await
                        .unwrap();
                    assert_eq!(decided.status, Status::Approved);
                }
            }
        })
        .collect();
    futures::future::join_all(work).await;

    // Auto-approved: requested, auto_decided, approved; the others: requested, approved.
    let expected = (N / 2 * 3 + N / 2 * 2) as u64;
    let mut heads = Vec::new();
    for server in &servers {
        let trail = fetch_and_verify(&client(server, "auditor"))
            .await
            .unwrap()
            .unwrap_or_else(|b| panic!("{}", b.describe("position")));
        assert_eq!(trail.entries, expected);
        assert_eq!(trail.first_prev.as_deref(), Some(GENESIS));
        heads.push(trail.head);
    }
    assert_eq!(heads[0], heads[1]);
    let stored: Option<String> = redis::cmd("GET")
        .arg("twoproc:audit:head")
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(stored.as_deref(), Some(heads[0].as_str()));
}

/// Retention on Redis: `MAXLEN ~` keeps at least the newest N, and what is kept verifies
/// from its oldest entry on.
#[tokio::test]
async fn trimmed_trail_still_verifies_from_its_oldest_entry() {
    use greenlight::audit::{Audit, AuditEvent, EventKind};
    use greenlight::store::{Deployment, RedisStore, RedisStoreConfig, Store};
    let redis = RedisServer::start();
    let store: std::sync::Arc<dyn Store> = RedisStore::start(
        RedisStoreConfig {
            deployment: Deployment::Single { url: redis.url() },
            prefix: "trim".into(),
        },
        greenlight::waiters::Waiters::new(),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap();
    let audit = Audit::new(store.clone(), 100);
    for i in 0..1000 {
        audit
            .record(AuditEvent::new(EventKind::Reminded).detail("i", i))
            .await;
    }
    let mut verifier = greenlight::audit::Verifier::new();
    let mut after = None;
    let mut first = None;
    loop {
        let page = audit.page(after.as_deref(), 1000, None).await.unwrap();
        for e in &page.entries {
            first.get_or_insert_with(|| e.get().to_owned());
            verifier.push_line(e.get()).unwrap();
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let trail = verifier.finish();
    assert!(
        (100..1000).contains(&trail.entries),
        "kept {}",
        trail.entries
    );
    assert_ne!(trail.first_prev.as_deref(), Some(GENESIS));
    let first: Entry = serde_json::from_str(&first.unwrap()).unwrap();
    assert_eq!(first.details["i"], 1000 - trail.entries);
    assert_eq!(store.audit_head().await.unwrap(), Some(trail.head));
}

#[tokio::test]
async fn a_policy_reload_is_recorded() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let secrets: Vec<(&str, Secret, String)> = common::CLIENTS
        .into_iter()
        .map(|c| {
            let (secret, text) = Secret::generate();
            (c, secret, text)
        })
        .collect();
    let env: Vec<(&str, String)> = secrets.iter().map(|(c, _, t)| (*c, t.clone())).collect();
    let server = serve(&redis, "reload", policy.to_str().unwrap(), &env).await;
    let pid = server.child.id().unwrap().to_string();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(hup.success());
    let auditor = secrets.iter().find(|(c, ..)| *c == "auditor").unwrap();
    let client = Client::new(&server.base, "auditor", auditor.1.clone());
    let deadline = tokio::time::Instant::now() + WAIT;
    let entry = loop {
        let page = client.audit(None, 10, None).await.unwrap();
        if let Some(e) = page.entries.first() {
            break serde_json::from_str::<Entry>(e.get()).unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "no policy_reloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(entry.event, "policy_reloaded");
    assert_eq!(entry.actor.as_deref(), Some("sighup"));
    assert_eq!(entry.details["rules"], 5);
    assert_eq!(entry.details["clients"], 4);
    assert_eq!(entry.details["file"], policy.to_str().unwrap());
}

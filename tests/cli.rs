//! The `greenlight` binary as a person or a script runs it: the real
//! executable against a real server, judged by its exit code and what it prints.

mod common;

use common::{Backend, POLICY, TestApp, spawn_app};
use serde_json::Value;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const BIN: &str = env!("CARGO_BIN_EXE_greenlight");

/// The longest any single CLI run may take in these tests.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// `greenlight` with no settings from the environment this test runs in.
fn bare() -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("GREENLIGHT_") {
            cmd.env_remove(k);
        }
    }
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

/// `greenlight` configured as `client` of `app`, as a user would set it up.
fn greenlight(app: &TestApp, client: &str) -> Command {
    let mut cmd = bare();
    cmd.env("GREENLIGHT_URL", &app.base)
        .env("GREENLIGHT_CLIENT_ID", client)
        .env("GREENLIGHT_CLIENT_SECRET", &app.secrets[client]);
    cmd
}

#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }
}

async fn run(mut cmd: Command, args: &[&str]) -> Run {
    cmd.args(args);
    let started = Instant::now();
    let out = tokio::time::timeout(RUN_LIMIT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("greenlight {args:?} still running after {RUN_LIMIT:?}"))
        .expect("the greenlight binary runs");
    Run {
        code: out
            .status
            .code()
            .unwrap_or_else(|| panic!("greenlight {args:?} killed by a signal")),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

/// `greenlight request ... --wait` running in the background, after it printed the
/// pending action's line.
struct Waiting {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// The id of the action it created, from its first line.
    id: String,
    first: String,
    started: Instant,
}

const REQUESTER: [&str; 4] = ["--requester", "u-123", "--email", "alice@example.com"];

async fn request_and_wait(app: &TestApp, extra: &[&str]) -> Waiting {
    let mut cmd = greenlight(app, "app");
    cmd.arg("request")
        .args(REQUESTER)
        .args(["--wait"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().expect("the greenlight binary runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("request printed its first line within 10 s")
        .unwrap()
        .expect("request printed a line before exiting");
    let id = first.split_whitespace().next().unwrap().to_owned();
    assert!(id.starts_with("act_"), "first line: {first}");
    assert!(first.contains(" pending "), "first line: {first}");
    // Give it a moment to start its long-poll; it must still be waiting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "request --wait exited while the action was pending"
    );
    Waiting {
        child,
        lines,
        id,
        first,
        started,
    }
}

impl Waiting {
    /// Lets it finish, within `limit`.
    async fn finish(mut self, limit: Duration) -> Run {
        let rest = async {
            let mut out = String::new();
            while let Some(line) = self.lines.next_line().await.unwrap() {
                out.push_str(&line);
                out.push('\n');
            }
            out
        };
        let (stdout, out) = tokio::time::timeout(limit, async {
            tokio::join!(rest, self.child.wait_with_output())
        })
        .await
        .unwrap_or_else(|_| panic!("request --wait still running after {limit:?}"));
        let out = out.unwrap();
        Run {
            code: out.status.code().expect("exited, not killed"),
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            took: self.started.elapsed(),
        }
    }
}

async fn request_wait_exits_0_once_an_admin_approves(backend: Backend) {
    let app = spawn_app(backend).await;
    let waiting = request_and_wait(
        &app,
        &["--action", "deploy.prod", "--resource", "svc/payments"],
    )
    .await;
    let id = waiting.id.clone();
    // A second person, with the admin client, approves from their own terminal.
    let decide = run(
        greenlight(&app, "admin"),
        &["decide", &id, "--approve", "--by", "ops-lead@example.com"],
    )
    .await;
    assert_eq!(decide.code, 0, "{decide:?}");
    assert!(decide.stdout.contains("approved"), "{decide:?}");

    let done = waiting.finish(Duration::from_secs(10)).await;
    assert_eq!(done.code, 0, "{done:?}");
    assert!(done.stdout.contains(&id), "{done:?}");
    assert!(done.stdout.contains("approved"), "{done:?}");
    assert!(done.stdout.contains("ops-lead@example.com"), "{done:?}");
    assert_eq!(app.get("app", &id).await.body["status"], "approved");
}

async fn request_wait_exits_10_once_an_admin_denies(backend: Backend) {
    let app = spawn_app(backend).await;
    let waiting = request_and_wait(
        &app,
        &["--action", "deploy.prod", "--resource", "svc/payments"],
    )
    .await;
    let decide = run(
        greenlight(&app, "admin"),
        &[
            "decide",
            &waiting.id,
            "--deny",
            "--reason",
            "not during the freeze",
        ],
    )
    .await;
    // `decide` reports the action's new status, like `status` does.
    assert_eq!(decide.code, 10, "{decide:?}");

    let done = waiting.finish(Duration::from_secs(10)).await;
    assert_eq!(done.code, 10, "{done:?}");
    assert!(done.stdout.contains("denied"), "{done:?}");
    assert!(done.stdout.contains("not during the freeze"), "{done:?}");
}

async fn request_wait_exits_11_when_the_action_expires(backend: Backend) {
    let app = spawn_app(backend).await;
    // The `short` rule gives 2 s, whatever the CLI asks for.
    let waiting = request_and_wait(
        &app,
        &[
            "--action",
            "short.cleanup",
            "--resource",
            "tmp/x",
            "--ttl",
            "10m",
        ],
    )
    .await;
    // `... (rule short, 1 approval(s) needed, expires 2026-11-22T10:00:02Z)`
    let expires_at = waiting
        .first
        .split("expires ")
        .nth(1)
        .and_then(|s| s.strip_suffix(')'))
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .unwrap_or_else(|| panic!("no expiry in {:?}", waiting.first));
    let done = waiting.finish(Duration::from_secs(15)).await;
    assert_eq!(done.code, 11, "{done:?}");
    assert!(done.stdout.contains("expired"), "{done:?}");
    // Not before the expiry it announced.
    assert!(chrono::Utc::now() >= expires_at, "{done:?}");
}

async fn request_wait_exits_13_when_its_timeout_passes(backend: Backend) {
    let app = spawn_app(backend).await;
    let waiting = request_and_wait(
        &app,
        &[
            "--action",
            "deploy.prod",
            "--resource",
            "svc/payments",
            "--timeout",
            "2s",
        ],
    )
    .await;
    let id = waiting.id.clone();
    let done = waiting.finish(Duration::from_secs(15)).await;
    assert_eq!(done.code, 13, "{done:?}");
    assert!(done.stdout.contains("pending"), "{done:?}");
    assert!(
        done.took >= Duration::from_millis(1800) && done.took < Duration::from_secs(10),
        "{done:?}"
    );
    // Giving up waiting does not withdraw the request.
    assert_eq!(app.get("app", &id).await.body["status"], "pending");
}

async fn request_wait_exits_12_when_the_action_is_cancelled(backend: Backend) {
    let app = spawn_app(backend).await;
    let waiting = request_and_wait(
        &app,
        &["--action", "deploy.prod", "--resource", "svc/payments"],
    )
    .await;
    let r = app.cancel("app", &waiting.id).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let done = waiting.finish(Duration::from_secs(10)).await;
    assert_eq!(done.code, 12, "{done:?}");
    assert!(done.stdout.contains("cancelled"), "{done:?}");
}

async fn request_json_prints_the_action_object(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = run(
        greenlight(&app, "app"),
        &[
            "request",
            "--action",
            "deploy.prod",
            "--resource",
            "prod/db",
            "--requester",
            "u-123",
            "--email",
            "alice@example.com",
            "--reason",
            "hotfix 42",
            "--context",
            "env=prod",
            "--context",
            "rows=1200",
            "--ttl",
            "30s",
            "--json",
        ],
    )
    .await;
    // Not waiting, still pending: 13, never 0, which would read as approved.
    assert_eq!(r.code, 13, "{r:?}");
    let action = r.json();
    let id = action["id"].as_str().unwrap();
    assert!(id.starts_with("act_"), "{action}");
    assert_eq!(action["status"], "pending");
    assert_eq!(action["client"], "app");
    assert_eq!(action["requester"]["id"], "u-123");
    assert_eq!(action["requester"]["email"], "alice@example.com");
    assert_eq!(action["reason"], "hotfix 42");
    // Context values that read as numbers are sent as numbers, so rules can match them.
    assert_eq!(
        action["context"],
        serde_json::json!({"env": "prod", "rows": 1200})
    );
    assert_eq!(action["policy"]["rule"], "prod");
    assert_eq!(action["policy"]["min_approvals"], 2);
    let at = |k: &str| chrono::DateTime::parse_from_rfc3339(action[k].as_str().unwrap()).unwrap();
    assert_eq!((at("expires_at") - at("created_at")).num_seconds(), 30);
    // It is the stored object.
    assert_eq!(app.get("app", id).await.body, action);

    // --json with --wait prints one JSON document, at the end.
    let r = run(
        greenlight(&app, "app"),
        &[
            "request",
            "--action",
            "read.logs",
            "--resource",
            "svc/a",
            "--requester",
            "u-1",
            "--email",
            "alice@example.com",
            "--wait",
            "--json",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let action = r.json();
    assert_eq!(action["status"], "approved");
    assert_eq!(action["decision"]["by_policy"], "reads");
}

async fn auto_decided_requests_exit_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let args = |action: &'static str| {
        [
            "request",
            "--action",
            action,
            "--resource",
            "svc/a",
            "--requester",
            "u-1",
            "--email",
            "alice@example.com",
            "--wait",
        ]
    };
    let r = run(greenlight(&app, "app"), &args("read.x")).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("approved"), "{r:?}");
    assert!(r.stdout.contains("reads"), "names the rule: {r:?}");
    assert!(r.took < Duration::from_secs(5), "{r:?}");

    let r = run(greenlight(&app, "app"), &args("db.drop_database")).await;
    assert_eq!(r.code, 10, "{r:?}");
    assert!(r.stdout.contains("denied"), "{r:?}");
    assert!(r.stdout.contains("never-drop-databases"), "{r:?}");
    assert!(r.took < Duration::from_secs(5), "{r:?}");
}

async fn status_and_wait_exit_with_the_status_code(backend: Backend) {
    let app = spawn_app(backend).await;
    let status = |id: String| {
        let cmd = greenlight(&app, "app");
        async move { run(cmd, &["status", &id]).await }
    };
    let wait = |id: String| {
        let cmd = greenlight(&app, "app");
        async move { run(cmd, &["wait", &id, "--timeout", "1s"]).await }
    };

    let pending = app.create_pending().await;
    let r = status(pending.clone()).await;
    assert_eq!(r.code, 13, "{r:?}");
    assert!(
        r.stdout.contains(&pending) && r.stdout.contains("pending"),
        "{r:?}"
    );
    let r = wait(pending.clone()).await;
    assert_eq!(r.code, 13, "{r:?}");
    assert!(
        r.took >= Duration::from_millis(900),
        "waited its timeout: {r:?}"
    );

    // One action per terminal status: both commands answer its code, without waiting.
    let approved = app.create_pending().await;
    assert_eq!(app.decide(&approved, "approved").await.status, 200);
    let denied = app.create_pending().await;
    assert_eq!(app.decide(&denied, "denied").await.status, 200);
    let cancelled = app.create_pending().await;
    assert_eq!(app.cancel("app", &cancelled).await.status, 200);
    let expired = app
        .create(&common::request("short.cleanup", "tmp/x"))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(15);
    while app.get("app", &expired).await.body["status"] == "pending" {
        assert!(Instant::now() < deadline, "the short action never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (id, code, word) in [
        (approved, 0, "approved"),
        (denied, 10, "denied"),
        (expired, 11, "expired"),
        (cancelled, 12, "cancelled"),
    ] {
        let r = status(id.clone()).await;
        assert_eq!(r.code, code, "status of {word}: {r:?}");
        assert!(r.stdout.contains(word), "{r:?}");
        let r = wait(id).await;
        assert_eq!(r.code, code, "wait on {word}: {r:?}");
        assert!(
            r.took < Duration::from_secs(1),
            "wait on {word} answered at once: {r:?}"
        );
    }
}

async fn deciding_twice_fails_naming_the_status(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_pending().await;
    assert_eq!(app.decide(&id, "approved").await.status, 200);
    let r = run(greenlight(&app, "admin"), &["decide", &id, "--deny"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("approved"), "{r:?}");
    assert_eq!(app.get("app", &id).await.body["status"], "approved");

    // Forgetting --approve/--deny is a usage error, not a silent deny.
    let other = app.create_pending().await;
    let r = run(greenlight(&app, "admin"), &["decide", &other]).await;
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(app.get("app", &other).await.body["status"], "pending");

    // A client without the admin role cannot decide at all.
    let r = run(greenlight(&app, "app"), &["decide", &other, "--approve"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("forbidden"), "{r:?}");
    assert_eq!(app.get("app", &other).await.body["status"], "pending");
}

async fn errors_exit_1_with_a_message(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_pending().await;

    let mut cmd = greenlight(&app, "app");
    cmd.env_remove("GREENLIGHT_CLIENT_SECRET");
    let r = run(cmd, &["status", &id]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("GREENLIGHT_CLIENT_SECRET"), "{r:?}");

    // A URL without its scheme says what is expected.
    let mut cmd = greenlight(&app, "app");
    cmd.env("GREENLIGHT_URL", app.base.trim_start_matches("http://"));
    let r = run(cmd, &["status", &id]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("GREENLIGHT_URL: expected http://"),
        "{r:?}"
    );

    let mut cmd = greenlight(&app, "app");
    cmd.env("GREENLIGHT_CLIENT_SECRET", "hunter2");
    let r = run(cmd, &["status", &id]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("GREENLIGHT_CLIENT_SECRET"), "{r:?}");
    assert!(
        !r.stderr.contains("hunter2"),
        "the secret is not echoed: {r:?}"
    );

    // Someone else's secret: the server refuses, the CLI says so.
    let mut cmd = greenlight(&app, "app");
    cmd.env("GREENLIGHT_CLIENT_SECRET", &app.secrets["other"]);
    let r = run(cmd, &["status", &id]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("unauthorized"), "{r:?}");

    // The server rejects the request: the field is named.
    let r = run(
        greenlight(&app, "app"),
        &[
            "request",
            "--action",
            "Db.Drop",
            "--resource",
            "r",
            "--requester",
            "u-1",
            "--email",
            "alice@example.com",
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("action"), "{r:?}");

    // Nobody listening.
    let mut cmd = greenlight(&app, "app");
    cmd.env(
        "GREENLIGHT_URL",
        format!("http://127.0.0.1:{}", common::free_port()),
    );
    let r = run(cmd, &["status", &id]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("cannot reach"), "{r:?}");

    // Not an action id; an id nobody created.
    let r = run(greenlight(&app, "app"), &["status", "12345"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    let r = run(
        greenlight(&app, "app"),
        &["status", "act_01JD8Y3M6QW9T3V7K2X5N4B1C0"],
    )
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("not_found"), "{r:?}");
}

/// Finding your way without Slack: `greenlight pending` lists the ids of the pending
/// actions a client may read (all of them for an admin), and the API refuses to list
/// anything but pending actions.
async fn pending_lists_the_actions_a_client_may_read(backend: Backend) {
    let app = spawn_app(backend).await;
    let mine = [app.create_pending().await, app.create_pending().await];
    let r = app
        .send_as(
            "other",
            "POST",
            "/v1/actions",
            &common::request("deploy.prod", "svc/x"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let theirs = r.body["id"].as_str().unwrap().to_owned();

    let r = run(greenlight(&app, "app"), &["pending"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    for id in &mine {
        assert!(r.stdout.contains(id.as_str()), "{r:?}");
    }
    assert!(
        !r.stdout.contains(&theirs),
        "another client's action is not listed: {r:?}"
    );
    assert!(r.stdout.lines().all(|l| l.contains(" pending ")), "{r:?}");

    let r = run(greenlight(&app, "admin"), &["pending", "--json"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let ids: Vec<String> = r
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 3, "{r:?}");
    assert!(ids.contains(&theirs) && mine.iter().all(|id| ids.contains(id)));

    // Decided actions leave the list.
    assert_eq!(app.decide(&mine[0], "approved").await.status, 200);
    let r = run(greenlight(&app, "app"), &["pending"]).await;
    assert!(
        !r.stdout.contains(mine[0].as_str()) && r.stdout.contains(mine[1].as_str()),
        "{r:?}"
    );

    for query in [
        "",
        "?status=approved",
        "?status=pending&limit=0",
        "?status=pending&x=1",
    ] {
        let r = app
            .send_as("app", "GET", &format!("/v1/actions{query}"), &Value::Null)
            .await;
        assert_eq!(r.status, 400, "{query}: {}", r.body);
    }
}

on_both_backends!(
    pending_lists_the_actions_a_client_may_read,
    request_wait_exits_0_once_an_admin_approves,
    request_wait_exits_10_once_an_admin_denies,
    request_wait_exits_11_when_the_action_expires,
    request_wait_exits_13_when_its_timeout_passes,
    request_wait_exits_12_when_the_action_is_cancelled,
    request_json_prints_the_action_object,
    auto_decided_requests_exit_at_once,
    status_and_wait_exit_with_the_status_code,
    deciding_twice_fails_naming_the_status,
    errors_exit_1_with_a_message,
);

/// Runs the binary without a tokio runtime, for commands that need no server.
fn run_sync(args: &[&str]) -> Run {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(bare(), args))
}

#[test]
fn usage_errors_exit_2() {
    let id = "act_01JD8Y3M6QW9T3V7K2X5N4B1C0";
    let request = [
        "request",
        "--action",
        "a",
        "--resource",
        "r",
        "--requester",
        "u",
        "--email",
        "alice@example.com",
    ];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["decide", id], "--approve"),
        (vec!["decide", id, "--approve", "--deny"], "--deny"),
        ([&request[..], &["--bogus"]].concat(), "--bogus"),
        (
            request[..3].iter().chain(&request[5..]).copied().collect(),
            "--resource",
        ),
        (
            [&request[..], &["--context", "novalue"]].concat(),
            "novalue",
        ),
        ([&request[..], &["--ttl", "soon"]].concat(), "soon"),
        (vec!["wait", id, "--timeout", "soon"], "soon"),
        (vec!["frobnicate"], "frobnicate"),
    ];
    for (args, names) in cases {
        let r = run_sync(&args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stderr.starts_with("error:"), "{args:?}: {r:?}");
        assert!(r.stderr.contains(names), "{args:?} names {names}: {r:?}");
        assert!(r.stdout.is_empty(), "{args:?}: {r:?}");
    }
}

#[test]
fn a_missing_secret_is_named() {
    let r = run_sync(&["status", "act_01JD8Y3M6QW9T3V7K2X5N4B1C0"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("GREENLIGHT_CLIENT_SECRET"), "{r:?}");
}

#[test]
fn policy_check_accepts_a_valid_file_and_names_the_line_of_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("policy.toml");
    std::fs::write(&good, POLICY).unwrap();
    let r = run_sync(&["policy", "check", good.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("ok:"), "{r:?}");
    assert!(
        r.stdout.contains("5 rules") && r.stdout.contains("4 clients"),
        "{r:?}"
    );

    // An unknown field in the `never-drop-databases` rule.
    let bad_policy = POLICY.replace(
        "decision = \"deny\"\n",
        "decision = \"deny\"\ncolour = \"red\"\n",
    );
    let line = bad_policy
        .lines()
        .position(|l| l.starts_with("colour"))
        .unwrap()
        + 1;
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, bad_policy).unwrap();
    let r = run_sync(&["policy", "check", bad.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains(&format!(":{line}:")),
        "line {line}: {r:?}"
    );
    assert!(r.stderr.contains("colour"), "{r:?}");
    assert!(!r.stdout.contains("ok:"), "{r:?}");

    // `max_pending` is known, and checked.
    let capped = |n: &str| {
        POLICY.replacen(
            "id = \"app\"\n",
            &format!("id = \"app\"\nmax_pending = {n}\n"),
            1,
        )
    };
    std::fs::write(&good, capped("5")).unwrap();
    assert_eq!(
        run_sync(&["policy", "check", good.to_str().unwrap()]).code,
        0
    );
    std::fs::write(&bad, capped("0")).unwrap();
    let r = run_sync(&["policy", "check", bad.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("field `max_pending`"), "{r:?}");

    let r = run_sync(&[
        "policy",
        "check",
        dir.path().join("missing.toml").to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("missing.toml"), "{r:?}");
}

#[test]
fn policy_explain_names_the_matching_rule() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, POLICY).unwrap();
    let file = file.to_str().unwrap();
    let explain = |action: &str, resource: &str, context: &str| {
        run_sync(&[
            "policy",
            "explain",
            file,
            "--action",
            action,
            "--resource",
            resource,
            "--client",
            "app",
            "--context",
            context,
        ])
    };

    let r = explain("deploy.api", "prod/api", "env=prod");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("matched rule \"prod\""), "{r:?}");
    assert!(r.stdout.contains("U0BOB, U0CAROL"), "{r:?}");

    // First match wins: reads are approved even on prod.
    let r = explain("read.logs", "prod/api", "env=prod");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("matched rule \"reads\""), "{r:?}");
    assert!(r.stdout.contains("approve"), "{r:?}");

    let r = explain("db.drop_database", "pg/main", "env=dev");
    assert!(
        r.stdout.contains("matched rule \"never-drop-databases\""),
        "{r:?}"
    );
    assert!(r.stdout.contains("deny"), "{r:?}");

    // Same resource, other environment: no rule, the default applies.
    let r = explain("deploy.api", "prod/api", "env=staging");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("no rule matched"), "{r:?}");
}

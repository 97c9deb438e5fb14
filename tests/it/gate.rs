//! `greenlight gate ... -- CMD` as a pipeline runs it: the real binary against a real
//! server, judged by whether the command ran, with what, and the exit code.

use crate::common::cli::{
    forged_approval, grant_of_another_action, greenlight, interrupt, publish_decision,
};
use crate::common::{AppOptions, Backend, TestApp, spawn_app, spawn_app_with};
use greenlight::grants::generate_signing_key;
use secrecy::ExposeSecret;
use serde_json::json;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

/// The command gate runs in these tests: it writes what it was given to a file and exits 7,
/// so a test sees whether it ran, with which grant, and that its exit code passes through.
const SCRIPT: &str =
    r#"printf '%s\n%s\n' "$GREENLIGHT_GRANT" "$GREENLIGHT_ACTION_ID" > "$1"; exit 7"#;

/// A `greenlight gate` run in the background, once it has created its request.
struct Gate {
    child: Child,
    id: String,
    /// Where the command writes, if it runs.
    out: PathBuf,
    stderr: tokio::task::JoinHandle<String>,
    _dir: tempfile::TempDir,
}

struct Ran {
    code: i32,
    stderr: String,
    /// The command's grant and action id, when it ran.
    command: Option<(String, String)>,
}

async fn gate(app: &TestApp, action: &str, extra: &[&str], redis_wait: bool) -> Gate {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ran");
    let mut cmd = greenlight(app, "app");
    if redis_wait {
        let redis = app.backend.redis_server().expect("Redis backend");
        cmd.env("GREENLIGHT_CLIENT_REDIS_URL", redis.url())
            .env("GREENLIGHT_REDIS_PREFIX", &app.prefix);
    }
    cmd.args([
        "gate",
        "--requester",
        "u-123",
        "--email",
        "alice@example.com",
        "--action",
        action,
    ])
    .args(["--resource", "svc/payments", "--reason", "release 42"])
    .args(extra)
    .args(["--", "sh", "-c", SCRIPT, "gated"])
    .arg(&out)
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the greenlight binary runs");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let id = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push_str(&line);
            seen.push('\n');
            // `greenlight: act_... requested deploy.prod on svc/payments; waiting up to 15m`
            if let Some(id) = line.split_whitespace().find(|w| w.starts_with("act_")) {
                return id.to_owned();
            }
        }
        panic!("gate exited before requesting: {seen}")
    })
    .await
    .expect("gate requested within 10 s");
    let stderr = tokio::spawn(async move {
        let mut rest = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    });
    // Let it start waiting; it must not have run anything.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "gate exited while pending"
    );
    assert!(!out.exists(), "the command ran before any decision");
    Gate {
        child,
        id,
        out,
        stderr,
        _dir: dir,
    }
}

impl Gate {
    async fn finish(mut self) -> Ran {
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("gate finished within 20 s")
            .unwrap();
        let stderr = self.stderr.await.unwrap();
        let command = std::fs::read_to_string(&self.out).ok().map(|s| {
            let mut lines = s.lines().map(str::to_owned);
            (lines.next().unwrap(), lines.next().unwrap())
        });
        Ran {
            code: status.code().expect("gate exited, not killed"),
            stderr,
            command,
        }
    }
}

async fn runs_the_command_once_approved_with_the_grant(backend: Backend) {
    let app = spawn_app(backend).await;
    let gate = gate(&app, "deploy.prod", &[], false).await;
    let id = gate.id.clone();
    assert_eq!(app.decide(&id, "approved").await.status, 200);

    let ran = gate.finish().await;
    // The command's own exit code, passed through.
    assert_eq!(ran.code, 7, "{}", ran.stderr);
    let (grant, action_id) = ran.command.expect("the command ran");
    assert_eq!(action_id, id);
    // The grant in its environment is the action's, and verifies.
    let stored = app.get("app", &id).await.body;
    assert_eq!(grant, stored["decision"]["grant"]["token"]);
    let verified = app
        .send_as(
            "app",
            "POST",
            "/v1/grants/verify",
            &json!({"token": grant, "action": "deploy.prod", "resource": "svc/payments"}),
        )
        .await;
    assert_eq!(verified.body["valid"], true, "{}", verified.body);
    assert_eq!(verified.body["claims"]["aid"], id.as_str());
}

async fn does_not_run_the_command_when_denied(backend: Backend) {
    let app = spawn_app(backend).await;
    let gate = gate(&app, "deploy.prod", &[], false).await;
    assert_eq!(app.decide(&gate.id, "denied").await.status, 200);
    let ran = gate.finish().await;
    assert_eq!(ran.code, 10, "{}", ran.stderr);
    assert!(ran.command.is_none(), "the command ran after a deny");
    assert!(ran.stderr.contains("denied"), "{}", ran.stderr);
}

async fn does_not_run_the_command_when_the_request_expires(backend: Backend) {
    let app = spawn_app(backend).await;
    // The `short` rule: the request expires after 2 s.
    let gate = gate(&app, "short.cleanup", &[], false).await;
    let ran = gate.finish().await;
    assert_eq!(ran.code, 11, "{}", ran.stderr);
    assert!(ran.command.is_none(), "the command ran after expiry");
}

async fn ctrl_c_while_waiting_cancels_the_request(backend: Backend) {
    let app = spawn_app(backend).await;
    let gate = gate(&app, "deploy.prod", &[], false).await;
    let id = gate.id.clone();
    interrupt(gate.child.id().unwrap());
    let ran = gate.finish().await;
    assert_eq!(ran.code, 12, "{}", ran.stderr);
    assert!(ran.command.is_none(), "the command ran after Ctrl-C");
    assert_eq!(app.get("app", &id).await.body["status"], "cancelled");
    // An approval that comes later cannot start anything: the action is closed.
    assert_eq!(app.decide(&id, "approved").await.status, 409);
}

async fn timing_out_exits_13_and_withdraws_the_request(backend: Backend) {
    let app = spawn_app(backend).await;
    let gate = gate(&app, "deploy.prod", &["--timeout", "2s"], false).await;
    let id = gate.id.clone();
    let ran = gate.finish().await;
    assert_eq!(ran.code, 13, "{}", ran.stderr);
    assert!(ran.command.is_none());
    assert_eq!(app.get("app", &id).await.body["status"], "cancelled");
}

async fn auto_approved_actions_run_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ran");
    let status = greenlight(&app, "app")
        .args([
            "gate",
            "--requester",
            "u-123",
            "--email",
            "alice@example.com",
            "--action",
            "read.logs",
        ])
        .args([
            "--resource",
            "svc/payments",
            "--",
            "sh",
            "-c",
            SCRIPT,
            "gated",
        ])
        .arg(&out)
        .stderr(Stdio::null())
        .status()
        .await
        .unwrap();
    assert_eq!(status.code(), Some(7));
    let ran = std::fs::read_to_string(&out).unwrap();
    assert!(ran.starts_with("eyJ"), "no grant given: {ran}");
}

on_both_backends!(
    runs_the_command_once_approved_with_the_grant,
    does_not_run_the_command_when_denied,
    does_not_run_the_command_when_the_request_expires,
    ctrl_c_while_waiting_cancels_the_request,
    timing_out_exits_13_and_withdraws_the_request,
    auto_approved_actions_run_at_once,
);

/// Waiting on Redis (`GREENLIGHT_CLIENT_REDIS_URL`), gate sees a decision made through
/// another replica, and ignores "approvals" published on the channel by someone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_on_redis_runs_only_after_a_real_approval() {
    // Replicas share one grant key, as in production.
    let options = AppOptions {
        grant_signing_key: Some(generate_signing_key().unwrap().expose_secret().to_owned()),
        ..Default::default()
    };
    let app = spawn_app_with(Backend::redis(), options).await;
    let replica = app.replica(&app.prefix).await;
    let gate = gate(&app, "deploy.prod", &[], true).await;
    let id = gate.id.clone();

    let pending = app.get("app", &id).await.body;
    // A grant the server really signed, for another action; and no grant worth the name.
    let other = grant_of_another_action(&app).await;
    publish_decision(&app, &id, &forged_approval(&pending, &other));
    publish_decision(
        &app,
        &id,
        &forged_approval(&pending, "eyJhbGciOiJub25lIn0.e30."),
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!gate.out.exists(), "a forged approval ran the command");

    assert_eq!(replica.decide(&id, "approved").await.status, 200);
    let ran = gate.finish().await;
    assert_eq!(ran.code, 7, "{}", ran.stderr);
    let (grant, action_id) = ran.command.expect("the command ran");
    assert_eq!(action_id, id);
    assert_ne!(grant, other);
}

/// Waiting by long-poll on a Redis backend, the server relays whatever is published on
/// the channel; gate still runs nothing on a forged approval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_approval_relayed_by_long_poll_runs_nothing() {
    let app = spawn_app(Backend::redis()).await;
    let gate = gate(&app, "deploy.prod", &[], false).await;
    let id = gate.id.clone();
    let pending = app.get("app", &id).await.body;
    let other = grant_of_another_action(&app).await;
    publish_decision(&app, &id, &forged_approval(&pending, &other));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!gate.out.exists(), "a forged approval ran the command");
    assert_eq!(app.decide(&id, "denied").await.status, 200);
    let ran = gate.finish().await;
    assert_eq!(ran.code, 10, "{}", ran.stderr);
    assert!(ran.command.is_none());
}

/// A CI runner cancelling the job sends SIGTERM to gate: once the command runs, gate
/// passes it on and exits as the command does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_reaches_the_running_command() {
    let app = spawn_app(Backend::Memory).await;
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let script = r#"trap 'exit 42' TERM; touch "$1"; while true; do sleep 0.1; done"#;
    let mut child = greenlight(&app, "app")
        .args([
            "gate",
            "--requester",
            "u-123",
            "--email",
            "alice@example.com",
            "--action",
            "read.logs",
        ])
        .args([
            "--resource",
            "svc/payments",
            "--",
            "sh",
            "-c",
            script,
            "gated",
        ])
        .arg(&started)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if started.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(started.exists(), "the auto-approved command did not start");
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("gate exited after SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(42));
}

//! `greenlight request`, with and without `--wait`: its exit code tells the outcome.

use super::*;

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

on_both_backends!(
    request_wait_exits_0_once_an_admin_approves,
    request_wait_exits_10_once_an_admin_denies,
    request_wait_exits_11_when_the_action_expires,
    request_wait_exits_13_when_its_timeout_passes,
    request_wait_exits_12_when_the_action_is_cancelled,
    request_json_prints_the_action_object,
    auto_decided_requests_exit_at_once,
);

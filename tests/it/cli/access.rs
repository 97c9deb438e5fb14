//! `greenlight access request|list|revoke`: an access window asked for, waited on and
//! handed over from a shell (`eval` of `--export`), listed while in force, and revoked.

use super::*;
use crate::common::cli::BIN;
use crate::common::{AppOptions, Resp, spawn_app_with};
use serde_json::json;
use tokio::io::AsyncReadExt;

/// The test policy with rules that allow windows: `db.*` on prod for at most an hour,
/// approved by people; `logs.*` for at most ten minutes, approved at once. The default
/// rule allows none.
fn policy() -> String {
    POLICY.replacen(
        "[[rule]]",
        r#"[[rule]]
name = "db-access"
match = { action = "db.*", resource = "postgres://prod/*" }
decision = "require"
max_window = "1h"

[[rule]]
name = "log-access"
match = { action = "logs.*" }
decision = "approve"
max_window = "10m"

[[rule]]"#,
        1,
    )
}

async fn spawn(backend: Backend) -> TestApp {
    spawn_app_with(
        backend,
        AppOptions {
            policy: policy(),
            ..Default::default()
        },
    )
    .await
}

const REQUESTER: [&str; 4] = ["--requester", "u-123", "--email", "alice@example.com"];

/// `greenlight access request` for `db.*` on `postgres://prod/*`, as client `app`, with
/// `extra` options.
fn access_request(app: &TestApp, extra: &[&str]) -> Command {
    let mut cmd = greenlight(app, "app");
    cmd.args(["access", "request", "--action", "db.*"])
        .args(["--resource", "postgres://prod/*", "--reason", "INC-42"])
        .args(REQUESTER)
        .args(extra);
    cmd
}

/// A command running in the background, once it has named the action it created.
struct Background {
    child: Child,
    id: String,
    stderr: tokio::task::JoinHandle<String>,
}

/// Starts `cmd` and reads its standard error up to the first action id.
async fn start(mut cmd: Command) -> Background {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the greenlight binary runs");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let id = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push_str(&line);
            seen.push('\n');
            if let Some(id) = line.split_whitespace().find(|w| w.starts_with("act_")) {
                return id.trim_end_matches([';', ',']).to_owned();
            }
        }
        panic!("exited before naming its action: {seen}")
    })
    .await
    .expect("an action id on standard error within 10 s");
    let stderr = tokio::spawn(async move {
        let mut rest = seen;
        while let Ok(Some(line)) = lines.next_line().await {
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    });
    Background { child, id, stderr }
}

impl Background {
    async fn finish(mut self) -> Run {
        let started = Instant::now();
        let mut stdout = String::new();
        let mut out = self.child.stdout.take().unwrap();
        let status = tokio::time::timeout(Duration::from_secs(15), async {
            out.read_to_string(&mut stdout).await.unwrap();
            self.child.wait().await.unwrap()
        })
        .await
        .expect("finished within 15 s of the decision");
        Run {
            code: status.code().expect("exited, not killed"),
            stdout,
            stderr: self.stderr.await.unwrap(),
            took: started.elapsed(),
        }
    }
}

/// One use of a window's grant by the audience `client`, for `db.select` on
/// `postgres://prod/users`.
async fn use_grant(app: &TestApp, client: &str, token: &str) -> Resp {
    let body = json!({"token": token, "action": "db.select",
        "resource": "postgres://prod/users", "use": true});
    app.send_as(client, "POST", "/v1/grants/verify", &body)
        .await
}

async fn a_window_asked_waited_for_listed_and_revoked_from_the_shell(backend: Backend) {
    let app = spawn(backend).await;
    let mut cmd = access_request(
        &app,
        &["--for", "30m", "--audience", "other", "--wait", "--export"],
    );
    // On Redis the CLI waits there, as a user would set it up.
    if let Some(redis) = app.backend.redis_server() {
        cmd.env("GREENLIGHT_CLIENT_REDIS_URL", redis.url())
            .env("GREENLIGHT_REDIS_PREFIX", &app.prefix);
    }
    let waiting = start(cmd).await;
    let id = waiting.id.clone();
    // Pending meanwhile, as asked: a 30-minute window for the proxy `other`.
    let pending = app.get("app", &id).await.body;
    assert_eq!(pending["status"], "pending", "{pending}");
    assert_eq!(pending["window"]["seconds"], 1800);
    assert_eq!(pending["window"]["audience"], "other");
    assert_eq!(pending["reason"], "INC-42");

    let decide = run(
        greenlight(&app, "admin"),
        &["decide", &id, "--approve", "--by", "dba@example.com"],
    )
    .await;
    assert_eq!(decide.code, 0, "{decide:?}");

    // Standard output holds the one line `eval` runs; the rest went to standard error.
    let done = waiting.finish().await;
    assert_eq!(done.code, 0, "{done:?}");
    let token = done
        .stdout
        .strip_prefix("export GREENLIGHT_GRANT=")
        .and_then(|t| t.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("not one export line: {done:?}"));
    assert!(!token.contains(['\n', ' ', '\'']), "{done:?}");
    assert!(done.stderr.contains("approved"), "{done:?}");
    assert!(done.stderr.contains("access for 30m to other"), "{done:?}");

    // The audience uses it within the scope.
    let r = use_grant(&app, "other", token).await;
    assert_eq!(r.body["valid"], true, "{}", r.body);
    assert_eq!(r.body["uses"], 1);
    assert_eq!(r.body["claims"]["aid"], id.as_str());

    // Listed while in force, with its requester, end and uses.
    let list = run(greenlight(&app, "app"), &["access", "list"]).await;
    assert_eq!(list.code, 0, "{list:?}");
    let header = list.stdout.lines().next().unwrap_or_default();
    for column in ["ID", "ACTION", "RESOURCE", "REQUESTER", "ENDS AT", "USES"] {
        assert!(header.contains(column), "{list:?}");
    }
    let row = list
        .stdout
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} not listed: {list:?}"));
    let ends_at = app.get("app", &id).await.body["window"]["ends_at"].clone();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells,
        [
            id.as_str(),
            "db.*",
            "postgres://prod/*",
            "u-123",
            ends_at.as_str().unwrap(),
            "1"
        ],
        "{list:?}"
    );
    let json = run(greenlight(&app, "admin"), &["access", "list", "--json"]).await;
    assert_eq!(json.code, 0, "{json:?}");
    let listed: Vec<Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 1, "{json:?}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["window"]["uses"], 1);

    // Only its requesting client (or an admin) may end it, not the audience.
    let refused = run(greenlight(&app, "other"), &["access", "revoke", &id]).await;
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("forbidden"), "{refused:?}");
    let r = use_grant(&app, "other", token).await;
    assert_eq!(r.body["valid"], true, "{}", r.body);
    assert_eq!(r.body["uses"], 2);

    // The requesting client revokes it: how it ended, and the uses.
    let revoke = run(
        greenlight(&app, "app"),
        &["access", "revoke", &id, "--reason", "fixed"],
    )
    .await;
    assert_eq!(revoke.code, 0, "{revoke:?}");
    assert!(
        revoke
            .stdout
            .contains(&format!("{id} revoked: access to db.* on postgres://prod/* for u-123 ended (revoked) after 2 uses")),
        "{revoke:?}"
    );

    // Over at once: not listed any more, and the next use is refused.
    let list = run(greenlight(&app, "app"), &["access", "list"]).await;
    assert_eq!(list.code, 0, "{list:?}");
    assert_eq!(list.stdout, "", "{list:?}");
    assert!(
        list.stderr.contains("no access windows in force"),
        "{list:?}"
    );
    let r = use_grant(&app, "other", token).await;
    assert_eq!(r.body, json!({"valid": false, "reason": "revoked"}));
}

async fn eval_of_an_export_sets_the_grant_in_the_shell(backend: Backend) {
    let app = spawn(backend).await;
    // The rule approves `logs.*` windows at once: no --wait needed, nothing to wait for.
    let mut shell = Command::new("sh");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("GREENLIGHT_") {
            shell.env_remove(k);
        }
    }
    shell
        .env("GREENLIGHT_URL", &app.base)
        .env("GREENLIGHT_CLIENT_ID", "app")
        .env("GREENLIGHT_CLIENT_SECRET", &app.secrets["app"])
        .env("GREENLIGHT_REQUESTER", "u-123")
        .args([
            "-c",
            r#"eval "$("$0" access request --action 'logs.*' --resource 'svc/*' --for 5m --export)" \
                && printf '%s' "$GREENLIGHT_GRANT""#,
            BIN,
        ])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let r = run(shell, &[]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let token = r.stdout.as_str();
    assert_eq!(token.split('.').count(), 3, "not a grant: {r:?}");
    // The grant is the window's: the creating client is its audience by default.
    let r = app
        .send_as(
            "app",
            "POST",
            "/v1/grants/verify",
            &json!({"token": token, "action": "logs.read", "resource": "svc/payments",
                "use": true}),
        )
        .await;
    assert_eq!(r.body["valid"], true, "{}", r.body);
    assert_eq!(r.body["claims"]["win"], 300);
}

async fn access_request_exits_by_the_outcome(backend: Backend) {
    let app = spawn(backend).await;

    // Without --wait a pending window exits 13 and says what it asked for.
    let r = run(access_request(&app, &["--for", "1h"]), &[]).await;
    assert_eq!(r.code, 13, "{r:?}");
    assert!(r.stdout.starts_with("act_"), "{r:?}");
    assert!(
        r.stdout.contains(" pending db.* on postgres://prod/*"),
        "{r:?}"
    );
    assert!(
        r.stdout.contains("access for 1h to app, from its approval"),
        "{r:?}"
    );

    // A rule without max_window refuses the window: exit 1 with the server's reason.
    let mut cmd = greenlight(&app, "app");
    cmd.args(["access", "request", "--action", "deploy.*"])
        .args(["--resource", "svc/*", "--for", "1h"])
        .args(REQUESTER);
    let r = run(cmd, &[]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.stdout, "", "{r:?}");
    assert!(r.stderr.contains("window_not_allowed"), "{r:?}");
    assert!(
        r.stderr
            .contains("rule `default` allows no access windows (it has no max_window)"),
        "{r:?}"
    );

    // Denied while waiting: exit 10, and nothing for `eval`.
    let waiting = start(access_request(&app, &["--for", "1h", "--wait", "--export"])).await;
    let r = app.decide(&waiting.id, "denied").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let done = waiting.finish().await;
    assert_eq!(done.code, 10, "{done:?}");
    assert_eq!(done.stdout, "", "{done:?}");
    assert!(done.stderr.contains("not approved"), "{done:?}");

    // A window's length is checked before anything is asked: a usage error.
    let r = run(access_request(&app, &["--for", "30s"]), &[]).await;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("1m to 24h"), "{r:?}");
}

on_both_backends!(
    a_window_asked_waited_for_listed_and_revoked_from_the_shell,
    eval_of_an_export_sets_the_grant_in_the_shell,
    access_request_exits_by_the_outcome,
);

//! The real `greenlight pg-proxy` binary, as an operator runs it: a rules file with a
//! mistake stops it at start with the file and line, and `psql` through it shows the
//! notice while held, the approved statement's result, and a denial as an error.

use super::*;
use std::process::Stdio;

struct PgProxyProcess {
    port: u16,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

fn command(
    app: &TestApp,
    rules: &str,
    dir: &tempfile::TempDir,
    port: u16,
) -> tokio::process::Command {
    let file = dir.path().join("rules.toml");
    std::fs::write(&file, rules).unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_greenlight"));
    cmd.arg("pg-proxy")
        .env(
            "GREENLIGHT_PG_UPSTREAM",
            format!("127.0.0.1:{}", PostgresServer::get().port),
        )
        .env("GREENLIGHT_PG_RULES", &file)
        .env("GREENLIGHT_PG_LISTEN", format!("127.0.0.1:{port}"))
        .env("GREENLIGHT_URL", &app.base)
        .env("GREENLIGHT_CLIENT_ID", "app")
        .env("GREENLIGHT_CLIENT_SECRET", &app.secrets["app"])
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    cmd
}

async fn pg_proxy_process(app: &TestApp) -> PgProxyProcess {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::common::free_port();
    let child = command(app, RULES, &dir, port).spawn().unwrap();
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return PgProxyProcess {
                port,
                _child: child,
                _dir: dir,
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("greenlight pg-proxy did not start");
}

/// `psql -c …` through the proxy as alice: its exit status, stdout and stderr.
async fn psql(port: u16, database: &str, sql: &str) -> (bool, String, String) {
    let out = tokio::process::Command::new("psql")
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-U",
            "alice",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .args(["-p", &port.to_string(), "-d", database, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("psql is installed with PostgreSQL");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistake_in_the_rules_file_stops_it_at_start_with_its_line() {
    let app = spawn_app(Backend::Memory).await;
    let dir = tempfile::tempdir().unwrap();
    let rules = "[[statement]]\nname = \"w\"\nsql = \"writes\"\naction = \"pg.{sql.knd}\"\nresource = \"r\"\n";
    let out = command(&app, rules, &dir, crate::common::free_port())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rules.toml:4: statement `w`, action"),
        "{stderr}"
    );
    assert!(stderr.contains("sql.knd"), "{stderr}");
}

async fn psql_through_the_binary_sees_approvals_and_denials(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = setup(&app).await;
    let proxy = pg_proxy_process(&app).await;
    let (ok, out, err) = psql(proxy.port, &s.database, "SELECT count(*) FROM users").await;
    assert!(ok, "{err}");
    assert!(out.contains('3'), "{out}");

    let db = s.database.clone();
    let held =
        tokio::spawn(async move { psql(proxy.port, &db, "DELETE FROM users WHERE id = 1").await });
    let action = pending_action(&app).await;
    assert_eq!(
        app.decide(action["id"].as_str().unwrap(), "approved")
            .await
            .status,
        200
    );
    let (ok, out, err) = held.await.unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("DELETE 1"), "{out}");
    assert!(
        err.contains("NOTICE:  waiting for approval of DELETE on users: act_"),
        "{err}"
    );

    let db = s.database.clone();
    let held = tokio::spawn(async move { psql(proxy.port, &db, "TRUNCATE users").await });
    let action = pending_action(&app).await;
    assert_eq!(
        app.decide(action["id"].as_str().unwrap(), "denied")
            .await
            .status,
        200
    );
    let (ok, _, err) = held.await.unwrap();
    assert!(!ok);
    assert!(
        err.contains("ERROR:  permission denied: TRUNCATE on users was denied by ops-lead@example.com: break-glass test"),
        "{err}"
    );
    assert_eq!(names(&s.direct).await, ["grace", "edsger"]);
}

/// `[audit] statements = "all"`: every statement that passed is in the proxy's log, as
/// JSON; `SET greenlight.grant` from `psql` is answered by the proxy, and the grant it
/// carries shows nowhere in the log.
async fn with_audit_all_passed_statements_are_in_the_log(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = setup(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let port = crate::common::free_port();
    let rules = format!("{RULES}\n[audit]\nstatements = \"all\"\n");
    let mut child = command(&app, &rules, &dir, port)
        .env("RUST_LOG", "info")
        .env("GREENLIGHT_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut started = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(started, "greenlight pg-proxy did not start");
    let (ok, out, err) = psql(port, &s.database, "SELECT name FROM users WHERE id = 1").await;
    assert!(ok, "{err}");
    assert!(out.contains("ada"), "{out}");
    let (ok, out, err) = psql(port, &s.database, "SET greenlight.grant = 'not-a-grant-x1'").await;
    assert!(ok, "{err}");
    assert!(out.contains("SET"), "{out}");

    child.start_kill().unwrap();
    let output = child.wait_with_output().await.unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let passed: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "statement passed")
        .collect();
    assert!(
        passed
            .iter()
            .any(|l| l["sql"] == "SELECT name FROM users WHERE id = 1" && l["user"] == "alice"),
        "{log}"
    );
    assert!(!log.contains("not-a-grant-x1"), "{log}");
}

on_both_backends!(
    psql_through_the_binary_sees_approvals_and_denials,
    with_audit_all_passed_statements_are_in_the_log,
);

//! `greenlight pg-proxy` between real PostgreSQL clients (`tokio-postgres`, `psql`) and a
//! real PostgreSQL, with a real Greenlight: reads pass, held statements run only once
//! approved, a denial is an ordinary PostgreSQL error on a session that goes on, and what
//! the proxy cannot read never reaches the database.

/// The real binary, as an operator runs it: its rules file checked, `psql` through it.
mod binary;
/// SCRAM, cancel requests, large results; a client leaving while held.
mod passthrough;
/// Access windows: `SET greenlight.grant` in a session.
mod window;
/// The wire itself: malformed frames, the extended protocol, transactions.
mod wire;

use crate::common::postgres::{PostgresServer, connect};
use crate::common::{Backend, TestApp, spawn_app};
use futures::StreamExt;
use greenlight::client::Client;
use greenlight::pgproxy::{PgConfig, PgProxy};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

const RULES: &str = r#"
[proxy]
hold_timeout = "20s"

[requester]
map = { alice = { email = "alice@example.com" } }

[[statement]]
name = "ddl"
sql = "ddl"
action = "pg.{sql.kind}"
resource = "postgres://{database}"

[[statement]]
name = "writes"
sql = "writes"
tables = ["public.*"]
action = "pg.{sql.kind}"
resource = "postgres://{database}/{sql.tables}"
"#;

/// A database of its own with `users` (ids 1 to 3), and the proxy in front of it.
struct Setup {
    /// Connection string through the proxy, as `alice`.
    via_proxy: String,
    /// Connection string straight to the database.
    direct: String,
    proxy_port: u16,
    database: String,
    _stop: tokio_util::sync::DropGuard,
}

async fn setup(app: &TestApp) -> Setup {
    setup_with(app, RULES).await
}

async fn setup_with(app: &TestApp, rules: &str) -> Setup {
    let pg = PostgresServer::get();
    let database = pg.database().await;
    let direct = pg.url("postgres", &database);
    connect(&direct)
        .await
        .batch_execute(
            "CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL);
             INSERT INTO users VALUES (1, 'ada'), (2, 'grace'), (3, 'edsger');",
        )
        .await
        .unwrap();
    let config = PgConfig::parse(rules).unwrap();
    let client = Client::new(&app.base, "app", app.secret("app"));
    let proxy = PgProxy::new(config, client, format!("127.0.0.1:{}", pg.port));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move { proxy.serve(listener, token).await.unwrap() });
    Setup {
        via_proxy: format!("host=127.0.0.1 port={proxy_port} user=alice dbname={database}"),
        direct,
        proxy_port,
        database,
        _stop: stop.drop_guard(),
    }
}

/// A client through the proxy, and the notices it receives.
async fn client_with_notices(
    url: &str,
) -> (tokio_postgres::Client, mpsc::UnboundedReceiver<String>) {
    let (client, mut connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notice(n) = message {
                let _ = tx.send(n.message().to_owned());
            }
        }
    });
    (client, rx)
}

async fn names(direct: &str) -> Vec<String> {
    connect(direct)
        .await
        .query("SELECT name FROM users ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn pending_action(app: &TestApp) -> Value {
    for _ in 0..200 {
        if let Some(a) = app.service.pending(10).await.unwrap().first() {
            return serde_json::to_value(a).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no pending action appeared");
}

fn sqlstate(e: &tokio_postgres::Error) -> (String, String) {
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("not a database error: {e}"));
    (db.code().code().to_owned(), db.message().to_owned())
}

async fn reads_pass_and_an_approved_delete_runs_as_sent(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = setup(&app).await;
    let (client, mut notices) = client_with_notices(&s.via_proxy).await;
    let rows = client
        .simple_query("SELECT name FROM users; SHOW server_version")
        .await;
    assert!(rows.is_ok(), "{rows:?}");
    assert!(
        app.service.pending(10).await.unwrap().is_empty(),
        "a read was held"
    );

    let held = tokio::spawn(async move {
        let r = client.simple_query("DELETE FROM users WHERE id = 2").await;
        (client, r)
    });
    let action = pending_action(&app).await;
    assert_eq!(action["action"], "pg.delete");
    assert_eq!(
        action["resource"],
        format!("postgres://{}/users", s.database)
    );
    assert_eq!(action["requester"]["id"], "alice");
    assert_eq!(action["requester"]["email"], "alice@example.com");
    assert_eq!(
        action["binding"]["preview"],
        "DELETE FROM users WHERE id = 2"
    );
    assert_eq!(action["context"]["statement_rule"], "writes");
    let id = action["id"].as_str().unwrap();
    let notice = tokio::time::timeout(Duration::from_secs(5), notices.recv())
        .await
        .expect("a notice while held")
        .unwrap();
    assert_eq!(
        notice,
        format!("waiting for approval of DELETE on users: {id} in #approvals")
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(names(&s.direct).await.len(), 3, "ran before approval");

    assert_eq!(app.decide(id, "approved").await.status, 200);
    let (client, result) = held.await.unwrap();
    result.expect("the approved DELETE runs");
    assert_eq!(names(&s.direct).await, ["ada", "edsger"]);
    // The session goes on, reads still pass.
    let rows = client
        .query("SELECT count(*) FROM users", &[])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 2);
    let stored = app.get("app", id).await.body;
    assert_eq!(stored["status"], "approved");
}

async fn a_denied_statement_never_runs_and_the_session_goes_on(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = setup(&app).await;
    let client = connect(&s.via_proxy).await;
    let held = tokio::spawn(async move {
        let r = client.batch_execute("DROP TABLE users").await;
        (client, r)
    });
    let action = pending_action(&app).await;
    assert_eq!(action["action"], "pg.drop_table");
    assert_eq!(
        app.decide(action["id"].as_str().unwrap(), "denied")
            .await
            .status,
        200
    );
    let (client, result) = held.await.unwrap();
    let (code, message) = sqlstate(&result.unwrap_err());
    assert_eq!(code, "42501");
    assert!(
        message.contains("DROP TABLE on users was denied"),
        "{message}"
    );
    assert!(message.contains("ops-lead@example.com"), "{message}");
    assert!(message.contains("break-glass test"), "{message}");
    assert_eq!(names(&s.direct).await.len(), 3, "the denied DROP ran");
    let rows = client
        .query("SELECT count(*) FROM users", &[])
        .await
        .unwrap();
    assert_eq!(
        rows[0].get::<_, i64>(0),
        3,
        "the session is usable after a denial"
    );
}

/// SQL the parser cannot read is held as `unknown` (and PostgreSQL's own error comes
/// back once approved); nothing of it runs before.
async fn unparsable_sql_is_held_as_unknown(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = setup(&app).await;
    let client = connect(&s.via_proxy).await;
    let held = tokio::spawn(async move { client.batch_execute("DELETE FROM users WHERE").await });
    let action = pending_action(&app).await;
    assert_eq!(action["action"], "pg.unknown");
    assert_eq!(action["context"]["statement_rule"], "ddl");
    assert_eq!(action["binding"]["preview"], "DELETE FROM users WHERE");
    assert_eq!(
        app.decide(action["id"].as_str().unwrap(), "approved")
            .await
            .status,
        200
    );
    let (code, _) = sqlstate(&held.await.unwrap().unwrap_err());
    assert_eq!(code, "42601", "PostgreSQL's syntax error, once approved");
    assert_eq!(names(&s.direct).await.len(), 3);
}

/// Every way of hiding a write in what looks like a read, or behind a read, is held as a
/// whole message; denied, nothing of it runs.
async fn hidden_writes_are_held_whole(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = setup(&app).await;
    let client = Arc::new(connect(&s.via_proxy).await);
    for (sql, action) in [
        ("SELECT count(*) FROM users; DELETE FROM users", "pg.delete"),
        (
            "WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d",
            "pg.delete",
        ),
        ("EXPLAIN ANALYZE DELETE FROM users", "pg.delete"),
        ("/* just a read */ DELETE FROM public.users", "pg.delete"),
        ("SELECT * FROM users FOR UPDATE", "pg.select_lock"),
        ("SELECT 1; DROP TABLE users", "pg.drop_table"),
        ("DO $$ BEGIN DELETE FROM users; END $$", "pg.do"),
        ("SELECT * INTO copy_of_users FROM users", "pg.select_into"),
    ] {
        let c = client.clone();
        let held = tokio::spawn(async move { c.simple_query(sql).await });
        let pending = pending_action(&app).await;
        assert_eq!(pending["action"], action, "{sql}");
        assert_eq!(pending["binding"]["preview"], sql);
        let id = pending["id"].as_str().unwrap();
        assert_eq!(app.decide(id, "denied").await.status, 200);
        let e = held.await.unwrap().expect_err(sql);
        assert_eq!(sqlstate(&e).0, "42501", "{sql}");
        assert_eq!(names(&s.direct).await.len(), 3, "{sql} ran");
    }
    let tables = connect(&s.direct)
        .await
        .query(
            "SELECT 1 FROM pg_tables WHERE tablename = 'copy_of_users'",
            &[],
        )
        .await
        .unwrap();
    assert!(tables.is_empty());
}

/// No decision within `hold_timeout`: `57014`, nothing ran, the action stays pending for
/// approvers and the session goes on.
async fn no_decision_in_time_cancels_the_statement(backend: Backend) {
    let app = spawn_app(backend).await;
    let rules = RULES.replace("hold_timeout = \"20s\"", "hold_timeout = \"1s\"");
    let s = setup_with(&app, &rules).await;
    let client = connect(&s.via_proxy).await;
    let e = client
        .batch_execute("DELETE FROM users WHERE id = 1")
        .await
        .unwrap_err();
    let (code, message) = sqlstate(&e);
    assert_eq!(code, "57014");
    assert!(
        message.contains("no decision on DELETE on users within 1s"),
        "{message}"
    );
    assert_eq!(names(&s.direct).await.len(), 3);
    assert_eq!(app.service.pending(10).await.unwrap().len(), 1);
    client.batch_execute("SELECT 1").await.unwrap();
}

/// A database user the rules file maps to no person cannot be told apart from the
/// approvers: Greenlight refuses to ask (the policy forbids self-approval), and the
/// statement is refused without running.
async fn an_unrecognisable_requester_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = setup(&app).await;
    let as_bob = s.via_proxy.replace("user=alice", "user=bob");
    let client = connect(&as_bob).await;
    let e = client.batch_execute("DELETE FROM users").await.unwrap_err();
    let (code, message) = sqlstate(&e);
    assert_eq!(code, "42501");
    assert!(
        message.contains("Greenlight refused to ask about DELETE on users"),
        "{message}"
    );
    assert!(app.service.pending(10).await.unwrap().is_empty());
    assert_eq!(names(&s.direct).await.len(), 3);
}

on_both_backends!(
    an_unrecognisable_requester_is_refused,
    no_decision_in_time_cancels_the_statement,
    hidden_writes_are_held_whole,
    reads_pass_and_an_approved_delete_runs_as_sent,
    a_denied_statement_never_runs_and_the_session_goes_on,
    unparsable_sql_is_held_as_unknown,
);

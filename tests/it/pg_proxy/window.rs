//! Access windows through the PostgreSQL proxy: a session that runs
//! `SET greenlight.grant = '<window grant>'` has its statements within the window pass with
//! no new approval (nothing asked, nothing posted to Slack), each use counted and audited;
//! the setting itself never reaches the database; another requester's session with the
//! same grant, a revoked window, or a reset grant are held as before.

use super::*;
use crate::common::POLICY;
use crate::common::slack::FakeSlack;
use crate::proxy::window::{approved_window, slack_posted, uses_audited};
use serde_json::json;

/// The pg-proxy rules, with bob mapped to a person too (so he can be asked about).
fn rules() -> String {
    RULES.replace(
        "map = { alice = { email = \"alice@example.com\" } }",
        "map = { alice = { email = \"alice@example.com\" }, bob = { email = \"bob@example.com\" } }",
    )
}

/// Greenlight with Slack (the fake's), under a policy whose `pg.*` rule allows windows.
async fn spawn_with_windows(backend: Backend) -> (TestApp, FakeSlack) {
    let policy = POLICY.replacen(
        "[[rule]]",
        "[[rule]]\nname = \"database-access\"\nmatch = { action = \"pg.*\" }\n\
         decision = \"require\"\nmax_window = \"1h\"\n\n[[rule]]",
        1,
    );
    crate::common::spawn_with_slack(backend, policy).await
}

/// What the database itself holds for `greenlight.grant` on the session's own connection:
/// empty unless a `SET` of it reached the database.
async fn database_setting(client: &tokio_postgres::Client) -> String {
    client
        .query_one(
            "SELECT coalesce(current_setting('greenlight.grant', true), '')",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// `sql` on `client` is held: a new action for `requester` appears; denied, it fails
/// with `42501` and nothing of it runs.
async fn held(app: &TestApp, client: &Arc<tokio_postgres::Client>, sql: &'static str, who: &str) {
    let c = client.clone();
    let answer = tokio::spawn(async move { c.batch_execute(sql).await });
    let action = pending_action(app).await;
    assert_eq!(action["requester"]["id"], who, "{sql}");
    assert_eq!(action["action"], "pg.delete");
    let id = action["id"].as_str().unwrap();
    assert_eq!(app.decide(id, "denied").await.status, 200);
    let e = answer.await.unwrap().expect_err(sql);
    assert_eq!(sqlstate(&e).0, "42501", "{sql}");
}

async fn a_window_grant_set_in_the_session_passes_statements_without_a_new_approval(
    backend: Backend,
) {
    let (app, slack) = spawn_with_windows(backend).await;
    let s = setup_with(&app, &rules()).await;
    let resource = format!("postgres://{}/*", s.database);
    // The proxy signs as `app`: the window is for it.
    let (id, token) = approved_window(&app, "pg.*", &resource, "alice", "app").await;

    let client = Arc::new(connect(&s.via_proxy).await);
    client
        .batch_execute(&format!("SET greenlight.grant = '{token}'"))
        .await
        .expect("the proxy answers the SET itself");
    // Never forwarded: the database session has no such setting.
    assert_eq!(database_setting(&client).await, "");

    // A DELETE by the simple protocol and one by the extended protocol: both run at once.
    client
        .batch_execute("DELETE FROM users WHERE id = 2")
        .await
        .expect("passed on the window");
    let deleted = client
        .execute("DELETE FROM users WHERE id = $1", &[&3i32])
        .await
        .expect("passed on the window");
    assert_eq!(deleted, 1);
    assert_eq!(names(&s.direct).await, ["ada"]);
    // Nobody was asked: no action, no Slack message about the statements.
    assert!(app.service.pending(10).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !slack_posted(&slack, "pg.delete"),
        "{:#?}",
        slack.calls_to("chat.postMessage")
    );
    // Each statement is one use, counted and audited with what was let through.
    assert_eq!(app.get("other", &id).await.body["window"]["uses"], 2);
    let uses = uses_audited(&app, &id).await;
    assert_eq!(uses.len(), 2, "{uses:#?}");
    assert_eq!(
        uses[0]["details"],
        json!({"requester": "alice", "action": "pg.delete",
            "resource": format!("postgres://{}/users", s.database), "uses": 1})
    );

    // Bob's session offering Alice's grant is held, and asked about for Bob.
    let as_bob = s.via_proxy.replace("user=alice", "user=bob");
    let bob = Arc::new(connect(&as_bob).await);
    bob.batch_execute(&format!("SET SESSION greenlight.\"grant\" TO '{token}'"))
        .await
        .unwrap();
    held(&app, &bob, "DELETE FROM users WHERE id = 1", "bob").await;

    // Reset, Alice's session is held again; set again, it passes again.
    client
        .batch_execute("RESET greenlight.grant")
        .await
        .unwrap();
    held(&app, &client, "DELETE FROM users WHERE id = 1", "alice").await;
    client
        .batch_execute(&format!("SET \"greenlight.grant\" = '{token}'"))
        .await
        .unwrap();
    client
        .batch_execute("INSERT INTO users VALUES (4, 'barbara')")
        .await
        .expect("passed on the window");

    // Revoked: the very next statement is held.
    let r = app
        .send_as(
            "admin",
            "POST",
            &format!("/v1/actions/{id}/revoke"),
            &Value::Null,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    held(&app, &client, "DELETE FROM users WHERE id = 1", "alice").await;
    assert_eq!(names(&s.direct).await, ["ada", "barbara"]);
    assert_eq!(app.get("other", &id).await.body["window"]["uses"], 3);
    assert_eq!(database_setting(&client).await, "");
}

/// The setting is the proxy's alone: sent with other statements, or inside a failed
/// transaction block, it is refused and nothing of the message runs; inside a healthy
/// block it is answered with the block still open.
async fn the_grant_setting_is_refused_with_other_statements_and_in_a_failed_block(
    backend: Backend,
) {
    let (app, _slack) = spawn_with_windows(backend).await;
    let s = setup_with(&app, &rules()).await;
    let resource = format!("postgres://{}/*", s.database);
    let (_, token) = approved_window(&app, "pg.*", &resource, "alice", "app").await;
    let client = Arc::new(connect(&s.via_proxy).await);

    let mixed = format!("SET greenlight.grant = '{token}'; DELETE FROM users");
    let e = client.batch_execute(&mixed).await.unwrap_err();
    let (code, message) = sqlstate(&e);
    assert_eq!(code, "0A000");
    assert!(message.contains("must be sent alone"), "{message}");
    assert_eq!(names(&s.direct).await.len(), 3);
    assert!(app.service.pending(10).await.unwrap().is_empty());
    // As a prepared statement (the extended protocol): refused, never forwarded.
    let e = client
        .execute(&format!("SET greenlight.\"grant\" = '{token}'"), &[])
        .await
        .unwrap_err();
    let (code, message) = sqlstate(&e);
    assert_eq!(code, "0A000");
    assert!(message.contains("simple query"), "{message}");
    assert_eq!(database_setting(&client).await, "");
    // Refused, it set nothing: a DELETE is still held.
    held(&app, &client, "DELETE FROM users WHERE id = 1", "alice").await;

    // Inside a block the database failed, as PostgreSQL refuses any SET there.
    client.batch_execute("BEGIN").await.unwrap();
    let e = client.batch_execute("SELECT 1/0").await.unwrap_err();
    assert_eq!(sqlstate(&e).0, "22012");
    let e = client
        .batch_execute(&format!("SET greenlight.grant = '{token}'"))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).0, "25P02");
    client.batch_execute("ROLLBACK").await.unwrap();
    held(&app, &client, "DELETE FROM users WHERE id = 1", "alice").await;

    // Inside a healthy block: set, the block goes on, and its DELETE passes.
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute(&format!("SET greenlight.grant = '{token}'"))
        .await
        .unwrap();
    client
        .batch_execute("DELETE FROM users WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(names(&s.direct).await.len(), 3, "committed before COMMIT");
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(names(&s.direct).await, ["grace", "edsger"]);
}

on_both_backends!(
    a_window_grant_set_in_the_session_passes_statements_without_a_new_approval,
    the_grant_setting_is_refused_with_other_statements_and_in_a_failed_block,
);

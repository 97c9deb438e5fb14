//! Access windows: an action approved for a length of time, whose grant covers a scope
//! (patterns ending in `*`), is used many times by its audience (each use counted and
//! audited), and ends when revoked or when its time is up; `GET /v1/access` lists those
//! in force.

use crate::audit::entries_until;
use crate::common::slack::{block_action, interaction_body, signed_slack_headers};
use crate::common::{
    AppOptions, Backend, POLICY, Resp, SLACK_SIGNING_SECRET, TestApp, request, spawn_app_with,
    spawn_with_slack,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use greenlight::grants::generate_signing_key;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use std::time::Duration;

/// The test policy with rules that allow windows: `db.*` on prod for at most an hour
/// (approved by people), `logs.*` for at most two seconds (approved at once).
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
max_window = "2s"

[[rule]]"#,
        1,
    )
}

pub(crate) async fn spawn(backend: Backend) -> TestApp {
    spawn_app_with(
        backend,
        AppOptions {
            policy: policy(),
            ..Default::default()
        },
    )
    .await
}

/// A window request as the `app` client sends it.
fn window(action: &str, resource: &str, seconds: u64) -> Value {
    let mut body = request(action, resource);
    body["window_seconds"] = seconds.into();
    body
}

async fn verify(app: &TestApp, client: &str, body: Value) -> Resp {
    app.send_as(client, "POST", "/v1/grants/verify", &body)
        .await
}

/// One use of `token` by `client` for `action` on `resource`.
pub(crate) async fn use_grant(
    app: &TestApp,
    client: &str,
    token: &str,
    action: &str,
    resource: &str,
) -> Resp {
    verify(
        app,
        client,
        json!({"token": token, "action": action, "resource": resource, "use": true}),
    )
    .await
}

pub(crate) fn token(action: &Value) -> String {
    action["decision"]["grant"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no grant in {action}"))
        .to_owned()
}

fn claims(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// A `db.*` window on `postgres://prod/*` for `audience`, approved by break-glass, as
/// its creator reads it.
pub(crate) async fn approved_window(app: &TestApp, audience: &str) -> Value {
    let mut body = window("db.*", "postgres://prod/*", 1800);
    body["audience"] = audience.into();
    let r = app.create(&body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let r = app.decide(&id, "approved").await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.get("app", &id).await.body
}

async fn window_requests_follow_the_rule(backend: Backend) {
    let app = spawn(backend).await;

    // Capped to the rule's max_window, shown as the effective length; not started.
    let r = app.create(&window("db.*", "postgres://prod/*", 7200)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["status"], "pending");
    assert_eq!(r.body["policy"]["rule"], "db-access");
    assert_eq!(
        r.body["window"],
        json!({"seconds": 3600, "audience": "app", "starts_at": null, "ends_at": null,
            "uses": 0, "ended": null})
    );

    // A rule without max_window refuses windows.
    let r = app.create(&window("deploy.*", "svc/*", 600)).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.error_code(), "window_not_allowed");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("default")
    );

    // Without a window a `*` stays refused; a window has a length in range, a `*` only
    // at the end, and an audience that is a client of the policy.
    for (body, field) in [
        (request("db.*", "postgres://prod/users"), "action"),
        (window("db.*", "postgres://prod/*", 59), "window_seconds"),
        (
            window("db.*", "postgres://prod/*", 86_401),
            "window_seconds",
        ),
        (window("db.*x", "postgres://prod/*", 600), "action"),
        (window("db.*", "postgres://*/users", 600), "resource"),
        (
            {
                let mut b = window("db.*", "postgres://prod/*", 600);
                b["audience"] = "nobody".into();
                b
            },
            "audience",
        ),
        (
            {
                let mut b = request("db.select", "postgres://prod/users");
                b["audience"] = "other".into();
                b
            },
            "audience",
        ),
    ] {
        let r = app.create(&body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.error_code(), "invalid_request");
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{field}: {message}");
    }

    // A window without `*` is scoped to exactly its action and resource.
    let r = app
        .create(&window("db.select", "postgres://prod/users", 600))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["window"]["seconds"], 600);
}

async fn an_approved_window_is_used_within_its_scope(backend: Backend) {
    let app = spawn(backend).await;
    let action = approved_window(&app, "other").await;
    let id = action["id"].as_str().unwrap();
    let token = token(&action);

    // The window starts at the decision; the grant lasts as long, answers to the
    // audience and carries the patterns.
    let w = &action["window"];
    assert_eq!(w["seconds"], 1800);
    assert_eq!(w["starts_at"], action["decision"]["decided_at"]);
    assert_eq!(w["ends_at"], action["decision"]["grant"]["expires_at"]);
    assert_eq!(w["uses"], 0);
    assert_eq!(w["ended"], Value::Null);
    let c = claims(&token);
    assert_eq!(c["aud"], "other");
    assert_eq!(c["act"], "db.*");
    assert_eq!(c["res"], "postgres://prod/*");
    assert_eq!(c["win"], 1800);
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        1800
    );

    // Three uses in scope, by the audience.
    for (n, (act, res)) in [
        ("db.select", "postgres://prod/users"),
        ("db.update", "postgres://prod/orders"),
        ("db.select", "postgres://prod/users"),
    ]
    .into_iter()
    .enumerate()
    {
        let r = use_grant(&app, "other", &token, act, res).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["valid"], true, "{}", r.body);
        assert_eq!(r.body["uses"], n as u64 + 1);
        assert_eq!(r.body["claims"]["aid"], id);
    }
    // Out of scope, or not the audience: refused, and not counted.
    for (act, res) in [
        ("db.select", "postgres://staging/users"),
        ("deploy.prod", "postgres://prod/users"),
    ] {
        let r = use_grant(&app, "other", &token, act, res).await;
        assert_eq!(r.body, json!({"valid": false, "reason": "wrong_scope"}));
    }
    let r = use_grant(&app, "app", &token, "db.select", "postgres://prod/users").await;
    assert_eq!(r.body, json!({"valid": false, "reason": "wrong_audience"}));
    let r = use_grant(&app, "admin", &token, "db.select", "postgres://prod/users").await;
    assert_eq!(r.body, json!({"valid": false, "reason": "wrong_audience"}));

    // A use names the concrete action and resource; a window's grant is never consumed.
    let r = verify(&app, "other", json!({"token": token, "use": true})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = verify(&app, "other", json!({"token": token, "consume": true})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.error_code(), "invalid_request");
    // Verifying without use checks the scope by pattern and counts nothing.
    let r = verify(
        &app,
        "other",
        json!({"token": token, "action": "db.select", "resource": "postgres://prod/x"}),
    )
    .await;
    assert_eq!(r.body["valid"], true, "{}", r.body);
    assert!(r.body.get("uses").is_none(), "{}", r.body);

    // The action shows the uses; the trail has each one.
    let a = app.get("app", id).await.body;
    assert_eq!(a["window"]["uses"], 3);
    assert_eq!(a["window"]["ended"], Value::Null);
    let entries = entries_until(&app, id, "access_used").await;
    let uses: Vec<&Value> = entries
        .iter()
        .filter(|e| e["event"] == "access_used")
        .collect();
    assert_eq!(uses.len(), 3, "{entries:#?}");
    assert_eq!(uses[1]["actor"], "other");
    assert_eq!(
        uses[1]["details"],
        json!({"requester": "u-123", "action": "db.update",
            "resource": "postgres://prod/orders", "uses": 2})
    );

    // A single-action grant is used as before: `use` is for windows only.
    let r = app.create(&request("read.logs", "svc/payments")).await;
    let single = self::token(&r.body);
    let r = use_grant(&app, "app", &single, "read.logs", "svc/payments").await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = verify(&app, "app", json!({"token": single, "consume": true})).await;
    assert_eq!(r.body["valid"], true, "{}", r.body);
}

async fn revoking_a_window_ends_it_at_once(backend: Backend) {
    let app = spawn(backend).await;
    let action = approved_window(&app, "app").await;
    let id = action["id"].as_str().unwrap();
    let token = token(&action);
    let path = format!("/v1/actions/{id}/revoke");
    let r = use_grant(&app, "app", &token, "db.select", "postgres://prod/users").await;
    assert_eq!(r.body["uses"], 1, "{}", r.body);

    // Another requester may not end it; its creator may (as an admin may).
    let r = app.send_as("other", "POST", &path, &Value::Null).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = app.send_as("app", "POST", &path, &Value::Null).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "approved");
    assert_eq!(r.body["window"]["ended"], "revoked");
    assert_eq!(r.body["window"]["uses"], 1);

    let r = use_grant(&app, "app", &token, "db.select", "postgres://prod/users").await;
    assert_eq!(r.body, json!({"valid": false, "reason": "revoked"}));
    let entries = entries_until(&app, id, "access_ended").await;
    let ended = entries
        .iter()
        .find(|e| e["event"] == "access_ended")
        .unwrap();
    assert_eq!(ended["actor"], "app");
    assert_eq!(ended["details"], json!({"ended": "revoked", "uses": 1}));

    // Revoking again changes nothing and records nothing more.
    let r = app.send_as("admin", "POST", &path, &Value::Null).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["window"]["ended"], "revoked");
    let entries = entries_until(&app, id, "access_ended").await;
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["event"] == "access_ended")
            .count(),
        1
    );
    let r = app
        .send_as("admin", "GET", "/v1/access?active=true", &Value::Null)
        .await;
    assert_eq!(r.body, json!({"windows": []}));

    // A single-action grant still needs an admin to revoke it.
    let r = app.create(&request("read.logs", "svc/payments")).await;
    let single = r.body["id"].as_str().unwrap();
    let r = app
        .send_as(
            "app",
            "POST",
            &format!("/v1/actions/{single}/revoke"),
            &Value::Null,
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
}

async fn a_window_expires_on_time(backend: Backend) {
    let app = spawn(backend).await;
    // Auto-approved, capped to the rule's two seconds.
    let r = app.create(&window("logs.*", "svc/*", 3600)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["status"], "approved");
    assert_eq!(r.body["window"]["seconds"], 2);
    let id = r.body["id"].as_str().unwrap();
    let token = token(&r.body);
    let r = use_grant(&app, "app", &token, "logs.read", "svc/payments").await;
    assert_eq!(r.body["uses"], 1, "{}", r.body);

    // The timer records the end, with the uses.
    let entries = entries_until(&app, id, "access_ended").await;
    let ended = entries
        .iter()
        .find(|e| e["event"] == "access_ended")
        .unwrap();
    assert_eq!(ended["actor"], "timer");
    assert_eq!(ended["details"], json!({"ended": "expired", "uses": 1}));
    let r = use_grant(&app, "app", &token, "logs.read", "svc/payments").await;
    assert_eq!(r.body, json!({"valid": false, "reason": "expired"}));
    let a = app.get("app", id).await.body;
    assert_eq!(a["window"]["ended"], "expired");
    assert_eq!(a["window"]["uses"], 1);
    // Revoking it afterwards does not rewrite how it ended.
    let r = app
        .send_as(
            "admin",
            "POST",
            &format!("/v1/actions/{id}/revoke"),
            &Value::Null,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["window"]["ended"], "expired");
}

async fn access_lists_the_windows_in_force(backend: Backend) {
    let app = spawn(backend).await;
    let mine = approved_window(&app, "app").await;
    let mut body = window("db.*", "postgres://prod/*", 600);
    body["requester"]["id"] = "u-456".into();
    let r = app.send_as("other", "POST", "/v1/actions", &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let theirs = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(app.decide(&theirs, "approved").await.status, 200);
    // Neither pending windows nor plain approvals are listed.
    app.create(&window("db.*", "postgres://prod/*", 600)).await;
    app.create(&request("read.logs", "svc/payments")).await;

    let ids = |r: &Resp| -> Vec<String> {
        assert_eq!(r.status, 200, "{}", r.body);
        let mut ids: Vec<String> = r.body["windows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let list = |client: &'static str, query: &'static str| {
        let app = &app;
        async move {
            app.send_as(client, "GET", &format!("/v1/access{query}"), &Value::Null)
                .await
        }
    };
    let mine_id = mine["id"].as_str().unwrap().to_owned();
    let r = list("app", "?active=true").await;
    assert_eq!(ids(&r), vec![mine_id.clone()]);
    // Its creator gets the grant's token; nobody else does.
    assert_eq!(
        r.body["windows"][0]["decision"]["grant"]["token"],
        token(&mine)
    );
    assert_eq!(
        ids(&list("other", "?active=true").await),
        vec![theirs.clone()]
    );
    let mut both = vec![mine_id, theirs];
    both.sort();
    for client in ["admin", "auditor"] {
        let r = list(client, "?active=true").await;
        assert_eq!(ids(&r), both, "{client}");
        assert!(
            r.body["windows"][0]["decision"]["grant"]
                .get("token")
                .is_none()
        );
    }
    assert_eq!(ids(&list("auditor", "").await), both);
    assert_eq!(list("app", "?active=false").await.status, 400);
    assert_eq!(list("app", "?what=1").await.status, 400);
}

/// A window is approved in Slack like any other action; the approval starts it.
async fn a_window_is_approved_in_slack(backend: Backend) {
    let (app, slack) = spawn_with_slack(backend, policy()).await;
    let mut body = window("db.*", "postgres://prod/*", 1800);
    body["audience"] = "other".into();
    let r = app.create(&body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !slack
        .calls_to("chat.postMessage")
        .iter()
        .any(|c| c.args.to_string().contains(&id))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no approval message"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let payload = block_action(
        "U0BOB",
        "greenlight_approve",
        &id,
        "C0APPROVALS",
        "1700000000.000001",
        &slack.response_url(),
    );
    let click = interaction_body(&payload);
    let headers =
        signed_slack_headers(SLACK_SIGNING_SECRET, chrono::Utc::now().timestamp(), &click);
    let r = app
        .send_raw("POST", "/slack/interactions", click, &headers)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let action = loop {
        let a = app.get("app", &id).await.body;
        if a["status"] == "approved" {
            break a;
        }
        assert!(tokio::time::Instant::now() < deadline, "not approved: {a}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(action["decision"]["decided_by"], json!(["U0BOB"]));
    assert_eq!(
        action["window"]["starts_at"],
        action["decision"]["decided_at"]
    );
    let token = token(&action);
    assert_eq!(claims(&token)["approvers"], json!(["U0BOB"]));
    let r = use_grant(&app, "other", &token, "db.select", "postgres://prod/users").await;
    assert_eq!(r.body["uses"], 1, "{}", r.body);
}

on_both_backends!(
    a_window_is_approved_in_slack,
    window_requests_follow_the_rule,
    an_approved_window_is_used_within_its_scope,
    revoking_a_window_ends_it_at_once,
    a_window_expires_on_time,
    access_lists_the_windows_in_force,
);

/// Two replicas on one Redis: a revocation on one is seen by the other's next use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_every_replica() {
    let one = spawn_app_with(
        Backend::redis(),
        AppOptions {
            policy: policy(),
            grant_signing_key: Some(generate_signing_key().unwrap().expose_secret().to_owned()),
            ..Default::default()
        },
    )
    .await;
    let two = one.replica(&one.prefix).await;
    let action = approved_window(&one, "app").await;
    let id = action["id"].as_str().unwrap();
    let token = token(&action);
    let r = use_grant(&two, "app", &token, "db.select", "postgres://prod/users").await;
    assert_eq!(r.body["uses"], 1, "{}", r.body);
    let r = use_grant(&one, "app", &token, "db.select", "postgres://prod/users").await;
    assert_eq!(r.body["uses"], 2, "{}", r.body);

    let r = one
        .send_as(
            "admin",
            "POST",
            &format!("/v1/actions/{id}/revoke"),
            &Value::Null,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let started = tokio::time::Instant::now();
    let r = use_grant(&two, "app", &token, "db.select", "postgres://prod/users").await;
    assert_eq!(r.body, json!({"valid": false, "reason": "revoked"}));
    assert!(started.elapsed() < Duration::from_secs(1));
    let a = two.get("app", id).await.body;
    assert_eq!(a["window"]["ended"], "revoked");
    assert_eq!(a["window"]["uses"], 2);
}

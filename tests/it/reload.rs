//! `POST /v1/admin/reload`: an admin swaps in the policy file as it is now, or learns why
//! it was refused while the running policy stays; `SIGHUP` runs the same code
//! (`serve.rs`).

use crate::common::{Backend, POLICY, Resp, TestApp, request, sign_headers, spawn_app};
use greenlight::app::Application;
use greenlight::config::Settings;
use greenlight::signing::Secret;
use serde_json::{Value, json};
use std::time::Duration;

const READS_APPROVE: &str = "match = { action = \"read.*\" }\ndecision = \"approve\"";
const READS_DENY: &str = "match = { action = \"read.*\" }\ndecision = \"deny\"";

async fn reload_as(app: &TestApp, client: &str) -> Resp {
    app.send_as(client, "POST", "/v1/admin/reload", &Value::Null)
        .await
}

fn rewrite(app: &TestApp, policy: &str) {
    std::fs::write(&app.policy_file, policy).unwrap();
}

async fn status_of(app: &TestApp, action: &str) -> String {
    let r = app.create(&request(action, "svc/x")).await;
    assert!(r.status == 201, "{}", r.body);
    r.body["status"].as_str().unwrap().to_owned()
}

/// The newest `policy_reloaded` entry of the audit trail, waiting briefly for it.
async fn last_reload_entry(app: &TestApp) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = app
            .send_as("auditor", "GET", "/v1/audit?limit=1000", &Value::Null)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        if let Some(e) = r.body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|e| e["event"] == "policy_reloaded")
        {
            return e.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no policy_reloaded entry"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_file_replaces_the_running_policy_at_once() {
    let app = spawn_app(Backend::Memory).await;
    assert_eq!(status_of(&app, "read.a").await, "approved");

    rewrite(&app, &POLICY.replace(READS_APPROVE, READS_DENY));
    let r = reload_as(&app, "admin").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body,
        json!({"status": "reloaded", "rules": 5, "clients": 4})
    );
    // The very next request is decided by the new file.
    assert_eq!(status_of(&app, "read.b").await, "denied");

    let entry = last_reload_entry(&app).await;
    assert_eq!(entry["actor"], "admin", "{entry}");
    assert_eq!(entry["client"], "admin", "{entry}");
    assert_eq!(entry["details"]["rules"], 5);
    assert_eq!(
        entry["details"]["file"],
        app.policy_file.to_str().unwrap(),
        "{entry}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_is_refused_with_its_line_and_the_old_policy_stays() {
    let app = spawn_app(Backend::Memory).await;
    rewrite(
        &app,
        "[defaults]\nttl = \"15m\"\n\n[[rule]]\nname = \"x\"\nbogus = 1\n",
    );
    let r = reload_as(&app, "admin").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.error_code(), "invalid_request");
    let message = r.body["error"]["message"].as_str().unwrap();
    let located = format!("{}:6:", app.policy_file.display());
    assert!(message.contains(&located), "{message}");
    assert!(message.contains("bogus"), "{message}");
    assert_eq!(
        status_of(&app, "read.a").await,
        "approved",
        "the running policy still decides"
    );

    // A client whose secret variable is not set is refused too, naming the variable.
    let extra = "\n[[client]]\nid = \"newcomer\"\nsecret_env = \"TEST_NEWCOMER_SECRET\"\nroles = [\"requester\"]\n";
    let with_newcomer = POLICY.replacen("\n[[client]]", &format!("{extra}\n[[client]]"), 1);
    rewrite(&app, &with_newcomer.replace(READS_APPROVE, READS_DENY));
    let r = reload_as(&app, "admin").await;
    assert_eq!(r.status, 400, "{}", r.body);
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("TEST_NEWCOMER_SECRET"), "{message}");
    assert_eq!(status_of(&app, "read.c").await, "approved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_reload() {
    let app = spawn_app(Backend::Memory).await;
    rewrite(&app, &POLICY.replace(READS_APPROVE, READS_DENY));
    for client in ["app", "auditor"] {
        let r = reload_as(&app, client).await;
        assert_eq!(r.status, 403, "{client}: {}", r.body);
        assert_eq!(r.error_code(), "forbidden");
    }
    assert_eq!(status_of(&app, "read.a").await, "approved");

    // Unsigned: 401, as for every /v1 route.
    let r = app
        .send_raw("POST", "/v1/admin/reload", Vec::new(), &[])
        .await;
    assert_eq!(r.status, 401, "{}", r.body);

    // A body, if any, is an empty object.
    let headers = app.signed_headers("admin", "POST", "/v1/admin/reload", b"{\"force\":true}");
    let r = app
        .send_raw(
            "POST",
            "/v1/admin/reload",
            b"{\"force\":true}".to_vec(),
            &headers,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = app
        .send_as("admin", "POST", "/v1/admin/reload", &json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

async fn pending_actions_keep_their_rule(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = request("deploy.prod", "prod/payments");
    body["context"] = json!({"env": "prod"});
    let r = app.create(&body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let before = r.body["policy"].clone();
    assert_eq!(before["rule"], "prod");
    assert_eq!(before["min_approvals"], 2);
    let id = r.body["id"].as_str().unwrap().to_owned();

    rewrite(
        &app,
        &POLICY
            .replace("min_approvals = 2", "min_approvals = 1")
            .replace(
                "approvers = [\"U0BOB\", \"U0CAROL\"]",
                "approvers = [\"U0DAN\"]",
            ),
    );
    let r = reload_as(&app, "admin").await;
    assert_eq!(r.status, 200, "{}", r.body);

    let after = app.get("app", &id).await;
    assert_eq!(after.body["status"], "pending");
    assert_eq!(after.body["policy"], before, "the snapshot is unchanged");
    let fresh = app.create(&body).await;
    assert_eq!(fresh.body["policy"]["min_approvals"], 1);
    assert_eq!(fresh.body["policy"]["approvers"], json!(["U0DAN"]));
}

on_both_backends!(pending_actions_keep_their_rule);

/// Without `GREENLIGHT_POLICY` there is no file to read again: `409`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builtin_policy_cannot_be_reloaded() {
    let (secret, text) = Secret::generate();
    let mut settings = Settings::embedded();
    settings
        .secrets
        .insert("GREENLIGHT_CLIENT_SECRET".into(), text);
    let app = Application::build(settings).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run());

    let path = "/v1/admin/reload";
    let headers = sign_headers(
        "local",
        &secret,
        "POST",
        path,
        b"",
        chrono::Utc::now().timestamp(),
    );
    let mut req = reqwest::Client::new().post(format!("{base}{path}"));
    for (k, v) in &headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 409);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "conflict");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no policy file to reload"),
        "{body}"
    );

    shutdown.cancel();
    server.await.unwrap().unwrap();
}

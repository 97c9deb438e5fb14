//! Interoperability with the official Standard Webhooks library: a client
//! written in Python with PyPI's `standardwebhooks` can call Greenlight, and what Greenlight
//! signs (requests from its client, callbacks) verifies with that library.
//!
//! Needs `python3` with `pip install standardwebhooks`; without it these tests fail.

use crate::common::python::{python, python_verifies};
use crate::common::{Backend, TestApp, request, spawn_app};
use greenlight::signing::{self, Secret};
use serde_json::{Value, json};

/// Signs `$CONTENT` with `$SECRET` now, with a fresh message id, and prints the three
/// Standard Webhooks headers as JSON.
const SIGN: &str = r#"
import json, os, uuid
from datetime import datetime, timezone
from standardwebhooks.webhooks import Webhook

msg_id = "msg_" + uuid.uuid4().hex
now = datetime.now(tz=timezone.utc)
signature = Webhook(os.environ["SECRET"]).sign(msg_id, now, os.environ["CONTENT"])
print(json.dumps({
    "webhook-id": msg_id,
    "webhook-timestamp": str(int(now.timestamp())),
    "webhook-signature": signature,
}))
"#;

/// Headers for `content` signed by the Python library with `secret`, as client `client`.
async fn python_signed(client: &str, secret: &str, content: &str) -> Vec<(String, String)> {
    let out = python(SIGN, &[("SECRET", secret), ("CONTENT", content)]).await;
    assert!(out.ok, "signing in Python failed:\n{}", out.stderr);
    let headers: serde_json::Map<String, Value> = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("Python printed {:?}: {e}", out.stdout));
    let mut headers: Vec<(String, String)> = headers
        .into_iter()
        .map(|(k, v)| (k, v.as_str().unwrap().to_owned()))
        .collect();
    headers.push(("greenlight-client".into(), client.into()));
    headers
}

#[tokio::test]
async fn requests_signed_by_the_python_library_are_accepted() {
    let app: TestApp = spawn_app(Backend::Memory).await;
    let secret = &app.secrets["app"];

    // POST with a JSON body, non-ASCII included: the signed content is the raw body.
    let mut body = request("deploy.prod", "svc/payments");
    body["reason"] = json!("café ☕: roll out the hotfix");
    let body = serde_json::to_string(&body).unwrap();
    let headers = python_signed("app", secret, &body).await;
    let r = app
        .send_raw("POST", "/v1/actions", body.clone().into_bytes(), &headers)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["status"], "pending");
    assert_eq!(r.body["client"], "app");
    assert_eq!(r.body["reason"], "café ☕: roll out the hotfix");
    let id = r.body["id"].as_str().unwrap().to_owned();

    // GET without a body: the signed content is `GET {path}`.
    let path = format!("/v1/actions/{id}");
    let headers = python_signed("app", secret, &format!("GET {path}")).await;
    let r = app.send_raw("GET", &path, vec![], &headers).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["id"], id.as_str());
    assert_eq!(r.body["reason"], "café ☕: roll out the hotfix");

    // The same library with a secret the server does not know is refused.
    let (_, stranger) = Secret::generate();
    let headers = python_signed("app", &stranger, &body).await;
    let r = app
        .send_raw("POST", "/v1/actions", body.into_bytes(), &headers)
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.error_code(), "unauthorized");
}

#[tokio::test]
async fn our_signatures_verify_with_the_python_library() {
    let (secret, text) = Secret::generate();
    let now = chrono::Utc::now().timestamp();

    // What `Secret::sign` produces for a body (decision callbacks are signed this way, with
    // the key derived from the client secret).
    let body = r#"{"id":"act_01JD8Y3M6QW9T3V7K2X5N4B1C0","status":"approved","note":"ünïcode"}"#;
    let msg_id = "msg_2b1OIjmzCg8ZnsDGPaKSnzJ5Wfh";
    let headers = [
        ("webhook-id", msg_id.to_owned()),
        ("webhook-timestamp", now.to_string()),
        (
            "webhook-signature",
            secret.sign(msg_id, now, body.as_bytes()),
        ),
    ];
    let out = python_verifies(&text, body, &headers).await;
    assert!(out.ok, "Python rejected our signature:\n{}", out.stderr);
    assert_eq!(out.stdout.trim(), "verified");

    // Every header the client library sends for a bodiless GET.
    let path = "/v1/actions/act_01JD8Y3M6QW9T3V7K2X5N4B1C0/wait?timeout=30";
    let sent = signing::headers("app", &secret, b"", "GET", path, now);
    let out = python_verifies(&text, &format!("GET {path}"), &sent).await;
    assert!(
        out.ok,
        "Python rejected the client's headers:\n{}",
        out.stderr
    );

    // Control: the library does reject a body that changed after signing.
    let out = python_verifies(&text, &body.replace("approved", "denied"), &headers).await;
    assert!(!out.ok, "Python accepted a tampered body");
    assert!(
        out.stderr.contains("WebhookVerificationError"),
        "{}",
        out.stderr
    );
}

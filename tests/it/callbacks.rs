//! Decision callbacks: the decided action POSTed to the client's `callback_url`, signed
//! with the callback key derived from its secret, retried with the same `webhook-id` until it is taken, across restarts.

use crate::common::pagerduty::FakeWebhook;
use crate::common::python::python_verifies;
use crate::common::{Backend, TestApp, request, spawn_app};
use greenlight::signing::{KeyPurpose, derive_whsec};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

async fn create_with_callback(app: &TestApp, url: &str) -> String {
    let mut body = request("deploy.prod", "svc/payments");
    body["callback_url"] = json!(url);
    let r = app.create(&body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

async fn a_failing_receiver_gets_the_decision_once_it_recovers(backend: Backend) {
    let app = spawn_app(backend).await;
    let hook = FakeWebhook::start().await;
    hook.fail(500, 3);
    let id = create_with_callback(&app, &hook.url).await;
    assert_eq!(app.decide(&id, "approved").await.status, 200);
    let delivered = hook.wait_for(1, WAIT).await;
    let all = hook.deliveries();
    assert_eq!(all.len(), 4, "three failures, then success");
    // The same webhook-id on every attempt, so the receiver can deduplicate.
    let ids: Vec<_> = all
        .iter()
        .map(|d| d.header("webhook-id").unwrap().to_owned())
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    let event: Value = serde_json::from_slice(&delivered[0].body).unwrap();
    assert_eq!(event["id"], id.as_str());
    assert_eq!(event["status"], "approved");
    // Verified by the Standard Webhooks reference library with the derived callback key.
    let headers: Vec<(&str, String)> = ["webhook-id", "webhook-timestamp", "webhook-signature"]
        .iter()
        .map(|h| (*h, delivered[0].header(h).unwrap().to_owned()))
        .collect();
    let body = String::from_utf8(delivered[0].body.clone()).unwrap();
    let key = derive_whsec(&app.secrets["app"], KeyPurpose::Callback).unwrap();
    let out = python_verifies(&key, &body, &headers).await;
    assert!(
        out.ok,
        "Python's standardwebhooks rejected the callback: {}",
        out.stderr
    );
    // Delivered once: nothing more arrives.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(hook.deliveries().len(), 4);
}

async fn every_outcome_is_called_back(backend: Backend) {
    let app = spawn_app(backend).await;
    let hook = FakeWebhook::start().await;
    let cancelled = create_with_callback(&app, &hook.url).await;
    assert_eq!(app.cancel("app", &cancelled).await.status, 200);
    let mut body = request("short.job", "svc/x");
    body["callback_url"] = json!(hook.url);
    let expired = app.create(&body).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let got = hook.wait_for(2, WAIT).await;
    let statuses: Vec<(String, String)> = got
        .iter()
        .map(|d| {
            let v: Value = serde_json::from_slice(&d.body).unwrap();
            (
                v["id"].as_str().unwrap().to_owned(),
                v["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        statuses.contains(&(cancelled, "cancelled".into())),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&(expired, "expired".into())),
        "{statuses:?}"
    );
}

async fn callbacks_outside_the_allowed_hosts_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    for url in [
        "https://evil.example/hook",
        "http://hooks.example/hook",
        "ftp://127.0.0.1/hook",
    ] {
        let mut body = request("deploy.prod", "svc/x");
        body["callback_url"] = json!(url);
        let r = app.create(&body).await;
        assert_eq!(r.status, 400, "{url}: {}", r.body);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("callback_url")
        );
    }
}

/// A receiver holds the callback key, not the client's secret: the callback does not
/// verify with the secret, and replayed against the API it is refused, so a callback
/// receiver cannot act as the client.
async fn a_callback_is_not_a_signed_client_request(backend: Backend) {
    let app = spawn_app(backend).await;
    let hook = FakeWebhook::start().await;
    let id = create_with_callback(&app, &hook.url).await;
    assert_eq!(app.decide(&id, "approved").await.status, 200);
    let got = hook.wait_for(1, WAIT).await;
    let headers: Vec<(&str, String)> = ["webhook-id", "webhook-timestamp", "webhook-signature"]
        .iter()
        .map(|h| (*h, got[0].header(h).unwrap().to_owned()))
        .collect();
    let body = String::from_utf8(got[0].body.clone()).unwrap();
    let raw = python_verifies(&app.secrets["app"], &body, &headers).await;
    assert!(
        !raw.ok,
        "the callback verified with the client's own secret"
    );
    let derived = derive_whsec(&app.secrets["app"], KeyPurpose::Callback).unwrap();
    assert!(python_verifies(&derived, &body, &headers).await.ok);

    // The callback's body and headers, sent as a request of client `app`.
    let mut replay: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    replay.push(("greenlight-client".into(), "app".into()));
    for path in [
        "/v1/actions",
        "/v1/grants/verify",
        &format!("/v1/actions/{id}/revoke"),
    ] {
        let r = app
            .send_raw("POST", path, got[0].body.clone(), &replay)
            .await;
        assert_eq!(r.status, 401, "{path}: {}", r.body);
        assert_eq!(r.error_code(), "unauthorized");
    }
}

on_both_backends!(
    a_callback_is_not_a_signed_client_request,
    a_failing_receiver_gets_the_decision_once_it_recovers,
    every_outcome_is_called_back,
    callbacks_outside_the_allowed_hosts_are_refused,
);

/// A redirect is not followed: the callback goes nowhere else, and is not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed() {
    let app = spawn_app(Backend::Memory).await;
    let hook = FakeWebhook::start().await;
    hook.fail(302, 1);
    let id = create_with_callback(&app, &hook.url).await;
    assert_eq!(app.decide(&id, "denied").await.status, 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = hook.deliveries();
    assert_eq!(all.len(), 1, "one attempt, not followed, not retried");
    assert_eq!(all[0].status, 302);
}

/// Retries are timers in Redis: a restart between attempts does not lose the callback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_survive_a_restart() {
    let mut app = spawn_app(Backend::redis()).await;
    let hook = FakeWebhook::start().await;
    hook.fail(503, 1);
    let id = create_with_callback(&app, &hook.url).await;
    assert_eq!(app.decide(&id, "approved").await.status, 200);
    let deadline = tokio::time::Instant::now() + WAIT;
    while hook.deliveries().is_empty() {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.stop().await;
    let _second = app.replica(&app.prefix).await;
    let got = hook.wait_for(1, WAIT).await;
    let event: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(event["id"], id.as_str());
}

//! The Rust client library (`greenlight::client`) against a real server and Redis: its
//! waits see decisions made elsewhere, and only a grant that verifies makes an approval.

use crate::common::cli::{forged_approval, grant_of_another_action, greenlight, publish_decision};
use crate::common::{AppOptions, Backend, TestApp, spawn_app, spawn_app_with};
use greenlight::client::{Client, ClientError, GrantError};
use greenlight::domain::{ActionId, ActionRequest, Requester, Status};
use greenlight::grants::generate_signing_key;
use secrecy::ExposeSecret;
use std::time::{Duration, Instant};

fn client(app: &TestApp, id: &str) -> Client {
    Client::new(&app.base, id, app.secret(id))
}

fn redis_client(app: &TestApp) -> Client {
    let redis = app.backend.redis_server().expect("a Redis backend");
    client(app, "app")
        .with_redis(&redis.url(), &app.prefix)
        .unwrap()
}

fn deploy() -> ActionRequest {
    ActionRequest {
        action: "deploy.prod".into(),
        resource: "svc/payments".into(),
        requester: Requester {
            id: "u-123".into(),
            email: Some("alice@example.com".into()),
            ..Default::default()
        },
        reason: Some("release 42".into()),
        ..Default::default()
    }
}

/// Two servers on one Redis with one grant key, as replicas run in production.
async fn two_replicas() -> (TestApp, TestApp) {
    let options = AppOptions {
        grant_signing_key: Some(generate_signing_key().unwrap().expose_secret().to_owned()),
        ..Default::default()
    };
    let app = spawn_app_with(Backend::redis(), options).await;
    let replica = app.replica(&app.prefix).await;
    (app, replica)
}

/// Approves `id` from another OS process: `greenlight decide` against `app`.
async fn approve_from_another_process(app: &TestApp, id: &ActionId) {
    let out = greenlight(app, "admin")
        .args([
            "decide",
            id.as_str(),
            "--approve",
            "--by",
            "ops-lead@example.com",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

async fn long_poll_wait_sees_a_decision_made_by_another_process(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = client(&app, "app");
    let action = client.request(&deploy()).await.unwrap();
    assert_eq!(action.status, Status::Pending);
    let waiting = tokio::spawn({
        let client = client.clone();
        let id = action.id.clone();
        async move { client.wait(&id, Duration::from_secs(20)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    approve_from_another_process(&app, &action.id).await;
    let decided = waiting.await.unwrap().unwrap();
    assert_eq!(decided.status, Status::Approved);
    let claims = client.verify_grant(&decided).await.unwrap();
    assert_eq!(claims.aid, action.id.as_str());
    assert_eq!(claims.aud, "app");
}

async fn a_grant_does_not_verify_for_another_action_or_client(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut read = deploy();
    read.action = "read.logs".into();
    let approved = client(&app, "app").request(&read).await.unwrap();
    assert_eq!(approved.status, Status::Approved);
    assert!(client(&app, "app").verify_grant(&approved).await.is_ok());

    // Issued to `app`: as a bare token, another client does not take it...
    let token = &approved
        .decision
        .as_ref()
        .unwrap()
        .grant
        .as_ref()
        .unwrap()
        .token;
    assert!(client(&app, "app").verify_grant_token(token).await.is_ok());
    let err = client(&app, "other").verify_grant_token(token).await;
    assert!(
        matches!(err, Err(ClientError::Grant(GrantError::Invalid(_)))),
        "{err:?}"
    );
    // ...an action claiming another client does not match it, and an admin reading
    // `app`'s action sees a valid approval.
    let mut claimed = approved.clone();
    claimed.client = "other".into();
    assert!(client(&app, "app").verify_grant(&claimed).await.is_err());
    assert!(client(&app, "admin").verify_grant(&approved).await.is_ok());
    // The genuine grant of one action does not approve another.
    let mut other = approved.clone();
    other.id = ActionId::generate();
    let err = client(&app, "app").verify_grant(&other).await;
    assert!(
        matches!(
            err,
            Err(ClientError::Grant(GrantError::WrongScope {
                claim: "aid",
                ..
            }))
        ),
        "{err:?}"
    );
    // A tampered token fails its signature.
    let mut tampered = approved.clone();
    let grant = tampered.decision.as_mut().unwrap().grant.as_mut().unwrap();
    grant.token = grant.token.replace('.', ".x");
    assert!(client(&app, "app").verify_grant(&tampered).await.is_err());
}

on_both_backends!(
    long_poll_wait_sees_a_decision_made_by_another_process,
    a_grant_does_not_verify_for_another_action_or_client,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_wait_sees_a_decision_made_by_another_process() {
    let (app, replica) = two_replicas().await;
    let client = redis_client(&app);
    let action = client.request(&deploy()).await.unwrap();
    let started = Instant::now();
    let waiting = tokio::spawn({
        let client = client.clone();
        let id = action.id.clone();
        async move { client.wait(&id, Duration::from_secs(20)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Decided through the other replica, by another process.
    approve_from_another_process(&replica, &action.id).await;
    let decided = waiting.await.unwrap().unwrap();
    assert_eq!(decided.status, Status::Approved);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_wait_answers_a_decision_made_before_it_subscribed() {
    let app = spawn_app(Backend::redis()).await;
    let client = redis_client(&app);
    let action = client.request(&deploy()).await.unwrap();
    assert_eq!(app.decide(action.id.as_str(), "denied").await.status, 200);
    let started = Instant::now();
    let decided = client
        .wait(&action.id, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(decided.status, Status::Denied);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_decisions_on_the_channel_are_not_taken() {
    let app = spawn_app(Backend::redis()).await;
    let client = redis_client(&app);
    let action = client.request(&deploy()).await.unwrap();
    let id = action.id.clone();
    let waiting = tokio::spawn({
        let client = client.clone();
        let id = id.clone();
        async move { client.wait(&id, Duration::from_secs(3)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pending = app.get("app", id.as_str()).await.body;
    // A genuine signature on another action's grant; a token that is not a grant; and a
    // forged deny (which must not end the wait either: the server has no such decision).
    let other = grant_of_another_action(&app).await;
    publish_decision(&app, id.as_str(), &forged_approval(&pending, &other));
    publish_decision(&app, id.as_str(), &forged_approval(&pending, "not-a-token"));
    let mut denied = pending.clone();
    denied["status"] = "denied".into();
    publish_decision(&app, id.as_str(), &denied);

    let answer = waiting.await.unwrap().unwrap();
    assert_eq!(
        answer.status,
        Status::Pending,
        "the wait took a forged decision"
    );
    assert_eq!(app.get("app", id.as_str()).await.body["status"], "pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_redis_connection_serves_all_of_a_clients_waits() {
    let app = spawn_app(Backend::redis()).await;
    let redis = app.backend.redis_server().unwrap().clone();
    let client = redis_client(&app);
    let mut ids = Vec::new();
    let mut waits = Vec::new();
    for _ in 0..20 {
        let action = client.request(&deploy()).await.unwrap();
        ids.push(action.id.clone());
        let client = client.clone();
        waits.push(tokio::spawn(async move {
            client.wait(&action.id, Duration::from_secs(20)).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The server's own subscriber, and this client's one connection.
    let list = redis.clients("pubsub");
    assert_eq!(list.lines().count(), 2, "{list}");
    for id in &ids {
        assert_eq!(app.decide(id.as_str(), "approved").await.status, 200);
    }
    for wait in waits {
        assert_eq!(wait.await.unwrap().unwrap().status, Status::Approved);
    }
}

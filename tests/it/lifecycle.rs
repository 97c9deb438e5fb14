//! An action's life: created once per webhook-id, decided by policy, an admin or its
//! client, exactly once, and never changed after.

use crate::common::{
    AppOptions, Backend, ChannelRecorder, POLICY, TestApp, request, sign_headers, spawn_app,
    spawn_app_with,
};
use serde_json::{Value, json};
use std::time::Duration;

async fn repeats_are_idempotent_and_conflicts_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = serde_json::to_vec(&request("deploy.prod", "svc/payments")).unwrap();
    let headers = app.signed_headers("app", "POST", "/v1/actions", &body);
    let first = app
        .send_raw("POST", "/v1/actions", body.clone(), &headers)
        .await;
    assert_eq!(first.status, 201);
    // The same webhook-id and body: the same action, 200.
    let again = app
        .send_raw("POST", "/v1/actions", body.clone(), &headers)
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, first.body);
    // The same webhook-id, another body (signed properly): 409, nothing new.
    let other = serde_json::to_vec(&request("deploy.prod", "svc/other")).unwrap();
    let request_id = &headers.iter().find(|(k, _)| k == "webhook-id").unwrap().1;
    let now = chrono::Utc::now().timestamp();
    let resign = |client: &str, body: &[u8]| {
        let mut h = sign_headers(client, &app.secret(client), "POST", "/v1/actions", b"", now);
        h.iter_mut().find(|(k, _)| k == "webhook-id").unwrap().1 = request_id.clone();
        let sig = app.secret(client).sign(request_id, now, body);
        h.iter_mut()
            .find(|(k, _)| k == "webhook-signature")
            .unwrap()
            .1 = sig;
        h
    };
    let conflict = app
        .send_raw("POST", "/v1/actions", other.clone(), &resign("app", &other))
        .await;
    assert_eq!(conflict.status, 409);
    assert_eq!(conflict.error_code(), "conflict");
    // The same webhook-id from another client is that client's own new request.
    let theirs = resign("other", &body);
    let r = app.send_raw("POST", "/v1/actions", body, &theirs).await;
    assert_eq!(r.status, 201);
    assert_ne!(r.body["id"], first.body["id"]);
}

async fn policy_auto_decides(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = app.create(&request("read.customers", "crm/eu")).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["status"], "approved");
    assert_eq!(r.body["decision"]["outcome"], "approved");
    assert_eq!(r.body["decision"]["by_policy"], "reads");
    assert_eq!(r.body["policy"]["rule"], "reads");

    let r = app
        .create(&request("db.drop_database", "postgres://prod"))
        .await;
    assert_eq!(r.body["status"], "denied");
    assert_eq!(r.body["decision"]["by_policy"], "never-drop-databases");

    // No rule matches: on_no_match = require, one approval.
    let r = app.create(&request("deploy.prod", "svc/payments")).await;
    assert_eq!(r.body["status"], "pending");
    assert_eq!(r.body["policy"]["rule"], "default");
    assert_eq!(r.body["policy"]["min_approvals"], 1);
    assert!(r.body["decision"].is_null());

    // First match wins, context equality included.
    let mut prod = request("deploy.prod", "prod/api");
    prod["context"] = json!({"env": "prod"});
    let r = app.create(&prod).await;
    assert_eq!(r.body["policy"]["rule"], "prod");
    assert_eq!(r.body["policy"]["min_approvals"], 2);
    assert_eq!(r.body["policy"]["approvers"], json!(["U0BOB", "U0CAROL"]));
    prod["context"] = json!({"env": "staging"});
    let r = app.create(&prod).await;
    assert_eq!(r.body["policy"]["rule"], "default");
}

async fn the_action_object_follows_the_spec(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = request("db.drop_table", "postgres://prod/users");
    body["context"] = json!({"rows": 1200, "env": "dev"});
    body["ttl_seconds"] = json!(600);
    body["callback_url"] = json!("https://hooks.example/approvals");
    let r = app.create(&body).await;
    assert_eq!(r.status, 201);
    let a = &r.body;
    for key in [
        "id",
        "status",
        "action",
        "resource",
        "requester",
        "reason",
        "context",
        "client",
        "policy",
        "votes",
        "created_at",
        "expires_at",
        "decision",
    ] {
        assert!(a.get(key).is_some(), "missing {key}: {a}");
    }
    assert_eq!(a["requester"]["slack_user_id"], "U0ALICE");
    assert_eq!(a["context"]["rows"], 1200);
    assert_eq!(a["votes"], json!([]));
    let created = chrono::DateTime::parse_from_rfc3339(a["created_at"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(a["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!((expires - created).num_seconds(), 600);
    assert!(a["created_at"].as_str().unwrap().ends_with('Z'));
    // GET answers the same object.
    let id = a["id"].as_str().unwrap();
    assert_eq!(&app.get("app", id).await.body, a);
}

async fn cancel_and_break_glass_decide_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_pending().await;
    let r = app.cancel("app", &id).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "cancelled");
    assert_eq!(r.body["decision"]["decided_by"], json!(["app"]));
    // Decided is final: neither cancel nor decide changes it.
    let again = app.cancel("app", &id).await;
    assert_eq!(again.status, 409);
    assert!(
        again.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cancelled")
    );
    assert_eq!(app.decide(&id, "approved").await.status, 409);
    assert_eq!(app.get("app", &id).await.body["status"], "cancelled");

    let id = app.create_pending().await;
    let r = app.decide(&id, "denied").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["decision"]["outcome"], "denied");
    assert_eq!(
        r.body["decision"]["decided_by"],
        json!(["ops-lead@example.com"])
    );
    assert_eq!(r.body["decision"]["reason"], "break-glass test");
    assert_eq!(app.cancel("app", &id).await.status, 409);

    // Break-glass input is checked.
    let id = app.create_pending().await;
    let path = format!("/v1/actions/{id}/decision");
    for bad in [
        json!({"outcome": "expired", "by": "x"}),
        json!({"outcome": "approved"}),
        json!({"outcome": "approved", "by": ""}),
        json!({"outcome": "approved", "by": "x", "extra": 1}),
    ] {
        let r = app.send_as("admin", "POST", &path, &bad).await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.error_code(), "invalid_request");
    }
    assert_eq!(app.get("app", &id).await.body["status"], "pending");
}

async fn concurrent_deciders_make_one_decision(backend: Backend) {
    let app = spawn_app(backend.clone()).await;
    let recorder = match &backend {
        Backend::Redis(r) => Some(ChannelRecorder::start(r, &app.prefix).await),
        _ => None,
    };
    let id = app.create_pending().await;
    let app = std::sync::Arc::new(app);
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let app = app.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let outcome = if i % 2 == 0 { "approved" } else { "denied" };
                app.decide(&id, outcome).await
            })
        })
        .collect();
    let mut wins = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            200 => wins.push(r.body["status"].clone()),
            409 => assert_eq!(r.error_code(), "conflict"),
            s => panic!("unexpected {s}: {}", r.body),
        }
    }
    assert_eq!(wins.len(), 1, "exactly one decision");
    let stored = app.get("app", &id).await.body;
    assert_eq!(stored["status"], wins[0]);
    if let Some(rec) = recorder {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(rec.count_for(&id), 1, "published exactly once");
    }
}

async fn health_and_readiness(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = app.send_raw("GET", "/healthz", vec![], &[]).await;
    assert_eq!(r.status, 200);
    let r = app.send_raw("GET", "/readyz", vec![], &[]).await;
    assert_eq!(r.status, 200);
}

/// The test policy with client `app` limited to `n` pending actions.
async fn app_with_max_pending(backend: Backend, n: u32) -> TestApp {
    let policy = POLICY.replacen(
        "id = \"app\"\n",
        &format!("id = \"app\"\nmax_pending = {n}\n"),
        1,
    );
    assert_ne!(policy, POLICY);
    spawn_app_with(
        backend,
        AppOptions {
            policy,
            ..Default::default()
        },
    )
    .await
}

fn assert_too_many_pending(r: &crate::common::Resp, limit: u32) {
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.error_code(), "too_many_pending");
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{limit} pending")) && message.contains("max_pending"),
        "{message}"
    );
}

/// A client has at most `max_pending` actions pending: one more answers `429
/// too_many_pending` naming the limit. A repeated create takes one place and is still
/// answered at the limit; an auto-decided action takes none; another client is not
/// affected; a cancel, a decision and an expiry each free their place.
async fn pending_actions_are_capped_per_client(backend: Backend) {
    let app = app_with_max_pending(backend, 3).await;
    let body = serde_json::to_vec(&request("deploy.prod", "svc/0")).unwrap();
    let headers = app.signed_headers("app", "POST", "/v1/actions", &body);
    let repeat = || app.send_raw("POST", "/v1/actions", body.clone(), &headers);
    let first = repeat().await;
    assert_eq!(first.status, 201, "{}", first.body);
    let first = first.body["id"].as_str().unwrap().to_owned();
    assert_eq!(repeat().await.status, 200);
    let short = app.create(&request("short.job", "svc/1")).await;
    assert_eq!(short.status, 201);
    let short = short.body["id"].as_str().unwrap().to_owned();
    let third = app.create_pending().await;

    assert_too_many_pending(&app.create(&request("deploy.prod", "svc/4")).await, 3);
    let again = repeat().await;
    assert_eq!(again.status, 200, "a repeat is answered at the limit");
    assert_eq!(again.body["id"], first.as_str());
    let auto = app.create(&request("read.logs", "svc/5")).await;
    assert_eq!(auto.status, 201, "auto-approved: never pending");
    let other = app
        .send_as(
            "other",
            "POST",
            "/v1/actions",
            &request("deploy.prod", "svc/6"),
        )
        .await;
    assert_eq!(other.status, 201, "another client has its own count");

    // Each way out of pending frees a place: cancel, expiry, decision.
    assert_eq!(app.cancel("app", &third).await.status, 200);
    let _fourth = app.create_pending().await;
    assert_too_many_pending(&app.create(&request("deploy.prod", "svc/7")).await, 3);
    let expired = app.wait("app", &short, 10).await;
    assert_eq!(expired.body["status"], "expired");
    let fifth = app.create_pending().await;
    assert_too_many_pending(&app.create(&request("deploy.prod", "svc/8")).await, 3);
    assert_eq!(app.decide(&first, "denied").await.status, 200);
    app.create_pending().await;
    assert_too_many_pending(&app.create(&request("deploy.prod", "svc/9")).await, 3);
    assert_eq!(app.decide(&fifth, "approved").await.status, 200);
    app.create_pending().await;
}

/// Concurrent creates never take more than `max_pending` places.
async fn the_cap_holds_under_concurrent_creates(backend: Backend) {
    let app = app_with_max_pending(backend, 4).await;
    let bodies: Vec<Value> = (0..12)
        .map(|i| request("deploy.prod", &format!("svc/{i}")))
        .collect();
    let created = futures::future::join_all(bodies.iter().map(|b| app.create(b))).await;
    let statuses: Vec<u16> = created.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        8,
        "{statuses:?}"
    );
}

on_both_backends!(
    pending_actions_are_capped_per_client,
    the_cap_holds_under_concurrent_creates,
    repeats_are_idempotent_and_conflicts_are_refused,
    policy_auto_decides,
    the_action_object_follows_the_spec,
    cancel_and_break_glass_decide_once,
    concurrent_deciders_make_one_decision,
    health_and_readiness,
);

/// With Redis down nothing is created, decided or answered as approved: 503 everywhere,
/// and `/readyz` says so. When it is back, the service is too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_closed() {
    let backend = Backend::redis();
    let redis = backend.redis_server().unwrap().clone();
    let app = spawn_app(backend).await;
    let pending = app.create_pending().await;
    redis.stop();

    let r = app.create(&request("read.customers", "crm/eu")).await;
    assert_eq!(
        r.status, 503,
        "auto-approve must not be answered without the store"
    );
    assert_eq!(r.error_code(), "unavailable");
    assert_eq!(app.decide(&pending, "approved").await.status, 503);
    assert_eq!(app.get("app", &pending).await.status, 503);
    let ready = app.send_raw("GET", "/readyz", vec![], &[]).await;
    assert_eq!(ready.status, 503);
    assert_eq!(
        app.send_raw("GET", "/healthz", vec![], &[]).await.status,
        200
    );

    redis.restart();
    // The connection comes back on its own.
    let mut ok = false;
    for _ in 0..50 {
        if app.send_raw("GET", "/readyz", vec![], &[]).await.status == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "readyz recovers after Redis returns");
    let r = app.create(&request("read.customers", "crm/eu")).await;
    assert_eq!(r.status, 201);
    let _: Value = r.body;
}

/// Two replicas share one count: creates spread over both, at once, take exactly
/// `max_pending` places.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_is_shared_by_replicas() {
    let a = app_with_max_pending(Backend::redis(), 5).await;
    let b = a.replica(&a.prefix).await;
    let bodies: Vec<Value> = (0..16)
        .map(|i| request("deploy.prod", &format!("svc/{i}")))
        .collect();
    let created = futures::future::join_all(bodies.iter().enumerate().map(|(i, body)| {
        let app = if i % 2 == 0 { &a } else { &b };
        app.create(body)
    }))
    .await;
    let ok = created.iter().filter(|r| r.status == 201).count();
    assert_eq!(
        ok,
        5,
        "{:?}",
        created.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(created.iter().all(|r| r.status == 201 || r.status == 429));
}

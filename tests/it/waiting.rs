//! Callers waiting for a decision (long-poll): answered when it happens, whenever they
//! started waiting, on whichever replica, and even across a lost pub/sub connection.

use crate::common::{Backend, RedisServer, spawn_app};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn waiters_before_and_after_the_decision_get_it(backend: Backend) {
    let app = Arc::new(spawn_app(backend).await);
    let id = app.create_pending().await;
    let early = {
        let (app, id) = (app.clone(), id.clone());
        tokio::spawn(async move { app.wait("app", &id, 30).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    assert_eq!(app.decide(&id, "approved").await.status, 200);
    let r = early.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at the decision"
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "approved");
    assert_eq!(r.body["id"], id.as_str());
    // Waiting after the decision answers at once.
    let started = Instant::now();
    let late = app.wait("app", &id, 30).await;
    assert_eq!(late.body["status"], "approved");
    assert!(started.elapsed() < Duration::from_secs(1));
}

async fn a_wait_times_out_with_the_pending_object(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_pending().await;
    let started = Instant::now();
    let r = app.wait("app", &id, 1).await;
    let took = started.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "pending");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let bad = app
        .send_as(
            "app",
            "GET",
            &format!("/v1/actions/{id}/wait?timeout=soon"),
            &serde_json::Value::Null,
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.error_code(), "invalid_request");
}

async fn many_waiters_on_many_actions_each_get_their_own(backend: Backend) {
    let app = Arc::new(spawn_app(backend).await);
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(app.create_pending().await);
    }
    let mut waits = Vec::new();
    for id in &ids {
        for _ in 0..5 {
            let (app, id) = (app.clone(), id.clone());
            waits.push(tokio::spawn(async move {
                (id.clone(), app.wait("app", &id, 30).await)
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (i, id) in ids.iter().enumerate() {
        let outcome = if i % 2 == 0 { "approved" } else { "denied" };
        assert_eq!(app.decide(id, outcome).await.status, 200);
    }
    for w in waits {
        let (id, r) = w.await.unwrap();
        let i = ids.iter().position(|x| *x == id).unwrap();
        assert_eq!(r.body["id"], id.as_str());
        assert_eq!(
            r.body["status"],
            if i % 2 == 0 { "approved" } else { "denied" }
        );
    }
    assert_eq!(app.service.loaded().clients.len(), 4);
}

async fn shutdown_answers_open_waits_with_current_state(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let id = app.create_pending().await;
    let base = app.base.clone();
    let path = format!("/v1/actions/{id}/wait?timeout=30");
    let headers = app.signed_headers("app", "GET", &path, b"");
    let waiter = tokio::spawn(async move {
        let mut req = reqwest::Client::new().get(format!("{base}{path}"));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.unwrap();
        (
            resp.status().as_u16(),
            resp.json::<serde_json::Value>().await.unwrap(),
        )
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    app.stop().await;
    let (status, body) = waiter.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["status"], "pending");
    assert!(started.elapsed() < Duration::from_secs(5));
}

on_both_backends!(
    waiters_before_and_after_the_decision_get_it,
    a_wait_times_out_with_the_pending_object,
    many_waiters_on_many_actions_each_get_their_own,
    shutdown_answers_open_waits_with_current_state,
);

/// A waiter on one replica is answered when the decision is made on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_on_one_replica_hears_a_decision_on_another() {
    let a = Arc::new(spawn_app(Backend::redis()).await);
    let b = a.replica(&a.prefix).await;
    let id = a.create_pending().await;
    let waiter = {
        let (a, id) = (a.clone(), id.clone());
        tokio::spawn(async move { a.wait("app", &id, 30).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.decide(&id, "approved").await.status, 200);
    let r = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(r.body["status"], "approved");
}

fn kill_pubsub_clients(redis: &RedisServer) -> i64 {
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut redis.conn())
        .unwrap()
}

/// The pub/sub connection is cut and the decision is published while it is down: the
/// waiter still gets it, because every waiter's action is re-read after the reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_survives_a_cut_pubsub_connection() {
    let backend = Backend::redis();
    let redis = backend.redis_server().unwrap().clone();
    let app = Arc::new(spawn_app(backend).await);
    let id = app.create_pending().await;
    let waiter = {
        let (app, id) = (app.clone(), id.clone());
        tokio::spawn(async move { app.wait("app", &id, 30).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(kill_pubsub_clients(&redis), 1, "one subscriber per process");
    assert_eq!(app.decide(&id, "denied").await.status, 200);
    let r = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("answered after the reconnect")
        .unwrap();
    assert_eq!(r.body["status"], "denied");
}

/// Redis itself restarts (with AOF) while a caller waits: the action survives, and the
/// decision made after the restart reaches the waiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_survives_a_redis_restart() {
    let redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let app = Arc::new(spawn_app(Backend::Redis(redis.clone())).await);
    let id = app.create_pending().await;
    let waiter = {
        let (app, id) = (app.clone(), id.clone());
        tokio::spawn(async move { app.wait("app", &id, 30).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.restart();
    // Commands may fail while the connection is re-established; retry like a caller.
    let mut decided = false;
    for _ in 0..50 {
        match app.decide(&id, "approved").await.status {
            200 => {
                decided = true;
                break;
            }
            503 => tokio::time::sleep(Duration::from_millis(100)).await,
            s => panic!("unexpected {s}"),
        }
    }
    assert!(decided);
    let r = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(r.body["status"], "approved");
}

/// One subscriber connection per process, however many waiters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pubsub_connection_serves_all_waiters() {
    let backend = Backend::redis();
    let redis = backend.redis_server().unwrap().clone();
    let app = Arc::new(spawn_app(backend).await);
    let mut waits = Vec::new();
    for _ in 0..50 {
        let id = app.create_pending().await;
        let app = app.clone();
        waits.push(tokio::spawn(async move { app.wait("app", &id, 5).await }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let clients = redis.clients("pubsub");
    assert_eq!(clients.lines().count(), 1, "{clients}");
    let normal = redis.clients("normal");
    // The app's one multiplexed connection, plus this query's.
    assert!(normal.lines().count() <= 2, "{normal}");
    for w in waits {
        w.abort();
    }
}

/// Anyone who can reach Redis can publish on a decision channel: a forged approval (no
/// grant, a junk one, or a real grant of another action) is not handed to long-poll
/// waiters; the real decision is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_approvals_on_the_channel_do_not_reach_waiters() {
    let redis = RedisServer::start();
    let app = Arc::new(spawn_app(Backend::Redis(redis.clone())).await);
    let other = app.create_pending().await;
    assert_eq!(app.decide(&other, "approved").await.status, 200);
    let approved = app.get("app", &other).await.body;
    let real_grant = approved["decision"]["grant"].clone();
    assert!(real_grant["token"].is_string());

    let id = app.create_pending().await;
    let waiter = {
        let (app, id) = (app.clone(), id.clone());
        tokio::spawn(async move { app.wait("app", &id, 30).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The other action's approval, re-addressed to this one.
    let mut forged = approved.clone();
    forged["id"] = json!(id);
    let channel = format!("{}:decision:{id}", app.prefix);
    let mut conn = redis.conn();
    for grant in [Value::Null, json!({"token": "junk"}), real_grant] {
        forged["decision"]["grant"] = grant;
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(forged.to_string())
            .query(&mut conn)
            .unwrap();
        assert_eq!(receivers, 1, "the server is subscribed");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiter.is_finished(),
        "a forged approval answered the waiter"
    );

    assert_eq!(app.decide(&id, "denied").await.status, 200);
    let r = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.body["status"], "denied");
}

/// The subscriber's keep-alive ping must not itself break the connection: across two ping
/// intervals (15 s each) the process keeps the same pub/sub connection, so decisions never
/// wait for a reconnect and a re-read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pubsub_connection_survives_its_keep_alive_pings() {
    let backend = Backend::redis();
    let redis = backend.redis_server().unwrap().clone();
    let _app = spawn_app(backend).await;
    let pubsub_client = || -> String {
        let list = redis.clients("pubsub");
        let line = list.lines().next().unwrap_or_default().to_owned();
        line.split_whitespace()
            .find(|f| f.starts_with("id="))
            .unwrap_or_default()
            .to_owned()
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = pubsub_client();
    assert!(before.starts_with("id="), "subscribed");
    tokio::time::sleep(Duration::from_secs(32)).await;
    assert_eq!(pubsub_client(), before, "the subscriber reconnected");
}

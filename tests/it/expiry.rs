//! Unanswered actions expire at `expires_at`, exactly once across replicas, and their
//! deadlines survive a restart of the server.

use crate::common::{Backend, ChannelRecorder, request, spawn_app};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn an_unanswered_action_expires_and_waiters_hear_it(backend: Backend) {
    let app = Arc::new(spawn_app(backend).await);
    let r = app.create(&request("short.job", "svc/a")).await;
    assert_eq!(r.status, 201);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let w = app.wait("app", &id, 10).await;
    assert_eq!(w.body["status"], "expired");
    assert_eq!(w.body["decision"]["outcome"], "expired");
    assert!(
        w.body["decision"]["decided_by"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Final: nothing decides it afterwards.
    assert_eq!(app.decide(&id, "approved").await.status, 409);
    assert_eq!(app.cancel("app", &id).await.status, 409);
    assert_eq!(app.get("app", &id).await.body["status"], "expired");
}

async fn a_decided_action_does_not_expire(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = app.create(&request("short.job", "svc/a")).await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(app.decide(&id, "approved").await.status, 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app.get("app", &id).await.body["status"], "approved");
}

on_both_backends!(
    an_unanswered_action_expires_and_waiters_hear_it,
    a_decided_action_does_not_expire,
);

/// Two server processes share one Redis: each action expires once, published once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_fires_once_across_two_processes() {
    let a = spawn_app(Backend::redis()).await;
    let b = a.replica(&a.prefix).await;
    let redis = a.backend.redis_server().unwrap().clone();
    let recorder = ChannelRecorder::start(&redis, &a.prefix).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let app = if i % 2 == 0 { &a } else { &b };
        let r = app.create(&request("short.job", &format!("svc/{i}"))).await;
        ids.push(r.body["id"].as_str().unwrap().to_owned());
    }
    // Nobody reads them: only the schedulers can expire them.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for id in &ids {
        assert_eq!(recorder.count_for(id), 1, "{id} published exactly once");
    }
    for id in &ids {
        assert_eq!(b.get("app", id).await.body["status"], "expired");
    }
    let timers: usize = redis::cmd("ZCARD")
        .arg(format!("{}:timers", a.prefix))
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(timers, 0, "fired timers are removed");
}

/// A pending action outlives its server: after a restart it is still pending, and the
/// new process expires it on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_action_survives_a_server_restart_and_still_expires() {
    let mut first = spawn_app(Backend::redis()).await;
    let mut body = request("deploy.prod", "svc/payments");
    body["ttl_seconds"] = json!(10);
    let r = first.create(&body).await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    first.stop().await;

    let second = first.replica(&first.prefix).await;
    let redis = second.backend.redis_server().unwrap().clone();
    let recorder = ChannelRecorder::start(&redis, &second.prefix).await;
    let after = second.get("app", &id).await;
    assert_eq!(after.status, 200);
    assert_eq!(after.body["status"], "pending");
    assert_eq!(after.body, r.body);
    // Wait for the timer (not a read) to expire it.
    let deadline = Instant::now() + Duration::from_secs(15);
    while recorder.count_for(&id) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(recorder.count_for(&id), 1);
    let expired = second.get("app", &id).await.body;
    assert_eq!(expired["status"], "expired");
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(expired["expires_at"].as_str().unwrap()).unwrap();
    let decided_at =
        chrono::DateTime::parse_from_rfc3339(expired["decision"]["decided_at"].as_str().unwrap())
            .unwrap();
    let late = (decided_at - expires_at).num_milliseconds();
    assert!(
        (0..=2000).contains(&late),
        "expired {late} ms after expires_at"
    );
}

/// Deadlines that passed while no server ran fire when one starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_missed_during_downtime_fire_at_start() {
    let mut first = spawn_app(Backend::redis()).await;
    let r = first.create(&request("short.job", "svc/a")).await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    first.stop().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let redis = first.backend.redis_server().unwrap().clone();
    let recorder = ChannelRecorder::start(&redis, &first.prefix).await;
    let second = first.replica(&first.prefix).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while recorder.count_for(&id) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(recorder.count_for(&id), 1);
    assert_eq!(second.get("app", &id).await.body["status"], "expired");
}

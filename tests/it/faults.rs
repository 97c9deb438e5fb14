//! Fault injection, on loopback and bounded in time: Redis restarting under load (with AOF
//! persistence, as in production), a server killed with SIGKILL while callers wait, a Slack
//! that keeps failing, and a mixed load of 2,000 requests over two processes. What the other
//! suites already cover (a cut pub/sub connection, a restarted server's timers, a 429 storm
//! on one message, SIGTERM) is not repeated here.

use crate::common::process::{Deployment, ServeProcess};
use crate::common::slack::{
    CHANNEL_ID, FakeSlack, Fault, block_action, interaction_body, signed_slack_headers,
};
use crate::common::{
    AppOptions, Backend, ChannelRecorder, POLICY, RedisServer, Resp, SLACK_SIGNING_SECRET, TestApp,
    request, spawn_app, spawn_app_with,
};
use futures::StreamExt;
use greenlight::cli::audit::fetch_and_verify;
use greenlight::client::Client;
use greenlight::domain::{ActionId, ActionRequest, Outcome, Status};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const AOF: [&str; 4] = ["--appendonly", "yes", "--appendfsync", "always"];
const TERMINAL: [&str; 4] = ["approved", "denied", "expired", "cancelled"];

/// Retries `f` while the answer is `503` (Redis still coming back), for at most `within`.
async fn until_available<F, Fut>(within: Duration, f: F) -> Resp
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Resp>,
{
    let deadline = Instant::now() + within;
    loop {
        let r = f().await;
        if r.status != 503 || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls the action until it leaves `pending`, for at most `within`.
async fn status_becomes(app: &TestApp, id: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let r = app.get("app", id).await;
        if r.status == 200 && r.body["status"] != "pending" {
            return r.body;
        }
        assert!(
            Instant::now() < deadline,
            "{id} still {} {}",
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Redis goes away with work in flight and comes back from its AOF: while it is down nothing
/// is approved (not even what the policy approves by itself) and decisions are refused; once
/// it is back, the decision made before, the pending action, its timer and its waiter are
/// all still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_with_aof_keeps_everything_and_fails_closed_meanwhile() {
    let redis = RedisServer::start_with(&AOF);
    let app = Arc::new(spawn_app(Backend::Redis(redis.clone())).await);
    let decided = app.create_pending().await;
    assert_eq!(app.decide(&decided, "approved").await.status, 200);
    let pending = app.create_pending().await;
    let short = app.create(&request("short.restart", "svc/x")).await;
    assert_eq!(short.status, 201, "{}", short.body);
    let short = short.body["id"].as_str().unwrap().to_owned();
    let waiter = {
        let (app, id) = (app.clone(), pending.clone());
        tokio::spawn(async move { app.wait("app", &id, 60).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    redis.stop();
    let auto = app.create(&request("read.config", "svc/x")).await;
    assert_eq!(auto.status, 503, "fail closed: {}", auto.body);
    assert_eq!(auto.error_code(), "unavailable");
    let decide = app.decide(&pending, "approved").await;
    assert_eq!(decide.status, 503, "{}", decide.body);
    let ready = app.http.get(format!("{}/readyz", app.base)).send().await;
    assert_eq!(ready.unwrap().status(), 503);
    // Down past the short action's deadline (2 s after it was created).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !waiter.is_finished(),
        "the waiter was not answered while Redis was down"
    );

    redis.restart();
    let r = until_available(Duration::from_secs(15), || app.get("app", &decided)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "approved", "the decision survived");
    assert!(r.body["decision"]["grant"]["token"].is_string());
    let expired = status_becomes(&app, &short, Duration::from_secs(15)).await;
    assert_eq!(expired["status"], "expired", "the timer survived and fired");
    let r = until_available(Duration::from_secs(15), || app.get("app", &pending)).await;
    assert_eq!(r.body["status"], "pending", "the pending action survived");

    let r = until_available(Duration::from_secs(15), || app.decide(&pending, "approved")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let answered = tokio::time::timeout(Duration::from_secs(15), waiter)
        .await
        .expect("the waiter is answered after the reconnect")
        .unwrap();
    assert_eq!(answered.body["status"], "approved");
}

/// A server process dies (SIGKILL: no graceful answer) while callers wait on it; they retry
/// against the other process and get the decision, made there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_of_a_killed_process_retry_elsewhere_and_get_the_decision() {
    let redis = RedisServer::start();
    let deployment = Deployment::new(Backend::Redis(redis.clone()), POLICY, None);
    let mut a = deployment.start().await;
    let b = deployment.start().await;
    let client = |p: &ServeProcess, id: &str| Client::new(&p.base, id, p.secret(id));
    let body: ActionRequest =
        serde_json::from_value(request("deploy.prod", "svc/payments")).unwrap();
    let mut ids: Vec<ActionId> = Vec::new();
    for _ in 0..3 {
        ids.push(client(&a, "app").request(&body).await.unwrap().id);
    }
    let (on_a, on_b) = (Arc::new(client(&a, "app")), Arc::new(client(&b, "app")));
    let callers: Vec<_> = ids
        .iter()
        .map(|id| {
            let (on_a, on_b, id) = (on_a.clone(), on_b.clone(), id.clone());
            tokio::spawn(async move {
                // What a caller with two servers behind it does: wait, and on a broken
                // connection wait again on the other one.
                match on_a.wait_once(&id, 30).await {
                    Ok(action) if !action.is_pending() => (false, action),
                    _ => (true, on_b.wait(&id, Duration::from_secs(20)).await.unwrap()),
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.sigkill().await;
    let admin = client(&b, "admin");
    for (id, outcome) in ids
        .iter()
        .zip([Outcome::Approved, Outcome::Denied, Outcome::Approved])
    {
        admin
            .decide(id, outcome, "ops-lead@example.com", None)
            .await
            .unwrap();
    }
    for (caller, expected) in
        callers
            .into_iter()
            .zip([Status::Approved, Status::Denied, Status::Approved])
    {
        let (retried, action) = tokio::time::timeout(Duration::from_secs(25), caller)
            .await
            .unwrap()
            .unwrap();
        assert!(retried, "the first wait broke with the process");
        assert_eq!(action.status, expected);
    }
}

/// Slack answers 429 and 500 for a while: every approval message still ends up posted
/// exactly once, and the final update still lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_slack_ends_with_each_message_posted_once() {
    let slack = FakeSlack::start().await;
    for _ in 0..2 {
        slack.fail(
            "chat.postMessage",
            Fault::RateLimited {
                retry_after: Some(1),
            },
            1,
        );
        slack.fail("chat.postMessage", Fault::ServerError, 1);
    }
    slack.fail("chat.update", Fault::ServerError, 2);
    slack.fail(
        "chat.update",
        Fault::RateLimited {
            retry_after: Some(1),
        },
        1,
    );
    let app = spawn_app_with(
        Backend::redis(),
        AppOptions {
            slack_api_base: Some(slack.base.clone()),
            ..Default::default()
        },
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.create_pending().await);
    }
    let posted = |id: &str| {
        slack
            .calls()
            .into_iter()
            .filter(|c| c.method == "chat.postMessage" && !c.faulted)
            .filter(|c| c.args.get("thread_ts").is_none() && c.args.to_string().contains(id))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while ids.iter().any(|id| posted(id) == 0) {
        assert!(
            Instant::now() < deadline,
            "not every message was posted: {:?}",
            slack.calls()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.decide(&ids[0], "approved").await.status, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !slack
        .calls()
        .iter()
        .any(|c| c.method == "chat.update" && !c.faulted && c.args.to_string().contains(&ids[0]))
    {
        assert!(Instant::now() < deadline, "the final update never landed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Late retries would show up now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for id in &ids {
        assert_eq!(posted(id), 1, "{id} posted exactly once");
    }
    assert!(
        slack.calls().iter().filter(|c| c.faulted).count() >= 7,
        "every fault was served"
    );
}

/// What the load test does to one action.
#[derive(Clone, Copy, Debug)]
enum Fate {
    Approve,
    Deny,
    Cancel,
    /// Left alone until its 2 s deadline.
    Expire,
    /// Decided by policy at once.
    Auto,
}

/// 2,000 requests over two processes with random clicks (double clicks on both processes
/// included), cancels racing clicks, and expiries: every action ends in exactly one terminal
/// state, its decision channel carried exactly one message, and the audit chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_random_requests_over_two_processes_end_exactly_once() {
    const N: usize = 2_000;
    let slack = FakeSlack::start().await;
    let a = Arc::new(
        spawn_app_with(
            Backend::redis(),
            AppOptions {
                policy: LOAD_POLICY.into(),
                slack_api_base: Some(slack.base.clone()),
                ..Default::default()
            },
        )
        .await,
    );
    let b = Arc::new(a.replica(&a.prefix).await);
    let redis = a.backend.redis_server().unwrap().clone();
    let recorder = ChannelRecorder::start(&redis, &a.prefix).await;
    let response_url = slack.response_url();

    let fates: Vec<Fate> = (0..N)
        .map(|_| match rand::random_range(0..20) {
            0..=5 => Fate::Approve,
            6..=9 => Fate::Deny,
            10..=13 => Fate::Cancel,
            14..=17 => Fate::Expire,
            _ => Fate::Auto,
        })
        .collect();
    let apps = [a.clone(), b.clone()];
    let started = Instant::now();
    let mut results = futures::stream::iter(fates.iter().copied().enumerate())
        .map(|(i, fate)| {
            let apps = apps.clone();
            let response_url = response_url.clone();
            async move {
                let here = &apps[i % 2];
                let there = &apps[(i + 1) % 2];
                let action = match fate {
                    Fate::Expire => "short.load",
                    Fate::Auto => "read.load",
                    _ => "load.deploy",
                };
                let r = here.create(&request(action, "svc/load")).await;
                assert!(r.status == 201, "{}: {}", r.status, r.body);
                let id = r.body["id"].as_str().unwrap().to_owned();
                let click = |app: Arc<TestApp>, action_id: &'static str| {
                    let (id, response_url) = (id.clone(), response_url.clone());
                    async move {
                        let payload = block_action(
                            "U0BOB",
                            action_id,
                            &id,
                            CHANNEL_ID,
                            "1700000000.000001",
                            &response_url,
                        );
                        let body = interaction_body(&payload);
                        let headers = signed_slack_headers(
                            SLACK_SIGNING_SECRET,
                            chrono::Utc::now().timestamp(),
                            &body,
                        );
                        app.send_raw("POST", "/slack/interactions", body, &headers)
                            .await
                            .status
                    }
                };
                match fate {
                    Fate::Approve => {
                        // A double click landing on both processes at once.
                        let (x, y) = tokio::join!(
                            click(here.clone(), "greenlight_approve"),
                            click(there.clone(), "greenlight_approve")
                        );
                        assert_eq!((x, y), (200, 200));
                    }
                    Fate::Deny => assert_eq!(click(there.clone(), "greenlight_deny").await, 200),
                    Fate::Cancel => {
                        let (cancelled, clicked) = tokio::join!(
                            there.cancel("app", &id),
                            click(here.clone(), "greenlight_approve")
                        );
                        assert!([200, 409].contains(&cancelled.status), "{}", cancelled.body);
                        assert_eq!(clicked, 200);
                    }
                    Fate::Expire | Fate::Auto => {}
                }
                (id, fate)
            }
        })
        .buffer_unordered(32);
    let mut ids = Vec::with_capacity(N);
    while let Some(r) = results.next().await {
        ids.push(r);
    }
    drop(results);
    eprintln!("{N} requests sent in {:?}", started.elapsed());

    // Every action reaches a terminal state (expiries within their 2 s and the scheduler).
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut finals: HashMap<String, Value> = HashMap::new();
    for (id, fate) in &ids {
        loop {
            let r = a.get("app", id).await;
            assert_eq!(r.status, 200, "{}", r.body);
            if r.body["status"] != "pending" {
                let status = r.body["status"].as_str().unwrap();
                assert!(TERMINAL.contains(&status), "{id}: {status}");
                let expected: &[&str] = match fate {
                    Fate::Approve | Fate::Auto => &["approved"],
                    Fate::Deny => &["denied"],
                    Fate::Cancel => &["cancelled", "approved"],
                    Fate::Expire => &["expired"],
                };
                assert!(expected.contains(&status), "{fate:?} {id} ended {status}");
                finals.insert(id.clone(), r.body);
                break;
            }
            assert!(Instant::now() < deadline, "{fate:?} {id} still pending");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Exactly one message on each decision channel, saying the final state.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let messages = recorder.messages.lock().unwrap().clone();
    let mut per_action: HashMap<&str, Vec<&str>> = HashMap::new();
    for (channel, payload) in &messages {
        let id = channel.rsplit(':').next().unwrap();
        per_action.entry(id).or_default().push(payload);
    }
    for (id, action) in &finals {
        let published = per_action
            .get(id.as_str())
            .map_or(&[][..], |v| v.as_slice());
        assert_eq!(
            published.len(),
            1,
            "{id}: {} decision messages",
            published.len()
        );
        let message: Value = serde_json::from_str(published[0]).unwrap();
        assert_eq!(message["status"], action["status"], "{id}");
    }
    assert_eq!(
        per_action.len(),
        N,
        "no message for an action that was not created"
    );

    let auditor = Client::new(&b.base, "auditor", b.secret("auditor"));
    let verified = fetch_and_verify(&auditor)
        .await
        .expect("the trail can be read")
        .unwrap_or_else(|broken| panic!("{}", broken.describe("position")));
    assert!(
        verified.entries >= 2 * N as u64,
        "{} entries",
        verified.entries
    );
}

const LOAD_POLICY: &str = concat!(
    r##"
[defaults]
channel = "#approvals"
on_no_match = "require"

"##,
    test_clients!(),
    r##"
[[rule]]
name = "reads"
match = { action = "read.*" }
decision = "approve"

[[rule]]
name = "short"
match = { action = "short.*" }
decision = "require"
approvers = ["U0BOB"]
ttl = "2s"

[[rule]]
name = "load"
match = { action = "load.*" }
decision = "require"
approvers = ["U0BOB"]
"##
);

//! Scale-out on Redis's own distributed deployments: three `greenlight serve` processes on
//! one Redis Cluster (three masters), and two on a master and replica behind Sentinel with
//! a forced failover mid-run. Requests, waits and Slack clicks are spread over the
//! processes; every waiter must get its decision, every action must be decided exactly
//! once (one decision in the audit trail, which still verifies), every Slack message
//! posted once, and every expiry timer fire once.

use crate::common::process::{Deployment, ServeProcess};
use crate::common::slack::{FakeSlack, block_action, interaction_body, signed_slack_headers};
use crate::common::topology::{RedisCluster, RedisSentinel};
use crate::common::{Api, Backend, SLACK_SIGNING_SECRET, request};
use greenlight::cli::audit::fetch_and_verify;
use greenlight::client::Client;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

const POLICY: &str = concat!(
    r##"
[defaults]
channel = "#approvals"
on_no_match = "require"

"##,
    test_clients!(),
    r##"
[[rule]]
name = "deploys"
match = { action = "deploy.*" }
decision = "require"
approvers = ["U0BOB"]

[[rule]]
name = "short"
match = { action = "short.*" }
decision = "require"
approvers = ["U0BOB"]
ttl = "3s"

[[rule]]
name = "reads"
match = { action = "read.*" }
decision = "approve"
"##
);

const WAIT: Duration = Duration::from_secs(30);

/// What happens to action number `i` of a run.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fate {
    Approve,
    Deny,
    Expire,
    Auto,
}

impl Fate {
    fn of(i: usize) -> Self {
        match i % 6 {
            0 | 2 => Fate::Approve,
            1 => Fate::Deny,
            3 | 4 => Fate::Expire,
            _ => Fate::Auto,
        }
    }

    fn action(self) -> &'static str {
        match self {
            Fate::Approve | Fate::Deny => "deploy.service",
            Fate::Expire => "short.window",
            Fate::Auto => "read.logs",
        }
    }

    fn status(self) -> &'static str {
        match self {
            Fate::Approve | Fate::Auto => "approved",
            Fate::Deny => "denied",
            Fate::Expire => "expired",
        }
    }
}

struct Run {
    apps: Vec<ServeProcess>,
    slack: FakeSlack,
    deployment: Deployment,
}

async fn start(backend: Backend, processes: usize) -> Run {
    let slack = FakeSlack::start().await;
    let deployment = Deployment::new(backend, POLICY, Some(slack.base.clone()));
    let mut apps = Vec::new();
    for _ in 0..processes {
        apps.push(deployment.start().await);
    }
    Run {
        apps,
        slack,
        deployment,
    }
}

impl Run {
    fn app(&self, i: usize) -> &Api {
        &self.apps[i % self.apps.len()]
    }

    /// Creates action `i` on instance `i` and starts a waiter on the next instance.
    async fn create(&self, i: usize) -> (String, tokio::task::JoinHandle<Value>) {
        let r = self
            .app(i)
            .create(&request(Fate::of(i).action(), "svc/payments"))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let id = r.body["id"].as_str().unwrap().to_owned();
        let waiter = {
            let (app, id) = (self.app(i + 1).clone(), id.clone());
            tokio::spawn(async move {
                let deadline = Instant::now() + WAIT;
                loop {
                    // A wait that ends pending (an instance shutting down, Redis failing
                    // over) is retried, as a real caller would.
                    let r = app.wait("app", &id, 10).await;
                    if r.status == 200 && r.body["status"] != "pending" {
                        return r.body;
                    }
                    assert!(Instant::now() < deadline, "{id} never decided: {}", r.body);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        (id, waiter)
    }

    /// Waits for the approval message of `id`, then clicks on instance `i + 2` until the
    /// action is decided (a click during a failover may find Redis unavailable).
    async fn click(&self, i: usize, id: &str, fate: Fate) {
        self.message_for(id).await;
        let button = match fate {
            Fate::Deny => "greenlight_deny",
            _ => "greenlight_approve",
        };
        let deadline = Instant::now() + WAIT;
        loop {
            let app = self.app(i + 2);
            let body = interaction_body(&block_action(
                "U0BOB",
                button,
                id,
                "C0APPROVALS",
                "1700000000.000001",
                &self.slack.response_url(),
            ));
            let headers =
                signed_slack_headers(SLACK_SIGNING_SECRET, chrono::Utc::now().timestamp(), &body);
            let _ = app
                .send_raw("POST", "/slack/interactions", body, &headers)
                .await;
            for _ in 0..20 {
                let r = app.get("admin", id).await;
                if r.status == 200 && r.body["status"] != "pending" {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(Instant::now() < deadline, "clicks on {id} never landed");
        }
    }

    async fn message_for(&self, id: &str) {
        let deadline = Instant::now() + WAIT;
        while self.messages_for(id) == 0 {
            assert!(Instant::now() < deadline, "no Slack message for {id}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Approval messages (not thread replies) posted for `id`.
    fn messages_for(&self, id: &str) -> usize {
        self.slack
            .calls_to("chat.postMessage")
            .iter()
            .filter(|c| c.args.get("thread_ts").is_none() && c.args.to_string().contains(id))
            .count()
    }

    /// Decision events per action in the audit trail, after checking the chain.
    async fn decisions_in_audit(&self) -> HashMap<String, Vec<String>> {
        let app = &self.apps[0];
        let auditor = Client::new(&app.base, "auditor", app.secret("auditor"));
        let verified = fetch_and_verify(&auditor)
            .await
            .expect("the trail can be read")
            .unwrap_or_else(|b| panic!("{}", b.describe("position")));
        assert!(verified.entries > 0);
        let mut decisions: HashMap<String, Vec<String>> = HashMap::new();
        let mut after = String::new();
        loop {
            let r = app
                .send_as(
                    "auditor",
                    "GET",
                    &format!("/v1/audit?limit=500{after}"),
                    &Value::Null,
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            for e in r.body["entries"].as_array().unwrap() {
                let event = e["event"].as_str().unwrap();
                if ["approved", "denied", "expired", "cancelled"].contains(&event) {
                    let id = e["action_id"].as_str().unwrap().to_owned();
                    decisions.entry(id).or_default().push(event.to_owned());
                }
            }
            match r.body["next"].as_str() {
                Some(next) => after = format!("&after={next}"),
                None => return decisions,
            }
        }
    }

    /// The checks every deployment must pass once the run is over.
    async fn assert_each_decided_once(&self, ids: &[String], waited: &[Value]) {
        for (i, (id, body)) in ids.iter().zip(waited).enumerate() {
            let fate = Fate::of(i);
            assert_eq!(body["id"], id.as_str());
            assert_eq!(body["status"], fate.status(), "waiter of {id} ({fate:?})");
            for app in &self.apps {
                let r = app.get("app", id).await;
                assert_eq!(r.body["status"], fate.status(), "{id} read on {}", app.base);
            }
            // Slack paces posts to one channel (about one a second): an action may expire
            // before its message's turn comes, and then none is posted.
            let messages = self.messages_for(id);
            match fate {
                Fate::Approve | Fate::Deny => assert_eq!(messages, 1, "messages for {id}"),
                Fate::Expire => assert!(messages <= 1, "messages for {id}: {messages}"),
                Fate::Auto => assert_eq!(messages, 0, "messages for {id}"),
            }
        }
    }

    /// Each action's decision is in the audit trail once, and the chain verifies.
    async fn assert_audited_once(&self, ids: &[String]) {
        // An entry is appended just after the change it records: a decision seen a moment
        // ago may still be on its way into the trail (never more than once, never lost).
        let deadline = Instant::now() + Duration::from_secs(10);
        let decisions = loop {
            let decisions = self.decisions_in_audit().await;
            if ids.iter().all(|id| decisions.contains_key(id)) || Instant::now() >= deadline {
                break decisions;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(
                decisions.get(id).map(Vec::as_slice),
                Some(&[Fate::of(i).status().to_owned()][..]),
                "decisions of {id} in the audit trail"
            );
        }
    }
}

async fn settle(waiters: Vec<tokio::task::JoinHandle<Value>>) -> Vec<Value> {
    let mut bodies = Vec::new();
    for w in waiters {
        bodies.push(w.await.expect("waiter task"));
    }
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_processes_on_a_redis_cluster_decide_each_action_once() {
    let cluster = RedisCluster::start(3);
    let run = start(Backend::Cluster(cluster.clone()), 3).await;
    let (mut spec_channel, mut pushes) = cluster.subscriber().await;

    let mut ids = Vec::new();
    let mut waiters = Vec::new();
    for i in 0..18 {
        let (id, waiter) = run.create(i).await;
        if Fate::of(i) != Fate::Auto {
            // A caller's own wait on the public decision channel: SSUBSCRIBE, then decide.
            spec_channel
                .ssubscribe(format!("{}:decision:{id}", run.deployment.prefix))
                .await
                .unwrap();
        }
        ids.push(id);
        waiters.push(waiter);
    }
    let clicks = ids.iter().enumerate().filter_map(|(i, id)| {
        let fate = Fate::of(i);
        matches!(fate, Fate::Approve | Fate::Deny).then(|| run.click(i, id, fate))
    });
    futures::future::join_all(clicks).await;
    let waited = settle(waiters).await;
    run.assert_each_decided_once(&ids, &waited).await;
    run.assert_audited_once(&ids).await;

    // Each decided action was announced exactly once on its public channel.
    let mut published: HashMap<String, usize> = HashMap::new();
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(push) = pushes.try_recv() {
        if push.kind == redis::PushKind::SMessage
            && let Some(redis::Value::BulkString(channel)) = push.data.first()
        {
            let channel = String::from_utf8_lossy(channel);
            let id = channel.rsplit(':').next().unwrap().to_owned();
            *published.entry(id).or_default() += 1;
        }
    }
    for (i, id) in ids.iter().enumerate() {
        if Fate::of(i) != Fate::Auto {
            assert_eq!(published.get(id), Some(&1), "announcements of {id}");
        }
    }
    // Actions are spread over every master, not piled on one slot.
    let counts = cluster.key_counts();
    assert!(counts.iter().all(|n| *n > 0), "keys per master: {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sentinel_failover_mid_run_loses_nothing_decided() {
    let sentinel = RedisSentinel::start();
    let run = start(Backend::Sentinel(sentinel.clone()), 2).await;

    let mut ids = Vec::new();
    let mut waiters = Vec::new();
    for i in 0..18 {
        let (id, waiter) = run.create(i).await;
        ids.push(id);
        waiters.push(waiter);
    }
    // Half the clicks land before the failover.
    let (before, after): (Vec<_>, Vec<_>) = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| matches!(Fate::of(*i), Fate::Approve | Fate::Deny))
        .partition(|(i, _)| *i < ids.len() / 2);
    futures::future::join_all(before.iter().map(|(i, id)| run.click(*i, id, Fate::of(*i)))).await;
    let decided_before: Vec<(String, Value)> = {
        let mut v = Vec::new();
        for (i, id) in &before {
            let r = run.apps[0].get("app", id).await;
            assert_eq!(r.body["status"], Fate::of(*i).status());
            v.push(((*id).clone(), r.body));
        }
        v
    };

    let old_master = sentinel.master_port();
    let s = sentinel.clone();
    tokio::task::spawn_blocking(move || s.fail_over())
        .await
        .unwrap();
    assert_ne!(
        sentinel.master_port(),
        old_master,
        "Sentinel names a new master"
    );

    futures::future::join_all(after.iter().map(|(i, id)| run.click(*i, id, Fate::of(*i)))).await;
    let waited = settle(waiters).await;
    run.assert_each_decided_once(&ids, &waited).await;
    run.assert_audited_once(&ids).await;

    // What was decided before the failover reads back unchanged from the new master.
    for (id, before) in decided_before {
        let now = run.apps[1].get("app", &id).await.body;
        assert_eq!(now["status"], before["status"], "{id}");
        assert_eq!(now["decision"], before["decision"], "{id}");
    }
    // And new work goes to the new master.
    let r = run.apps[1].create(&request("read.logs", "svc/x")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:action:*", run.deployment.prefix))
        .query(&mut sentinel_master_conn(&sentinel))
        .unwrap();
    assert!(
        keys.iter()
            .any(|k| k.ends_with(r.body["id"].as_str().unwrap()))
    );
}

fn sentinel_master_conn(sentinel: &RedisSentinel) -> redis::Connection {
    let port = sentinel.master_port();
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_connection()
        .unwrap()
}

//! Unanswered actions chase people: escalation stages (Slack mentions and DMs, PagerDuty),
//! reminders, and the incident resolved at the decision. Each fires once, in order,
//! across replicas and restarts.

use crate::common::pagerduty::{FakePagerDuty, PdFault};
use crate::common::slack::FakeSlack;
use crate::common::{AppOptions, Backend, TestApp, request, spawn_app_with};
use greenlight::policy::Policy;
use serde_json::Value;
use std::time::Duration;

const POLICY: &str = concat!(
    r##"
[defaults]
channel = "#approvals"

"##,
    test_clients!(),
    r##"
[[oncall]]
name = "dba"
rotation = ["U0DAVE", "U0ERIN", "U0FRANK"]
shift = "1h"
start = "2026-01-05T09:00:00Z"

[[rule]]
name = "escalating"
match = { action = "esc.*" }
decision = "require"
approvers = ["U0BOB"]
ttl = "60s"
severity = "error"
escalate = [
  { after = "1s", notify = ["oncall:dba"] },
  { after = "2s", notify = ["oncall:dba", "@dba-leads"], pagerduty = true },
]

[[rule]]
name = "reminding"
match = { action = "remind.*" }
decision = "require"
approvers = ["U0BOB", "U0CAROL"]
min_approvals = 2
ttl = "60s"
remind_every = "1s"
"##
);

const WAIT: Duration = Duration::from_secs(20);

struct Env {
    app: TestApp,
    slack: FakeSlack,
    pd: FakePagerDuty,
}

async fn setup(backend: Backend) -> Env {
    let slack = FakeSlack::start().await;
    slack.add_group("S0LEADS", "dba-leads", &["U0LEAD"]);
    let pd = FakePagerDuty::start().await;
    let app = spawn_app_with(backend, options(&slack, &pd, None)).await;
    Env { app, slack, pd }
}

fn options(slack: &FakeSlack, pd: &FakePagerDuty, prefix: Option<&str>) -> AppOptions {
    let mut o = AppOptions {
        policy: POLICY.into(),
        slack_api_base: Some(slack.base.clone()),
        pagerduty_events_url: Some(pd.url.clone()),
        ..Default::default()
    };
    if let Some(p) = prefix {
        o.prefix = p.into();
    }
    o
}

impl Env {
    async fn create(&self, action: &str) -> String {
        let r = self.app.create(&request(action, "svc/db")).await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["id"].as_str().unwrap().to_owned()
    }

    /// The ts of the approval message of `id`.
    async fn message_ts(&self, id: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(c) = self
                .slack
                .calls_to("chat.postMessage")
                .into_iter()
                .find(|c| c.args.get("thread_ts").is_none() && c.args.to_string().contains(id))
            {
                return c.reply["ts"].as_str().unwrap().to_owned();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no message for {id}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Thread replies under the message `ts` whose text contains `needle`.
    fn thread(&self, ts: &str, needle: &str) -> Vec<String> {
        self.slack
            .calls_to("chat.postMessage")
            .into_iter()
            .filter(|c| c.args["thread_ts"] == ts)
            .filter_map(|c| c.args["text"].as_str().map(str::to_owned))
            .filter(|t| t.contains(needle))
            .collect()
    }

    async fn wait_thread(&self, ts: &str, needle: &str, n: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let found = self.thread(ts, needle);
            if found.len() >= n {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "fewer than {n} replies with {needle:?}: {found:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn pd_events(&self, event_action: &str, id: &str) -> Vec<Value> {
        self.pd
            .accepted()
            .into_iter()
            .filter(|e| e["event_action"] == event_action && e["dedup_key"] == id)
            .collect()
    }
}

fn on_call_now() -> String {
    let policy = Policy::parse(POLICY).unwrap();
    policy
        .oncall("dba")
        .unwrap()
        .on_call_at(chrono::Utc::now())
        .to_owned()
}

async fn stages_fire_once_in_order_and_the_incident_is_resolved(backend: Backend) {
    let env = setup(backend).await;
    let id = env.create("esc.drop").await;
    let ts = env.message_ts(&id).await;
    let first = env.wait_thread(&ts, "Escalation 1", 1).await;
    let oncall = on_call_now();
    assert!(first[0].contains(&format!("<@{oncall}>")), "{first:?}");
    let second = env.wait_thread(&ts, "Escalation 2", 1).await;
    assert!(second[0].contains("<!subteam^S0LEADS>"), "{second:?}");
    // The on-call person gets a DM for each stage.
    let dms = env.slack.wait_for("conversations.open", 2, WAIT).await;
    assert!(
        dms.iter().all(|c| c.args["users"] == oncall.as_str()),
        "{dms:?}"
    );
    // PagerDuty: one trigger, with the action as dedup key and the rule's severity.
    let triggers = env.pd.wait_for("trigger", 1, WAIT).await;
    assert_eq!(triggers.len(), 1);
    assert_eq!(triggers[0]["dedup_key"], id.as_str());
    assert_eq!(triggers[0]["payload"]["severity"], "error");
    assert!(
        triggers[0]["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains("esc.drop")
    );
    let a = env.app.get("app", &id).await.body;
    assert_eq!(a["escalation"]["stage"], 2);
    assert_eq!(a["status"], "pending");
    // Each stage once, in order.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(env.thread(&ts, "Escalation 1").len(), 1);
    assert_eq!(env.thread(&ts, "Escalation 2").len(), 1);
    let all = env.thread(&ts, "Escalation");
    assert!(all[0].contains("Escalation 1") && all[1].contains("Escalation 2"));
    // The decision resolves the incident, once, with the same key.
    assert_eq!(env.app.decide(&id, "approved").await.status, 200);
    let resolves = env.pd.wait_for("resolve", 1, WAIT).await;
    assert_eq!(resolves[0]["dedup_key"], id.as_str());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(env.pd_events("trigger", &id).len(), 1);
    assert_eq!(env.pd_events("resolve", &id).len(), 1);
}

async fn an_action_decided_before_its_stage_is_not_escalated(backend: Backend) {
    let env = setup(backend).await;
    let id = env.create("esc.quick").await;
    assert_eq!(env.app.decide(&id, "approved").await.status, 200);
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let escalations: Vec<_> = env
        .slack
        .calls_to("chat.postMessage")
        .into_iter()
        .filter(|c| c.args.to_string().contains("Escalation"))
        .collect();
    assert!(escalations.is_empty(), "{escalations:?}");
    assert!(env.pd_events("trigger", &id).is_empty());
    assert!(
        env.pd_events("resolve", &id).is_empty(),
        "nothing was paged"
    );
    assert!(
        env.app
            .get("app", &id)
            .await
            .body
            .get("escalation")
            .is_none()
    );
}

async fn reminders_repeat_until_the_decision(backend: Backend) {
    let env = setup(backend).await;
    let id = env.create("remind.me").await;
    let ts = env.message_ts(&id).await;
    let reminders = env.wait_thread(&ts, "Reminder", 2).await;
    assert!(reminders[0].contains("<@U0BOB>") && reminders[0].contains("<@U0CAROL>"));
    assert_eq!(env.app.decide(&id, "denied").await.status, 200);
    // A reminder already on its way (posts are paced) may still land; none starts after.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let at_decision = env.thread(&ts, "Reminder").len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        env.thread(&ts, "Reminder").len(),
        at_decision,
        "no reminder after the decision"
    );
}

async fn pagerduty_is_retried_after_500_but_not_after_400(backend: Backend) {
    let env = setup(backend).await;
    env.pd.fail(PdFault::Status(500), 1);
    let id = env.create("esc.retry").await;
    let triggers = env.pd.wait_for("trigger", 1, WAIT).await;
    assert_eq!(triggers[0]["dedup_key"], id.as_str());
    assert_eq!(env.pd.events().iter().filter(|e| e.faulted).count(), 1);

    env.pd.fail(PdFault::Status(400), 1);
    let id = env.create("esc.refused").await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let sent: Vec<_> = env
        .pd
        .events()
        .into_iter()
        .filter(|e| e.body["dedup_key"] == id.as_str())
        .collect();
    assert_eq!(sent.len(), 1, "a 400 is not retried: {sent:?}");
    assert!(sent[0].faulted);
}

on_both_backends!(
    stages_fire_once_in_order_and_the_incident_is_resolved,
    an_action_decided_before_its_stage_is_not_escalated,
    reminders_repeat_until_the_decision,
    pagerduty_is_retried_after_500_but_not_after_400,
);

/// Two processes share one Redis: each stage still fires once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_fire_each_stage_once() {
    let env = setup(Backend::redis()).await;
    let _b = spawn_app_with(
        env.app.backend.clone(),
        options(&env.slack, &env.pd, Some(&env.app.prefix)),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(env.create(&format!("esc.many{i}")).await);
    }
    // Posts to one channel are paced (one a second per process), so give them time.
    for id in &ids {
        let ts = env.message_ts(id).await;
        env.wait_thread(&ts, "Escalation 2", 1).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for id in &ids {
        let ts = env.message_ts(id).await;
        assert_eq!(env.thread(&ts, "Escalation 1").len(), 1, "{id}");
        assert_eq!(env.thread(&ts, "Escalation 2").len(), 1, "{id}");
        assert_eq!(env.pd_events("trigger", id).len(), 1, "{id}");
    }
}

/// A stage that came due while every process was stopped fires once after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_due_during_downtime_fires_once_after_restart() {
    let mut env = setup(Backend::redis()).await;
    let id = env.create("esc.downtime").await;
    let ts = env.message_ts(&id).await;
    env.app.stop().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        env.thread(&ts, "Escalation").is_empty(),
        "nothing fired while stopped"
    );
    let _second = spawn_app_with(
        env.app.backend.clone(),
        options(&env.slack, &env.pd, Some(&env.app.prefix)),
    )
    .await;
    env.wait_thread(&ts, "Escalation 2", 1).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(env.thread(&ts, "Escalation 1").len(), 1);
    assert_eq!(env.thread(&ts, "Escalation 2").len(), 1);
    assert_eq!(env.pd_events("trigger", &id).len(), 1);
}

/// A stage with `webhook` posts a signed event to it (http to loopback is allowed for
/// development; production policies use https).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_stage_posts_a_signed_event() {
    let hook = crate::common::pagerduty::FakeWebhook::start().await;
    let slack = FakeSlack::start().await;
    let pd = FakePagerDuty::start().await;
    let (secret, secret_text) = greenlight::signing::Secret::generate();
    let policy = format!(
        "{POLICY}\n[[rule]]\nname = \"hooked\"\nmatch = {{ action = \"hook.*\" }}\ndecision = \"require\"\nttl = \"60s\"\nescalate = [{{ after = \"1s\", webhook = \"{}\" }}]\n",
        hook.url
    );
    let mut options = options(&slack, &pd, None);
    options.policy = policy;
    let secret_text_copy = secret_text.clone();
    options.notify_secret = Some(secret_text);
    let app = spawn_app_with(Backend::redis(), options).await;
    let r = app.create(&request("hook.fire", "svc/db")).await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    let got = hook.wait_for(1, WAIT).await;
    let event: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(event["type"], "greenlight.escalation");
    assert_eq!(event["stage"], 1);
    assert_eq!(event["action"]["id"], id.as_str());
    let verify_with = |key: greenlight::signing::Secret| {
        greenlight::signing::verify(
            &[key],
            got[0].header("webhook-id").unwrap(),
            got[0].header("webhook-timestamp").unwrap(),
            got[0].header("webhook-signature").unwrap(),
            &got[0].body,
            chrono::Utc::now().timestamp(),
        )
    };
    // Signed with the key derived for escalation webhooks, which is what
    // `greenlight secret derive --purpose escalation` prints; not with the secret itself.
    let derived = greenlight::signing::derive_whsec(
        &secret_text_copy,
        greenlight::signing::KeyPurpose::EscalationWebhook,
    )
    .unwrap();
    assert_eq!(
        verify_with(greenlight::signing::Secret::parse(&derived).unwrap()),
        Ok(())
    );
    assert_eq!(
        verify_with(secret),
        Err(greenlight::signing::VerifyError::Mismatch),
        "signed with GREENLIGHT_NOTIFY_SECRET itself"
    );
}

//! Slack, timers and callbacks: the events that happen away from the intake.

use super::*;

const SLACK_POLICY: &str = concat!(
    r##"
[defaults]
channel = "#approvals"

"##,
    test_clients!(),
    r##"
[[rule]]
name = "chased"
match = { action = "chase.*" }
decision = "require"
approvers = ["U0BOB"]
ttl = "60s"
remind_every = "1s"
escalate = [{ after = "1s", notify = ["U0LEAD", "@dba-leads"] }]

[[rule]]
name = "bob"
match = { action = "*" }
decision = "require"
approvers = ["U0BOB"]
"##
);

async fn slack_app(backend: Backend) -> (TestApp, FakeSlack) {
    let slack = FakeSlack::start().await;
    let app = spawn_app_with(
        backend,
        AppOptions {
            policy: SLACK_POLICY.into(),
            slack_api_base: Some(slack.base.clone()),
            ..Default::default()
        },
    )
    .await;
    (app, slack)
}

async fn click(app: &TestApp, slack: &FakeSlack, user: &str, button: &str, id: &str) {
    let payload = block_action(
        user,
        button,
        id,
        "C0APPROVALS",
        "1700000000.000001",
        &slack.response_url(),
    );
    let body = interaction_body(&payload);
    let now = chrono::Utc::now().timestamp();
    let headers = signed_slack_headers(SLACK_SIGNING_SECRET, now, &body);
    let r = app
        .send_raw("POST", "/slack/interactions", body, &headers)
        .await;
    assert_eq!(r.status, 200);
}

async fn slack_votes_and_chasing_are_recorded(backend: Backend) {
    let (app, slack) = slack_app(backend).await;
    // Slack refusing to post: given up on at once, and audited.
    slack.fail(
        "chat.postMessage",
        Fault::SlackError("channel_not_found"),
        1,
    );
    let (refused, _) = created(&app, "deploy.nowhere").await;
    let entries = entries_until(&app, &refused, "slack_error").await;
    assert_eq!(entries[1]["details"]["call"], "chat.postMessage");
    let error = entries[1]["details"]["error"].as_str().unwrap();
    assert!(error.contains("channel_not_found"), "{error}");

    let (id, _) = created(&app, "deploy.prod").await;
    let posted = entries_until(&app, &id, "message_posted").await;
    assert_eq!(posted[1]["details"]["channel"], "C0APPROVALS");
    click(&app, &slack, "U0EVE", "greenlight_approve", &id).await;
    entries_until(&app, &id, "vote_rejected").await;
    click(&app, &slack, "U0BOB", "greenlight_approve", &id).await;
    let entries = entries_until(&app, &id, "approved").await;
    assert_eq!(
        story(&entries),
        pairs(&[
            ("requested", "u-123"),
            ("message_posted", "-"),
            ("vote_rejected", "U0EVE"),
            ("vote", "U0BOB"),
            ("approved", "U0BOB"),
        ])
    );
    assert_eq!(
        entries[2]["details"]["why"],
        "You are not an approver for rule `bob`."
    );
    assert_eq!(entries[3]["details"]["vote"], "approve");
    assert_eq!(entries[4]["details"]["via"], "slack");
    // A click on the decided action is a rejected vote too.
    click(&app, &slack, "U0BOB", "greenlight_deny", &id).await;
    let entries = entries_until(&app, &id, "vote_rejected").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut rejected = entries
        .iter()
        .filter(|e| e["event"] == "vote_rejected")
        .count();
    while rejected < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        rejected = entries_of(&app, &id)
            .await
            .iter()
            .filter(|e| e["event"] == "vote_rejected")
            .count();
    }
    assert_eq!(rejected, 2);

    // Escalation and reminders, by the timer.
    let (chased, _) = created(&app, "chase.me").await;
    entries_until(&app, &chased, "escalated").await;
    let entries = entries_until(&app, &chased, "reminded").await;
    let escalated = entries.iter().find(|e| e["event"] == "escalated").unwrap();
    assert_eq!(escalated["actor"], "timer");
    assert_eq!(escalated["details"]["stage"], 1);
    assert_eq!(
        escalated["details"]["targets"],
        json!(["U0LEAD", "@dba-leads"])
    );
    assert_eq!(app.cancel("app", &chased).await.status, 200);
    verified(&app).await;
}

async fn callbacks_are_recorded(backend: Backend) {
    let app = spawn_app(backend).await;
    let hook = FakeWebhook::start().await;
    hook.fail(500, 1);
    let mut body = request("deploy.prod", "svc/x");
    body["callback_url"] = json!(hook.url);
    let r = app.create(&body).await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(app.decide(&id, "denied").await.status, 200);
    let entries = entries_until(&app, &id, "callback_sent").await;
    let events: Vec<_> = story(&entries).into_iter().map(|(e, _)| e).collect();
    assert_eq!(
        events,
        ["requested", "denied", "callback_failed", "callback_sent"]
    );
    assert_eq!(entries[2]["details"]["retrying"], true);
    assert_eq!(entries[3]["details"]["url"], hook.url.as_str());
    verified(&app).await;
}

on_both_backends!(slack_votes_and_chasing_are_recorded, callbacks_are_recorded);

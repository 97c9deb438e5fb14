//! Slack callbacks that are correctly signed but must not count: from another workspace
//! the app is installed in, or before the bot's own workspace is known; and
//! `/greenlight status` shown only to an action's approvers and requester.

use crate::common::slack::{
    FakeSlack, Fault, TEAM_ID, block_action, interaction_body, signed_slack_headers,
    slash_command_body,
};
use crate::common::{
    AppOptions, Backend, Resp, SLACK_SIGNING_SECRET, TestApp, request, spawn_app_with,
};
use serde_json::Value;
use std::time::Duration;

const POLICY: &str = concat!(
    r##"
[defaults]
channel = "#approvals"
on_no_match = "require"

"##,
    test_clients!(),
    r##"
[[rule]]
name = "solo"
match = { action = "db.*" }
decision = "require"
approvers = ["U0BOB"]
"##
);

const WAIT: Duration = Duration::from_secs(10);
const OTHER_TEAM: &str = "T0ELSEWHERE";

async fn app_with(slack: &FakeSlack, backend: Backend, team: Option<&str>) -> TestApp {
    spawn_app_with(
        backend,
        AppOptions {
            policy: POLICY.into(),
            slack_api_base: Some(slack.base.clone()),
            slack_team_id: team.map(str::to_owned),
            ..Default::default()
        },
    )
    .await
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A pending action whose approval message was posted.
async fn pending(app: &TestApp, slack: &FakeSlack) -> String {
    let r = app.create(&request("db.migrate", "svc/x")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !slack
        .calls_to("chat.postMessage")
        .iter()
        .any(|c| c.args.to_string().contains(&id))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no message for {id}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    id
}

/// U0BOB (the rule's approver) clicks Approve, from workspace `team`.
async fn approve_from(app: &TestApp, slack: &FakeSlack, id: &str, team: &str) -> Resp {
    let mut payload = block_action(
        "U0BOB",
        "greenlight_approve",
        id,
        "C0APPROVALS",
        "1700000000.000001",
        &slack.response_url(),
    );
    payload["team"]["id"] = team.into();
    payload["user"]["team_id"] = team.into();
    let body = interaction_body(&payload);
    let headers = signed_slack_headers(SLACK_SIGNING_SECRET, now(), &body);
    app.send_raw("POST", "/slack/interactions", body, &headers)
        .await
}

async fn command(app: &TestApp, slack: &FakeSlack, user: &str, text: &str, team: &str) -> String {
    let body = String::from_utf8(slash_command_body(user, text, &slack.response_url()))
        .unwrap()
        .replace(&format!("team_id={TEAM_ID}"), &format!("team_id={team}"))
        .into_bytes();
    let headers = signed_slack_headers(SLACK_SIGNING_SECRET, now(), &body);
    let r = app
        .send_raw("POST", "/slack/commands", body, &headers)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["response_type"], "ephemeral");
    r.body["text"].as_str().unwrap().to_owned()
}

/// The audit entries about `id` once one is a `vote_rejected`.
async fn rejected_votes(app: &TestApp, id: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = app
            .send_as(
                "auditor",
                "GET",
                &format!("/v1/audit?action_id={id}"),
                &Value::Null,
            )
            .await;
        let rejected: Vec<Value> = r.body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == "vote_rejected")
            .cloned()
            .collect();
        if !rejected.is_empty() {
            return rejected;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no vote_rejected for {id}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The approver's click, correctly signed by the app, from another workspace the app is
/// installed in: nothing changes, and it is audited; the same click from the bot's own
/// workspace approves. Before, it approved.
async fn a_click_from_another_workspace_changes_nothing(backend: Backend) {
    let slack = FakeSlack::start().await;
    let app = app_with(&slack, backend, None).await;
    let id = pending(&app, &slack).await;
    let r = approve_from(&app, &slack, &id, OTHER_TEAM).await;
    assert_eq!(r.status, 200, "Slack gets a 200: {}", r.body);
    let rejected = rejected_votes(&app, &id).await;
    assert_eq!(rejected[0]["actor"], "U0BOB");
    assert_eq!(rejected[0]["details"]["team"], OTHER_TEAM, "{rejected:?}");
    let replies = slack.wait_for_responses(1, WAIT).await;
    assert!(
        replies[0].1["text"].as_str().unwrap().contains("workspace"),
        "{replies:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let now = app.get("app", &id).await.body;
    assert_eq!(now["status"], "pending", "{now}");
    assert_eq!(now["votes"], serde_json::json!([]));

    let r = approve_from(&app, &slack, &id, TEAM_ID).await;
    assert_eq!(r.status, 200);
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.get("app", &id).await.body["status"] != "approved" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the own workspace's click did not count"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Slash commands from another workspace answer nothing about any action.
async fn a_command_from_another_workspace_shows_nothing(backend: Backend) {
    let slack = FakeSlack::start().await;
    let app = app_with(&slack, backend, None).await;
    let id = pending(&app, &slack).await;
    for text in ["pending".to_owned(), format!("status {id}")] {
        let answer = command(&app, &slack, "U0BOB", &text, OTHER_TEAM).await;
        assert!(!answer.contains(&id), "{text}: {answer}");
        assert!(
            answer.contains("does not serve this Slack workspace"),
            "{answer}"
        );
    }
    // From the own workspace, the approver sees it.
    let answer = command(&app, &slack, "U0BOB", &format!("status {id}"), TEAM_ID).await;
    assert!(answer.contains("pending"), "{answer}");
}

/// `auth.test` never succeeds, so the bot's workspace is unknown: every callback is
/// refused (fail closed), even one that names the right workspace.
async fn callbacks_are_refused_while_the_workspace_is_unknown(backend: Backend) {
    let slack = FakeSlack::start().await;
    slack.fail("auth.test", Fault::SlackError("invalid_auth"), 10_000);
    let app = app_with(&slack, backend, None).await;
    let id = pending(&app, &slack).await;
    let r = approve_from(&app, &slack, &id, TEAM_ID).await;
    assert_eq!(r.status, 200);
    let rejected = rejected_votes(&app, &id).await;
    assert!(
        rejected[0]["details"]["why"]
            .as_str()
            .unwrap()
            .contains("not known"),
        "{rejected:?}"
    );
    let answer = command(&app, &slack, "U0BOB", &format!("status {id}"), TEAM_ID).await;
    assert!(!answer.contains(&id), "{answer}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.get("app", &id).await.body["status"], "pending");
}

/// `auth.test` fails twice, then answers: it is retried in the background, and from then
/// on the workspace's clicks count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_test_is_retried_until_the_workspace_is_known() {
    let slack = FakeSlack::start().await;
    slack.fail("auth.test", Fault::SlackError("invalid_auth"), 2);
    let app = app_with(&slack, Backend::Memory, None).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = app.send_raw("GET", "/readyz", vec![], &[]).await;
        if r.body["slack"] == "ok" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "auth.test never retried: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id = pending(&app, &slack).await;
    assert_eq!(approve_from(&app, &slack, &id, TEAM_ID).await.status, 200);
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.get("app", &id).await.body["status"] != "approved" {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `SLACK_TEAM_ID` names the workspace: its callbacks count even though `auth.test`
/// names another, and the one `auth.test` names does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_team_id_wins_over_auth_test() {
    let slack = FakeSlack::start().await;
    let app = app_with(&slack, Backend::Memory, Some(OTHER_TEAM)).await;
    slack.wait_for("auth.test", 1, WAIT).await;
    let id = pending(&app, &slack).await;
    approve_from(&app, &slack, &id, TEAM_ID).await;
    rejected_votes(&app, &id).await;
    assert_eq!(app.get("app", &id).await.body["status"], "pending");
    approve_from(&app, &slack, &id, OTHER_TEAM).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.get("app", &id).await.body["status"] != "approved" {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `/greenlight status ID` shows the action to its approvers and its requester only;
/// anyone else gets the same answer as for an id that does not exist.
async fn status_is_shown_only_to_approvers_and_the_requester(backend: Backend) {
    let slack = FakeSlack::start().await;
    slack.add_user("alice@example.com", "U0ALICE");
    let app = app_with(&slack, backend, None).await;
    let id = pending(&app, &slack).await;
    let status = format!("status {id}");
    // U0BOB approves under the rule; U0ALICE requested it (request() names her).
    for user in ["U0BOB", "U0ALICE"] {
        let answer = command(&app, &slack, user, &status, TEAM_ID).await;
        assert!(answer.contains("pending"), "{user}: {answer}");
    }
    let stranger = command(&app, &slack, "U0MALLORY", &status, TEAM_ID).await;
    let unknown = command(
        &app,
        &slack,
        "U0MALLORY",
        "status act_01JD8Y3M6QW9T3V7K2X5N4B1C0",
        TEAM_ID,
    )
    .await;
    assert_eq!(stranger, unknown, "an existing id must not be told apart");
    assert!(
        stranger.contains("No such action, or not yours"),
        "{stranger}"
    );
    assert!(!stranger.contains("db.migrate"));
}

on_both_backends!(
    a_click_from_another_workspace_changes_nothing,
    a_command_from_another_workspace_shows_nothing,
    callbacks_are_refused_while_the_workspace_is_unknown,
    status_is_shown_only_to_approvers_and_the_requester,
);

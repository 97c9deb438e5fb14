//! Approving from Slack, against a fake Slack Web API on loopback, with callbacks signed
//! exactly as Slack signs them.

use crate::common::slack::{
    FakeSlack, Fault, block_action, deny_reason_submission, interaction_body, signed_slack_headers,
    slash_command_body,
};
use crate::common::{
    AppOptions, Backend, ChannelRecorder, Resp, SLACK_SIGNING_SECRET, TestApp, request,
    spawn_app_with,
};
use serde_json::{Value, json};
use std::sync::Arc;
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
name = "reads"
match = { action = "read.*" }
decision = "approve"

[[rule]]
name = "dual"
match = { action = "db.*" }
decision = "require"
approvers = ["U0BOB", "U0CAROL", "U0DAVE"]
min_approvals = 2
channel = "#db-approvals"

[[rule]]
name = "groups"
match = { action = "group.*" }
decision = "require"
approvers = ["@dba-team", "erin@example.com"]

[[rule]]
name = "reasoned"
match = { action = "money.*" }
decision = "require"
approvers = ["U0BOB"]
deny_reason_required = true

[[rule]]
name = "self-ok"
match = { action = "self.*" }
decision = "require"
approvers = ["U0ALICE"]
allow_self_approval = true

[[rule]]
name = "short"
match = { action = "short.*" }
decision = "require"
approvers = ["U0BOB"]
ttl = "2s"

[[rule]]
name = "solo"
match = { action = "solo.*" }
decision = "require"
approvers = ["U0BOB", "alice@example.com"]
"##
);

const WAIT: Duration = Duration::from_secs(10);

struct SlackTest {
    app: Arc<TestApp>,
    slack: FakeSlack,
}

async fn setup(backend: Backend) -> SlackTest {
    let slack = FakeSlack::start().await;
    slack.add_group("S0DBA", "dba-team", &["U0GRACE"]);
    slack.add_user("erin@example.com", "U0ERIN");
    slack.add_user("alice@example.com", "U0ALICE");
    let app = spawn_app_with(
        backend,
        AppOptions {
            policy: POLICY.into(),
            slack_api_base: Some(slack.base.clone()),
            ..Default::default()
        },
    )
    .await;
    SlackTest {
        app: Arc::new(app),
        slack,
    }
}

impl SlackTest {
    /// Creates an action and waits for its approval message; returns (id, channel).
    async fn pending(&self, action: &str) -> (String, String) {
        let r = self.app.create(&request(action, "svc/x")).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let id = r.body["id"].as_str().unwrap().to_owned();
        let channel = self.message_for(&id).await;
        let posted = self.app.get("app", &id).await;
        assert_eq!(posted.body["status"], "pending");
        (id, channel)
    }

    /// The channel the approval message for `id` was posted to.
    async fn message_for(&self, id: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let calls = self.slack.calls_to("chat.postMessage");
            if let Some(call) = calls
                .iter()
                .find(|c| c.args.get("thread_ts").is_none() && c.args.to_string().contains(id))
            {
                return call.args["channel"].as_str().unwrap().to_owned();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no message for {id}: {calls:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn post_slack(&self, path: &str, body: Vec<u8>, timestamp: i64) -> Resp {
        let headers = signed_slack_headers(SLACK_SIGNING_SECRET, timestamp, &body);
        self.app.send_raw("POST", path, body, &headers).await
    }

    async fn click_on(&self, app: &TestApp, user: &str, action_id: &str, id: &str) -> Resp {
        let payload = block_action(
            user,
            action_id,
            id,
            "C0APPROVALS",
            "1700000000.000001",
            &self.slack.response_url(),
        );
        let body = interaction_body(&payload);
        let headers = signed_slack_headers(SLACK_SIGNING_SECRET, now(), &body);
        app.send_raw("POST", "/slack/interactions", body, &headers)
            .await
    }

    async fn click(&self, user: &str, action_id: &str, id: &str) -> Resp {
        let r = self.click_on(&self.app, user, action_id, id).await;
        assert_eq!(r.status, 200, "Slack gets a 200 at once: {}", r.body);
        r
    }

    async fn approve(&self, user: &str, id: &str) {
        self.click(user, "greenlight_approve", id).await;
    }

    async fn status_becomes(&self, id: &str, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let r = self.app.get("admin", id).await;
            if r.body["status"] == status {
                return r.body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id} never became {status}: {}",
                r.body
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The ephemeral replies sent to response URLs so far.
    async fn ephemeral(&self, n: usize) -> Vec<String> {
        self.slack
            .wait_for_responses(n, WAIT)
            .await
            .into_iter()
            .map(|(_, body)| {
                assert_eq!(body["response_type"], "ephemeral");
                body["text"].as_str().unwrap_or_default().to_owned()
            })
            .collect()
    }

    /// chat.update calls for the message of action `id`.
    fn updates(&self, id: &str) -> Vec<Value> {
        self.slack
            .calls_to("chat.update")
            .into_iter()
            .filter(|c| c.args.to_string().contains(id))
            .map(|c| c.args)
            .collect()
    }

    /// Waits for the update that closes the message of `id` (no buttons left), and checks
    /// it says `says`.
    async fn final_update(&self, id: &str, says: &str) -> Value {
        let update = self.update_where(id, |u| !has_buttons(u)).await;
        assert!(update.to_string().contains(says), "{says} not in {update}");
        update
    }

    /// Waits for an update of the message of `id` that contains `contains`.
    async fn last_update(&self, id: &str, contains: &str) -> Value {
        self.update_where(id, |u| u.to_string().contains(contains))
            .await
    }

    async fn update_where(&self, id: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let ts = id;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(u) = self.updates(ts).into_iter().find(|u| wanted(u)) {
                return u;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no such update of {ts}: {:?}",
                self.updates(ts)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn has_buttons(message: &Value) -> bool {
    message.to_string().contains("greenlight_approve")
}

async fn a_pending_action_posts_one_message_with_buttons(backend: Backend) {
    let t = setup(backend).await;
    let (id, channel) = t.pending("db.drop_table").await;
    assert_eq!(channel, "#db-approvals", "posted in the rule's channel");
    let posts: Vec<_> = t
        .slack
        .calls_to("chat.postMessage")
        .into_iter()
        .filter(|c| c.args.to_string().contains(&id))
        .collect();
    assert_eq!(posts.len(), 1);
    let message = &posts[0].args;
    assert_eq!(
        posts[0].token.as_deref(),
        Some(crate::common::SLACK_BOT_TOKEN)
    );
    let text = message.to_string();
    for needle in [
        "greenlight_approve",
        "greenlight_deny",
        "primary",
        "danger",
        "db.drop_table",
        "svc/x",
        "<!date^",
    ] {
        assert!(text.contains(needle), "message lacks {needle}: {text}");
    }
    // An auto-decided action posts nothing.
    let before = t.slack.calls_to("chat.postMessage").len();
    let r = t.app.create(&request("read.stuff", "svc/x")).await;
    assert_eq!(r.body["status"], "approved");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.slack.calls_to("chat.postMessage").len(), before);
}

async fn an_approver_approves_and_everyone_hears(backend: Backend) {
    let t = setup(backend).await;
    let (id, _) = t.pending("solo.restart").await;
    let recorder = match t.app.backend.redis_server() {
        Some(r) => Some(ChannelRecorder::start(r, &t.app.prefix).await),
        None => None,
    };
    let waiter = {
        let (app, id) = (t.app.clone(), id.clone());
        tokio::spawn(async move { app.wait("app", &id, 30).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    t.approve("U0BOB", &id).await;
    let w = tokio::time::timeout(WAIT, waiter).await.unwrap().unwrap();
    assert_eq!(w.body["status"], "approved");
    assert_eq!(w.body["decision"]["decided_by"], json!(["U0BOB"]));
    assert_eq!(w.body["votes"][0]["user"], "U0BOB");
    if let Some(recorder) = recorder {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            recorder.count_for(&id),
            1,
            "the decision is published on Redis once"
        );
    }
    // The message is updated in place, without buttons, naming the approver.
    let update = t.final_update(&id, "U0BOB").await;
    let ts = update["ts"].as_str().unwrap().to_owned();
    // The vote and the outcome go to the thread; the requester gets a DM.
    let thread = t.slack.wait_for("chat.postMessage", 4, WAIT).await;
    let replies: Vec<_> = thread
        .iter()
        .filter(|c| c.args["thread_ts"] == ts.as_str())
        .collect();
    assert!(
        replies.len() >= 2,
        "vote and outcome in the thread: {thread:?}"
    );
    let dm = t.slack.wait_for("conversations.open", 1, WAIT).await;
    assert_eq!(dm[0].args["users"], "U0ALICE");
    assert!(thread.iter().any(|c| c.args["channel"] == "DU0ALICE"));
}

async fn two_of_three_approve_and_the_message_counts_votes(backend: Backend) {
    let t = setup(backend).await;
    let (id, _) = t.pending("db.migrate").await;
    t.approve("U0BOB", &id).await;
    let update = t.last_update(&id, "(1 of 2 approvals)").await;
    assert!(
        has_buttons(&update),
        "still open after one of two: {update}"
    );
    assert_eq!(t.app.get("app", &id).await.body["status"], "pending");
    t.approve("U0CAROL", &id).await;
    let done = t.status_becomes(&id, "approved").await;
    assert_eq!(done["decision"]["decided_by"], json!(["U0BOB", "U0CAROL"]));
    t.final_update(&id, "U0CAROL").await;
}

async fn the_requester_and_strangers_cannot_vote(backend: Backend) {
    let t = setup(backend).await;
    let (id, _) = t.pending("db.migrate").await;
    // The requester (matched by Slack id), a non-approver.
    t.approve("U0ALICE", &id).await;
    t.approve("U0MALLORY", &id).await;
    let replies = t.ephemeral(2).await;
    assert!(
        replies.iter().any(|r| r.contains("requested this action")),
        "{replies:?}"
    );
    assert!(
        replies.iter().any(|r| r.contains("not an approver")),
        "{replies:?}"
    );
    let a = t.app.get("app", &id).await.body;
    assert_eq!(a["status"], "pending");
    assert_eq!(a["votes"], json!([]));

    // The requester matched by email: alice@example.com is U0ALICE in Slack.
    let mut body = request("solo.restart", "svc/x");
    body["requester"] = json!({"id": "u-9", "email": "alice@example.com"});
    let id = t.app.create(&body).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    t.approve("U0ALICE", &id).await;
    let replies = t.ephemeral(3).await;
    assert!(replies[2].contains("requested this action"), "{replies:?}");
    assert_eq!(t.app.get("app", &id).await.body["status"], "pending");

    // Unless the rule allows self-approval.
    let (id, _) = t.pending("self.service").await;
    t.approve("U0ALICE", &id).await;
    t.status_becomes(&id, "approved").await;
}

async fn group_and_email_approvers_can_approve(backend: Backend) {
    let t = setup(backend).await;
    let (a, _) = t.pending("group.one").await;
    t.approve("U0GRACE", &a).await;
    t.status_becomes(&a, "approved").await;
    let (b, _) = t.pending("group.two").await;
    t.approve("U0ERIN", &b).await;
    t.status_becomes(&b, "approved").await;
}

async fn deny_with_and_without_a_reason(backend: Backend) {
    let t = setup(backend).await;
    let (id, _) = t.pending("db.migrate").await;
    t.click("U0DAVE", "greenlight_deny", &id).await;
    let denied = t.status_becomes(&id, "denied").await;
    assert_eq!(denied["decision"]["decided_by"], json!(["U0DAVE"]));
    t.final_update(&id, "U0DAVE").await;

    // A rule that wants a reason opens a modal instead of denying.
    let (id, _) = t.pending("money.transfer").await;
    t.click("U0BOB", "greenlight_deny", &id).await;
    let views = t.slack.wait_for("views.open", 1, WAIT).await;
    assert!(views[0].args["trigger_id"].is_string());
    assert_eq!(
        views[0].args["view"]["callback_id"],
        "greenlight_deny_reason"
    );
    assert_eq!(views[0].args["view"]["private_metadata"], id.as_str());
    assert_eq!(t.app.get("app", &id).await.body["status"], "pending");
    // An empty reason is refused in the modal.
    let body = interaction_body(&deny_reason_submission("U0BOB", &id, "   "));
    let r = t.post_slack("/slack/interactions", body, now()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["response_action"], "errors");
    assert_eq!(t.app.get("app", &id).await.body["status"], "pending");
    // A reason denies with it.
    let body = interaction_body(&deny_reason_submission(
        "U0BOB",
        &id,
        "not during the freeze",
    ));
    let r = t.post_slack("/slack/interactions", body, now()).await;
    assert_eq!(r.status, 200);
    let denied = t.status_becomes(&id, "denied").await;
    assert_eq!(denied["decision"]["reason"], "not during the freeze");
    // The modal of a non-approver denies nothing.
    let (id, _) = t.pending("money.other").await;
    let body = interaction_body(&deny_reason_submission("U0MALLORY", &id, "because"));
    t.post_slack("/slack/interactions", body, now()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.app.get("app", &id).await.body["status"], "pending");
}

async fn double_clicks_and_late_clicks_change_nothing(backend: Backend) {
    let t = setup(backend).await;
    let (id, _) = t.pending("db.migrate").await;
    t.approve("U0BOB", &id).await;
    t.approve("U0BOB", &id).await;
    let replies = t.ephemeral(1).await;
    assert!(replies[0].contains("already voted"), "{replies:?}");
    let a = t.app.get("app", &id).await.body;
    assert_eq!(a["status"], "pending");
    assert_eq!(a["votes"].as_array().unwrap().len(), 1);

    // After expiry: the click is answered with the outcome, nothing changes.
    let (id, _) = t.pending("short.job").await;
    t.status_becomes(&id, "expired").await;
    t.final_update(&id, "xpired").await;
    t.approve("U0BOB", &id).await;
    let replies = t.ephemeral(2).await;
    assert!(replies[1].contains("already expired"), "{replies:?}");
    assert_eq!(t.app.get("app", &id).await.body["status"], "expired");
}

async fn forged_stale_and_unsigned_callbacks_are_rejected(backend: Backend) {
    let t = setup(backend).await;
    let (id, _) = t.pending("solo.restart").await;
    let payload = block_action(
        "U0BOB",
        "greenlight_approve",
        &id,
        "C0",
        "1.2",
        &t.slack.response_url(),
    );
    let body = interaction_body(&payload);
    // Past the 300 s window either way (the exact boundary is unit-tested with fixed times
    // in `src/slack/verify.rs`); the future one keeps a margin, as the server reads its
    // clock a moment later.
    for ts in [now() - 301, now() + 360] {
        let r = t.post_slack("/slack/interactions", body.clone(), ts).await;
        assert_eq!(r.status, 401, "timestamp {ts}");
    }
    // Tampered after signing.
    let mut headers = signed_slack_headers(SLACK_SIGNING_SECRET, now(), &body);
    let other = interaction_body(&block_action(
        "U0BOB",
        "greenlight_approve",
        &id,
        "C0",
        "1.3",
        "x",
    ));
    let r = t
        .app
        .send_raw("POST", "/slack/interactions", other, &headers)
        .await;
    assert_eq!(r.status, 401);
    // Signed with another secret; and not signed at all.
    headers = signed_slack_headers("not-the-secret", now(), &body);
    let r = t
        .app
        .send_raw("POST", "/slack/interactions", body.clone(), &headers)
        .await;
    assert_eq!(r.status, 401);
    let unsigned = vec![(
        "content-type".to_string(),
        "application/x-www-form-urlencoded".to_string(),
    )];
    let r = t
        .app
        .send_raw("POST", "/slack/interactions", body.clone(), &unsigned)
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error_code(), "unauthorized");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = t.app.get("app", &id).await.body;
    assert_eq!(a["status"], "pending");
    assert_eq!(a["votes"], json!([]));
}

async fn request_text_cannot_ping_or_link(backend: Backend) {
    let t = setup(backend).await;
    let mut body = request("solo.restart", "svc/<!here>");
    body["reason"] = json!("please <!channel> see <https://evil.example|click here> & *now*");
    body["requester"]["name"] = json!("<@U0BOSS>");
    let id = t.app.create(&body).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    t.message_for(&id).await;
    let post = t
        .slack
        .calls_to("chat.postMessage")
        .into_iter()
        .find(|c| c.args.to_string().contains(&id))
        .unwrap();
    let text = post.args.to_string();
    for forged in ["<!channel>", "<!here>", "<https://evil", "<@U0BOSS>"] {
        assert!(!text.contains(forged), "raw {forged} in {text}");
    }
    assert!(text.contains("&lt;!channel&gt;"));
    assert!(text.contains("&amp;"));
}

async fn a_429_storm_ends_with_one_message(backend: Backend) {
    let t = setup(backend).await;
    t.slack.fail(
        "chat.postMessage",
        Fault::RateLimited {
            retry_after: Some(1),
        },
        3,
    );
    let r = t.app.create(&request("solo.restart", "svc/x")).await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    t.message_for(&id).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let posts: Vec<_> = t
        .slack
        .calls_to("chat.postMessage")
        .into_iter()
        .filter(|c| c.args.to_string().contains(&id))
        .collect();
    assert_eq!(posts.len(), 1, "posted exactly once after the storm");
    assert!(t.slack.calls().iter().filter(|c| c.faulted).count() >= 3);
}

async fn slack_refusing_a_post_leaves_the_action_pending(backend: Backend) {
    let t = setup(backend).await;
    t.slack.fail(
        "chat.postMessage",
        Fault::SlackError("channel_not_found"),
        1,
    );
    let r = t.app.create(&request("solo.restart", "svc/x")).await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(t.app.get("app", &id).await.body["status"], "pending");
    // Not retried into a storm: a refusal is final for that message.
    let attempts = t
        .slack
        .calls()
        .iter()
        .filter(|c| c.method == "chat.postMessage")
        .count();
    assert_eq!(attempts, 1);
    // Break-glass still works.
    assert_eq!(t.app.decide(&id, "approved").await.status, 200);
}

async fn decisions_made_elsewhere_update_the_message(backend: Backend) {
    let t = setup(backend).await;
    let (id, _) = t.pending("solo.a").await;
    assert_eq!(t.app.decide(&id, "denied").await.status, 200);
    t.final_update(&id, "ops-lead@example.com").await;
    let (id, _) = t.pending("solo.b").await;
    assert_eq!(t.app.cancel("app", &id).await.status, 200);
    t.final_update(&id, "ancel").await;
}

async fn slash_commands_answer_ephemerally(backend: Backend) {
    let t = setup(backend).await;
    let (id, _) = t.pending("db.migrate").await;
    let (other, _) = t.pending("group.one").await;
    let body = slash_command_body("U0BOB", "pending", &t.slack.response_url());
    let r = t.post_slack("/slack/commands", body, now()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["response_type"], "ephemeral");
    let text = r.body["text"].as_str().unwrap();
    assert!(text.contains(&id), "{text}");
    assert!(
        !text.contains(&other),
        "U0BOB may not approve group.one: {text}"
    );
    let body = slash_command_body("U0BOB", &format!("status {id}"), &t.slack.response_url());
    let r = t.post_slack("/slack/commands", body, now()).await;
    assert!(r.body["text"].as_str().unwrap().contains("pending"));
    let body = slash_command_body("U0BOB", "help", &t.slack.response_url());
    let r = t.post_slack("/slack/commands", body, now()).await;
    assert!(
        r.body["text"]
            .as_str()
            .unwrap()
            .contains("/greenlight pending")
    );
    let r = t
        .post_slack(
            "/slack/commands",
            slash_command_body("U0BOB", "help", "x"),
            now() - 400,
        )
        .await;
    assert_eq!(r.status, 401);
}

async fn readiness_reports_slack(backend: Backend) {
    let t = setup(backend).await;
    t.slack.wait_for("auth.test", 1, WAIT).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = t.app.send_raw("GET", "/readyz", vec![], &[]).await;
        assert_eq!(r.status, 200);
        if r.body["slack"] == "ok" {
            break;
        }
        assert_eq!(
            r.body["slack"], "unknown",
            "auth.test answered ok: {}",
            r.body
        );
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

on_both_backends!(
    a_pending_action_posts_one_message_with_buttons,
    an_approver_approves_and_everyone_hears,
    two_of_three_approve_and_the_message_counts_votes,
    the_requester_and_strangers_cannot_vote,
    group_and_email_approvers_can_approve,
    deny_with_and_without_a_reason,
    double_clicks_and_late_clicks_change_nothing,
    forged_stale_and_unsigned_callbacks_are_rejected,
    request_text_cannot_ping_or_link,
    a_429_storm_ends_with_one_message,
    slack_refusing_a_post_leaves_the_action_pending,
    decisions_made_elsewhere_update_the_message,
    slash_commands_answer_ephemerally,
    readiness_reports_slack,
);

/// The waiter is on one replica, the click lands on another: one decision, one message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_on_another_replica_answers_the_waiter() {
    let t = setup(Backend::redis()).await;
    let b = t.app.replica(&t.app.prefix).await;
    let (id, _) = t.pending("db.migrate").await;
    let waiter = {
        let (app, id) = (t.app.clone(), id.clone());
        tokio::spawn(async move { app.wait("app", &id, 30).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The two clicks that complete the quorum land on different replicas at once.
    let (r1, r2) = tokio::join!(
        t.click_on(&t.app, "U0BOB", "greenlight_approve", &id),
        t.click_on(&b, "U0CAROL", "greenlight_approve", &id),
    );
    assert_eq!((r1.status, r2.status), (200, 200));
    let w = tokio::time::timeout(WAIT, waiter).await.unwrap().unwrap();
    assert_eq!(w.body["status"], "approved");
    assert_eq!(w.body["votes"].as_array().unwrap().len(), 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let messages = t
        .slack
        .calls_to("chat.postMessage")
        .into_iter()
        .filter(|c| c.args.get("thread_ts").is_none() && c.args.to_string().contains(&id))
        .count();
    assert_eq!(messages, 1, "one approval message across replicas");
}

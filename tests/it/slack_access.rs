//! Access windows in Slack, against the fake Slack Web API: the request message says what
//! access for how long; once approved it shows the window active with a **Revoke** button
//! for the requester and the approvers; revoking (from Slack or the API) or the end of
//! its time updates the message once; the requester's DM says how to use the grant.

use crate::audit::entries_until;
use crate::common::slack::{FakeSlack, block_action, interaction_body, signed_slack_headers};
use crate::common::{
    Backend, POLICY, Resp, SLACK_SIGNING_SECRET, TestApp, request, spawn_with_slack,
};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// `db.*` windows on prod for up to an hour and `logs.*` windows for up to two seconds,
/// both approved by Bob.
fn policy() -> String {
    POLICY.replacen(
        "[[rule]]",
        r#"[[rule]]
name = "db-access"
match = { action = "db.*", resource = "postgres://prod/*" }
decision = "require"
approvers = ["U0BOB"]
max_window = "1h"

[[rule]]
name = "log-access"
match = { action = "logs.*" }
decision = "require"
approvers = ["U0BOB"]
max_window = "2s"

[[rule]]"#,
        1,
    )
}

struct WindowTest {
    app: TestApp,
    slack: FakeSlack,
}

async fn setup(backend: Backend) -> WindowTest {
    let (app, slack) = spawn_with_slack(backend, policy()).await;
    WindowTest { app, slack }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl WindowTest {
    /// Asks for a window (requester Alice, `U0ALICE`; grant for client `other`) and waits
    /// for its approval message: (id, the message as posted).
    async fn request(&self, action: &str, resource: &str) -> (String, Value) {
        let mut body = request(action, resource);
        body["window_seconds"] = 3600.into();
        body["audience"] = "other".into();
        let r = self.app.create(&body).await;
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(r.body["status"], "pending");
        let id = r.body["id"].as_str().unwrap().to_owned();
        let deadline = Instant::now() + WAIT;
        loop {
            let posted = self
                .slack
                .calls_to("chat.postMessage")
                .into_iter()
                .find(|c| c.args.get("thread_ts").is_none() && c.args.to_string().contains(&id));
            if let Some(call) = posted {
                return (id, call.args);
            }
            assert!(Instant::now() < deadline, "no approval message for {id}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn click_on(
        &self,
        app: &TestApp,
        user: &str,
        action_id: &str,
        id: &str,
        secret: &str,
    ) -> Resp {
        let payload = block_action(
            user,
            action_id,
            id,
            "C0APPROVALS",
            "1700000000.000101",
            &self.slack.response_url(),
        );
        let body = interaction_body(&payload);
        let headers = signed_slack_headers(secret, now(), &body);
        app.send_raw("POST", "/slack/interactions", body, &headers)
            .await
    }

    async fn click(&self, user: &str, action_id: &str, id: &str) {
        let r = self
            .click_on(&self.app, user, action_id, id, SLACK_SIGNING_SECRET)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }

    /// Approves `id` in Slack and waits for it: the action as its creator reads it.
    async fn approve(&self, id: &str) -> Value {
        self.click("U0BOB", "greenlight_approve", id).await;
        self.window_where(id, |a| a["status"] == "approved").await
    }

    async fn window_where(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let a = self.app.get("app", id).await.body;
            if done(&a) {
                return a;
            }
            assert!(Instant::now() < deadline, "never reached: {a}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The blocks of each `chat.update` of the message of `id`, as text.
    fn updates(&self, id: &str) -> Vec<String> {
        self.slack
            .calls_to("chat.update")
            .into_iter()
            .filter(|c| c.args.to_string().contains(id))
            .map(|c| format!("{} {}", c.args["text"], c.args["blocks"]))
            .collect()
    }

    /// Waits for an update of the message of `id` that contains `text`.
    async fn update_with(&self, id: &str, text: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(u) = self.updates(id).into_iter().find(|u| u.contains(text)) {
                return u;
            }
            assert!(
                Instant::now() < deadline,
                "no update with {text:?}: {:#?}",
                self.updates(id)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The text of the first DM in the channel `dm`.
    async fn dm_to(&self, dm: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let posts = self.slack.calls_to("chat.postMessage");
            if let Some(c) = posts.iter().find(|c| c.args["channel"] == dm) {
                return c.args["text"].as_str().unwrap().to_owned();
            }
            assert!(Instant::now() < deadline, "no DM in {dm}: {posts:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One use of the window's grant by its audience.
    async fn use_grant(&self, token: &str) -> Value {
        let body = json!({"token": token, "action": "db.select",
            "resource": "postgres://prod/users", "use": true});
        self.app
            .send_as("other", "POST", "/v1/grants/verify", &body)
            .await
            .body
    }
}

fn token(action: &Value) -> String {
    action["decision"]["grant"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no grant in {action}"))
        .to_owned()
}

/// Waits long enough for any Slack work a change scheduled to have run (the scheduler
/// wakes at once for local changes and looks at least every second).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

async fn a_window_in_slack_from_request_to_revoke(backend: Backend) {
    let t = setup(backend).await;
    let (id, posted) = t.request("db.*", "postgres://prod/*").await;
    assert_eq!(
        posted["text"],
        "Approval needed: access for 1h to db.* on postgres://prod/*"
    );
    assert!(
        posted["blocks"]
            .to_string()
            .contains(":key: *Access for 1h* to `db.*` on `postgres://prod/*`"),
        "{posted}"
    );

    // Approved: active until the end, with a Revoke button; the requester is told how to
    // use it, never the grant itself.
    let action = t.approve(&id).await;
    let token = token(&action);
    let active = t.update_with(&id, "*Access active* until <!date^").await;
    assert!(active.contains("· 0 uses"), "{active}");
    assert!(
        active.contains("\"action_id\":\"greenlight_revoke\""),
        "{active}"
    );
    assert!(active.contains("\"style\":\"danger\""), "{active}");
    assert!(active.contains("Revoke this access?"), "{active}");
    let dm = t.dm_to("DU0ALICE").await;
    assert!(dm.contains("`Greenlight-Grant` header"), "{dm}");
    assert!(dm.contains("to `other`"), "{dm}");
    assert!(!dm.contains(&token), "{dm}");
    assert!(
        !t.slack
            .calls()
            .iter()
            .any(|c| c.args.to_string().contains(&token))
    );
    assert_eq!(t.use_grant(&token).await["uses"], 1);

    // Someone who neither asked nor may approve: refused, and nothing changes.
    let updates_before = t.updates(&id).len();
    t.click("U0MALLORY", "greenlight_revoke", &id).await;
    let replies = t.slack.wait_for_responses(1, WAIT).await;
    let reply = &replies[0].1;
    assert_eq!(reply["response_type"], "ephemeral");
    assert_eq!(
        reply["text"],
        "Only the requester or an approver for rule `db-access` may revoke this access."
    );
    // A click whose signature does not verify is rejected before anything reads it.
    let r = t
        .click_on(
            &t.app,
            "U0ALICE",
            "greenlight_revoke",
            &id,
            "not-the-signing-secret",
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    settle().await;
    assert_eq!(t.use_grant(&token).await["uses"], 2);
    let a = t.app.get("app", &id).await.body;
    assert_eq!(a["window"]["ended"], Value::Null);
    assert_eq!(t.updates(&id).len(), updates_before);

    // The requester revokes: ended at once, as by the API, the trail names her.
    t.click("U0ALICE", "greenlight_revoke", &id).await;
    let a = t
        .window_where(&id, |a| !a["window"]["ended"].is_null())
        .await;
    assert_eq!(a["window"]["ended"], "revoked");
    assert_eq!(a["window"]["uses"], 2);
    assert_eq!(
        t.use_grant(&token).await,
        json!({"valid": false, "reason": "revoked"})
    );
    let entries = entries_until(&t.app, &id, "access_ended").await;
    let ended: Vec<&Value> = entries
        .iter()
        .filter(|e| e["event"] == "access_ended")
        .collect();
    assert_eq!(ended.len(), 1, "{entries:#?}");
    assert_eq!(ended[0]["actor"], "U0ALICE");
    assert_eq!(ended[0]["details"], json!({"ended": "revoked", "uses": 2}));
    let over = t
        .update_with(&id, "*Access ended*: revoked by <@U0ALICE> · 2 uses")
        .await;
    assert!(!over.contains("greenlight_revoke"), "{over}");
    assert!(!over.contains("Access active"), "{over}");

    // Once: another click, or a revoke through the API, changes nothing more.
    t.click("U0ALICE", "greenlight_revoke", &id).await;
    let replies = t.slack.wait_for_responses(2, WAIT).await;
    assert_eq!(replies[1].1["text"], "This access already ended (revoked).");
    let path = format!("/v1/actions/{id}/revoke");
    let r = t.app.send_as("admin", "POST", &path, &Value::Null).await;
    assert_eq!(r.status, 200, "{}", r.body);
    settle().await;
    let ends: Vec<String> = t
        .updates(&id)
        .into_iter()
        .filter(|u| u.contains("Access ended"))
        .collect();
    assert_eq!(ends.len(), 1, "{ends:#?}");
    let entries = entries_until(&t.app, &id, "access_ended").await;
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["event"] == "access_ended")
            .count(),
        1
    );
}

/// An approver may revoke too; revoking through the API (as the CLI does) updates the
/// message the same way, naming the client.
async fn approvers_and_the_api_revoke_too(backend: Backend) {
    let t = setup(backend).await;
    let (id, _) = t.request("db.*", "postgres://prod/*").await;
    t.approve(&id).await;
    t.update_with(&id, "*Access active*").await;
    t.click("U0BOB", "greenlight_revoke", &id).await;
    t.update_with(&id, "*Access ended*: revoked by <@U0BOB> · 0 uses")
        .await;

    let (id, _) = t.request("db.*", "postgres://prod/*").await;
    t.approve(&id).await;
    t.update_with(&id, "*Access active*").await;
    let r = t
        .app
        .send_as(
            "app",
            "POST",
            &format!("/v1/actions/{id}/revoke"),
            &Value::Null,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let over = t
        .update_with(&id, "*Access ended*: revoked by client `app` · 0 uses")
        .await;
    assert!(!over.contains("greenlight_revoke"), "{over}");
}

/// A window whose time is up: the timer records the end and the message says so.
async fn an_expired_window_updates_its_message(backend: Backend) {
    let t = setup(backend).await;
    let (id, posted) = t.request("logs.*", "svc/payments").await;
    // Capped to the rule's two seconds.
    assert_eq!(
        posted["text"],
        "Approval needed: access for 2s to logs.* on svc/payments"
    );
    let approved_at = Instant::now();
    t.approve(&id).await;
    let over = t.update_with(&id, "*Access ended*: expired · 0 uses").await;
    assert!(!over.contains("greenlight_revoke"), "{over}");
    // Two seconds of window, then at most a scheduler tick or two.
    assert!(approved_at.elapsed() < Duration::from_secs(6));
    let entries = entries_until(&t.app, &id, "access_ended").await;
    let ended = entries
        .iter()
        .find(|e| e["event"] == "access_ended")
        .unwrap();
    assert_eq!(ended["actor"], "timer");
    // A click on a button still showing somewhere is told, and changes nothing.
    t.click("U0ALICE", "greenlight_revoke", &id).await;
    let replies = t.slack.wait_for_responses(1, WAIT).await;
    assert_eq!(replies[0].1["text"], "This access already ended (expired).");
}

on_both_backends!(
    a_window_in_slack_from_request_to_revoke,
    approvers_and_the_api_revoke_too,
    an_expired_window_updates_its_message,
);

/// Two replicas on one Redis: a Slack revoke on one is seen by the other, and the
/// message is updated once between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_update_the_message_once() {
    let t = setup(Backend::redis()).await;
    let two = t.app.replica(&t.app.prefix).await;
    let (id, _) = t.request("db.*", "postgres://prod/*").await;
    let action = t.approve(&id).await;
    t.update_with(&id, "*Access active*").await;
    // The approval's Slack work is over once the requester has their DM.
    t.dm_to("DU0ALICE").await;

    let r = t
        .click_on(
            &two,
            "U0ALICE",
            "greenlight_revoke",
            &id,
            SLACK_SIGNING_SECRET,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    t.update_with(&id, "*Access ended*: revoked by <@U0ALICE>")
        .await;
    let body = json!({"token": token(&action), "action": "db.select",
        "resource": "postgres://prod/users", "use": true});
    let r = t
        .app
        .send_as("other", "POST", "/v1/grants/verify", &body)
        .await;
    assert_eq!(r.body, json!({"valid": false, "reason": "revoked"}));
    // Revoked again on the other replica: still one update showing the end.
    let r = t
        .app
        .send_as(
            "admin",
            "POST",
            &format!("/v1/actions/{id}/revoke"),
            &Value::Null,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    settle().await;
    let ends = t
        .updates(&id)
        .into_iter()
        .filter(|u| u.contains("Access ended"))
        .count();
    assert_eq!(ends, 1);
}

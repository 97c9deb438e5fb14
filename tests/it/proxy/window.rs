//! Access windows at the proxy: a request carrying its requester's window grant, for an
//! action and resource within the window, goes through with no new approval (nothing
//! asked, nothing posted to Slack), each time counted and audited; any other grant, the
//! same grant for another requester or outside its scope, or a revoked one, is held as
//! any request.

use super::*;
use crate::audit::entries_until;
use crate::common::slack::FakeSlack;
use crate::common::{AppOptions, POLICY, spawn_app_with};

/// The test policy, with rules that allow windows (for at most an hour) on `accounts.*`,
/// and on the proxy's `db.write` on `postgres://prod`.
pub(crate) fn policy() -> String {
    POLICY.replacen(
        "[[rule]]",
        r#"[[rule]]
name = "account-access"
match = { action = "accounts.*" }
decision = "require"
max_window = "1h"

[[rule]]
name = "db-write-access"
match = { action = "db.write", resource = "postgres://prod" }
decision = "require"
max_window = "1h"

[[rule]]"#,
        1,
    )
}

/// A Greenlight with Slack on (the fake's), under [`policy`].
pub(crate) async fn spawn_with_slack(backend: Backend) -> (TestApp, FakeSlack) {
    crate::common::spawn_with_slack(backend, policy()).await
}

/// A window on `action`/`resource` for `requester`, asked by the `other` client (the
/// incident tooling) for `audience` and approved: its id and its grant.
pub(crate) async fn approved_window(
    app: &TestApp,
    action: &str,
    resource: &str,
    requester: &str,
    audience: &str,
) -> (String, String) {
    let mut body = crate::common::request(action, resource);
    body["requester"] = json!({"id": requester, "email": format!("{requester}@example.com")});
    body["window_seconds"] = 1800.into();
    body["audience"] = audience.into();
    let r = app.send_as("other", "POST", "/v1/actions", &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let r = app.decide(&id, "approved").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let action = app.get("other", &id).await.body;
    let token = action["decision"]["grant"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no grant in {action}"))
        .to_owned();
    (id, token)
}

/// The ids of the pending actions, as an admin lists them.
pub(crate) async fn pending_ids(app: &TestApp) -> Vec<String> {
    let r = app
        .send_as("admin", "GET", "/v1/actions?status=pending", &Value::Null)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Whether any message posted to Slack mentions `text`.
pub(crate) fn slack_posted(slack: &FakeSlack, text: &str) -> bool {
    slack
        .calls_to("chat.postMessage")
        .iter()
        .any(|c| c.args.to_string().contains(text))
}

/// Waits until a message posted to Slack mentions `text` (an approval asked for).
pub(crate) async fn wait_posted(slack: &FakeSlack, text: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !slack_posted(slack, text) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing posted to Slack about {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `access_used` entries of the window `id`, once there is one.
pub(crate) async fn uses_audited(app: &TestApp, id: &str) -> Vec<Value> {
    entries_until(app, id, "access_used")
        .await
        .into_iter()
        .filter(|e| e["event"] == "access_used")
        .collect()
}

/// A request for alice's account 42 (which the route asks `accounts.delete` on
/// `accounts/42` for), by `user`, offering `grant`.
fn delete(proxy: &Running, account: &str, user: &str, grant: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .delete(format!("{}/accounts/{account}?hard=1", proxy.base))
        .header("x-user", user)
        .header("x-user-email", format!("{user}@example.com"))
        .header("greenlight-grant", grant)
}

/// `request` is held: a new action is asked for (for `user` on `resource`) in Slack,
/// and nothing reaches the upstream; denied, it is answered 403.
async fn held(
    (app, slack): (&TestApp, &FakeSlack),
    upstream: &Upstream,
    request: reqwest::RequestBuilder,
    user: &str,
    resource: &str,
) {
    let before = upstream.reached.load(Ordering::SeqCst);
    let answer = tokio::spawn(send(request));
    let action = pending_action(app).await;
    assert_eq!(action["resource"], resource);
    assert_eq!(action["requester"]["id"], user);
    wait_posted(slack, action["id"].as_str().unwrap()).await;
    assert_eq!(
        app.decide(action["id"].as_str().unwrap(), "denied")
            .await
            .status,
        200
    );
    let (status, _, body) = answer.await.unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(upstream.reached.load(Ordering::SeqCst), before);
}

async fn a_window_grant_goes_through_the_proxy_without_a_new_approval(backend: Backend) {
    let (app, slack) = spawn_with_slack(backend).await;
    // The proxy signs as `app`: the window is for it.
    let proxy = proxy(&app).await;
    let (id, token) = approved_window(&app, "accounts.*", "accounts/42", "alice", "app").await;

    for n in 1..=2 {
        let (status, _, seen) = send(delete(&proxy, "42", "alice", &token)).await;
        assert_eq!(status, 200, "{seen}");
        assert_eq!(proxy.upstream.reached.load(Ordering::SeqCst), n);
        assert_eq!(seen["uri"], "/accounts/42?hard=1");
        // The upstream sees the window's grant, the one the proxy checked, and its id.
        assert_eq!(seen["headers"]["greenlight-grant"], token.as_str());
        assert_eq!(seen["headers"]["greenlight-action-id"], id.as_str());
    }
    // Nobody was asked: no action, no Slack message about the requests.
    assert!(pending_ids(&app).await.is_empty());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !slack_posted(&slack, "accounts.delete"),
        "{:#?}",
        slack.calls_to("chat.postMessage")
    );
    // Each request is one use, counted and audited with what was let through.
    assert_eq!(app.get("other", &id).await.body["window"]["uses"], 2);
    let uses = uses_audited(&app, &id).await;
    assert_eq!(uses.len(), 2, "{uses:#?}");
    for (n, entry) in uses.iter().enumerate() {
        assert_eq!(entry["actor"], "app");
        assert_eq!(
            entry["details"],
            json!({"requester": "alice", "action": "accounts.delete",
                "resource": "accounts/42", "uses": n + 1})
        );
    }

    // The same grant for another requester is held, and asked for in Slack.
    held(
        (&app, &slack),
        &proxy.upstream,
        delete(&proxy, "42", "bob", &token),
        "bob",
        "accounts/42",
    )
    .await;
    // Outside the window's resource: held.
    held(
        (&app, &slack),
        &proxy.upstream,
        delete(&proxy, "7", "alice", &token),
        "alice",
        "accounts/7",
    )
    .await;
    // Alice's window for another enforcement point: held here.
    let (_, elsewhere) = approved_window(&app, "accounts.*", "accounts/42", "alice", "other").await;
    held(
        (&app, &slack),
        &proxy.upstream,
        delete(&proxy, "42", "alice", &elsewhere),
        "alice",
        "accounts/42",
    )
    .await;
    // A single-action grant issued to the proxy's client is no window.
    let mut read = crate::common::request("read.logs", "accounts/42");
    read["requester"] = json!({"id": "alice", "email": "alice@example.com"});
    let r = app.create(&read).await;
    let single = r.body["decision"]["grant"]["token"].as_str().unwrap();
    held(
        (&app, &slack),
        &proxy.upstream,
        delete(&proxy, "42", "alice", single),
        "alice",
        "accounts/42",
    )
    .await;
    // None of those counted as a use.
    assert_eq!(app.get("other", &id).await.body["window"]["uses"], 2);

    // Revoked: the very next request is held.
    let r = app
        .send_as(
            "admin",
            "POST",
            &format!("/v1/actions/{id}/revoke"),
            &Value::Null,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    held(
        (&app, &slack),
        &proxy.upstream,
        delete(&proxy, "42", "alice", &token),
        "alice",
        "accounts/42",
    )
    .await;
    assert_eq!(proxy.upstream.reached.load(Ordering::SeqCst), 2);
    assert_eq!(uses_audited(&app, &id).await.len(), 2);
}

/// The real `greenlight proxy` binary, on a route with a body condition: the statement
/// is forwarded byte for byte under alice's window, and held for bob.
async fn the_proxy_binary_takes_a_window_grant_on_a_body_route(backend: Backend) {
    let (app, slack) = spawn_with_slack(backend).await;
    let proxy = super::binary::proxy_process(&app, ROUTES).await;
    let (id, token) = approved_window(&app, "db.write", "postgres://prod", "alice", "app").await;
    let statement = json!({"query": "DELETE FROM sessions WHERE expired"});
    let call = |user: &str| {
        reqwest::Client::new()
            .post(format!("{}/sql", proxy.base))
            .header("x-user", user)
            .header("x-user-email", format!("{user}@example.com"))
            .header("greenlight-grant", &token)
            .json(&statement)
    };
    let (status, _, seen) = send(call("alice")).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["body"], statement.to_string());
    assert_eq!(seen["headers"]["greenlight-action-id"], id.as_str());
    assert!(pending_ids(&app).await.is_empty());
    held(
        (&app, &slack),
        &proxy.upstream,
        call("bob"),
        "bob",
        "postgres://prod",
    )
    .await;
    let uses = uses_audited(&app, &id).await;
    assert_eq!(uses.len(), 1, "{uses:#?}");
    assert_eq!(uses[0]["details"]["action"], "db.write");
}

/// Greenlight unreachable: a window grant is not taken on trust; the request is refused
/// (503, as any held request then), never forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_grant_is_not_forwarded_when_greenlight_cannot_be_asked() {
    let mut app = spawn_app_with(
        Backend::Memory,
        AppOptions {
            policy: policy(),
            ..Default::default()
        },
    )
    .await;
    let proxy = proxy(&app).await;
    let (_, token) = approved_window(&app, "accounts.*", "accounts/42", "alice", "app").await;
    // The proxy has the keys already (a first use), so only the use itself is missing.
    assert_eq!(send(delete(&proxy, "42", "alice", &token)).await.0, 200);
    app.stop().await;
    let (status, _, body) = send(delete(&proxy, "42", "alice", &token)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert_eq!(proxy.upstream.reached.load(Ordering::SeqCst), 1);
}

on_both_backends!(
    a_window_grant_goes_through_the_proxy_without_a_new_approval,
    the_proxy_binary_takes_a_window_grant_on_a_body_route,
);

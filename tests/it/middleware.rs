//! The `RequireApproval` layer in a small axum app on a real socket, in front of a real
//! Greenlight: matching requests are held until decided, then forwarded with the grant
//! or refused; everything else passes untouched.

use crate::common::slack::FakeSlack;
use crate::common::{Backend, TestApp, spawn_app};
use crate::proxy::window::{
    approved_window, pending_ids, slack_posted, spawn_with_slack, uses_audited, wait_posted,
};
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use greenlight::client::Client;
use greenlight::domain::{ActionRequest, Requester};
use greenlight::middleware::RequireApproval;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The app behind the layer: `DELETE /accounts/{id}` needs approval; every call that
/// reaches a handler is counted, and answers with the gate headers it was given.
struct Service {
    base: String,
    reached: Arc<AtomicUsize>,
}

async fn echo(uri: axum::http::Uri, headers: HeaderMap, body: String) -> impl IntoResponse {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    axum::Json(json!({
        "grant": header("greenlight-grant"),
        "action_id": header("greenlight-action-id"),
        "path": uri.path(),
        "body": body,
    }))
}

async fn service(app: &TestApp) -> Service {
    service_holding(app, greenlight::middleware::DEFAULT_MAX_HELD).await
}

async fn service_holding(app: &TestApp, max_held: usize) -> Service {
    let reached = Arc::new(AtomicUsize::new(0));
    let approval = RequireApproval::new(Client::new(&app.base, "app", app.secret("app")))
        .route("DELETE /accounts/*")
        .hold_timeout(Duration::from_secs(20))
        .max_held(max_held)
        .extract(|req| {
            let user = req
                .headers
                .get("x-user")
                .and_then(|v| v.to_str().ok())
                .ok_or((StatusCode::UNAUTHORIZED, "no user".to_owned()))?;
            let email = req
                .headers
                .get("x-user-email")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            Ok(ActionRequest {
                action: "accounts.delete".into(),
                resource: req.uri.path().into(),
                requester: Requester {
                    id: user.into(),
                    email,
                    ..Default::default()
                },
                ..Default::default()
            })
        });
    let counter = reached.clone();
    let router = Router::new()
        .route("/accounts/{id}", get(echo).delete(echo))
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    next.run(req).await
                }
            },
        ))
        .layer(approval);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Service {
        base: format!("http://{addr}"),
        reached,
    }
}

async fn send(req: reqwest::RequestBuilder) -> (u16, HeaderMap, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

/// Waits until `app` has a pending action and returns its id.
async fn pending_action(app: &TestApp) -> String {
    for _ in 0..100 {
        let pending = app.service.pending(10).await.unwrap();
        if let Some(action) = pending.first() {
            return action.id.to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no pending action appeared");
}

async fn holds_a_request_until_approved_then_forwards_it_with_the_grant(backend: Backend) {
    let app = spawn_app(backend).await;
    let svc = service(&app).await;
    let http = reqwest::Client::new();
    let held = tokio::spawn(send(
        http.delete(format!("{}/accounts/42", svc.base))
            .header("x-user", "alice")
            .header("x-user-email", "alice@example.com")
            // A caller cannot bring its own grant.
            .header("greenlight-grant", "forged"),
    ));
    let id = pending_action(&app).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!held.is_finished(), "answered before any decision");
    assert_eq!(
        svc.reached.load(Ordering::SeqCst),
        0,
        "forwarded before approval"
    );

    assert_eq!(app.decide(&id, "approved").await.status, 200);
    let (status, _, body) = held.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(svc.reached.load(Ordering::SeqCst), 1);
    assert_eq!(body["action_id"], id.as_str());
    let stored = app.get("app", &id).await.body;
    assert_eq!(body["grant"], stored["decision"]["grant"]["token"]);
    assert_eq!(stored["requester"]["id"], "alice");
    assert_eq!(stored["resource"], "/accounts/42");
}

async fn refuses_a_denied_request_with_403_and_the_outcome(backend: Backend) {
    let app = spawn_app(backend).await;
    let svc = service(&app).await;
    let http = reqwest::Client::new();
    let held = tokio::spawn(send(
        http.delete(format!("{}/accounts/42", svc.base))
            .header("x-user", "alice")
            .header("x-user-email", "alice@example.com"),
    ));
    let id = pending_action(&app).await;
    assert_eq!(app.decide(&id, "denied").await.status, 200);
    let (status, _, body) = held.await.unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    assert_eq!(body["action"]["status"], "denied");
    assert_eq!(body["action"]["id"], id.as_str());
    assert_eq!(
        svc.reached.load(Ordering::SeqCst),
        0,
        "a denied request was forwarded"
    );
}

async fn passes_other_requests_straight_through(backend: Backend) {
    let app = spawn_app(backend).await;
    let svc = service(&app).await;
    let (status, _, body) = send(
        reqwest::Client::new()
            .get(format!("{}/accounts/42", svc.base))
            .header("greenlight-grant", "forged"),
    )
    .await;
    assert_eq!(status, 200);
    // No action asked for, and no grant header the caller made up.
    assert_eq!(body["grant"], Value::Null);
    assert!(app.service.pending(10).await.unwrap().is_empty());
    // A gated route without a requester is answered by the extractor.
    let (status, _, _) =
        send(reqwest::Client::new().delete(format!("{}/accounts/42", svc.base))).await;
    assert_eq!(status, 401);
}

async fn respond_async_answers_202_and_a_retry_is_released_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let svc = service(&app).await;
    let http = reqwest::Client::new();
    let url = format!("{}/accounts/7", svc.base);
    let (status, headers, body) = send(
        http.delete(&url)
            .header("x-user", "alice")
            .header("x-user-email", "alice@example.com")
            .header("prefer", "respond-async"),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let id = headers["greenlight-action-id"].to_str().unwrap().to_owned();
    assert_eq!(
        headers["location"].to_str().unwrap(),
        format!("{}/v1/actions/{id}", app.base)
    );
    assert_eq!(headers["preference-applied"], "respond-async");
    // Polling while pending: another 202, nothing forwarded.
    let retry = || {
        http.delete(&url)
            .header("x-user", "alice")
            .header("x-user-email", "alice@example.com")
            .header("prefer", "respond-async")
            .header("greenlight-action-id", &id)
    };
    assert_eq!(send(retry()).await.0, 202);
    // The approval is for alice's request: bob cannot ride on it.
    assert_eq!(app.decide(&id, "approved").await.status, 200);
    let (status, _, _) = send(
        http.delete(&url)
            .header("x-user", "bob")
            .header("x-user-email", "bob@example.com")
            .header("greenlight-action-id", &id),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, body) = send(retry()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["action_id"], id.as_str());
    // One approval releases one request.
    let (status, _, body) = send(retry()).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    assert_eq!(svc.reached.load(Ordering::SeqCst), 1);
}

/// Paths an upstream reads as `/accounts/42` are held like it, and the service behind the
/// layer gets the canonical path; what has no safe canonical form is refused.
async fn path_tricks_are_held_and_what_runs_is_what_was_matched(backend: Backend) {
    let app = spawn_app(backend).await;
    let svc = service(&app).await;
    let http = reqwest::Client::new();
    for trick in [
        "/x/../accounts/42",
        "/accounts/./42",
        "/x/%2e%2e/accounts/42",
        "//accounts/42",
        "/accounts/42/",
        "/accounts/%34%32",
    ] {
        // reqwest would normalise dot segments itself: send the target as written.
        let held = tokio::spawn(alice_deletes(svc.base.clone(), trick.to_owned()));
        let id = pending_action(&app).await;
        assert_eq!(svc.reached.load(Ordering::SeqCst), 0, "{trick} forwarded");
        let stored = app.get("app", &id).await.body;
        assert_eq!(stored["resource"], "/accounts/42", "{trick}");
        assert_eq!(app.decide(&id, "denied").await.status, 200);
        let (status, body) = held.await.unwrap();
        assert_eq!(status, 403, "{trick}: {body}");
    }
    for refused in [
        "/accounts%2F42",
        "/accounts%5c42",
        "/x/%252e%252e/accounts/42",
        "/a;b/../accounts/42",
    ] {
        let (status, body) = alice_deletes(svc.base.clone(), refused.to_owned()).await;
        assert_eq!(status, 400, "{refused}: {body}");
        assert!(body.contains("invalid_request"), "{body}");
    }
    let lower = http
        .request(
            reqwest::Method::from_bytes(b"delete").unwrap(),
            format!("{}/accounts/42", svc.base),
        )
        .header("x-user", "alice")
        .header("x-user-email", "alice@example.com");
    assert_eq!(send(lower).await.0, 400);
    assert_eq!(svc.reached.load(Ordering::SeqCst), 0);
    assert!(app.service.pending(10).await.unwrap().is_empty());
}

/// Alice's DELETE with the target exactly as given (reqwest would normalise it).
async fn alice_deletes(base: String, target: String) -> (u16, String) {
    let alice = "x-user: alice\r\nx-user-email: alice@example.com\r\n";
    crate::common::raw_http(&base, "DELETE", &target, alice, "").await
}

/// An approval is bound to the request it was asked for: the same route with another
/// body is not released by it, and the approved one is released once.
async fn an_approval_releases_only_the_request_it_was_given_for(backend: Backend) {
    let app = spawn_app(backend).await;
    let svc = service(&app).await;
    let http = reqwest::Client::new();
    let url = format!("{}/accounts/9", svc.base);
    let call = |body: &'static str| {
        http.delete(&url)
            .header("x-user", "alice")
            .header("x-user-email", "alice@example.com")
            .header("prefer", "respond-async")
            .body(body)
    };
    let (status, headers, _) = send(call("close the account, keep the ledger")).await;
    assert_eq!(status, 202);
    let id = headers["greenlight-action-id"].to_str().unwrap().to_owned();
    let stored = app.get("app", &id).await.body;
    assert!(
        stored["binding"]["preview"]
            .as_str()
            .unwrap()
            .contains("close the account, keep the ledger"),
        "{stored}"
    );
    assert_eq!(app.decide(&id, "approved").await.status, 200);
    let (status, _, body) =
        send(call("purge everything").header("greenlight-action-id", &id)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(svc.reached.load(Ordering::SeqCst), 0);
    let (status, _, body) =
        send(call("close the account, keep the ledger").header("greenlight-action-id", &id)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["body"], "close the account, keep the ledger");
    let (status, _, _) =
        send(call("close the account, keep the ledger").header("greenlight-action-id", &id)).await;
    assert_eq!(status, 409);
    assert_eq!(svc.reached.load(Ordering::SeqCst), 1);
}

/// A rule that forbids self-approval needs a requester approvers can be told apart from.
async fn a_requester_without_email_or_slack_id_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let svc = service(&app).await;
    let (status, _, body) = send(
        reqwest::Client::new()
            .delete(format!("{}/accounts/42", svc.base))
            .header("x-user", "alice"),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "requester_unverifiable");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("email"),
        "{body}"
    );
    assert_eq!(svc.reached.load(Ordering::SeqCst), 0);
    assert!(app.service.pending(10).await.unwrap().is_empty());
}

/// Past `max_held` requests waiting at once, the next is answered 503 at once.
async fn requests_beyond_max_held_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let svc = service_holding(&app, 1).await;
    let http = reqwest::Client::new();
    let first = tokio::spawn(send(
        http.delete(format!("{}/accounts/1", svc.base))
            .header("x-user", "alice")
            .header("x-user-email", "alice@example.com"),
    ));
    let id = pending_action(&app).await;
    let (status, _, body) = send(
        http.delete(format!("{}/accounts/2", svc.base))
            .header("x-user", "alice")
            .header("x-user-email", "alice@example.com"),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert_eq!(app.decide(&id, "denied").await.status, 200);
    assert_eq!(first.await.unwrap().0, 403);
}

/// `request` is held by the layer: a new action is asked for (for `user` on `resource`)
/// in Slack, nothing reaches the service; denied, it is answered 403.
async fn held(
    (app, slack): (&TestApp, &FakeSlack),
    svc: &Service,
    request: reqwest::RequestBuilder,
    user: &str,
    resource: &str,
) {
    let before = svc.reached.load(Ordering::SeqCst);
    let answer = tokio::spawn(send(request));
    let id = pending_action(app).await;
    wait_posted(slack, &id).await;
    let stored = app.get("app", &id).await.body;
    assert_eq!(stored["requester"]["id"], user);
    assert_eq!(stored["resource"], resource);
    assert_eq!(app.decide(&id, "denied").await.status, 200);
    let (status, _, body) = answer.await.unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(svc.reached.load(Ordering::SeqCst), before);
}

/// An access window's grant lets its requester's requests within its scope through the
/// layer with no new approval, each one counted and audited; another requester, another
/// resource, or the grant once revoked, are held as any request.
async fn a_window_grant_goes_through_the_layer_without_a_new_approval(backend: Backend) {
    let (app, slack) = spawn_with_slack(backend).await;
    let svc = service(&app).await;
    let (id, token) = approved_window(&app, "accounts.*", "/accounts/42", "alice", "app").await;
    let http = reqwest::Client::new();
    let call = |account: &str, user: &str| {
        http.delete(format!("{}/accounts/{account}", svc.base))
            .header("x-user", user)
            .header("x-user-email", format!("{user}@example.com"))
            .header("greenlight-grant", &token)
            .body("close it")
    };
    for n in 1..=2 {
        let (status, _, body) = send(call("42", "alice")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(svc.reached.load(Ordering::SeqCst), n);
        assert_eq!(body["grant"], token.as_str());
        assert_eq!(body["action_id"], id.as_str());
        assert_eq!(body["body"], "close it");
    }
    assert!(pending_ids(&app).await.is_empty());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!slack_posted(&slack, "accounts.delete"));
    let uses = uses_audited(&app, &id).await;
    assert_eq!(uses.len(), 2, "{uses:#?}");
    assert_eq!(uses[1]["actor"], "app");
    assert_eq!(
        uses[1]["details"],
        json!({"requester": "alice", "action": "accounts.delete",
            "resource": "/accounts/42", "uses": 2})
    );

    held(
        (&app, &slack),
        &svc,
        call("42", "bob"),
        "bob",
        "/accounts/42",
    )
    .await;
    held(
        (&app, &slack),
        &svc,
        call("7", "alice"),
        "alice",
        "/accounts/7",
    )
    .await;
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
        &svc,
        call("42", "alice"),
        "alice",
        "/accounts/42",
    )
    .await;
    assert_eq!(app.get("other", &id).await.body["window"]["uses"], 2);
    assert_eq!(svc.reached.load(Ordering::SeqCst), 2);
}

on_both_backends!(
    a_window_grant_goes_through_the_layer_without_a_new_approval,
    holds_a_request_until_approved_then_forwards_it_with_the_grant,
    refuses_a_denied_request_with_403_and_the_outcome,
    passes_other_requests_straight_through,
    respond_async_answers_202_and_a_retry_is_released_once,
    path_tricks_are_held_and_what_runs_is_what_was_matched,
    an_approval_releases_only_the_request_it_was_given_for,
    a_requester_without_email_or_slack_id_is_refused,
    requests_beyond_max_held_are_refused,
);

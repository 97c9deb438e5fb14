//! Signed requests: what a client must send, and that anything forged,
//! stale, replayed or unknown is refused before anything changes.

use crate::common::{Backend, Headers, TestApp, request, sign_headers, spawn_app};
use greenlight::signing::Secret;
use serde_json::{Value, json};

fn header<'a>(headers: &'a mut Headers, name: &str) -> &'a mut String {
    &mut headers.iter_mut().find(|(k, _)| k == name).unwrap().1
}

/// The store holds no action and the pending count is zero after a rejected request.
async fn nothing_stored(app: &TestApp) {
    if let Some(r) = app.backend.redis_server() {
        let mut c = r.conn();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*action:*").query(&mut c).unwrap();
        assert!(keys.is_empty(), "rejected request stored {keys:?}");
    }
    // Either backend: a fresh valid request is still the first one.
    let r = app
        .create(&request("deploy.prod", "svc/after-rejection"))
        .await;
    assert_eq!(r.status, 201);
}

async fn valid_signature_is_accepted(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = app.create(&request("deploy.prod", "svc/payments")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["client"], "app");
    let id = r.body["id"].as_str().unwrap();
    assert!(id.starts_with("act_") && id.len() == 30);
}

async fn forged_stale_and_malformed_requests_are_rejected(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = serde_json::to_vec(&request("deploy.prod", "svc/payments")).unwrap();
    let good = app.signed_headers("app", "POST", "/v1/actions", &body);

    let mut cases: Vec<(&str, Headers, Vec<u8>)> = Vec::new();
    // Signed with another client's secret.
    let mut wrong_secret = app.signed_headers("other", "POST", "/v1/actions", &body);
    *header(&mut wrong_secret, "greenlight-client") = "app".into();
    cases.push(("wrong secret", wrong_secret, body.clone()));
    // The body changed after signing.
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    cases.push(("tampered body", good.clone(), tampered));
    // Past the 300 s window either way, correctly signed for that time. The exact boundary
    // (300 s in, 301 s out) is unit-tested with fixed times in `src/signing.rs`; here the
    // cases are sent one by one, so the future one keeps a margin for a slow machine.
    for offset in [-301i64, 360] {
        let ts = chrono::Utc::now().timestamp() + offset;
        let headers = sign_headers("app", &app.secret("app"), "POST", "/v1/actions", &body, ts);
        cases.push(("stale timestamp", headers, body.clone()));
    }
    // Each header missing in turn.
    for missing in [
        "greenlight-client",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    ] {
        let headers = good.iter().filter(|(k, _)| k != missing).cloned().collect();
        cases.push(("missing header", headers, body.clone()));
    }
    // A client the policy does not know, signing correctly with its own secret.
    let (stranger, _) = Secret::generate();
    let now = chrono::Utc::now().timestamp();
    let unknown = sign_headers("stranger", &stranger, "POST", "/v1/actions", &body, now);
    cases.push(("unknown client", unknown, body.clone()));
    // A signature that is not base64 at all.
    let mut garbage = good.clone();
    *header(&mut garbage, "webhook-signature") = "v1,!!!".into();
    cases.push(("garbage signature", garbage, body.clone()));

    for (what, headers, body) in cases {
        let r = app.send_raw("POST", "/v1/actions", body, &headers).await;
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        assert_eq!(r.error_code(), "unauthorized", "{what}");
        assert!(r.body["error"]["message"].as_str().unwrap().len() > 5);
    }
    nothing_stored(&app).await;
}

async fn a_signature_for_one_path_does_not_open_another(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_pending().await;
    // Signed for GET of the action, sent to the wait endpoint.
    let headers = app.signed_headers("app", "GET", &format!("/v1/actions/{id}"), b"");
    let r = app
        .send_raw(
            "GET",
            &format!("/v1/actions/{id}/wait?timeout=0"),
            vec![],
            &headers,
        )
        .await;
    assert_eq!(r.status, 401);
    // The query string is signed too.
    let headers = app.signed_headers(
        "app",
        "GET",
        &format!("/v1/actions/{id}/wait?timeout=0"),
        b"",
    );
    let r = app
        .send_raw(
            "GET",
            &format!("/v1/actions/{id}/wait?timeout=1"),
            vec![],
            &headers,
        )
        .await;
    assert_eq!(r.status, 401);
}

async fn replayed_webhook_id_is_rejected(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_pending().await;
    let path = format!("/v1/actions/{id}");
    let headers = app.signed_headers("app", "GET", &path, b"");
    let first = app.send_raw("GET", &path, vec![], &headers).await;
    assert_eq!(first.status, 200);
    let replay = app.send_raw("GET", &path, vec![], &headers).await;
    assert_eq!(replay.status, 401);
    assert!(
        replay.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("replay")
    );

    // A replayed cancel changes nothing the second time either.
    let cancel = format!("/v1/actions/{id}/cancel");
    let headers = app.signed_headers("app", "POST", &cancel, b"");
    assert_eq!(
        app.send_raw("POST", &cancel, vec![], &headers).await.status,
        200
    );
    assert_eq!(
        app.send_raw("POST", &cancel, vec![], &headers).await.status,
        401
    );
}

async fn rotation_accepts_old_or_new_signature(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = serde_json::to_vec(&request("deploy.prod", "svc/rotation")).unwrap();
    let mut headers = app.signed_headers("app", "POST", "/v1/actions", &body);
    let (old, _) = Secret::generate();
    let id = header(&mut headers, "webhook-id").clone();
    let ts: i64 = header(&mut headers, "webhook-timestamp").parse().unwrap();
    let stale_sig = old.sign(&id, ts, &body);
    let sig = header(&mut headers, "webhook-signature");
    *sig = format!("{stale_sig} {sig}");
    let r = app.send_raw("POST", "/v1/actions", body, &headers).await;
    assert_eq!(r.status, 201, "{}", r.body);
}

async fn roles_limit_what_a_client_may_do(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_pending().await;
    // Another requester cannot see, wait on or cancel it; it does not learn it exists.
    assert_eq!(app.get("other", &id).await.status, 404);
    assert_eq!(app.wait("other", &id, 0).await.status, 404);
    assert_eq!(app.cancel("other", &id).await.status, 404);
    // Auditors and admins can read any action.
    assert_eq!(app.get("auditor", &id).await.status, 200);
    assert_eq!(app.get("admin", &id).await.status, 200);
    // Only admins decide; auditors cannot create.
    let r = app
        .send_as(
            "app",
            "POST",
            &format!("/v1/actions/{id}/decision"),
            &json!({"outcome": "approved", "by": "me"}),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error_code(), "forbidden");
    let r = app
        .send_as(
            "auditor",
            "POST",
            "/v1/actions",
            &request("deploy.prod", "x"),
        )
        .await;
    assert_eq!(r.status, 403);
    // Still pending after all of that.
    assert_eq!(app.get("app", &id).await.body["status"], "pending");
}

async fn unknown_routes_and_ids_answer_json_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = app.get("app", "act_01JD8Y3M6QW9T3V7K2X5N4B1C0").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "not_found");
    let r = app.get("app", "not-an-id").await;
    assert_eq!(r.status, 404);
    let r = app.send_as("app", "GET", "/v1/nothing", &Value::Null).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "not_found");
}

/// Headers signed by `client` with a chosen `webhook-id` (what a retry re-signs with).
fn headers_with_id(
    app: &TestApp,
    client: &str,
    id: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> Headers {
    let ts = chrono::Utc::now().timestamp();
    let content = greenlight::signing::signed_content(body, method, path);
    vec![
        ("greenlight-client".into(), client.into()),
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), ts.to_string()),
        (
            "webhook-signature".into(),
            app.secret(client).sign(id, ts, &content),
        ),
    ]
}

/// The reproduced attack: a signed `POST /v1/actions` (its signature covers only the
/// body) sent again, headers and body unchanged, to other endpoints. Before, `GET
/// /v1/audit?limit=5` answered 200 with the trail.
async fn a_signed_create_opens_no_other_endpoint(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = serde_json::to_vec(&request("deploy.prod", "svc/bound")).unwrap();
    let headers = app.signed_headers("admin", "POST", "/v1/actions", &body);
    let created = app
        .send_raw("POST", "/v1/actions", body.clone(), &headers)
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap();

    // Body-less routes refuse the body outright.
    for path in [
        "/v1/audit?limit=5".to_owned(),
        format!("/v1/actions/{id}"),
        format!("/v1/actions/{id}/wait?timeout=0"),
    ] {
        let r = app.send_raw("GET", &path, body.clone(), &headers).await;
        assert_eq!(r.status, 400, "GET {path}: {}", r.body);
        assert_eq!(r.error_code(), "invalid_request");
    }
    // Routes that take a body see a used webhook-id.
    for path in [
        "/v1/grants/verify".to_owned(),
        "/v1/admin/reload".to_owned(),
        format!("/v1/actions/{id}/cancel"),
        format!("/v1/actions/{id}/decision"),
    ] {
        let r = app.send_raw("POST", &path, body.clone(), &headers).await;
        assert_eq!(r.status, 401, "POST {path}: {}", r.body);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("replay")
        );
    }
    // A refused create spends its id too: its signed body (`{}`, which cancel takes)
    // cannot cancel an action afterwards.
    let pending = app.create_pending().await;
    let empty = b"{}".to_vec();
    let signed_empty = app.signed_headers("app", "POST", "/v1/actions", &empty);
    let refused = app
        .send_raw("POST", "/v1/actions", empty.clone(), &signed_empty)
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    let cancel = format!("/v1/actions/{pending}/cancel");
    let r = app.send_raw("POST", &cancel, empty, &signed_empty).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(app.get("app", &pending).await.body["status"], "pending");
    // The idempotent repeat itself still answers the same action.
    let again = app.send_raw("POST", "/v1/actions", body, &headers).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["id"], id);
    assert_eq!(app.get("admin", id).await.body["status"], "pending");
}

/// A `webhook-id` first spent elsewhere cannot then create an action, and the create's
/// repeat rule (same id and body: 200; another body: 409) holds only on `POST /v1/actions`.
async fn a_webhook_id_is_bound_to_its_first_endpoint(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_pending().await;
    let get_path = format!("/v1/actions/{id}");
    let h = headers_with_id(&app, "app", "msg_first_a_get", "GET", &get_path, b"");
    assert_eq!(app.send_raw("GET", &get_path, vec![], &h).await.status, 200);
    let body = serde_json::to_vec(&request("deploy.prod", "svc/late")).unwrap();
    let h = headers_with_id(&app, "app", "msg_first_a_get", "POST", "/v1/actions", &body);
    let r = app.send_raw("POST", "/v1/actions", body, &h).await;
    assert_eq!(r.status, 401, "{}", r.body);

    // Same id, same body: the same action; same id, another body: 409.
    let body = serde_json::to_vec(&request("deploy.prod", "svc/retry")).unwrap();
    let h = headers_with_id(
        &app,
        "app",
        "msg_create_retry",
        "POST",
        "/v1/actions",
        &body,
    );
    let first = app.send_raw("POST", "/v1/actions", body.clone(), &h).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let h = headers_with_id(
        &app,
        "app",
        "msg_create_retry",
        "POST",
        "/v1/actions",
        &body,
    );
    let repeat = app.send_raw("POST", "/v1/actions", body, &h).await;
    assert_eq!(repeat.status, 200, "{}", repeat.body);
    assert_eq!(repeat.body["id"], first.body["id"]);
    let other = serde_json::to_vec(&request("deploy.prod", "svc/else")).unwrap();
    let h = headers_with_id(
        &app,
        "app",
        "msg_create_retry",
        "POST",
        "/v1/actions",
        &other,
    );
    let conflict = app.send_raw("POST", "/v1/actions", other, &h).await;
    assert_eq!(conflict.status, 409, "{}", conflict.body);
    // The create's id, re-signed for a read, is spent.
    let h = headers_with_id(&app, "app", "msg_create_retry", "GET", &get_path, b"");
    assert_eq!(app.send_raw("GET", &get_path, vec![], &h).await.status, 401);
    // Ids are per client: another client may use the same one.
    let h = headers_with_id(&app, "auditor", "msg_create_retry", "GET", &get_path, b"");
    assert_eq!(app.send_raw("GET", &get_path, vec![], &h).await.status, 200);
}

/// Routes without a body refuse one, even correctly signed: `400 invalid_request`.
async fn bodyless_routes_refuse_a_body(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_pending().await;
    for (client, path) in [
        ("app", format!("/v1/actions/{id}")),
        ("app", format!("/v1/actions/{id}/wait?timeout=0")),
        ("auditor", "/v1/audit".to_owned()),
    ] {
        let r = app.send_as(client, "GET", &path, &json!({})).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert_eq!(r.error_code(), "invalid_request");
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("takes no request body")
        );
        // Without one, the same route answers.
        assert_eq!(
            app.send_as(client, "GET", &path, &Value::Null).await.status,
            200
        );
    }
}

on_both_backends!(
    racing_requests_spend_a_webhook_id_once,
    a_signed_create_opens_no_other_endpoint,
    a_webhook_id_is_bound_to_its_first_endpoint,
    bodyless_routes_refuse_a_body,
    valid_signature_is_accepted,
    forged_stale_and_malformed_requests_are_rejected,
    a_signature_for_one_path_does_not_open_another,
    replayed_webhook_id_is_rejected,
    rotation_accepts_old_or_new_signature,
    roles_limit_what_a_client_may_do,
    unknown_routes_and_ids_answer_json_404,
);

/// Two requests racing with one `webhook-id`: a create, and another endpoint (on another
/// replica with Redis). Exactly one of them gets past the signature check; the other is
/// a replay.
async fn racing_requests_spend_a_webhook_id_once(backend: Backend) {
    let one = spawn_app(backend).await;
    let replica = match one.backend {
        Backend::Memory => None,
        _ => Some(one.replica(&one.prefix).await),
    };
    let two = replica.as_ref().unwrap_or(&one);
    for i in 0..20 {
        let body = serde_json::to_vec(&request("deploy.prod", &format!("svc/race-{i}"))).unwrap();
        let headers = one.signed_headers("app", "POST", "/v1/actions", &body);
        let (create, verify) = tokio::join!(
            one.send_raw("POST", "/v1/actions", body.clone(), &headers),
            two.send_raw("POST", "/v1/grants/verify", body.clone(), &headers),
        );
        // The winner of the claim: the create (201) or verify, which then refuses the
        // create's body as its own (400).
        match (create.status, verify.status) {
            (201, 401) | (401, 400) => {}
            other => panic!("round {i}: {other:?}: {} / {}", create.body, verify.body),
        }
    }
}

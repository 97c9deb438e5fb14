//! Grants: every approval carries an Ed25519 JWT that verifies through
//! `POST /v1/grants/verify` and offline against `/.well-known/jwks.json` (with PyJWT),
//! can be made single-use across replicas, revoked, and survives a key rotation.

use crate::common::python::pyjwt_decodes;
use crate::common::{
    AppOptions, Backend, POLICY, Resp, TestApp, request, spawn_app, spawn_app_with,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use greenlight::config::Settings;
use greenlight::domain::Action;
use greenlight::grants::{GrantKeys, generate_signing_key};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use std::time::Duration;

/// The test policy plus a rule whose grants live one second.
fn policy_with_short_grants() -> String {
    POLICY.replacen(
        "[[rule]]",
        "[[rule]]\nname = \"quick\"\nmatch = { action = \"quick.*\" }\ndecision = \"approve\"\ngrant_ttl = \"1s\"\n\n[[rule]]",
        1,
    )
}

fn new_key() -> String {
    generate_signing_key().unwrap().expose_secret().to_owned()
}

async fn verify(app: &TestApp, client: &str, body: Value) -> Resp {
    app.send_as(client, "POST", "/v1/grants/verify", &body)
        .await
}

fn assert_rejected(r: &Resp, reason: &str) {
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, json!({"valid": false, "reason": reason}));
}

fn token(action: &Value) -> String {
    action["decision"]["grant"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no grant in {action}"))
        .to_owned()
}

fn decode_part(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// The same token with another claim value: its signature no longer matches.
fn tamper(token: &str, claim: &str, value: &str) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut claims = decode_part(&parts[1]);
    claims[claim] = value.into();
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    parts.join(".")
}

/// A pending action approved through the admin break-glass route, as its creator reads
/// it (with the grant's token).
async fn approved(app: &TestApp) -> Value {
    let id = app.create_pending().await;
    let r = app.decide(&id, "approved").await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.get("app", &id).await.body
}

async fn jwks(app: &TestApp) -> (Value, Option<String>) {
    let resp = app
        .http
        .get(format!("{}/.well-known/jwks.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cache = resp
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.json().await.unwrap(), cache)
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

async fn approvals_carry_grants(backend: Backend) {
    let app = spawn_app(backend).await;

    let action = approved(&app).await;
    let grant = &action["decision"]["grant"];
    assert_eq!(grant["action"], "deploy.prod");
    assert_eq!(grant["resource"], "svc/payments");
    let r = verify(&app, "app", json!({"token": token(&action)})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["valid"], true, "{}", r.body);
    let claims = &r.body["claims"];
    assert_eq!(claims["iss"], "greenlight");
    assert_eq!(claims["sub"], "u-123");
    assert_eq!(claims["aud"], "app");
    assert_eq!(claims["aid"], action["id"]);
    assert_eq!(claims["act"], "deploy.prod");
    assert_eq!(claims["res"], "svc/payments");
    assert_eq!(claims["approvers"], json!(["ops-lead@example.com"]));
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert_eq!(exp - iat, 15 * 60, "the default grant_ttl");
    let expires_at = chrono::DateTime::parse_from_rfc3339(grant["expires_at"].as_str().unwrap());
    assert_eq!(expires_at.unwrap().timestamp(), exp);
    assert!(ulid::Ulid::from_string(claims["jti"].as_str().unwrap()).is_ok());
    assert_eq!(action["policy"]["grant_ttl_seconds"], 900);
    // Stored with the action: reading it back shows the same grant.
    let read = app.get("app", action["id"].as_str().unwrap()).await;
    assert_eq!(read.body["decision"]["grant"], *grant);

    let r = app.create(&request("read.logs", "svc/payments")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["status"], "approved");
    let v = verify(&app, "admin", json!({"token": token(&r.body)})).await;
    assert_eq!(
        v.body["valid"], true,
        "an admin may verify any grant: {}",
        v.body
    );
    assert_eq!(v.body["claims"]["approvers"], json!(["policy:reads"]));
    assert_eq!(v.body["claims"]["act"], "read.logs");

    // No grant without an approval.
    let denied = app
        .create(&request("db.drop_database", "postgres://prod"))
        .await;
    assert_eq!(denied.body["status"], "denied");
    assert!(denied.body["decision"].get("grant").is_none());
}

async fn verify_checks_scope_and_signature(backend: Backend) {
    let app = spawn_app(backend).await;
    let action = approved(&app).await;
    let token = token(&action);

    let r = verify(
        &app,
        "app",
        json!({"token": token, "action": "deploy.prod", "resource": "svc/payments"}),
    )
    .await;
    assert_eq!(r.body["valid"], true, "{}", r.body);
    let r = verify(
        &app,
        "app",
        json!({"token": token, "action": "deploy.staging"}),
    )
    .await;
    assert_rejected(&r, "wrong_scope");
    let r = verify(
        &app,
        "app",
        json!({"token": token, "resource": "svc/billing"}),
    )
    .await;
    assert_rejected(&r, "wrong_scope");

    let r = verify(
        &app,
        "app",
        json!({"token": tamper(&token, "res", "svc/billing")}),
    )
    .await;
    assert_rejected(&r, "bad_signature");
    let r = verify(&app, "app", json!({"token": "not.a.jwt"})).await;
    assert_rejected(&r, "bad_signature");

    // A well-formed grant for the same action, signed by a key this server does not know.
    let mut settings = Settings::embedded();
    settings.grant_signing_key = Some(generate_signing_key().unwrap());
    let stranger = GrantKeys::from_settings(&settings).unwrap();
    let parsed: Action = serde_json::from_value(action.clone()).unwrap();
    let foreign = stranger.issue(&parsed, Duration::from_secs(600), chrono::Utc::now());
    let r = verify(&app, "app", json!({"token": foreign.token})).await;
    assert_rejected(&r, "bad_signature");

    let r = verify(&app, "app", json!({"token": token, "extra": 1})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.error_code(), "invalid_request");
    let r = verify(&app, "app", json!({"action": "deploy.prod"})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let unsigned = app
        .send_raw(
            "POST",
            "/v1/grants/verify",
            json!({"token": token}).to_string().into_bytes(),
            &[],
        )
        .await;
    assert_eq!(unsigned.status, 401);
}

async fn consume_makes_a_grant_single_use(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = token(&approved(&app).await);

    // A wrong scope does not spend the grant.
    let r = verify(
        &app,
        "app",
        json!({"token": token, "action": "other", "consume": true}),
    )
    .await;
    assert_rejected(&r, "wrong_scope");
    let r = verify(&app, "app", json!({"token": token, "consume": true})).await;
    assert_eq!(r.body["valid"], true, "{}", r.body);
    let r = verify(&app, "app", json!({"token": token, "consume": true})).await;
    assert_rejected(&r, "already_used");
    let r = verify(&app, "admin", json!({"token": token})).await;
    assert_rejected(&r, "already_used");
}

/// A grant is a bearer token: only the client that created the action sees the token;
/// admins and auditors see the rest of the grant, in every read, wait and decision.
async fn only_the_creating_client_sees_the_grant_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_pending().await;
    // An auditor already waiting gets the decision as published: still without the token.
    let waiting = {
        let api = app.api.clone();
        let id = id.clone();
        tokio::spawn(async move {
            api.send_as(
                "auditor",
                "GET",
                &format!("/v1/actions/{id}/wait?timeout=10"),
                &Value::Null,
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let decided = app.decide(&id, "approved").await;
    assert_eq!(decided.status, 200, "{}", decided.body);
    let waited = waiting.await.unwrap();
    assert_eq!(waited.body["status"], "approved", "{}", waited.body);
    let own = app.get("app", &id).await.body;
    assert!(own["decision"]["grant"]["token"].is_string(), "{own}");
    let own_wait = app.wait("app", &id, 0).await.body;
    assert_eq!(own_wait["decision"]["grant"], own["decision"]["grant"]);
    let mut without_token = own["decision"]["grant"].clone();
    without_token.as_object_mut().unwrap().remove("token");
    for (who, body) in [
        ("admin's decision", decided.body),
        ("auditor's wait", waited.body),
        ("admin's read", app.get("admin", &id).await.body),
        ("auditor's read", app.get("auditor", &id).await.body),
        (
            "auditor's late wait",
            app.wait("auditor", &id, 0).await.body,
        ),
    ] {
        assert_eq!(body["decision"]["grant"], without_token, "{who}: {body}");
    }
}

/// `verify` answers for a grant only to the client it was issued to (its `aud`), or to an
/// admin: another client gets `wrong_audience` and cannot spend it.
async fn another_clients_grant_is_neither_checked_nor_spent(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = token(&approved(&app).await);
    for body in [
        json!({"token": token}),
        json!({"token": token, "consume": true}),
    ] {
        let r = verify(&app, "other", body).await;
        assert_rejected(&r, "wrong_audience");
    }
    let r = verify(&app, "auditor", json!({"token": token, "consume": true})).await;
    assert_rejected(&r, "wrong_audience");
    // Still unspent: its own client consumes it, once.
    let r = verify(&app, "app", json!({"token": token, "consume": true})).await;
    assert_eq!(r.body["valid"], true, "{}", r.body);
    let r = verify(&app, "app", json!({"token": token, "consume": true})).await;
    assert_rejected(&r, "already_used");
}

async fn grants_expire_with_their_rule(backend: Backend) {
    let app = spawn_app_with(
        backend,
        AppOptions {
            policy: policy_with_short_grants(),
            ..Default::default()
        },
    )
    .await;
    let r = app.create(&request("quick.restart", "svc/payments")).await;
    assert_eq!(r.body["status"], "approved", "{}", r.body);
    assert_eq!(r.body["policy"]["grant_ttl_seconds"], 1);
    let token = token(&r.body);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let v = verify(&app, "app", json!({"token": token, "consume": true})).await;
    assert_rejected(&v, "expired");
    // Expiry comes before scope.
    let v = verify(&app, "app", json!({"token": token, "action": "nope"})).await;
    assert_rejected(&v, "expired");
}

async fn revoke_ends_a_grant(backend: Backend) {
    let app = spawn_app(backend).await;
    let action = approved(&app).await;
    let id = action["id"].as_str().unwrap();
    let path = format!("/v1/actions/{id}/revoke");

    let r = app.send_as("app", "POST", &path, &Value::Null).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.error_code(), "forbidden");
    assert_eq!(
        verify(&app, "app", json!({"token": token(&action)}))
            .await
            .body["valid"],
        true
    );

    let r = app
        .send_as(
            "admin",
            "POST",
            &path,
            &json!({"reason": "leaked in a log"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["id"], id);
    assert_eq!(r.body["status"], "approved");
    let v = verify(
        &app,
        "app",
        json!({"token": token(&action), "consume": true}),
    )
    .await;
    assert_rejected(&v, "revoked");
    // Revoking again changes nothing.
    let r = app.send_as("admin", "POST", &path, &Value::Null).await;
    assert_eq!(r.status, 200, "{}", r.body);

    let pending = app.create_pending().await;
    let r = app
        .send_as(
            "admin",
            "POST",
            &format!("/v1/actions/{pending}/revoke"),
            &Value::Null,
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.error_code(), "conflict");
    let r = app
        .send_as(
            "admin",
            "POST",
            "/v1/actions/act_01JD8Y3M6QW9T3V7K2X5N4B1C0/revoke",
            &Value::Null,
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = app
        .send_as("admin", "POST", &path, &json!({"because": "x"}))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
}

on_both_backends!(
    approvals_carry_grants,
    verify_checks_scope_and_signature,
    consume_makes_a_grant_single_use,
    only_the_creating_client_sees_the_grant_token,
    another_clients_grant_is_neither_checked_nor_spent,
    grants_expire_with_their_rule,
    revoke_ends_a_grant,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_consume_wins_across_replicas() {
    let one = spawn_app_with(
        Backend::redis(),
        AppOptions {
            grant_signing_key: Some(new_key()),
            ..Default::default()
        },
    )
    .await;
    let two = one.replica(&one.prefix).await;
    for _ in 0..5 {
        let token = token(&approved(&one).await);
        // Each replica checks the other's grant.
        let r = verify(&two, "app", json!({"token": token})).await;
        assert_eq!(r.body["valid"], true, "{}", r.body);
        let body = json!({"token": token, "consume": true});
        let (a, b) = tokio::join!(
            verify(&one, "app", body.clone()),
            verify(&two, "admin", body.clone())
        );
        let valid: Vec<bool> = [&a, &b]
            .iter()
            .map(|r| r.body["valid"].as_bool().unwrap())
            .collect();
        assert_eq!(
            valid.iter().filter(|v| **v).count(),
            1,
            "{} / {}",
            a.body,
            b.body
        );
        let loser = if valid[0] { &b } else { &a };
        assert_rejected(loser, "already_used");
    }

    // A revocation on one replica holds on the other.
    let action = approved(&two).await;
    let id = action["id"].as_str().unwrap();
    let r = one
        .send_as(
            "admin",
            "POST",
            &format!("/v1/actions/{id}/revoke"),
            &Value::Null,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_rejected(
        &verify(&two, "app", json!({"token": token(&action)})).await,
        "revoked",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyjwt_verifies_grants_offline_against_the_jwks() {
    let app = spawn_app(Backend::Memory).await;
    let (keys, cache) = jwks(&app).await;
    assert_eq!(cache.as_deref(), Some("public, max-age=300"));
    let key = &keys["keys"][0];
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
    assert_eq!(
        (&key["kty"], &key["crv"], &key["alg"], &key["use"]),
        (
            &json!("OKP"),
            &json!("Ed25519"),
            &json!("EdDSA"),
            &json!("sig")
        )
    );
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(key["x"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );

    let action = approved(&app).await;
    let token = token(&action);
    let header = decode_part(token.split('.').next().unwrap());
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], key["kid"]);

    let py = pyjwt_decodes(&keys, &token, "app", "greenlight").await;
    assert!(py.ok, "PyJWT rejected a grant: {}", py.stderr);
    let claims: Value = serde_json::from_str(py.stdout.trim()).unwrap();
    let ours = verify(&app, "app", json!({"token": token})).await;
    assert_eq!(claims, ours.body["claims"]);

    let py = pyjwt_decodes(
        &keys,
        &tamper(&token, "act", "db.drop_table"),
        "app",
        "greenlight",
    )
    .await;
    assert!(!py.ok, "PyJWT accepted a tampered grant");
    assert!(py.stderr.contains("InvalidSignatureError"), "{}", py.stderr);
    let py = pyjwt_decodes(&keys, &token, "other", "greenlight").await;
    assert!(!py.ok, "PyJWT accepted a grant for another audience");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_of_the_previous_key_verify_after_a_rotation() {
    let (k1, k2) = (new_key(), new_key());
    let before = spawn_app_with(
        Backend::Memory,
        AppOptions {
            grant_signing_key: Some(k1.clone()),
            ..Default::default()
        },
    )
    .await;
    let old_grant = token(&approved(&before).await);
    let (old_jwks, _) = jwks(&before).await;

    let after = spawn_app_with(
        Backend::Memory,
        AppOptions {
            grant_signing_key: Some(k2),
            grant_previous_key: Some(k1),
            ..Default::default()
        },
    )
    .await;
    let (new_jwks, _) = jwks(&after).await;
    let published = kids(&new_jwks);
    assert_eq!(published.len(), 2, "{new_jwks}");
    assert_eq!(
        published[1],
        kids(&old_jwks)[0],
        "the previous key is published"
    );

    let r = verify(&after, "app", json!({"token": old_grant})).await;
    assert_eq!(r.body["valid"], true, "{}", r.body);
    let py = pyjwt_decodes(&new_jwks, &old_grant, "app", "greenlight").await;
    assert!(py.ok, "{}", py.stderr);

    // New grants are signed with the new key.
    let new_grant = token(&approved(&after).await);
    let header = decode_part(new_grant.split('.').next().unwrap());
    assert_eq!(header["kid"], published[0].as_str());
    let r = verify(&before, "app", json!({"token": new_grant})).await;
    assert_rejected(&r, "bad_signature");
}

//! `POST /v1/actions` validation: every malformed request is refused with
//! `400 invalid_request` naming the field, nothing of it is stored, and the boundary values
//! still pass. Oversized and non-JSON bodies get their own statuses.

use crate::common::{Backend, Resp, TestApp, request, spawn_app};
use serde_json::{Value, json};

/// The error body is exactly `{"error": {"code", "message"}}`, nothing more.
fn assert_error(r: &Resp, status: u16, code: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.body);
    let top = r
        .body
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {}", r.body));
    assert_eq!(
        top.keys().collect::<Vec<_>>(),
        ["error"],
        "{what}: {}",
        r.body
    );
    let error = r.body["error"].as_object().expect("error is an object");
    let mut keys: Vec<_> = error.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "message"], "{what}: {}", r.body);
    assert_eq!(r.error_code(), code, "{what}");
    let message = error["message"].as_str().expect("message is a string");
    assert!(!message.trim().is_empty(), "{what}: empty message");
}

fn message(r: &Resp) -> &str {
    r.body["error"]["message"].as_str().unwrap_or_default()
}

/// `request(...)` with `field` replaced (or removed, for `Value::Null`).
fn with(field: &str, value: Value) -> Value {
    let mut body = request("deploy.prod", "svc/payments");
    let obj = body.as_object_mut().unwrap();
    if value.is_null() {
        obj.remove(field);
    } else {
        obj.insert(field.into(), value);
    }
    body
}

/// The filler that makes `{"blob":"…"}` exactly 16 KiB of JSON.
const CONTEXT_FILL: usize = 16 * 1024 - r#"{"blob":""}"#.len();

/// Nothing of any rejected request reached the store: no action, idempotency key, pending
/// index or timer. Only its `webhook-id` is spent (`{prefix}:seen:…`): a signed body that
/// was refused here must not be replayable on another endpoint either.
async fn nothing_stored(app: &TestApp) {
    if let Some(r) = app.backend.redis_server() {
        let mut c = r.conn();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", app.prefix))
            .query(&mut c)
            .unwrap();
        let seen = format!("{}:seen:", app.prefix);
        let keys: Vec<String> = keys.into_iter().filter(|k| !k.starts_with(&seen)).collect();
        assert!(keys.is_empty(), "rejected requests stored {keys:?}");
    }
    // Every rejected body would otherwise have been a pending action with an expiry timer.
    let next = app.service.timers().next_due().await.unwrap();
    assert!(
        next.is_none(),
        "a rejected request scheduled a timer for {next:?}"
    );
}

/// Fields of the right name but the wrong JSON type.
fn wrong_types() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "context as an array",
            with("context", json!(["env", "prod"])),
            "context",
        ),
        (
            "context as a string",
            with("context", json!("env=prod")),
            "context",
        ),
        (
            "negative ttl",
            with("ttl_seconds", json!(-5)),
            "ttl_seconds",
        ),
        (
            "ttl as a string",
            with("ttl_seconds", json!("10m")),
            "ttl_seconds",
        ),
    ]
}

/// A wrong JSON type answers 400 naming the field, like every other invalid value.
#[tokio::test]
async fn wrong_types_name_the_field() {
    let app = spawn_app(Backend::Memory).await;
    for (what, body, field) in wrong_types() {
        let r = app.create(&body).await;
        assert_error(&r, 400, "invalid_request", what);
        assert!(message(&r).contains(field), "{what}: {:?}", message(&r));
    }
}

async fn each_invalid_field_is_named_and_nothing_is_stored(backend: Backend) {
    let app = spawn_app(backend).await;
    let requester = |v: Value| with("requester", v);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "upper-case action",
            with("action", json!("Db.Drop")),
            "action",
        ),
        (
            "action starting with a dot",
            with("action", json!(".x")),
            "action",
        ),
        (
            "129-char action",
            with("action", json!("a".repeat(129))),
            "action",
        ),
        (
            "action with a space",
            with("action", json!("db drop")),
            "action",
        ),
        ("empty resource", with("resource", json!("")), "resource"),
        (
            "513-char resource",
            with("resource", json!("r".repeat(513))),
            "resource",
        ),
        (
            "missing resource",
            with("resource", Value::Null),
            "resource",
        ),
        (
            "missing requester",
            with("requester", Value::Null),
            "requester",
        ),
        (
            "requester without id",
            requester(json!({"email": "alice@example.com"})),
            "`id`",
        ),
        (
            "blank requester id",
            requester(json!({"id": "  "})),
            "requester.id",
        ),
        (
            "unknown requester field",
            requester(json!({"id": "u-1", "team": "dba"})),
            "team",
        ),
        (
            "2001-char reason",
            with("reason", json!("x".repeat(2001))),
            "reason",
        ),
        (
            "context over 16 KiB",
            with("context", json!({"blob": "x".repeat(CONTEXT_FILL + 1)})),
            "context",
        ),
        ("ttl 9 s", with("ttl_seconds", json!(9)), "ttl_seconds"),
        (
            "ttl 86401 s",
            with("ttl_seconds", json!(86_401)),
            "ttl_seconds",
        ),
        (
            "http callback to a non-loopback host",
            with("callback_url", json!("http://hooks.example/approvals")),
            "callback_url",
        ),
        (
            "https callback to a host not in callback_hosts",
            with("callback_url", json!("https://evil.example/approvals")),
            "callback_url",
        ),
        (
            "callback that is not a URL",
            with("callback_url", json!("not a url")),
            "callback_url",
        ),
        (
            "unknown top-level field",
            with("colour", json!("red")),
            "colour",
        ),
        (
            "money rule without a reason",
            json!({"action": "money.transfer", "resource": "acct/1", "requester": {"id": "u-1"}}),
            "reason",
        ),
        (
            "money rule with a blank reason",
            json!({"action": "money.transfer", "resource": "acct/1", "requester": {"id": "u-1"}, "reason": "   "}),
            "reason",
        ),
    ];
    let mut unnamed = Vec::new();
    for (what, body, field) in cases.into_iter().chain(wrong_types()) {
        let r = app.create(&body).await;
        assert_error(&r, 400, "invalid_request", what);
        if !message(&r).contains(field) {
            unnamed.push(format!("{what}: {:?} does not name `{field}`", message(&r)));
        }
    }
    // Known gap (see `wrong_types_name_the_field`): serde's type errors give a column, not
    // the field. Everything else must name it.
    unnamed.retain(|u| !wrong_types().iter().any(|(what, ..)| u.starts_with(what)));
    assert!(
        unnamed.is_empty(),
        "messages must name the field:\n{}",
        unnamed.join("\n")
    );

    // Bodies that are not a JSON object at all.
    for (what, raw) in [
        ("truncated JSON", &b"{\"action\": \"deploy.prod\""[..]),
        ("not JSON", b"action=deploy.prod"),
        ("a JSON array", b"[1, 2]"),
    ] {
        let headers = app.signed_headers("app", "POST", "/v1/actions", raw);
        let r = app
            .send_raw("POST", "/v1/actions", raw.to_vec(), &headers)
            .await;
        assert_error(&r, 400, "invalid_request", what);
    }

    nothing_stored(&app).await;
    // The service still takes a good request afterwards.
    let r = app.create(&request("deploy.prod", "svc/after")).await;
    assert_eq!(r.status, 201, "{}", r.body);
}

/// Sends a signed oversized body on the app's shared (pooled) client: the server answers
/// 413 without reading the body and closes the connection, saying so.
async fn send_oversized(app: &TestApp, body: Vec<u8>) -> Resp {
    let headers = app.signed_headers("app", "POST", "/v1/actions", &body);
    app.send_raw("POST", "/v1/actions", body, &headers).await
}

async fn oversized_and_non_json_bodies_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    // Over 64 KiB, signed correctly: refused for its size alone.
    let big = serde_json::to_vec(&with("reason", json!("x".repeat(64 * 1024)))).unwrap();
    let r = send_oversized(&app, big).await;
    assert_error(&r, 413, "payload_too_large", "body over 64 KiB");

    // A correctly signed JSON body declared as text/plain.
    let body = serde_json::to_vec(&request("deploy.prod", "svc/payments")).unwrap();
    let mut headers = app.signed_headers("app", "POST", "/v1/actions", &body);
    headers.push(("content-type".into(), "text/plain".into()));
    let r = app.send_raw("POST", "/v1/actions", body, &headers).await;
    assert_error(&r, 415, "unsupported_media_type", "text/plain body");

    nothing_stored(&app).await;
    // The pooled client that got the 413 still works for the next requests.
    for _ in 0..3 {
        let r = app.create(&request("deploy.prod", "svc/after-413")).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
}

async fn boundary_values_are_accepted(backend: Backend) {
    let app = spawn_app(backend).await;
    let cases: Vec<(&str, Value)> = vec![
        ("ttl 10 s", with("ttl_seconds", json!(10))),
        ("ttl 86400 s", with("ttl_seconds", json!(86_400))),
        ("2000-char reason", with("reason", json!("x".repeat(2000)))),
        (
            "512-char resource",
            with("resource", json!("r".repeat(512))),
        ),
        // Characters, not bytes: 512 two-byte characters are still 512.
        (
            "512 non-ASCII chars",
            with("resource", json!("é".repeat(512))),
        ),
        ("128-char action", with("action", json!("a".repeat(128)))),
        (
            "every allowed action character",
            with("action", json!("0deploy:prod-eu_1.x")),
        ),
        (
            "context of exactly 16 KiB",
            with("context", json!({"blob": "x".repeat(CONTEXT_FILL)})),
        ),
        (
            "https callback to an allowed host",
            with("callback_url", json!("https://hooks.example/approvals")),
        ),
        (
            "http callback to loopback for an insecure-allowed client",
            with("callback_url", json!("http://127.0.0.1:9/hook")),
        ),
        (
            "only the required fields (and an email, as self-approval is forbidden)",
            json!({"action": "deploy.prod", "resource": "r", "requester": {"id": "u-1", "email": "u1@example.com"}}),
        ),
        (
            "a Slack id instead of an email",
            json!({"action": "deploy.prod", "resource": "r", "requester": {"id": "u-1", "slack_user_id": "U0U1"}}),
        ),
    ];
    for (what, body) in cases {
        let r = app.create(&body).await;
        assert_eq!(r.status, 201, "{what}: {}", r.body);
        assert_eq!(r.body["status"], "pending", "{what}");
        for key in ["action", "resource", "reason", "callback_url"] {
            if let Some(sent) = body.get(key) {
                assert_eq!(&r.body[key], sent, "{what}: {key} stored as sent");
            }
        }
    }
    // A rule that forbids self-approval cannot tell approvers from a requester known by
    // an opaque id alone: refused, with the fields named.
    let r = app
        .create(&json!({"action": "deploy.prod", "resource": "r", "requester": {"id": "u-1"}}))
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.error_code(), "requester_unverifiable");
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("email") && message.contains("slack_user_id"),
        "{message}"
    );
    // The probe `nothing_stored` relies on does see stored actions.
    assert!(app.service.timers().next_due().await.unwrap().is_some());
}

fn lifetime_seconds(action: &Value) -> i64 {
    let at = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(action[k].as_str().unwrap())
            .unwrap_or_else(|e| panic!("{k} is not RFC 3339: {e}"))
    };
    (at("expires_at") - at("created_at")).num_seconds()
}

async fn ttl_is_capped_by_the_rule(backend: Backend) {
    let app = spawn_app(backend).await;
    // The `short` rule allows 2 s: asking for 600 gets 2.
    let mut body = request("short.cleanup", "tmp/x");
    body["ttl_seconds"] = json!(600);
    let r = app.create(&body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["policy"]["rule"], "short");
    assert_eq!(lifetime_seconds(&r.body), 2);

    // No ttl_seconds: the rule's ttl (the default rule's 15 min).
    let r = app.create(&request("deploy.prod", "svc/a")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(lifetime_seconds(&r.body), 15 * 60);

    // Shorter than the rule's: as asked; longer: the rule's.
    let r = app.create(&with("ttl_seconds", json!(600))).await;
    assert_eq!(lifetime_seconds(&r.body), 600);
    let r = app.create(&with("ttl_seconds", json!(86_400))).await;
    assert_eq!(lifetime_seconds(&r.body), 15 * 60);
}

/// Bidirectional controls and invisible format characters would let a request show
/// approvers something else than what it asks (`prod` displayed for `dorp`): refused in
/// every field approvers read, context keys and nested values included, naming the field.
async fn deceptive_text_is_refused_naming_the_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let rlo = "\u{202E}";
    let requester = |field: &str, v: &str| {
        let mut r = json!({"id": "u-1", "email": "a@example.com", "name": "Alice"});
        r[field] = json!(v);
        with("requester", r)
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "RLO in resource",
            with("resource", json!(format!("svc/{rlo}dorp"))),
            "resource",
        ),
        (
            "ZWSP in resource",
            with("resource", json!("prod\u{200B}/db")),
            "resource",
        ),
        (
            "LRI in action",
            with("action", json!("db.\u{2066}drop")),
            "action",
        ),
        (
            "PDI in reason",
            with("reason", json!("fine\u{2069}")),
            "reason",
        ),
        (
            "BOM in reason",
            with("reason", json!("\u{FEFF}ok")),
            "reason",
        ),
        (
            "line separator in reason",
            with("reason", json!("a\u{2028}b")),
            "reason",
        ),
        (
            "RLM in requester name",
            requester("name", "Bob\u{200F}"),
            "requester.name",
        ),
        (
            "LRE in requester id",
            requester("id", "u\u{202A}1"),
            "requester.id",
        ),
        (
            "RLO in a context value",
            with("context", json!({"ticket": format!("OPS-1{rlo}")})),
            "context",
        ),
        (
            "RLO in a nested context value",
            with("context", json!({"a": [{"b": format!("x{rlo}")}]})),
            "/a/0/b",
        ),
        (
            "ZWJ in a context key",
            with("context", json!({"en\u{200D}v": "prod"})),
            "context",
        ),
    ];
    for (what, body, field) in cases {
        let r = app.create(&body).await;
        assert_error(&r, 400, "invalid_request", what);
        assert!(message(&r).contains(field), "{what}: {:?}", message(&r));
        // `action` is ASCII by its pattern, which refuses first.
        if field != "action" {
            assert!(message(&r).contains("U+"), "{what}: {:?}", message(&r));
        }
        assert!(
            !message(&r)
                .chars()
                .any(|c| ('\u{2000}'..='\u{2070}').contains(&c)),
            "{what}: the message repeats the character"
        );
    }
    nothing_stored(&app).await;
    // Right-to-left scripts themselves are fine: only the invisible controls are refused.
    let r = app.create(&with("reason", json!("שלום, مرحبا"))).await;
    assert_eq!(r.status, 201, "{}", r.body);
}

on_both_backends!(
    deceptive_text_is_refused_naming_the_field,
    each_invalid_field_is_named_and_nothing_is_stored,
    oversized_and_non_json_bodies_are_refused,
    boundary_values_are_accepted,
    ttl_is_capped_by_the_rule,
);

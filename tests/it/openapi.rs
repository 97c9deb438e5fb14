//! `GET /openapi.json`: the document is OpenAPI 3.1, lists exactly the `/v1` routes the
//! server serves, and real answers of every endpoint validate against the schema it
//! declares for that path, method and status.

use crate::common::{Backend, Resp, TestApp, request, spawn_app};
use jsonschema::{Draft, Validator};
use serde_json::{Value, json};

/// Every `/v1` operation the server serves (all of the documented), as the document must list
/// it. A new route goes here, and gets a `#[utoipa::path]` listed in `ApiDoc`.
const V1_ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/actions"),
    ("get", "/v1/actions"),
    ("get", "/v1/actions/{id}"),
    ("get", "/v1/actions/{id}/wait"),
    ("post", "/v1/actions/{id}/cancel"),
    ("post", "/v1/actions/{id}/decision"),
    ("post", "/v1/grants/verify"),
    ("post", "/v1/actions/{id}/revoke"),
    ("get", "/v1/audit"),
    ("get", "/v1/access"),
    ("post", "/v1/admin/reload"),
];

/// The document, and validators built from the schemas it declares.
struct Document {
    doc: Value,
}

impl Document {
    async fn fetch(app: &TestApp) -> Self {
        let resp = app
            .http
            .get(format!("{}/openapi.json", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert_eq!(content_type, "application/json");
        let doc: Value =
            serde_json::from_slice(&resp.bytes().await.unwrap()).expect("/openapi.json is JSON");
        Self { doc }
    }

    /// A validator for `schema`, in a root that carries the document's `components`, so
    /// that its `$ref`s to `#/components/schemas/...` resolve. OpenAPI 3.1 schemas are JSON
    /// Schema 2020-12.
    fn validator(&self, schema: &Value) -> Validator {
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [schema],
        });
        jsonschema::options()
            .with_draft(Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("schema does not compile: {e}\n{schema}"))
    }

    fn operation(&self, method: &str, path: &str) -> &Value {
        let op = &self.doc["paths"][path][method];
        assert!(op.is_object(), "the document has no {method} {path}");
        op
    }

    fn response_schema(&self, method: &str, path: &str, status: u16) -> &Value {
        let schema = &self.operation(method, path)["responses"][status.to_string()]["content"]["application/json"]
            ["schema"];
        assert!(
            schema.is_object(),
            "the document declares no JSON {status} answer for {method} {path}"
        );
        schema
    }

    fn component(&self, name: &str) -> Value {
        json!({"$ref": format!("#/components/schemas/{name}")})
    }

    /// The messages of everything wrong with `instance` under `schema`.
    fn errors(&self, schema: &Value, instance: &Value) -> Vec<String> {
        self.validator(schema)
            .iter_errors(instance)
            .map(|e| format!("{} at `{}`", e, e.instance_path()))
            .collect()
    }

    /// Asserts that `resp` has `status` and a body the document allows for it.
    fn check(&self, method: &str, path: &str, status: u16, resp: &Resp) {
        assert_eq!(resp.status, status, "{method} {path}: {}", resp.body);
        let errors = self.errors(self.response_schema(method, path, status), &resp.body);
        assert!(
            errors.is_empty(),
            "{method} {path} answered {status} with a body the document does not allow:\n{}\n{:#}",
            errors.join("\n"),
            resp.body
        );
    }

    /// Asserts that `body` is a request body the document accepts for the operation.
    fn check_request(&self, method: &str, path: &str, body: &Value) {
        let schema =
            &self.operation(method, path)["requestBody"]["content"]["application/json"]["schema"];
        let errors = self.errors(schema, body);
        assert!(errors.is_empty(), "{method} {path}: {}", errors.join("\n"));
    }
}

/// Whether the router serves `method path`: an unsigned request answers something other
/// than the router's own fallbacks (unknown path, or a method the path does not take).
async fn is_served(app: &TestApp, method: &str, path: &str) -> bool {
    let concrete = path.replace("{id}", "act_01JD8Y3M6QW9T3V7K2X5N4B1C0");
    let r = app
        .send_raw(&method.to_uppercase(), &concrete, Vec::new(), &[])
        .await;
    let message = r.body["error"]["message"].as_str().unwrap_or_default();
    !(r.status == 404 && message == "no such route"
        || r.status == 400 && message == "method not allowed on this route")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_openapi_3_1_and_lists_every_v1_route() {
    let app = spawn_app(Backend::Memory).await;
    let doc = Document::fetch(&app).await;
    assert_eq!(doc.doc["openapi"], "3.1.0");
    assert_eq!(doc.doc["info"]["title"], "Greenlight");
    assert_eq!(doc.doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    let mut documented: Vec<(String, String)> = doc.doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(path, _)| path.starts_with("/v1/"))
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    documented.sort();
    let mut expected: Vec<(String, String)> = V1_ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    expected.sort();
    assert_eq!(documented, expected, "the document's /v1 operations");

    for (method, path) in V1_ROUTES {
        assert!(is_served(&app, method, path).await, "{method} {path}");
    }

    // Every /v1 operation requires the four signature headers together; nothing else does.
    let schemes = doc.doc["components"]["securitySchemes"]
        .as_object()
        .unwrap();
    let headers = [
        "greenlight-client",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    ];
    for name in headers {
        assert_eq!(schemes[name]["type"], "apiKey", "{name}");
        assert_eq!(schemes[name]["in"], "header", "{name}");
        assert_eq!(schemes[name]["name"], name);
    }
    for (method, path) in V1_ROUTES {
        let security = &doc.operation(method, path)["security"];
        let all: Vec<&str> = security[0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(security.as_array().unwrap().len(), 1, "{method} {path}");
        let mut sorted = headers.to_vec();
        sorted.sort();
        assert_eq!(all, sorted, "{method} {path}");
    }
    assert!(doc.operation("get", "/healthz")["security"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_match_the_document() {
    let app = spawn_app(Backend::Memory).await;
    let doc = Document::fetch(&app).await;
    let create_path = "/v1/actions";
    let show_path = "/v1/actions/{id}";
    let wait_path = "/v1/actions/{id}/wait";
    let cancel_path = "/v1/actions/{id}/cancel";
    let decision_path = "/v1/actions/{id}/decision";

    // 201, then 200 for the same webhook-id and body.
    let mut body = request("deploy.prod", "svc/payments");
    body["context"] = json!({"env": "staging", "rows": 12});
    body["ttl_seconds"] = json!(600);
    body["callback_url"] = json!("https://hooks.example/approvals");
    doc.check_request("post", create_path, &body);
    let bytes = serde_json::to_vec(&body).unwrap();
    let headers = app.signed_headers("app", "POST", create_path, &bytes);
    let created = app
        .send_raw("POST", create_path, bytes.clone(), &headers)
        .await;
    doc.check("post", create_path, 201, &created);
    let repeated = app.send_raw("POST", create_path, bytes, &headers).await;
    doc.check("post", create_path, 200, &repeated);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(repeated.body["id"], id);

    // Decided by policy at creation.
    let auto = app.create(&request("read.logs", "svc/payments")).await;
    doc.check("post", create_path, 201, &auto);
    assert_eq!(auto.body["decision"]["by_policy"], "reads");

    doc.check("get", show_path, 200, &app.get("app", &id).await);
    let pending = app.wait("app", &id, 0).await;
    doc.check("get", wait_path, 200, &pending);
    assert_eq!(pending.body["status"], "pending");

    // Break-glass decision, then wait answers the decided action.
    let decision = json!({"outcome": "approved", "by": "ops-lead@example.com", "reason": "x"});
    doc.check_request("post", decision_path, &decision);
    let decided = app
        .send_as(
            "admin",
            "POST",
            &format!("/v1/actions/{id}/decision"),
            &decision,
        )
        .await;
    doc.check("post", decision_path, 200, &decided);
    assert_eq!(decided.body["status"], "approved");
    let waited = app.wait("app", &id, 5).await;
    doc.check("get", wait_path, 200, &waited);
    assert_eq!(waited.body["status"], "approved");

    // Cancel, with and without a body.
    let cancel_body = json!({"reason": "not needed any more"});
    doc.check_request("post", cancel_path, &cancel_body);
    let other = app.create_pending().await;
    let cancelled = app
        .send_as(
            "app",
            "POST",
            &format!("/v1/actions/{other}/cancel"),
            &cancel_body,
        )
        .await;
    doc.check("post", cancel_path, 200, &cancelled);
    assert_eq!(cancelled.body["status"], "cancelled");
    let third = app.create_pending().await;
    doc.check("post", cancel_path, 200, &app.cancel("app", &third).await);

    // Errors.
    let invalid = app.create(&request("DROP TABLE", "svc/payments")).await;
    doc.check("post", create_path, 400, &invalid);
    let bad_timeout = app
        .send_as(
            "app",
            "GET",
            &format!("/v1/actions/{id}/wait?timeout=soon"),
            &Value::Null,
        )
        .await;
    doc.check("get", wait_path, 400, &bad_timeout);
    let unsigned = app
        .send_raw("GET", &format!("/v1/actions/{id}"), Vec::new(), &[])
        .await;
    doc.check("get", show_path, 401, &unsigned);
    let not_a_requester = app
        .send_as(
            "auditor",
            "POST",
            create_path,
            &request("deploy.prod", "svc/x"),
        )
        .await;
    doc.check("post", create_path, 403, &not_a_requester);
    let not_admin = app
        .send_as(
            "app",
            "POST",
            &format!("/v1/actions/{id}/decision"),
            &decision,
        )
        .await;
    doc.check("post", decision_path, 403, &not_admin);
    doc.check(
        "get",
        show_path,
        404,
        &app.get("app", "act_01JD8Y3M6QW9T3V7K2X5N4B1C0").await,
    );
    doc.check("post", cancel_path, 409, &app.cancel("app", &id).await);
    doc.check("post", decision_path, 409, &app.decide(&id, "denied").await);
    // The first request's webhook-id with another body, properly signed.
    let other_body = serde_json::to_vec(&request("deploy.prod", "svc/other")).unwrap();
    let msg_id = headers
        .iter()
        .find(|(k, _)| k == "webhook-id")
        .unwrap()
        .1
        .clone();
    let now = chrono::Utc::now().timestamp();
    let reused: Vec<(String, String)> = vec![
        ("greenlight-client".into(), "app".into()),
        ("webhook-timestamp".into(), now.to_string()),
        (
            "webhook-signature".into(),
            app.secret("app").sign(&msg_id, now, &other_body),
        ),
        ("webhook-id".into(), msg_id),
    ];
    let conflict = app.send_raw("POST", create_path, other_body, &reused).await;
    doc.check("post", create_path, 409, &conflict);

    let mut big = request("deploy.prod", "svc/payments");
    big["reason"] = json!("x".repeat(64 * 1024));
    let big = serde_json::to_vec(&big).unwrap();
    let headers = app.signed_headers("app", "POST", create_path, &big);
    let too_large = app.send_raw("POST", create_path, big, &headers).await;
    doc.check("post", create_path, 413, &too_large);
    let plain = serde_json::to_vec(&request("deploy.prod", "svc/payments")).unwrap();
    let mut headers = app.signed_headers("app", "POST", create_path, &plain);
    headers.push(("content-type".into(), "text/plain".into()));
    let not_json = app.send_raw("POST", create_path, plain, &headers).await;
    doc.check("post", create_path, 415, &not_json);

    // Grants: a valid one, an invalid one, revocation, the public keys.
    let verify_path = "/v1/grants/verify";
    let revoke_path = "/v1/actions/{id}/revoke";
    // The grant's token is shown to the creating client only (not to the deciding admin).
    assert!(decided.body["decision"]["grant"].get("token").is_none());
    let grant = waited.body["decision"]["grant"]["token"].as_str().unwrap();
    let check = json!({"token": grant, "action": "deploy.prod", "consume": false});
    doc.check_request("post", verify_path, &check);
    let valid = app.send_as("app", "POST", verify_path, &check).await;
    doc.check("post", verify_path, 200, &valid);
    assert_eq!(valid.body["valid"], true, "{}", valid.body);
    let revoked = app
        .send_as(
            "admin",
            "POST",
            &format!("/v1/actions/{id}/revoke"),
            &Value::Null,
        )
        .await;
    doc.check("post", revoke_path, 200, &revoked);
    let invalid_grant = app.send_as("app", "POST", verify_path, &check).await;
    doc.check("post", verify_path, 200, &invalid_grant);
    assert_eq!(invalid_grant.body["reason"], "revoked");
    let not_approved = app
        .send_as(
            "admin",
            "POST",
            &format!("/v1/actions/{other}/revoke"),
            &Value::Null,
        )
        .await;
    doc.check("post", revoke_path, 409, &not_approved);
    let jwks = app
        .send_raw("GET", "/.well-known/jwks.json", Vec::new(), &[])
        .await;
    doc.check("get", "/.well-known/jwks.json", 200, &jwks);

    // The audit trail.
    let audit_path = "/v1/audit";
    let page = app
        .send_as("auditor", "GET", "/v1/audit?limit=1000", &Value::Null)
        .await;
    doc.check("get", audit_path, 200, &page);
    assert!(
        !page.body["entries"].as_array().unwrap().is_empty(),
        "{}",
        page.body
    );
    let filtered = app
        .send_as(
            "auditor",
            "GET",
            &format!("/v1/audit?action_id={id}&limit=2"),
            &Value::Null,
        )
        .await;
    doc.check("get", audit_path, 200, &filtered);
    let forbidden = app.send_as("app", "GET", audit_path, &Value::Null).await;
    doc.check("get", audit_path, 403, &forbidden);
    let bad_cursor = app
        .send_as("auditor", "GET", "/v1/audit?after=yesterday", &Value::Null)
        .await;
    doc.check("get", audit_path, 400, &bad_cursor);

    // Unsigned probes.
    // Reloading the policy (admins only).
    let reload_path = "/v1/admin/reload";
    let reloaded = app
        .send_as("admin", "POST", reload_path, &Value::Null)
        .await;
    doc.check("post", reload_path, 200, &reloaded);
    let forbidden = app.send_as("app", "POST", reload_path, &Value::Null).await;
    doc.check("post", reload_path, 403, &forbidden);

    let healthz = app.send_raw("GET", "/healthz", Vec::new(), &[]).await;
    doc.check("get", "/healthz", 200, &healthz);
    let readyz = app.send_raw("GET", "/readyz", Vec::new(), &[]).await;
    doc.check("get", "/readyz", 200, &readyz);

    // The validation can fail: wrong bodies are refused.
    let action_schema = doc.response_schema("get", show_path, 200);
    let mut wrong = decided.body.clone();
    wrong["status"] = json!("bogus");
    assert!(
        !doc.errors(action_schema, &wrong).is_empty(),
        "status bogus"
    );
    let mut wrong = decided.body.clone();
    wrong["id"] = json!("act_not-a-ulid");
    assert!(
        !doc.errors(action_schema, &wrong).is_empty(),
        "malformed id"
    );
    let mut wrong = decided.body.clone();
    wrong.as_object_mut().unwrap().remove("decision");
    assert!(!doc.errors(action_schema, &wrong).is_empty(), "no decision");
    let mut wrong = decided.body.clone();
    wrong["created_at"] = json!("yesterday");
    assert!(!doc.errors(action_schema, &wrong).is_empty(), "created_at");
    let verdict_schema = doc.response_schema("post", verify_path, 200);
    let mut wrong = invalid_grant.body.clone();
    wrong["valid"] = json!(true);
    assert!(
        !doc.errors(verdict_schema, &wrong).is_empty(),
        "valid: true with a reason"
    );
    let error_schema = doc.response_schema("get", show_path, 404);
    let wrong = json!({"error": {"code": "oops", "message": "x"}});
    assert!(!doc.errors(error_schema, &wrong).is_empty(), "unknown code");
    assert!(
        !doc.errors(&doc.component("ActionRequest"), &json!({"action": "x"}))
            .is_empty(),
        "request without resource"
    );
}

/// Access windows: the request, the action with its window, a use, the revocation, the
/// listing and `window_not_allowed` answer as the document says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_answers_match_the_document() {
    let policy = crate::common::POLICY.replacen(
        "[[rule]]",
        "[[rule]]\nname = \"db-access\"\nmatch = { action = \"db.*\" }\ndecision = \"require\"\nmax_window = \"1h\"\n\n[[rule]]",
        1,
    );
    let app = crate::common::spawn_app_with(
        Backend::Memory,
        crate::common::AppOptions {
            policy,
            ..Default::default()
        },
    )
    .await;
    let doc = Document::fetch(&app).await;
    let mut body = request("db.*", "postgres://prod/*");
    body["window_seconds"] = json!(600);
    body["audience"] = json!("app");
    doc.check_request("post", "/v1/actions", &body);
    let created = app.create(&body).await;
    doc.check("post", "/v1/actions", 201, &created);
    let id = created.body["id"].as_str().unwrap();
    assert_eq!(app.decide(id, "approved").await.status, 200);
    let shown = app.get("app", id).await;
    doc.check("get", "/v1/actions/{id}", 200, &shown);
    let token = shown.body["decision"]["grant"]["token"].as_str().unwrap();

    let used = json!({"token": token, "action": "db.select", "resource": "postgres://prod/x", "use": true});
    doc.check_request("post", "/v1/grants/verify", &used);
    let r = app.send_as("app", "POST", "/v1/grants/verify", &used).await;
    doc.check("post", "/v1/grants/verify", 200, &r);
    assert_eq!(r.body["uses"], 1);
    let consume = json!({"token": token, "consume": true});
    let r = app
        .send_as("app", "POST", "/v1/grants/verify", &consume)
        .await;
    doc.check("post", "/v1/grants/verify", 400, &r);

    let listed = app
        .send_as("app", "GET", "/v1/access?active=true", &Value::Null)
        .await;
    doc.check("get", "/v1/access", 200, &listed);
    assert_eq!(listed.body["windows"][0]["id"], id);
    let revoked = app
        .send_as(
            "app",
            "POST",
            &format!("/v1/actions/{id}/revoke"),
            &Value::Null,
        )
        .await;
    doc.check("post", "/v1/actions/{id}/revoke", 200, &revoked);
    assert_eq!(revoked.body["window"]["ended"], "revoked");

    let mut refused = request("deploy.*", "svc/*");
    refused["window_seconds"] = json!(600);
    let r = app.create(&refused).await;
    doc.check("post", "/v1/actions", 422, &r);
    assert_eq!(r.error_code(), "window_not_allowed");
}

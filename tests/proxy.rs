//! `greenlight proxy` between a client and a real upstream, with a real Greenlight (and
//! Redis): held requests are forwarded only once approved, with the grant; everything
//! else passes through untouched and streamed.

mod common;
/// SQL-aware body conditions (`sql = "writes"`).
#[path = "proxy/sql.rs"]
mod sql;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use common::cli::{forged_approval, grant_of_another_action, publish_decision};
use common::{Backend, TestApp, spawn_app};
use futures::StreamExt;
use greenlight::client::Client;
use greenlight::proxy::{Proxy, ProxyConfig};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const ROUTES: &str = r#"
[proxy]
hold_timeout = "20s"
upstream_timeout = "30s"
max_body_bytes = 67108864

[requester]
header = "x-user"
email_header = "x-user-email"

[[route]]
name = "delete-account"
methods = ["DELETE"]
path = "/accounts/{id}"
action = "accounts.delete"
resource = "accounts/{id}"
reason = "{header.x-reason}"

[[route]]
name = "destructive-sql"
methods = ["POST"]
path = "/sql"
body = { pointer = "/query", matches = '(?i)^\s*(drop|truncate|delete)\b' }
action = "db.write"
resource = "postgres://prod"
context = { statement = "{body}" }
"#;

/// The API behind the proxy. It counts what reaches it and answers with what it saw.
struct Upstream {
    base: String,
    reached: Arc<AtomicUsize>,
    /// Told when `/stream-in` got its first chunk; `/stream-out` waits on `release`.
    first_chunk_in: Arc<Notify>,
    release: Arc<Notify>,
}

async fn seen(headers: HeaderMap, request: Request) -> impl IntoResponse {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    axum::Json(json!({
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    }))
}

async fn upstream() -> Upstream {
    let reached = Arc::new(AtomicUsize::new(0));
    let first_chunk_in = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (notify, wait) = (first_chunk_in.clone(), release.clone());
    let counter = reached.clone();
    let router = Router::new()
        .route("/accounts/{id}", any(seen))
        .route("/sql", post(seen))
        .route(
            "/upload",
            post(|body: Body| async move {
                let mut hash = Sha256::new();
                let mut len = 0usize;
                let mut stream = body.into_data_stream();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.unwrap();
                    len += chunk.len();
                    hash.update(&chunk);
                }
                axum::Json(json!({"len": len, "sha256": hex::encode(hash.finalize())}))
            }),
        )
        .route(
            "/download",
            get(|Query(q): Query<HashMap<String, usize>>| async move {
                let size = q["size"];
                let chunks = futures::stream::iter((0..size).step_by(65536).map(move |start| {
                    let n = 65536.min(size - start);
                    Ok::<_, std::io::Error>(bytes::Bytes::from(vec![(start / 65536) as u8; n]))
                }));
                Body::from_stream(chunks)
            }),
        )
        .route(
            "/stream-in",
            post(move |body: Body| {
                let notify = notify.clone();
                async move {
                    let mut stream = body.into_data_stream();
                    let first = stream.next().await.unwrap().unwrap();
                    notify.notify_one();
                    let mut len = first.len();
                    while let Some(chunk) = stream.next().await {
                        len += chunk.unwrap().len();
                    }
                    len.to_string()
                }
            }),
        )
        .route(
            "/stream-out",
            get(move || {
                let wait = wait.clone();
                async move {
                    let chunks = futures::stream::once(async {
                        Ok::<_, std::io::Error>(bytes::Bytes::from("first;"))
                    })
                    .chain(futures::stream::once(async move {
                        wait.notified().await;
                        Ok(bytes::Bytes::from("rest"))
                    }));
                    Body::from_stream(chunks)
                }
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .layer(axum::middleware::from_fn(
            move |req: Request, next: axum::middleware::Next| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    next.run(req).await
                }
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Upstream {
        base: format!("http://{addr}"),
        reached,
        first_chunk_in,
        release,
    }
}

struct Running {
    base: String,
    upstream: Upstream,
    _stop: tokio_util::sync::DropGuard,
}

async fn proxy_with(app: &TestApp, client: Client, routes: &str) -> Running {
    let upstream = upstream().await;
    let config = ProxyConfig::parse(routes).unwrap();
    let proxy = Proxy::new(config, client, upstream.base.parse().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move { proxy.serve(listener, token).await.unwrap() });
    let _ = app;
    Running {
        base: format!("http://{addr}"),
        upstream,
        _stop: stop.drop_guard(),
    }
}

async fn proxy(app: &TestApp) -> Running {
    proxy_with(
        app,
        Client::new(&app.base, "app", app.secret("app")),
        ROUTES,
    )
    .await
}

async fn send(req: reqwest::RequestBuilder) -> (u16, HeaderMap, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

async fn pending_action(app: &TestApp) -> Value {
    for _ in 0..100 {
        if let Some(a) = app.service.pending(10).await.unwrap().first() {
            return serde_json::to_value(a).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no pending action appeared");
}

async fn forwards_a_held_delete_once_approved_with_the_grant(backend: Backend) {
    let app = spawn_app(backend).await;
    let proxy = proxy(&app).await;
    let held = tokio::spawn(send(
        reqwest::Client::new()
            .delete(format!("{}/accounts/42?hard=1", proxy.base))
            .header("x-user", "alice")
            .header("x-user-email", "alice@example.com")
            .header("x-reason", "GDPR erasure request 77")
            .header("greenlight-grant", "forged-by-the-caller"),
    ));
    let action = pending_action(&app).await;
    assert_eq!(action["action"], "accounts.delete");
    assert_eq!(action["resource"], "accounts/42");
    assert_eq!(action["requester"]["id"], "alice");
    assert_eq!(action["reason"], "GDPR erasure request 77");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        proxy.upstream.reached.load(Ordering::SeqCst),
        0,
        "forwarded before approval"
    );

    let id = action["id"].as_str().unwrap();
    assert_eq!(app.decide(id, "approved").await.status, 200);
    let (status, _, seen) = held.await.unwrap();
    assert_eq!(status, 200, "{seen}");
    assert_eq!(proxy.upstream.reached.load(Ordering::SeqCst), 1);
    assert_eq!(seen["method"], "DELETE");
    assert_eq!(seen["uri"], "/accounts/42?hard=1");
    let stored = app.get("app", id).await.body;
    assert_eq!(
        seen["headers"]["greenlight-grant"],
        stored["decision"]["grant"]["token"]
    );
    assert_eq!(seen["headers"]["greenlight-action-id"], id);
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1");
}

async fn refuses_a_held_delete_after_deny(backend: Backend) {
    let app = spawn_app(backend).await;
    let proxy = proxy(&app).await;
    let held = tokio::spawn(send(
        reqwest::Client::new()
            .delete(format!("{}/accounts/42", proxy.base))
            .header("x-user", "alice")
            .header("x-user-email", "alice@example.com"),
    ));
    let action = pending_action(&app).await;
    assert_eq!(
        app.decide(action["id"].as_str().unwrap(), "denied")
            .await
            .status,
        200
    );
    let (status, _, body) = held.await.unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["action"]["status"], "denied");
    assert_eq!(
        proxy.upstream.reached.load(Ordering::SeqCst),
        0,
        "a denied request reached the upstream"
    );
    // A gated request without a requester never reaches Greenlight or the upstream.
    let (status, _, _) =
        send(reqwest::Client::new().delete(format!("{}/accounts/42", proxy.base))).await;
    assert_eq!(status, 401);
    assert_eq!(proxy.upstream.reached.load(Ordering::SeqCst), 0);
}

async fn holds_only_destructive_sql_statements(backend: Backend) {
    let app = spawn_app(backend).await;
    let proxy = proxy(&app).await;
    let http = reqwest::Client::new();
    let select = json!({"query": "SELECT * FROM users"});
    let (status, _, seen) = send(http.post(format!("{}/sql", proxy.base)).json(&select)).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["body"], select.to_string());
    assert!(app.service.pending(10).await.unwrap().is_empty());

    let drop = json!({"query": "  drop table users"});
    let held = tokio::spawn(send(
        http.post(format!("{}/sql", proxy.base))
            .header("x-user", "alice")
            .header("x-user-email", "alice@example.com")
            .json(&drop),
    ));
    let action = pending_action(&app).await;
    assert_eq!(action["action"], "db.write");
    assert_eq!(action["context"]["statement"], "  drop table users");
    assert_eq!(
        app.decide(action["id"].as_str().unwrap(), "approved")
            .await
            .status,
        200
    );
    let (status, _, seen) = held.await.unwrap();
    assert_eq!(status, 200, "{seen}");
    // The body read to check the statement still reaches the upstream, byte for byte.
    assert_eq!(seen["body"], drop.to_string());
}

async fn passes_unmatched_requests_through_untouched(backend: Backend) {
    let app = spawn_app(backend).await;
    let proxy = proxy(&app).await;
    let http = reqwest::Client::new();
    let (status, _, seen) = send(
        http.get(format!("{}/accounts/42?a=1&b=%20x", proxy.base))
            .header("x-custom", "kept")
            .header("greenlight-grant", "forged")
            .header("connection", "x-hop")
            .header("x-hop", "dropped"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(seen["uri"], "/accounts/42?a=1&b=%20x");
    assert_eq!(seen["headers"]["x-custom"], "kept");
    assert_eq!(seen["headers"]["greenlight-grant"], Value::Null);
    assert_eq!(
        seen["headers"]["x-hop"],
        Value::Null,
        "a hop-by-hop header was forwarded"
    );
    assert!(app.service.pending(10).await.unwrap().is_empty());

    // 48 MiB each way, intact.
    let big: Vec<u8> = (0..48 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let expected = hex::encode(Sha256::digest(&big));
    let (status, _, up) = send(
        http.post(format!("{}/upload", proxy.base))
            .body(big.clone()),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(up["len"], big.len());
    assert_eq!(up["sha256"], expected.as_str());
    let size = 48 * 1024 * 1024;
    let down = http
        .get(format!("{}/download?size={size}", proxy.base))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(down.len(), size);
    assert!(
        down.chunks(65536)
            .enumerate()
            .all(|(i, c)| c.iter().all(|b| *b == i as u8))
    );
}

/// Streamed, not collected: the upstream gets the first chunk before the client has sent
/// the rest, and the client gets the first chunk before the upstream has produced the rest.
async fn streams_bodies_both_ways(backend: Backend) {
    let app = spawn_app(backend).await;
    let proxy = proxy(&app).await;
    let http = reqwest::Client::new();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    let upload = tokio::spawn(
        http.post(format!("{}/stream-in", proxy.base))
            .body(reqwest::Body::wrap_stream(tokio_stream_from(rx)))
            .send(),
    );
    tx.send(Ok(bytes::Bytes::from_static(b"first")))
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(5),
        proxy.upstream.first_chunk_in.notified(),
    )
    .await
    .expect("the upstream got the first chunk while the client was still sending");
    tx.send(Ok(bytes::Bytes::from_static(b"-rest")))
        .await
        .unwrap();
    drop(tx);
    let answer = upload.await.unwrap().unwrap().text().await.unwrap();
    assert_eq!(answer, "10");

    let mut download = http
        .get(format!("{}/stream-out", proxy.base))
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), download.next())
        .await
        .expect("the client got the first chunk while the upstream was still producing")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"first;");
    proxy.upstream.release.notify_one();
    let rest = download.next().await.unwrap().unwrap();
    assert_eq!(&rest[..], b"rest");
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

on_both_backends!(
    forwards_a_held_delete_once_approved_with_the_grant,
    refuses_a_held_delete_after_deny,
    holds_only_destructive_sql_statements,
    passes_unmatched_requests_through_untouched,
    streams_bodies_both_ways,
    the_proxy_matches_the_path_it_forwards,
    one_approval_releases_exactly_the_approved_request_once,
    an_unverifiable_requester_is_refused,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_bodies_and_upstream_time() {
    let app = spawn_app(Backend::Memory).await;
    let routes = ROUTES
        .replace("max_body_bytes = 67108864", "max_body_bytes = 1024")
        .replace("upstream_timeout = \"30s\"", "upstream_timeout = \"1s\"");
    let proxy = proxy_with(
        &app,
        Client::new(&app.base, "app", app.secret("app")),
        &routes,
    )
    .await;
    let http = reqwest::Client::new();
    // Declared too large: refused before anything is sent upstream.
    let (status, _, body) = send(
        http.post(format!("{}/upload", proxy.base))
            .body(vec![0u8; 4096]),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    // Streamed without a length, cut off at the limit.
    let chunks = futures::stream::iter(
        (0..8).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![1u8; 512]))),
    );
    let (status, _, _) = send(
        http.post(format!("{}/upload", proxy.base))
            .body(reqwest::Body::wrap_stream(chunks)),
    )
    .await;
    assert_eq!(status, 413);
    // An upstream slower than `upstream_timeout` (1 s).
    let (status, _, _) = send(http.get(format!("{}/slow", proxy.base))).await;
    assert_eq!(status, 504);
}

/// Someone with access to Redis publishes an "approval" on the decision channel: the
/// proxy, waiting on Redis, does not forward the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_decision_on_redis_does_not_release_a_request() {
    let app = spawn_app(Backend::redis()).await;
    let redis = app.backend.redis_server().unwrap().url();
    let client = Client::new(&app.base, "app", app.secret("app"))
        .with_redis(&redis, &app.prefix)
        .unwrap();
    let proxy = proxy_with(&app, client, ROUTES).await;
    let held = tokio::spawn(send(
        reqwest::Client::new()
            .delete(format!("{}/accounts/42", proxy.base))
            .header("x-user", "alice")
            .header("x-user-email", "alice@example.com"),
    ));
    let action = pending_action(&app).await;
    let id = action["id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other = grant_of_another_action(&app).await;
    publish_decision(&app, id, &forged_approval(&action, &other));
    publish_decision(
        &app,
        id,
        &forged_approval(&action, "eyJhbGciOiJub25lIn0.e30."),
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !held.is_finished(),
        "a forged approval answered the request"
    );
    assert_eq!(
        proxy.upstream.reached.load(Ordering::SeqCst),
        0,
        "a forged approval released the request"
    );

    assert_eq!(app.decide(id, "denied").await.status, 200);
    let (status, _, body) = held.await.unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(proxy.upstream.reached.load(Ordering::SeqCst), 0);
}

/// The requester from a bearer JWT checked against a JWKS (here Greenlight's own, with a
/// grant as the token: an EdDSA JWT whose `sub` is the requester).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takes_the_requester_from_a_verified_bearer_token() {
    let app = spawn_app(Backend::Memory).await;
    let routes = ROUTES.replace(
        "[requester]\nheader = \"x-user\"\nemail_header = \"x-user-email\"\n",
        &format!(
            "[requester]\nslack_user_claim = \"sub\"\n[requester.jwt]\njwks_url = \"{}/.well-known/jwks.json\"\naudience = \"app\"\nalgorithms = [\"EdDSA\"]\n",
            app.base
        ),
    );
    let proxy = proxy_with(
        &app,
        Client::new(&app.base, "app", app.secret("app")),
        &routes,
    )
    .await;
    let token = grant_of_another_action(&app).await;
    let http = reqwest::Client::new();
    let url = format!("{}/accounts/9", proxy.base);

    // No token, or a tampered one: 401, nothing asked.
    assert_eq!(send(http.delete(&url)).await.0, 401);
    let tampered = format!("{token}x");
    assert_eq!(send(http.delete(&url).bearer_auth(&tampered)).await.0, 401);
    assert!(app.service.pending(10).await.unwrap().is_empty());

    let held = tokio::spawn(send(http.delete(&url).bearer_auth(&token)));
    let action = pending_action(&app).await;
    assert_eq!(action["requester"]["id"], "u-123");
    // The Slack id comes from a claim of the verified token (here the grant's `sub`).
    assert_eq!(action["requester"]["slack_user_id"], "u-123");
    assert_eq!(
        app.decide(action["id"].as_str().unwrap(), "approved")
            .await
            .status,
        200
    );
    let (status, _, seen) = held.await.unwrap();
    assert_eq!(status, 200, "{seen}");
    // The caller's own credentials still reach the upstream.
    assert_eq!(seen["headers"]["authorization"], format!("Bearer {token}"));
}

/// The real `greenlight proxy` binary, as an operator runs it, in front of a recording
/// upstream. Killed on drop.
struct ProxyProcess {
    base: String,
    upstream: Upstream,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

async fn proxy_process(app: &TestApp, routes: &str) -> ProxyProcess {
    let upstream = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.toml");
    std::fs::write(&file, routes).unwrap();
    let port = common::free_port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_greenlight"))
        .args(["proxy", "--upstream", &upstream.base, "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--routes")
        .arg(&file)
        .env("GREENLIGHT_URL", &app.base)
        .env("GREENLIGHT_CLIENT_ID", "app")
        .env("GREENLIGHT_CLIENT_SECRET", &app.secrets["app"])
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return ProxyProcess {
                base,
                upstream,
                _child: child,
                _dir: dir,
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("greenlight proxy did not start");
}

const ALICE: &str = "x-user: alice\r\nx-user-email: alice@example.com\r\n";

/// Every way of writing `/accounts/42` that an upstream reads as it is held like it, and
/// the upstream receives the canonical path once approved; a path with no safe canonical
/// form, or a lower-case method, is refused and never reaches the upstream.
async fn the_proxy_matches_the_path_it_forwards(backend: Backend) {
    let app = spawn_app(backend).await;
    let routes = format!(
        "{ROUTES}\n[[route]]\nname = \"export\"\nmethods = [\"GET\"]\npath = \"/accounts/{{id}}/export\"\naction = \"accounts.export\"\nresource = \"accounts/{{id}}\"\n"
    );
    let proxy = proxy_process(&app, &routes).await;
    for (approved, trick) in [
        "/x/../accounts/42",
        "/accounts/./42",
        "/x/%2e%2e/accounts/42",
        "//accounts/42",
        "/accounts/42/",
        "/accounts/%34%32",
    ]
    .into_iter()
    .enumerate()
    {
        let base = proxy.base.clone();
        let target = trick.to_owned();
        let held =
            tokio::spawn(
                async move { common::raw_http(&base, "DELETE", &target, ALICE, "").await },
            );
        let action = pending_action(&app).await;
        assert_eq!(action["resource"], "accounts/42", "{trick}");
        assert_eq!(
            proxy.upstream.reached.load(Ordering::SeqCst),
            approved,
            "{trick}"
        );
        let id = action["id"].as_str().unwrap();
        assert_eq!(app.decide(id, "approved").await.status, 200);
        let (status, answer) = held.await.unwrap();
        assert_eq!(status, 200, "{trick}: {answer}");
        assert!(
            answer.contains(r#""uri":"/accounts/42""#),
            "{trick}: {answer}"
        );
    }
    let forwarded = proxy.upstream.reached.load(Ordering::SeqCst);
    for refused in [
        "/accounts%2F42",
        "/accounts%5C42",
        "/accounts\\42",
        "/accounts;v=1/42",
        "/x/%252e%252e/accounts/42",
        "/accounts/%ff",
    ] {
        let (status, answer) = common::raw_http(&proxy.base, "DELETE", refused, ALICE, "").await;
        assert_eq!(status, 400, "{refused}: {answer}");
    }
    assert_eq!(
        common::raw_http(&proxy.base, "delete", "/accounts/42", ALICE, "")
            .await
            .0,
        400
    );
    assert_eq!(proxy.upstream.reached.load(Ordering::SeqCst), forwarded);
    assert!(app.service.pending(10).await.unwrap().is_empty());

    // HEAD is held by the GET route.
    let base = proxy.base.clone();
    let held = tokio::spawn(async move {
        common::raw_http(&base, "HEAD", "/accounts/7/export", ALICE, "").await
    });
    let action = pending_action(&app).await;
    assert_eq!(action["action"], "accounts.export");
    assert_eq!(
        app.decide(action["id"].as_str().unwrap(), "denied")
            .await
            .status,
        200
    );
    assert_eq!(held.await.unwrap().0, 403);
    assert_eq!(proxy.upstream.reached.load(Ordering::SeqCst), forwarded);
}

/// An approved statement releases that statement, once: the same action id with another
/// body is refused, and a second use of the approved one is a 409. The approvers saw the
/// statement itself.
async fn one_approval_releases_exactly_the_approved_request_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let proxy = proxy_process(&app, ROUTES).await;
    let http = reqwest::Client::new();
    let url = format!("{}/sql", proxy.base);
    let call = |query: &str| {
        http.post(&url)
            .header("x-user", "alice")
            .header("x-user-email", "alice@example.com")
            .header("prefer", "respond-async")
            .json(&json!({ "query": query }))
    };
    let approved = "DELETE FROM sessions WHERE expired";
    let (status, headers, body) = send(call(approved)).await;
    assert_eq!(status, 202, "{body}");
    let id = headers["greenlight-action-id"].to_str().unwrap().to_owned();
    let action = app.get("app", &id).await.body;
    assert_eq!(action["binding"]["preview"], approved);
    assert_eq!(app.decide(&id, "approved").await.status, 200);

    let (status, _, body) =
        send(call("DROP TABLE users").header("greenlight-action-id", &id)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(proxy.upstream.reached.load(Ordering::SeqCst), 0);

    let (status, _, seen) = send(call(approved).header("greenlight-action-id", &id)).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["body"], json!({ "query": approved }).to_string());
    let (status, _, body) = send(call(approved).header("greenlight-action-id", &id)).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(proxy.upstream.reached.load(Ordering::SeqCst), 1);

    // A held (not resumed) approval is spent too: its action id cannot release another.
    let held = tokio::spawn(send(
        http.post(&url)
            .header("x-user", "alice")
            .header("x-user-email", "alice@example.com")
            .json(&json!({ "query": approved })),
    ));
    let action = pending_action(&app).await;
    let id = action["id"].as_str().unwrap().to_owned();
    assert_eq!(app.decide(&id, "approved").await.status, 200);
    assert_eq!(held.await.unwrap().0, 200);
    let (status, _, _) = send(call(approved).header("greenlight-action-id", &id)).await;
    assert_eq!(status, 409);
    assert_eq!(proxy.upstream.reached.load(Ordering::SeqCst), 2);
}

/// Without an email or Slack id, a rule that forbids self-approval cannot be enforced:
/// the request is refused, not silently open to its requester's own click.
async fn an_unverifiable_requester_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let proxy = proxy_process(&app, ROUTES).await;
    let (status, answer) = common::raw_http(
        &proxy.base,
        "DELETE",
        "/accounts/1",
        "x-user: alice\r\n",
        "",
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer.contains("requester_unverifiable"), "{answer}");
    assert_eq!(proxy.upstream.reached.load(Ordering::SeqCst), 0);
    assert!(app.service.pending(10).await.unwrap().is_empty());
}

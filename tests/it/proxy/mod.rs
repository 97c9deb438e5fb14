//! `greenlight proxy` between a client and a real upstream, with a real Greenlight (and
//! Redis): held requests are forwarded only once approved, with the grant; everything
//! else passes through untouched and streamed.

/// The real `greenlight proxy` binary: paths, one approval for one request, requesters.
mod binary;
/// Limits, forged decisions, requesters from a verified token.
mod guards;
/// SQL-aware body conditions (`sql = "writes"`).
mod sql;
/// Access windows: a window's grant goes through without a new approval.
pub(crate) mod window;

use crate::common::cli::{forged_approval, grant_of_another_action, publish_decision};
use crate::common::{Backend, TestApp, spawn_app};
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
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
);

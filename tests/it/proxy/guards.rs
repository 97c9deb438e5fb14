//! What the proxy refuses or bounds: oversized bodies and slow upstreams, a decision forged
//! on Redis, and a requester taken only from a verified bearer token.

use super::*;

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

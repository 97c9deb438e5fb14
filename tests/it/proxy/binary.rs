//! The real `greenlight proxy` binary, as an operator runs it: the path it matches is the
//! path it forwards, one approval releases one request once, and an unverifiable requester
//! is refused.

use super::*;

/// The real `greenlight proxy` binary, as an operator runs it, in front of a recording
/// upstream. Killed on drop.
pub(super) struct ProxyProcess {
    pub(super) base: String,
    pub(super) upstream: Upstream,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

pub(super) async fn proxy_process(app: &TestApp, routes: &str) -> ProxyProcess {
    let upstream = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.toml");
    std::fs::write(&file, routes).unwrap();
    let port = crate::common::free_port();
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
        let held = tokio::spawn(async move {
            crate::common::raw_http(&base, "DELETE", &target, ALICE, "").await
        });
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
        let (status, answer) =
            crate::common::raw_http(&proxy.base, "DELETE", refused, ALICE, "").await;
        assert_eq!(status, 400, "{refused}: {answer}");
    }
    assert_eq!(
        crate::common::raw_http(&proxy.base, "delete", "/accounts/42", ALICE, "")
            .await
            .0,
        400
    );
    assert_eq!(proxy.upstream.reached.load(Ordering::SeqCst), forwarded);
    assert!(app.service.pending(10).await.unwrap().is_empty());

    // HEAD is held by the GET route.
    let base = proxy.base.clone();
    let held = tokio::spawn(async move {
        crate::common::raw_http(&base, "HEAD", "/accounts/7/export", ALICE, "").await
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
    let (status, answer) = crate::common::raw_http(
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

on_both_backends!(
    the_proxy_matches_the_path_it_forwards,
    one_approval_releases_exactly_the_approved_request_once,
    an_unverifiable_requester_is_refused,
);

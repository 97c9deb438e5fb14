//! `greenlight status`, `wait`, `decide` and `pending` against a running server, and the
//! errors every client command shares.

use super::*;

async fn status_and_wait_exit_with_the_status_code(backend: Backend) {
    let app = spawn_app(backend).await;
    let status = |id: String| {
        let cmd = greenlight(&app, "app");
        async move { run(cmd, &["status", &id]).await }
    };
    let wait = |id: String| {
        let cmd = greenlight(&app, "app");
        async move { run(cmd, &["wait", &id, "--timeout", "1s"]).await }
    };

    let pending = app.create_pending().await;
    let r = status(pending.clone()).await;
    assert_eq!(r.code, 13, "{r:?}");
    assert!(
        r.stdout.contains(&pending) && r.stdout.contains("pending"),
        "{r:?}"
    );
    let r = wait(pending.clone()).await;
    assert_eq!(r.code, 13, "{r:?}");
    assert!(
        r.took >= Duration::from_millis(900),
        "waited its timeout: {r:?}"
    );

    // One action per terminal status: both commands answer its code, without waiting.
    let approved = app.create_pending().await;
    assert_eq!(app.decide(&approved, "approved").await.status, 200);
    let denied = app.create_pending().await;
    assert_eq!(app.decide(&denied, "denied").await.status, 200);
    let cancelled = app.create_pending().await;
    assert_eq!(app.cancel("app", &cancelled).await.status, 200);
    let expired = app
        .create(&crate::common::request("short.cleanup", "tmp/x"))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(15);
    while app.get("app", &expired).await.body["status"] == "pending" {
        assert!(Instant::now() < deadline, "the short action never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (id, code, word) in [
        (approved, 0, "approved"),
        (denied, 10, "denied"),
        (expired, 11, "expired"),
        (cancelled, 12, "cancelled"),
    ] {
        let r = status(id.clone()).await;
        assert_eq!(r.code, code, "status of {word}: {r:?}");
        assert!(r.stdout.contains(word), "{r:?}");
        let r = wait(id).await;
        assert_eq!(r.code, code, "wait on {word}: {r:?}");
        assert!(
            r.took < Duration::from_secs(1),
            "wait on {word} answered at once: {r:?}"
        );
    }
}

async fn deciding_twice_fails_naming_the_status(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_pending().await;
    assert_eq!(app.decide(&id, "approved").await.status, 200);
    let r = run(greenlight(&app, "admin"), &["decide", &id, "--deny"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("approved"), "{r:?}");
    assert_eq!(app.get("app", &id).await.body["status"], "approved");

    // Forgetting --approve/--deny is a usage error, not a silent deny.
    let other = app.create_pending().await;
    let r = run(greenlight(&app, "admin"), &["decide", &other]).await;
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(app.get("app", &other).await.body["status"], "pending");

    // A client without the admin role cannot decide at all.
    let r = run(greenlight(&app, "app"), &["decide", &other, "--approve"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("forbidden"), "{r:?}");
    assert_eq!(app.get("app", &other).await.body["status"], "pending");
}

async fn errors_exit_1_with_a_message(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_pending().await;

    let mut cmd = greenlight(&app, "app");
    cmd.env_remove("GREENLIGHT_CLIENT_SECRET");
    let r = run(cmd, &["status", &id]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("GREENLIGHT_CLIENT_SECRET"), "{r:?}");

    // A URL without its scheme says what is expected.
    let mut cmd = greenlight(&app, "app");
    cmd.env("GREENLIGHT_URL", app.base.trim_start_matches("http://"));
    let r = run(cmd, &["status", &id]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("GREENLIGHT_URL: expected http://"),
        "{r:?}"
    );

    let mut cmd = greenlight(&app, "app");
    cmd.env("GREENLIGHT_CLIENT_SECRET", "hunter2");
    let r = run(cmd, &["status", &id]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("GREENLIGHT_CLIENT_SECRET"), "{r:?}");
    assert!(
        !r.stderr.contains("hunter2"),
        "the secret is not echoed: {r:?}"
    );

    // Someone else's secret: the server refuses, the CLI says so.
    let mut cmd = greenlight(&app, "app");
    cmd.env("GREENLIGHT_CLIENT_SECRET", &app.secrets["other"]);
    let r = run(cmd, &["status", &id]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("unauthorized"), "{r:?}");

    // The server rejects the request: the field is named.
    let r = run(
        greenlight(&app, "app"),
        &[
            "request",
            "--action",
            "Db.Drop",
            "--resource",
            "r",
            "--requester",
            "u-1",
            "--email",
            "alice@example.com",
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("action"), "{r:?}");

    // Nobody listening.
    let mut cmd = greenlight(&app, "app");
    cmd.env(
        "GREENLIGHT_URL",
        format!("http://127.0.0.1:{}", crate::common::free_port()),
    );
    let r = run(cmd, &["status", &id]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("cannot reach"), "{r:?}");

    // Not an action id; an id nobody created.
    let r = run(greenlight(&app, "app"), &["status", "12345"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    let r = run(
        greenlight(&app, "app"),
        &["status", "act_01JD8Y3M6QW9T3V7K2X5N4B1C0"],
    )
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("not_found"), "{r:?}");
}

/// Finding your way without Slack: `greenlight pending` lists the ids of the pending
/// actions a client may read (all of them for an admin), and the API refuses to list
/// anything but pending actions.
async fn pending_lists_the_actions_a_client_may_read(backend: Backend) {
    let app = spawn_app(backend).await;
    let mine = [app.create_pending().await, app.create_pending().await];
    let r = app
        .send_as(
            "other",
            "POST",
            "/v1/actions",
            &crate::common::request("deploy.prod", "svc/x"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let theirs = r.body["id"].as_str().unwrap().to_owned();

    let r = run(greenlight(&app, "app"), &["pending"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    for id in &mine {
        assert!(r.stdout.contains(id.as_str()), "{r:?}");
    }
    assert!(
        !r.stdout.contains(&theirs),
        "another client's action is not listed: {r:?}"
    );
    assert!(r.stdout.lines().all(|l| l.contains(" pending ")), "{r:?}");

    let r = run(greenlight(&app, "admin"), &["pending", "--json"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let ids: Vec<String> = r
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 3, "{r:?}");
    assert!(ids.contains(&theirs) && mine.iter().all(|id| ids.contains(id)));

    // Decided actions leave the list.
    assert_eq!(app.decide(&mine[0], "approved").await.status, 200);
    let r = run(greenlight(&app, "app"), &["pending"]).await;
    assert!(
        !r.stdout.contains(mine[0].as_str()) && r.stdout.contains(mine[1].as_str()),
        "{r:?}"
    );

    for query in [
        "",
        "?status=approved",
        "?status=pending&limit=0",
        "?status=pending&x=1",
    ] {
        let r = app
            .send_as("app", "GET", &format!("/v1/actions{query}"), &Value::Null)
            .await;
        assert_eq!(r.status, 400, "{query}: {}", r.body);
    }
}

on_both_backends!(
    pending_lists_the_actions_a_client_may_read,
    status_and_wait_exit_with_the_status_code,
    deciding_twice_fails_naming_the_status,
    errors_exit_1_with_a_message,
);

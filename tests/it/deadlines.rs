//! `expires_at` is a rule, not a timer: once it passes, no click, decision or cancel moves
//! the action anywhere but `expired`, however late the expiry timer is; and slow timer
//! work (callbacks, Slack) never makes an unrelated expiry late.

use crate::common::slack::{FakeSlack, block_action, interaction_body, signed_slack_headers};
use crate::common::{
    AppOptions, Backend, ChannelRecorder, SLACK_SIGNING_SECRET, TestApp, request, spawn_app_with,
};
use axum::Router;
use axum::routing::post;
use greenlight::store::TimerKind;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const POLICY: &str = concat!(
    r##"
[defaults]
channel = "#approvals"
on_no_match = "require"

"##,
    test_clients!(),
    r##"
[[rule]]
name = "short"
match = { action = "short.*" }
decision = "require"
approvers = ["U0BOB", "U0CAROL"]
ttl = "2s"

[[rule]]
name = "short-dual"
match = { action = "dual.*" }
decision = "require"
approvers = ["U0BOB", "U0CAROL"]
min_approvals = 2
ttl = "2s"
"##
);

const WAIT: Duration = Duration::from_secs(10);

async fn app_with_slack(backend: Backend) -> (TestApp, FakeSlack) {
    let slack = FakeSlack::start().await;
    let app = spawn_app_with(
        backend,
        AppOptions {
            policy: POLICY.into(),
            slack_api_base: Some(slack.base.clone()),
            ..Default::default()
        },
    )
    .await;
    (app, slack)
}

/// Creates an action whose expiry timer is late (see [`stall_expiry`]) and waits for its
/// approval message; returns the created body.
async fn late_with_message(app: &TestApp, slack: &FakeSlack, action: &str) -> Value {
    let r = app.create(&request(action, "svc/x")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    stall_expiry(app, &r.body).await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !slack
        .calls_to("chat.postMessage")
        .iter()
        .any(|c| c.args.to_string().contains(&id))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no message for {id}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    r.body
}

/// Makes the action's expiry timer late, as a replica that claimed it and stalled would:
/// claimed ahead of time under a long lease. Other timers claimed with it go back as due.
async fn stall_expiry(app: &TestApp, action: &Value) {
    let expires_at: chrono::DateTime<chrono::Utc> =
        action["expires_at"].as_str().unwrap().parse().unwrap();
    let id = action["id"].as_str().unwrap();
    let timers = app.service.timers();
    let claimed = timers
        .claim_due(
            expires_at + chrono::Duration::seconds(1),
            1000,
            Duration::from_secs(300),
        )
        .await
        .unwrap();
    let mut stalled = false;
    for t in claimed {
        if t.kind == TimerKind::Expire && t.action_id.as_str() == id {
            stalled = true;
        } else {
            timers.reschedule(&t, t.due).await.unwrap();
        }
    }
    assert!(stalled, "the expiry timer of {id} was claimed");
}

async fn past_deadline_of(action: &Value) {
    let expires_at: chrono::DateTime<chrono::Utc> =
        action["expires_at"].as_str().unwrap().parse().unwrap();
    let wait = (expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(300)).await;
}

async fn click(app: &TestApp, slack: &FakeSlack, user: &str, id: &str) {
    let payload = block_action(
        user,
        "greenlight_approve",
        id,
        "C0APPROVALS",
        "1700000000.000001",
        &slack.response_url(),
    );
    let body = interaction_body(&payload);
    let headers = signed_slack_headers(SLACK_SIGNING_SECRET, chrono::Utc::now().timestamp(), &body);
    let r = app
        .send_raw("POST", "/slack/interactions", body, &headers)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// The audit events about `id`, oldest first.
async fn events_of(app: &TestApp, id: &str) -> Vec<String> {
    let r = app
        .send_as(
            "auditor",
            "GET",
            &format!("/v1/audit?action_id={id}&limit=100"),
            &Value::Null,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect()
}

/// A click after `expires_at`, with the expiry timer late, is answered "already expired"
/// and the action reads `expired`: announced once, audited once, nobody's vote counted.
async fn a_click_after_the_deadline_expires_the_action_even_when_the_timer_is_late(
    backend: Backend,
) {
    let (app, slack) = app_with_slack(backend).await;
    let recorder = match app.backend.redis_server() {
        Some(redis) => Some(ChannelRecorder::start(redis, &app.prefix).await),
        None => None,
    };
    let deciding = late_with_message(&app, &slack, "short.restart").await;
    // A vote that would not decide (two approvals needed) is refused all the same.
    let first_of_two = late_with_message(&app, &slack, "dual.restart").await;
    past_deadline_of(&first_of_two).await;

    for (n, action) in [&deciding, &first_of_two].into_iter().enumerate() {
        let id = action["id"].as_str().unwrap();
        click(&app, &slack, "U0BOB", id).await;
        let replies = slack.wait_for_responses(n + 1, WAIT).await;
        let text = replies[n].1["text"].as_str().unwrap_or_default();
        assert_eq!(replies[n].1["response_type"], "ephemeral");
        assert!(text.contains("already expired"), "{text}");

        let read = app.get("app", id).await.body;
        assert_eq!(read["status"], "expired", "{read}");
        assert_eq!(read["votes"], json!([]), "the late vote was not recorded");
        assert_eq!(read["decision"]["decided_by"], json!([]));
        // Nothing moves it afterwards.
        assert_eq!(app.decide(id, "approved").await.status, 409);
        assert_eq!(app.cancel("app", id).await.status, 409);

        let events = events_of(&app, id).await;
        let count = |e: &str| events.iter().filter(|x| *x == e).count();
        assert_eq!(count("expired"), 1, "{events:?}");
        assert_eq!(count("approved") + count("vote"), 0, "{events:?}");
        if let Some(recorder) = &recorder {
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(recorder.count_for(id), 1, "announced once");
        }
    }
}

/// With the expiry timer late, a long-poll still answers `expired` at `expires_at`; a
/// break-glass decision and a cancel after it answer `409`, and the action reads
/// `expired`; so does a plain read, with the same single announcement.
async fn decisions_and_reads_after_the_deadline_see_expired(backend: Backend) {
    let (app, slack) = app_with_slack(backend).await;
    let recorder = match app.backend.redis_server() {
        Some(redis) => Some(ChannelRecorder::start(redis, &app.prefix).await),
        None => None,
    };
    let decided = late_with_message(&app, &slack, "short.a").await;
    let cancelled = late_with_message(&app, &slack, "short.b").await;
    let read = late_with_message(&app, &slack, "short.c").await;
    let waited = late_with_message(&app, &slack, "short.d").await;

    // A long-poll open before the deadline answers at it, not at its own timeout.
    let w = app.wait("app", waited["id"].as_str().unwrap(), 20).await;
    assert_eq!(w.body["status"], "expired", "{}", w.body);
    let at = |v: &Value| -> chrono::DateTime<chrono::Utc> { v.as_str().unwrap().parse().unwrap() };
    let late = chrono::Utc::now() - at(&waited["expires_at"]);
    assert!(
        late.num_milliseconds() < 1500,
        "answered {} ms after expires_at",
        late.num_milliseconds()
    );
    past_deadline_of(&read).await;

    let id = |a: &Value| a["id"].as_str().unwrap().to_owned();
    let r = app.decide(&id(&decided), "approved").await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    let r = app.cancel("app", &id(&cancelled)).await;
    assert_eq!(r.status, 409, "{}", r.body);
    let r = app.wait("app", &id(&read), 1).await;
    assert_eq!(r.body["status"], "expired", "{}", r.body);

    for a in [&decided, &cancelled, &read, &waited] {
        let body = app.get("admin", &id(a)).await.body;
        assert_eq!(body["status"], "expired", "{body}");
        let events = events_of(&app, &id(a)).await;
        assert_eq!(
            events.iter().filter(|e| *e == "expired").count(),
            1,
            "{events:?}"
        );
        if let Some(recorder) = &recorder {
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(recorder.count_for(&id(a)), 1, "announced once");
        }
    }
}

/// A receiver of decision callbacks that answers after `delay`; counts arrivals.
async fn slow_receiver(delay: Duration) -> (String, Arc<AtomicUsize>) {
    let arrivals = Arc::new(AtomicUsize::new(0));
    let counted = arrivals.clone();
    let router = Router::new().route(
        "/cb",
        post(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cb", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, arrivals)
}

/// The reported failure, scaled down: cancelled actions whose callback receiver answers
/// only after seconds used to run one at a time ahead of an unrelated expiry, pushing it
/// back by their sum. Now the expiry lands on time, while the callbacks are still out.
async fn slow_callbacks_do_not_delay_an_unrelated_expiry(backend: Backend) {
    let app = spawn_app_with(
        backend,
        AppOptions {
            policy: POLICY.into(),
            ..Default::default()
        },
    )
    .await;
    let (url, arrivals) = slow_receiver(Duration::from_secs(5)).await;
    const SLOW: usize = 6;
    for i in 0..SLOW {
        let mut body = request("deploy.job", &format!("svc/{i}"));
        body["callback_url"] = json!(url);
        let r = app.create(&body).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let r = app.cancel("app", r.body["id"].as_str().unwrap()).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while arrivals.load(Ordering::SeqCst) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no callback sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let r = app.create(&request("short.job", "svc/unrelated")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap();
    // A long-poll answers when the expiry is announced; it reads nothing meanwhile.
    let w = app.wait("app", id, 20).await;
    assert_eq!(w.body["status"], "expired", "{}", w.body);
    let at = |v: &Value| -> chrono::DateTime<chrono::Utc> { v.as_str().unwrap().parse().unwrap() };
    let late = at(&w.body["decision"]["decided_at"]) - at(&w.body["expires_at"]);
    assert!(
        late.num_milliseconds() <= 1500,
        "expired {} ms after expires_at",
        late.num_milliseconds()
    );
    assert_eq!(
        arrivals.load(Ordering::SeqCst),
        SLOW,
        "every slow callback is out at once, not one after another"
    );
}

on_both_backends!(
    a_click_after_the_deadline_expires_the_action_even_when_the_timer_is_late,
    decisions_and_reads_after_the_deadline_see_expired,
    slow_callbacks_do_not_delay_an_unrelated_expiry,
);

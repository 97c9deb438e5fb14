//! `GET /metrics` after a real flow: the counters move by what happened, with labels from
//! fixed sets (never an action id, a raw path or a secret), the histograms are there, and
//! every response carries an `x-request-id`.
//!
//! The recorder is global to the process, so every server of this binary adds to the same
//! numbers: the tests take turns, and compare before and after. That is why this is a
//! binary of its own, outside `tests/it`: the servers of the other tests would add to them.

// This binary uses a small part of the shared setup.
#[allow(dead_code)]
#[path = "it/common/mod.rs"]
mod common;

use common::slack::{FakeSlack, block_action, interaction_body, signed_slack_headers};
use common::{AppOptions, Backend, SLACK_SIGNING_SECRET, TestApp, request, spawn_app_with};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// One sample line: `name{label="value",...} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    fn parse(text: String) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("`series value`");
                let (name, labels) = match series.split_once('{') {
                    Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                    None => (series, BTreeMap::new()),
                };
                Sample {
                    name: name.to_owned(),
                    labels,
                    value: value.parse().unwrap_or_else(|_| panic!("value in {line}")),
                }
            })
            .collect();
        Self { text, samples }
    }

    /// The value of the series with exactly these labels (0 when absent).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .filter(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
            .sum()
    }

    fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }
}

/// `k="v",k2="v2"`; the exporter escapes `"` and `\` in values, which these never hold.
fn parse_labels(s: &str) -> BTreeMap<String, String> {
    s.split("\",")
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
            (k.to_owned(), v.trim_end_matches('"').to_owned())
        })
        .collect()
}

async fn scrape(app: &TestApp) -> Scrape {
    let resp = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4",
        "the Prometheus text format"
    );
    Scrape::parse(resp.text().await.unwrap())
}

/// Scrapes until `check` holds (gauges are sampled, the expiry timer takes its time).
async fn scrape_until(app: &TestApp, what: &str, check: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = scrape(app).await;
        if check(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never held:\n{}",
            s.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the approval message of `id` is posted.
async fn posted(slack: &FakeSlack, id: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !slack
        .calls_to("chat.postMessage")
        .iter()
        .any(|c| c.args.to_string().contains(id))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no message for {id}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The tests of this binary take turns: the counters and gauges are the process's.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn id_of(r: &common::Resp) -> String {
    assert!(r.status == 201, "{}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

type Labels = &'static [(&'static str, &'static str)];

/// What one run of the flow must add to the counters.
const DELTAS: &[(&str, Labels, f64)] = &[
    (
        "greenlight_actions_created_total",
        &[("client", "app"), ("rule", "default")],
        4.0,
    ),
    (
        "greenlight_actions_created_total",
        &[("client", "app"), ("rule", "reads")],
        1.0,
    ),
    (
        "greenlight_actions_created_total",
        &[("client", "app"), ("rule", "never-drop-databases")],
        1.0,
    ),
    (
        "greenlight_actions_created_total",
        &[("client", "app"), ("rule", "short")],
        1.0,
    ),
    (
        "greenlight_decisions_total",
        &[("outcome", "approved"), ("by", "policy")],
        1.0,
    ),
    (
        "greenlight_decisions_total",
        &[("outcome", "denied"), ("by", "policy")],
        1.0,
    ),
    (
        "greenlight_decisions_total",
        &[("outcome", "approved"), ("by", "slack")],
        1.0,
    ),
    (
        "greenlight_decisions_total",
        &[("outcome", "denied"), ("by", "admin")],
        1.0,
    ),
    (
        "greenlight_decisions_total",
        &[("outcome", "cancelled"), ("by", "cancel")],
        1.0,
    ),
    (
        "greenlight_decisions_total",
        &[("outcome", "expired"), ("by", "timer")],
        1.0,
    ),
    (
        "greenlight_time_to_decision_seconds_count",
        &[("outcome", "approved")],
        2.0,
    ),
    (
        "greenlight_time_to_decision_seconds_count",
        &[("outcome", "expired")],
        1.0,
    ),
    (
        "greenlight_http_requests_total",
        &[("route", "/v1/actions"), ("status", "201")],
        7.0,
    ),
    (
        "greenlight_http_requests_total",
        &[("route", "/v1/actions"), ("status", "401")],
        1.0,
    ),
    (
        "greenlight_http_requests_total",
        &[("route", "/v1/actions/{id}/decision"), ("status", "200")],
        1.0,
    ),
    (
        "greenlight_http_requests_total",
        &[("route", "/v1/actions/{id}/cancel"), ("status", "200")],
        1.0,
    ),
    (
        "greenlight_http_requests_total",
        &[("route", "/slack/interactions"), ("status", "200")],
        1.0,
    ),
];

/// create pending (left pending), auto-approve, auto-deny, approve in Slack while a
/// long-poll waits, admin deny, cancel, expire (the 2 s `short` rule), one bad signature
/// and one unknown path.
async fn flow(backend: Backend) {
    let slack = FakeSlack::start().await;
    let mut app = spawn_app_with(
        backend,
        AppOptions {
            slack_api_base: Some(slack.base.clone()),
            ..Default::default()
        },
    )
    .await;
    let before = scrape(&app).await;

    let _left_pending = app.create_pending().await;
    let approved = app.create(&request("read.logs", "svc/x")).await;
    assert_eq!(approved.body["status"], "approved");
    let denied = app.create(&request("db.drop_database", "db/main")).await;
    assert_eq!(denied.body["status"], "denied");

    // Approved in Slack, with a long-poll waiting on it meanwhile.
    let by_slack = app.create_pending().await;
    posted(&slack, &by_slack).await;
    let waiter = {
        let (http, base, headers) = (
            app.http.clone(),
            app.base.clone(),
            app.signed_headers(
                "app",
                "GET",
                &format!("/v1/actions/{by_slack}/wait?timeout=30"),
                b"",
            ),
        );
        let path = format!("{base}/v1/actions/{by_slack}/wait?timeout=30");
        tokio::spawn(async move {
            let mut req = http.get(path);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            req.send().await.unwrap().json::<Value>().await.unwrap()
        })
    };
    let waiting = scrape_until(&app, "a waiter is counted", |s| {
        s.get("greenlight_waiters", &[]) >= before.get("greenlight_waiters", &[]) + 1.0
    })
    .await;
    assert!(waiting.has("greenlight_waiters"));
    let payload = block_action(
        "U0BOB",
        "greenlight_approve",
        &by_slack,
        "C0APPROVALS",
        "1700000000.000001",
        &slack.response_url(),
    );
    let body = interaction_body(&payload);
    let headers = signed_slack_headers(SLACK_SIGNING_SECRET, chrono::Utc::now().timestamp(), &body);
    let click = app
        .send_raw("POST", "/slack/interactions", body, &headers)
        .await;
    assert_eq!(click.status, 200, "{}", click.body);
    let waited = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the long-poll answers at the decision")
        .unwrap();
    assert_eq!(waited["status"], "approved");

    let by_admin = app.create_pending().await;
    assert_eq!(app.decide(&by_admin, "denied").await.status, 200);
    let cancelled = app.create_pending().await;
    assert_eq!(app.cancel("app", &cancelled).await.status, 200);
    let short = id_of(&app.create(&request("short.lived", "svc/x")).await);

    let mut bad = app.signed_headers("app", "POST", "/v1/actions", b"{}");
    bad.iter_mut()
        .find(|(k, _)| k == "webhook-signature")
        .unwrap()
        .1 = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into();
    let body = serde_json::to_vec(&request("deploy.prod", "svc/x")).unwrap();
    assert_eq!(
        app.send_raw("POST", "/v1/actions", body, &bad).await.status,
        401
    );
    let unknown = app
        .send_raw("GET", &format!("/nothing/here/{short}"), Vec::new(), &[])
        .await;
    assert_eq!(unknown.status, 404);

    // The expiry timer ends the short one (by the timer, not a read: nothing reads it).
    let after = scrape_until(&app, "the short action expires", |s| {
        s.get(
            "greenlight_decisions_total",
            &[("outcome", "expired"), ("by", "timer")],
        ) > before.get(
            "greenlight_decisions_total",
            &[("outcome", "expired"), ("by", "timer")],
        )
    })
    .await;
    assert_eq!(app.get("app", &short).await.body["status"], "expired");

    for (name, labels, delta) in DELTAS {
        assert_eq!(
            after.get(name, labels) - before.get(name, labels),
            *delta,
            "{name} {labels:?}:\n{}",
            after.text
        );
    }
    for histogram in [
        "greenlight_time_to_decision_seconds_bucket",
        "greenlight_time_to_decision_seconds_sum",
        "greenlight_http_request_duration_seconds_bucket",
        "greenlight_http_request_duration_seconds_count",
    ] {
        assert!(after.has(histogram), "{histogram} missing:\n{}", after.text);
    }
    assert_eq!(
        after.get(
            "greenlight_http_request_duration_seconds_count",
            &[("route", "/v1/actions")]
        ) - before.get(
            "greenlight_http_request_duration_seconds_count",
            &[("route", "/v1/actions")]
        ),
        8.0
    );
    let zero = [("outcome", "approved"), ("le", "0")];
    assert!(
        after.get("greenlight_time_to_decision_seconds_bucket", &zero)
            > before.get("greenlight_time_to_decision_seconds_bucket", &zero),
        "a policy decision takes 0 s:\n{}",
        after.text
    );
    let unmatched = [("route", "unmatched"), ("status", "404")];
    assert_eq!(
        after.get("greenlight_http_requests_total", &unmatched)
            - before.get("greenlight_http_requests_total", &unmatched),
        1.0
    );
    assert!(
        after.get(
            "greenlight_slack_api_calls_total",
            &[("method", "chat.postMessage"), ("result", "ok")]
        ) >= 1.0,
        "{}",
        after.text
    );
    assert!(after.has("greenlight_redis_errors_total"));
    assert!(after.has("greenlight_slack_rate_limited_total"));
    for name in [
        "greenlight_actions_created_total",
        "greenlight_decisions_total",
        "greenlight_time_to_decision_seconds",
        "greenlight_http_requests_total",
        "greenlight_http_request_duration_seconds",
    ] {
        assert!(
            after.text.contains(&format!("# HELP {name} ")),
            "{name} is described:\n{}",
            after.text
        );
    }

    // One action is left pending: the scheduler samples the store's count (this app is
    // the only one running in the process now).
    scrape_until(&app, "one pending action", |s| {
        s.get("greenlight_pending_actions", &[]) == 1.0
    })
    .await;
    // The waiter is gone once answered.
    scrape_until(&app, "the waiter is uncounted", |s| {
        s.get("greenlight_waiters", &[]) == before.get("greenlight_waiters", &[])
    })
    .await;

    let secrets: Vec<String> = app
        .secrets
        .values()
        .flat_map(|s| [s.clone(), s.trim_start_matches("whsec_").to_owned()])
        .chain([
            SLACK_SIGNING_SECRET.to_owned(),
            common::SLACK_BOT_TOKEN.to_owned(),
        ])
        .collect();
    for sample in &after.samples {
        for value in sample.labels.values() {
            assert!(
                !value.contains("act_") && !value.contains(&short),
                "an id in a label: {sample:?}"
            );
            assert!(
                !secrets.iter().any(|s| value.contains(s.as_str())),
                "a secret in a label: {sample:?}"
            );
        }
    }
    assert!(!after.text.contains("act_"), "{}", after.text);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_full_flow_on_both_backends() {
    let _turn = SERIAL.lock().await;
    flow(Backend::Memory).await;
    flow(Backend::redis()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_echoed_or_generated() {
    let _turn = SERIAL.lock().await;
    let app = common::spawn_app(Backend::Memory).await;
    let get = |path: &str, id: Option<&str>| {
        let mut req = app.http.get(format!("{}{path}", app.base));
        if let Some(id) = id {
            req = req.header("x-request-id", id);
        }
        req.send()
    };
    for path in ["/healthz", "/v1/actions/act_nope", "/no/such/route"] {
        let echoed = get(path, Some("req-from-the-caller-42")).await.unwrap();
        assert_eq!(echoed.headers()["x-request-id"], "req-from-the-caller-42");

        let a = get(path, None).await.unwrap();
        let b = get(path, None).await.unwrap();
        let (a, b) = (&a.headers()["x-request-id"], &b.headers()["x-request-id"]);
        assert_eq!(a.len(), 36, "a UUID: {a:?}");
        assert_ne!(a, b, "a new id per request");

        let too_long = "x".repeat(200);
        let replaced = get(path, Some(&too_long)).await.unwrap();
        assert_eq!(
            replaced.headers()["x-request-id"].len(),
            36,
            "replaced by a UUID"
        );
    }
    let text = scrape(&app).await.text;
    assert!(
        !text.contains("act_nope") && !text.contains("/no/such/route"),
        "raw paths never become labels:\n{text}"
    );
    assert!(text.contains(r#"route="/healthz",status="200""#), "{text}");
}

/// An auto-approved access window: used, refused out of scope, revoked; the gauge of
/// windows in force, the uses by outcome, the ends and the time to revoke follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_windows_are_measured() {
    let _turn = SERIAL.lock().await;
    let policy = common::POLICY.replacen(
        "[[rule]]",
        "[[rule]]\nname = \"log-access\"\nmatch = { action = \"logs.*\" }\ndecision = \"approve\"\nmax_window = \"1h\"\n\n[[rule]]",
        1,
    );
    let mut app = spawn_app_with(
        Backend::Memory,
        AppOptions {
            policy,
            ..Default::default()
        },
    )
    .await;
    let before = scrape(&app).await;
    let mut body = request("logs.*", "svc/*");
    body["window_seconds"] = 600.into();
    let r = app.create(&body).await;
    let id = id_of(&r);
    let token = r.body["decision"]["grant"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let used = |action: &str| {
        let body = serde_json::json!({"token": token, "action": action, "resource": "svc/api", "use": true});
        let app = &app;
        async move { app.send_as("app", "POST", "/v1/grants/verify", &body).await }
    };
    assert_eq!(used("logs.read").await.body["valid"], true);
    assert_eq!(used("logs.tail").await.body["valid"], true);
    assert_eq!(used("deploy.run").await.body["reason"], "wrong_scope");

    let during = scrape(&app).await;
    assert_eq!(during.get("greenlight_access_windows_active", &[]), 1.0);
    let uses = |s: &Scrape, outcome| {
        s.get(
            "greenlight_access_window_uses_total",
            &[("outcome", outcome)],
        )
    };
    assert_eq!(uses(&during, "valid") - uses(&before, "valid"), 2.0);
    assert_eq!(
        uses(&during, "wrong_scope") - uses(&before, "wrong_scope"),
        1.0
    );

    let r = app
        .send_as(
            "admin",
            "POST",
            &format!("/v1/actions/{id}/revoke"),
            &Value::Null,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(used("logs.read").await.body["reason"], "revoked");
    let after = scrape(&app).await;
    assert_eq!(after.get("greenlight_access_windows_active", &[]), 0.0);
    assert_eq!(uses(&after, "revoked") - uses(&before, "revoked"), 1.0);
    let ended = |s: &Scrape| {
        s.get(
            "greenlight_access_windows_ended_total",
            &[("how", "revoked")],
        )
    };
    assert_eq!(ended(&after) - ended(&before), 1.0);
    let revokes = |s: &Scrape| s.get("greenlight_access_window_revoke_seconds_count", &[]);
    assert_eq!(revokes(&after) - revokes(&before), 1.0);
    app.stop().await;
}

//! The escalation notification clients against the fake PagerDuty and webhook receiver: the
//! bodies and signatures they send and which answers they retry.

use crate::common::pagerduty::*;
use greenlight::notify::pagerduty::{PagerDuty, Retry, Trigger};
use greenlight::notify::{NotifyError, WebhookNotifier};
use greenlight::signing::{self, Secret};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const ROUTING_KEY: &str = "R0UTINGKEY0123456789abcdef012345";
const WAIT: Duration = Duration::from_secs(5);

fn fast() -> Retry {
    Retry {
        attempts: 3,
        base_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
    }
}

/// Like the application's client: no redirects followed.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn pagerduty(url: &str) -> PagerDuty {
    PagerDuty::new(http(), url, ROUTING_KEY.into()).with_retry(fast())
}

fn trigger(summary: String) -> Trigger<'static> {
    Trigger {
        dedup_key: "act_01HXYZ",
        summary,
        severity: "critical",
        source: "postgres://prod/main",
        custom_details: json!({"action": "db.migrate", "requester": "alice@example.com"}),
        links: vec![(
            "https://example.slack.com/archives/C1/p1".into(),
            "Approval request in Slack".into(),
        )],
    }
}

fn assert_hidden(shown: &str) {
    assert!(!shown.contains(ROUTING_KEY), "routing key shown: {shown}");
}

#[tokio::test]
async fn trigger_sends_an_events_v2_alert() {
    let pd = FakePagerDuty::start().await;
    pagerduty(&pd.url)
        .trigger(&trigger("Approval pending: db.migrate".into()))
        .await
        .unwrap();
    let body = &pd.wait_for("trigger", 1, WAIT).await[0];
    assert_eq!(body["routing_key"], ROUTING_KEY);
    assert_eq!(body["event_action"], "trigger");
    assert_eq!(body["dedup_key"], "act_01HXYZ");
    assert_eq!(body["payload"]["summary"], "Approval pending: db.migrate");
    assert_eq!(body["payload"]["source"], "postgres://prod/main");
    assert_eq!(body["payload"]["severity"], "critical");
    assert_eq!(body["payload"]["custom_details"]["action"], "db.migrate");
    let ts = body["payload"]["timestamp"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(ts).unwrap();
    assert_eq!(
        body["links"],
        json!([{"href": "https://example.slack.com/archives/C1/p1", "text": "Approval request in Slack"}])
    );
    assert_eq!(body["client"], "Greenlight");
    assert_eq!(pd.events().len(), 1);
}

#[tokio::test]
async fn long_summaries_are_cut_to_pagerdutys_limit() {
    let pd = FakePagerDuty::start().await;
    pagerduty(&pd.url)
        .trigger(&trigger("é".repeat(3000)))
        .await
        .unwrap();
    let body = &pd.wait_for("trigger", 1, WAIT).await[0];
    let summary = body["payload"]["summary"].as_str().unwrap();
    assert_eq!(summary.chars().count(), 1024);
}

#[tokio::test]
async fn resolve_sends_only_the_key_action_and_dedup_key() {
    let pd = FakePagerDuty::start().await;
    pagerduty(&pd.url).resolve("act_01HXYZ").await.unwrap();
    let bodies = pd.wait_for("resolve", 1, WAIT).await;
    assert_eq!(
        bodies,
        [json!({"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "act_01HXYZ"})]
    );
}

#[tokio::test]
async fn a_server_error_is_retried() {
    let pd = FakePagerDuty::start().await;
    pd.fail(PdFault::Status(500), 1);
    pagerduty(&pd.url)
        .trigger(&trigger("retry me".into()))
        .await
        .unwrap();
    let events = pd.events();
    assert_eq!(events.len(), 2);
    assert!(events[0].faulted && !events[1].faulted);
    assert_eq!(events[0].body, events[1].body);
    assert_eq!(pd.accepted().len(), 1);
}

#[tokio::test]
async fn a_bad_request_is_final() {
    let pd = FakePagerDuty::start().await;
    pd.fail(PdFault::Status(400), 5);
    let err = pagerduty(&pd.url)
        .trigger(&trigger("rejected".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, NotifyError::Rejected { status: 400, body } if body.contains("invalid event")),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert_eq!(pd.events().len(), 1);
}

#[tokio::test]
async fn an_invalid_event_is_rejected_by_the_fake_as_by_pagerduty() {
    let pd = FakePagerDuty::start().await;
    let mut t = trigger("bad severity".into());
    t.severity = "catastrophic";
    let err = pagerduty(&pd.url).trigger(&t).await.unwrap_err();
    assert!(
        matches!(&err, NotifyError::Rejected { status: 400, body } if body.contains("payload.severity")),
        "{err:?}"
    );
    assert_eq!(pd.events().len(), 1);
    assert!(pd.accepted().is_empty());
}

#[tokio::test]
async fn a_rate_limit_waits_for_retry_after() {
    let pd = FakePagerDuty::start().await;
    pd.fail(
        PdFault::RateLimited {
            retry_after: Some(1),
        },
        1,
    );
    // The default backoff caps at 8 s, so the 1 s asked for is honoured in full.
    let client = PagerDuty::new(http(), &pd.url, ROUTING_KEY.into());
    let start = Instant::now();
    client.resolve("act_1").await.unwrap();
    assert!(start.elapsed() >= Duration::from_secs(1));
    let events = pd.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].status, 429);
    assert!(events[1].at - events[0].at >= Duration::from_secs(1));
}

#[tokio::test]
async fn retry_after_is_capped_at_max_backoff() {
    let pd = FakePagerDuty::start().await;
    pd.fail(
        PdFault::RateLimited {
            retry_after: Some(60),
        },
        1,
    );
    let start = Instant::now();
    pagerduty(&pd.url).resolve("act_1").await.unwrap();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(pd.events().len(), 2);
}

#[tokio::test]
async fn server_errors_give_up_after_the_last_attempt() {
    let pd = FakePagerDuty::start().await;
    pd.fail(PdFault::Status(503), 100);
    let err = pagerduty(&pd.url).resolve("act_1").await.unwrap_err();
    assert!(
        matches!(&err, NotifyError::Exhausted(m) if m.contains("HTTP 503")),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(pd.events().len(), fast().attempts as usize);
    assert_hidden(&format!("{err} {err:?}"));
}

#[tokio::test]
async fn network_errors_are_retried_and_never_show_the_routing_key() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = pagerduty(&format!("http://{addr}/v2/enqueue"));
    let start = Instant::now();
    let err = client.trigger(&trigger("x".into())).await.unwrap_err();
    assert!(matches!(err, NotifyError::Exhausted(_)), "{err:?}");
    // Two backoffs: at least half of 5 ms, then half of 10 ms.
    assert!(start.elapsed() >= Duration::from_millis(2 + 5));
    assert_hidden(&format!("{err} {err:?} {client:?}"));
}

#[tokio::test]
async fn debug_hides_the_routing_key() {
    let client = pagerduty("https://events.pagerduty.com/v2/enqueue");
    let shown = format!("{client:?}");
    assert_hidden(&shown);
    assert!(shown.contains("[redacted]"), "{shown}");
}

fn event() -> Value {
    json!({"type": "action.escalated", "action_id": "act_01HXYZ", "stage": 3})
}

fn notifier(secret: Option<Secret>) -> WebhookNotifier {
    WebhookNotifier::new(http(), secret).with_retry(fast())
}

/// Checks one delivery's Standard Webhooks signature with the library's verifier.
fn assert_signed(d: &Delivery, secret: &Secret, id: &str) {
    assert_eq!(d.header("webhook-id"), Some(id));
    signing::verify(
        std::slice::from_ref(secret),
        d.header("webhook-id").unwrap(),
        d.header("webhook-timestamp").expect("webhook-timestamp"),
        d.header("webhook-signature").expect("webhook-signature"),
        &d.body,
        chrono::Utc::now().timestamp(),
    )
    .expect("signature verifies");
}

#[tokio::test]
async fn webhooks_are_signed_over_the_exact_body() {
    let hook = FakeWebhook::start().await;
    let (secret, text) = Secret::generate();
    notifier(Some(secret))
        .send(&hook.url, "msg_esc_1", &event())
        .await
        .unwrap();
    let got = hook.wait_for(1, WAIT).await;
    let d = &got[0];
    // A verifier given only the configured `whsec_` text accepts it.
    assert_signed(d, &Secret::parse(&text).unwrap(), "msg_esc_1");
    assert_eq!(d.header("content-type"), Some("application/json"));
    assert_eq!(serde_json::from_slice::<Value>(&d.body).unwrap(), event());
    let (other, _) = Secret::generate();
    assert!(
        signing::verify(
            &[other],
            "msg_esc_1",
            d.header("webhook-timestamp").unwrap(),
            d.header("webhook-signature").unwrap(),
            &d.body,
            chrono::Utc::now().timestamp(),
        )
        .is_err()
    );
}

#[tokio::test]
async fn a_retry_keeps_the_webhook_id_and_is_signed_again() {
    let hook = FakeWebhook::start().await;
    hook.fail(500, 1);
    let (secret, _) = Secret::generate();
    notifier(Some(secret.clone()))
        .send(&hook.url, "msg_esc_2", &event())
        .await
        .unwrap();
    let all = hook.deliveries();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].status, 500);
    assert_eq!(all[1].status, 200);
    for d in &all {
        assert_signed(d, &secret, "msg_esc_2");
    }
    assert_eq!(all[0].body, all[1].body);
    assert_eq!(hook.received().len(), 2);
}

#[tokio::test]
async fn without_a_secret_webhooks_go_unsigned() {
    let hook = FakeWebhook::start().await;
    notifier(None)
        .send(&hook.url, "msg_esc_3", &event())
        .await
        .unwrap();
    let (headers, body) = &hook.received()[0];
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        assert_eq!(header_value(headers, name), None, "{name}");
    }
    assert_eq!(serde_json::from_slice::<Value>(body).unwrap(), event());
}

#[tokio::test]
async fn a_client_error_or_a_redirect_is_final() {
    for status in [404, 302] {
        let hook = FakeWebhook::start().await;
        hook.fail(status, 5);
        let err = notifier(None)
            .send(&hook.url, "msg_esc_4", &event())
            .await
            .unwrap_err();
        assert!(
            matches!(err, NotifyError::Rejected { status: s, .. } if s == status),
            "{err:?}"
        );
        assert!(!err.is_transient());
        assert_eq!(hook.received().len(), 1, "HTTP {status}");
    }
}

#[tokio::test]
async fn webhook_rate_limits_and_server_errors_are_retried_until_exhausted() {
    let hook = FakeWebhook::start().await;
    hook.fail(429, 1);
    hook.fail(502, 100);
    let err = notifier(None)
        .send(&hook.url, "msg_esc_5", &event())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, NotifyError::Exhausted(m) if m.contains("HTTP 502")),
        "{err:?}"
    );
    assert_eq!(hook.received().len(), fast().attempts as usize);
}

#[tokio::test]
async fn a_malformed_url_is_invalid_and_not_retried() {
    let err = notifier(None)
        .send("not a url", "msg_esc_6", &event())
        .await
        .unwrap_err();
    assert!(matches!(err, NotifyError::Invalid(_)), "{err:?}");
    assert!(!err.is_transient());
}

//! Checks of the test harness's fake Slack and Slack-signing helpers.

use crate::common::slack::*;
use axum::extract::{Form, FromRequest};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

// The worked example in Slack's "Verifying requests from Slack".
const DOC_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const DOC_TIMESTAMP: i64 = 1531420618;
const DOC_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const DOC_SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

/// Decodes a form body with serde_urlencoded (through axum's `Form`), independently of the
/// encoder the helpers use.
async fn decode_form(body: Vec<u8>) -> HashMap<String, String> {
    let req = axum::http::Request::post("/")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(axum::body::Body::from(body))
        .unwrap();
    let Form(fields) = Form::<HashMap<String, String>>::from_request(req, &())
        .await
        .expect("a valid form body");
    fields
}

/// Status, `Retry-After` and body of an answer.
type Answer = (u16, Option<String>, Value);

async fn call_json(slack: &FakeSlack, method: &str, args: Value) -> Answer {
    let resp = reqwest::Client::new()
        .post(format!("{}/{method}", slack.base))
        .bearer_auth("xoxb-json")
        .json(&args)
        .send()
        .await
        .unwrap();
    read(resp).await
}

async fn read(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, retry_after, body)
}

#[test]
fn signature_matches_slacks_documented_example() {
    assert_eq!(
        slack_signature(DOC_SECRET, DOC_TIMESTAMP, DOC_BODY.as_bytes()),
        DOC_SIGNATURE
    );
    let headers = signed_slack_headers(DOC_SECRET, DOC_TIMESTAMP, DOC_BODY.as_bytes());
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("x-slack-request-timestamp"), Some("1531420618"));
    assert_eq!(get("x-slack-signature"), Some(DOC_SIGNATURE));
    assert_eq!(
        get("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    // One byte off, or another timestamp, gives another signature.
    assert_ne!(
        slack_signature(DOC_SECRET, DOC_TIMESTAMP + 1, DOC_BODY.as_bytes()),
        DOC_SIGNATURE
    );
    assert_ne!(
        slack_signature(DOC_SECRET, DOC_TIMESTAMP, &DOC_BODY.as_bytes()[1..]),
        DOC_SIGNATURE
    );
}

#[tokio::test]
async fn interaction_body_round_trips_through_serde_urlencoded() {
    let payload = block_action(
        "U0BOB",
        "greenlight_approve",
        "01JACTION & <!channel> = 100% + more ✓",
        "C0APPROVALS",
        "1700000000.000101",
        "http://127.0.0.1:1/response/1?a=b&c=d",
    );
    let body = interaction_body(&payload);
    let text = String::from_utf8(body.clone()).unwrap();
    assert!(text.starts_with("payload="), "{text}");
    assert!(!text.contains('{') && !text[8..].contains('&'), "{text}");
    let fields = decode_form(body).await;
    assert_eq!(fields.len(), 1);
    let decoded: Value = serde_json::from_str(&fields["payload"]).unwrap();
    assert_eq!(decoded, payload);

    let submission = deny_reason_submission("U0BOB", "01JACTION", "too risky & <late>");
    let decoded: Value =
        serde_json::from_str(&decode_form(interaction_body(&submission)).await["payload"]).unwrap();
    assert_eq!(decoded, submission);
}

#[test]
fn payloads_have_slacks_shapes() {
    let p = block_action(
        "U0BOB",
        "greenlight_deny",
        "01JX",
        "C1",
        "17.5",
        "http://r/1",
    );
    assert_eq!(p["type"], "block_actions");
    assert_eq!(p["user"]["id"], "U0BOB");
    assert_eq!(p["container"]["type"], "message");
    assert_eq!(p["container"]["message_ts"], "17.5");
    assert_eq!(p["container"]["channel_id"], "C1");
    assert_eq!(p["channel"]["id"], "C1");
    assert_eq!(p["message"]["ts"], "17.5");
    assert_eq!(p["response_url"], "http://r/1");
    let action = &p["actions"][0];
    assert_eq!(action["action_id"], "greenlight_deny");
    assert_eq!(action["value"], "01JX");
    assert_eq!(action["style"], "danger");
    assert_eq!(action["type"], "button");
    assert!(p["trigger_id"].is_string() && p["team"]["domain"].is_string());

    let s = deny_reason_submission("U0BOB", "01JX", "no");
    assert_eq!(s["type"], "view_submission");
    assert_eq!(s["view"]["callback_id"], "greenlight_deny_reason");
    assert_eq!(s["view"]["private_metadata"], "01JX");
    assert_eq!(
        s["view"]["state"]["values"]["reason"]["reason_input"],
        json!({"type": "plain_text_input", "value": "no"})
    );
}

#[tokio::test]
async fn slash_command_body_has_slacks_fields() {
    let fields = decode_form(slash_command_body(
        "U0BOB",
        "status 01JX",
        "http://127.0.0.1:1/response/7",
    ))
    .await;
    for key in [
        "token",
        "team_id",
        "team_domain",
        "channel_id",
        "channel_name",
        "user_id",
        "user_name",
        "command",
        "text",
        "api_app_id",
        "response_url",
        "trigger_id",
    ] {
        assert!(fields.contains_key(key), "missing {key}: {fields:?}");
    }
    assert_eq!(fields["command"], "/greenlight");
    assert_eq!(fields["text"], "status 01JX");
    assert_eq!(fields["user_id"], "U0BOB");
    assert_eq!(fields["response_url"], "http://127.0.0.1:1/response/7");
}

#[tokio::test]
async fn post_message_answers_with_incrementing_ts() {
    let slack = FakeSlack::start().await;
    let (status, _, first) = call_json(
        &slack,
        "chat.postMessage",
        json!({"channel": "#approvals", "text": "hi", "blocks": [{"type": "divider"}]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(first["ok"], true);
    assert_eq!(first["channel"], "C0APPROVALS");
    assert_eq!(first["message"]["blocks"], json!([{"type": "divider"}]));
    let (_, _, second) = call_json(
        &slack,
        "chat.postMessage",
        json!({"channel": "D0ALICE", "text": "dm", "thread_ts": first["ts"]}),
    )
    .await;
    assert_eq!(second["channel"], "D0ALICE");
    assert_eq!(second["message"]["thread_ts"], first["ts"]);
    let (a, b) = (
        first["ts"].as_str().unwrap(),
        second["ts"].as_str().unwrap(),
    );
    assert!(a.starts_with("1700000000.") && a.len() == "1700000000.000101".len());
    assert!(a < b, "{a} then {b}");

    let (_, _, link) = call_json(
        &slack,
        "chat.getPermalink",
        json!({"channel": "C0APPROVALS", "message_ts": a}),
    )
    .await;
    assert_eq!(
        link["permalink"],
        format!(
            "https://example.slack.com/archives/C0APPROVALS/p{}",
            a.replace('.', "")
        )
    );
    let (_, _, dm) = call_json(&slack, "conversations.open", json!({"users": "U0BOB"})).await;
    assert_eq!(dm["channel"]["id"], "DU0BOB");
    let (_, _, who) = call_json(&slack, "auth.test", json!({})).await;
    assert_eq!(who["user_id"], "UBOT");
    let (_, _, unknown) = call_json(&slack, "no.such", json!({})).await;
    assert_eq!(unknown, json!({"ok": false, "error": "unknown_method"}));
    let posted = slack.wait_for("chat.postMessage", 2, WAIT).await;
    assert_eq!(
        posted[0].reply, first,
        "each call keeps what it was answered"
    );
    assert_eq!(posted[1].reply["ts"], b);
}

#[tokio::test]
async fn records_form_and_json_bodies_and_tokens() {
    let slack = FakeSlack::start().await;
    slack.add_user("Carol@Example.com", "U0CAROL");
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/users.lookupByEmail", slack.base))
        .bearer_auth("xoxb-form")
        .form(&[("email", "carol@example.com")])
        .send()
        .await
        .unwrap();
    let (_, _, found) = read(resp).await;
    assert_eq!(found["user"]["id"], "U0CAROL");
    let (_, _, missing) = call_json(
        &slack,
        "users.lookupByEmail",
        json!({"email": "nobody@example.com"}),
    )
    .await;
    assert_eq!(missing, json!({"ok": false, "error": "users_not_found"}));
    let resp = http
        .post(format!("{}/auth.test", slack.base))
        .send()
        .await
        .unwrap();
    assert_eq!(read(resp).await.0, 200);

    let calls = slack.calls();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].method, "users.lookupByEmail");
    assert_eq!(calls[0].args, json!({"email": "carol@example.com"}));
    assert_eq!(calls[0].token.as_deref(), Some("xoxb-form"));
    assert_eq!(calls[1].args, json!({"email": "nobody@example.com"}));
    assert_eq!(calls[1].token.as_deref(), Some("xoxb-json"));
    assert_eq!(calls[2].token, None);
    assert!(calls[0].at <= calls[1].at && calls.iter().all(|c| !c.faulted));
    assert_eq!(slack.calls_to("users.lookupByEmail").len(), 2);
}

#[tokio::test]
async fn faults_fire_the_given_number_of_times_then_stop() {
    let slack = FakeSlack::start().await;
    slack.fail(
        "chat.postMessage",
        Fault::RateLimited {
            retry_after: Some(3),
        },
        2,
    );
    slack.fail("chat.postMessage", Fault::ServerError, 1);
    slack.fail("chat.update", Fault::SlackError("message_not_found"), 1);
    slack.fail("views.open", Fault::RateLimited { retry_after: None }, 1);
    let post = json!({"channel": "C1", "text": "x"});

    for _ in 0..2 {
        let (status, retry_after, _) = call_json(&slack, "chat.postMessage", post.clone()).await;
        assert_eq!((status, retry_after.as_deref()), (429, Some("3")));
    }
    assert_eq!(
        call_json(&slack, "chat.postMessage", post.clone()).await.0,
        500
    );
    let (status, _, ok) = call_json(&slack, "chat.postMessage", post.clone()).await;
    assert_eq!((status, &ok["ok"]), (200, &json!(true)));
    assert_eq!(ok["ts"], "1700000000.000101", "faulted calls take no ts");

    let update = json!({"channel": "C1", "ts": "1700000000.000101", "text": "y"});
    let (status, _, err) = call_json(&slack, "chat.update", update.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(err, json!({"ok": false, "error": "message_not_found"}));
    let (_, _, ok) = call_json(&slack, "chat.update", update).await;
    assert_eq!(
        (&ok["ok"], &ok["ts"]),
        (&json!(true), &json!("1700000000.000101"))
    );

    let (status, retry_after, _) = call_json(&slack, "views.open", json!({"view": {}})).await;
    assert_eq!((status, retry_after), (429, None));
    let (_, _, view) = call_json(&slack, "views.open", json!({"view": {}})).await;
    assert_eq!(view["view"]["id"], "V1");

    let calls = slack.calls();
    assert_eq!(calls[0].reply["error"], "ratelimited");
    assert_eq!(calls[2].reply, Value::Null, "a 500 has no JSON");
    let faulted: Vec<_> = calls.iter().map(|c| c.faulted).collect();
    assert_eq!(faulted, [true, true, true, false, true, false, true, false]);
    assert_eq!(slack.calls_to("chat.postMessage").len(), 1);
    assert_eq!(slack.calls_to("chat.update").len(), 1);
}

#[tokio::test]
async fn user_groups_resolve() {
    let slack = FakeSlack::start().await;
    slack.add_group("S0DBA", "dba-team", &["U0DAVE", "U0ERIN"]);
    let (_, _, list) = call_json(&slack, "usergroups.list", json!({})).await;
    assert_eq!(list["usergroups"][0]["id"], "S0DBA");
    assert_eq!(list["usergroups"][0]["handle"], "dba-team");
    let (_, _, members) = call_json(
        &slack,
        "usergroups.users.list",
        json!({"usergroup": "S0DBA"}),
    )
    .await;
    assert_eq!(members["users"], json!(["U0DAVE", "U0ERIN"]));
    let (_, _, none) = call_json(
        &slack,
        "usergroups.users.list",
        json!({"usergroup": "S0NOPE"}),
    )
    .await;
    assert_eq!(none, json!({"ok": false, "error": "no_such_subteam"}));
}

#[tokio::test]
async fn response_urls_record_what_is_posted() {
    let slack = FakeSlack::start().await;
    let (a, b) = (slack.response_url(), slack.response_url());
    assert_ne!(a, b);
    assert!(a.starts_with(&slack.url));
    let http = reqwest::Client::new();
    let body = json!({"response_type": "ephemeral", "text": "not an approver"});
    let resp = http.post(&b).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let got = slack.wait_for_responses(1, WAIT).await;
    assert_eq!(got, vec![(b[slack.url.len()..].to_owned(), body)]);
    assert!(slack.calls().is_empty(), "response URLs are not API calls");
}

#[tokio::test]
#[should_panic(expected = "chat.update")]
async fn wait_for_panics_on_timeout() {
    let slack = FakeSlack::start().await;
    slack
        .wait_for("chat.update", 1, Duration::from_millis(50))
        .await;
}

#[tokio::test]
async fn dropping_stops_the_server() {
    let slack = FakeSlack::start().await;
    let base = slack.base.clone();
    drop(slack);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let result = reqwest::Client::new()
        .post(format!("{base}/auth.test"))
        .send()
        .await;
    assert!(result.is_err(), "server still answers after drop");
}

//! The Web API client against a local fake Slack: retries, rate limits, pacing, and a
//! token that never shows.

use super::*;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;

const TOKEN: &str = "xoxb-test-token-do-not-leak";

#[derive(Clone, Debug)]
struct Seen {
    path: String,
    auth: Option<String>,
    content_type: Option<String>,
    body: String,
    at: Instant,
}

#[derive(Clone)]
struct Reply {
    status: u16,
    retry_after: Option<&'static str>,
    body: String,
}

fn ok(body: Value) -> Reply {
    Reply {
        status: 200,
        retry_after: None,
        body: body.to_string(),
    }
}

fn status(status: u16, retry_after: Option<&'static str>) -> Reply {
    Reply {
        status,
        retry_after,
        body: json!({"ok": false, "error": "ratelimited"}).to_string(),
    }
}

#[derive(Clone, Default)]
struct Fake {
    replies: Arc<Mutex<VecDeque<Reply>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Answers with `replies` in order; the last one repeats forever.
async fn answer(State(fake): State<Fake>, uri: Uri, headers: HeaderMap, body: String) -> Response {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &axum::http::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    fake.seen.lock().unwrap().push(Seen {
        path: uri.path().to_owned(),
        auth: header("authorization"),
        content_type: header("content-type"),
        body,
        at: Instant::now(),
    });
    let reply = {
        let mut replies = fake.replies.lock().unwrap();
        if replies.len() > 1 {
            replies.pop_front().unwrap()
        } else {
            replies.front().cloned().unwrap()
        }
    };
    let mut resp = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    if let Some(secs) = reply.retry_after {
        resp.headers_mut()
            .insert("retry-after", secs.parse().unwrap());
    }
    resp
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        attempts: 4,
        base_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        max_inline_wait: Duration::from_secs(5),
        channel_interval: Duration::from_millis(300),
    }
}

/// A fake Slack on 127.0.0.1:0 and a client pointed at it.
async fn fake(replies: Vec<Reply>) -> (SlackApi, Fake) {
    let fake = Fake {
        replies: Arc::new(Mutex::new(replies.into())),
        ..Fake::default()
    };
    let app = Router::new()
        .fallback(axum::routing::post(answer))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let api = SlackApi::new(http, &format!("http://{addr}/api/"), TOKEN.into()).with_retry(fast());
    (api, fake)
}

fn message() -> Message {
    Message {
        text: "Approval needed".into(),
        blocks: json!([{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]),
    }
}

#[tokio::test]
async fn ok_true_is_parsed_and_json_is_sent_with_the_token() {
    let (api, fake) = fake(vec![ok(
        json!({"ok": true, "channel": "C1", "ts": "1700.01"}),
    )])
    .await;
    let posted = api
        .post_message("C1", &message(), Some("1600.5"))
        .await
        .unwrap();
    assert_eq!(
        (posted.channel.as_str(), posted.ts.as_str()),
        ("C1", "1700.01")
    );
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/api/chat.postMessage");
    assert_eq!(seen[0].auth.as_deref(), Some(&*format!("Bearer {TOKEN}")));
    assert_eq!(
        seen[0].content_type.as_deref(),
        Some("application/json; charset=utf-8")
    );
    let body: Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(body["channel"], "C1");
    assert_eq!(body["text"], "Approval needed");
    assert_eq!(body["blocks"], message().blocks);
    assert_eq!(body["thread_ts"], "1600.5");
    assert_eq!(body["unfurl_links"], false);
}

#[tokio::test]
async fn text_only_messages_send_no_blocks() {
    let (api, fake) = fake(vec![ok(json!({"ok": true, "channel": "D1", "ts": "1.1"}))]).await;
    api.post_message("U1", &Message::text("hello"), None)
        .await
        .unwrap();
    api.update_message("D1", "1.1", &Message::text("bye"))
        .await
        .unwrap();
    let seen = fake.seen();
    let post: Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(post["text"], "hello");
    assert!(post.get("blocks").is_none());
    assert!(post.get("thread_ts").is_none());
    let update: Value = serde_json::from_str(&seen[1].body).unwrap();
    assert_eq!(update["blocks"], json!([]));
}

#[tokio::test]
async fn ok_false_is_an_error_and_not_retried() {
    let (api, fake) = fake(vec![ok(json!({"ok": false, "error": "channel_not_found"}))]).await;
    let err = api
        .update_message("C1", "1.2", &message())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SlackError::Api(e) if e == "channel_not_found"),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert_eq!(fake.seen().len(), 1);
}

#[tokio::test]
async fn answers_that_are_not_web_api_answers_are_invalid() {
    for body in ["<html>gateway</html>", r#"{"channel": "C1"}"#] {
        let reply = Reply {
            status: 200,
            retry_after: None,
            body: body.into(),
        };
        let (api, fake) = fake(vec![reply]).await;
        let err = api.call("chat.update", &json!({})).await.unwrap_err();
        assert!(
            matches!(&err, SlackError::Api(e) if e == "invalid_response"),
            "{err:?}"
        );
        assert_eq!(fake.seen().len(), 1);
    }
}

#[tokio::test]
async fn rate_limit_with_retry_after_waits_then_succeeds() {
    let (api, fake) = fake(vec![
        status(429, Some("1")),
        ok(json!({"ok": true, "channel": {"id": "D1"}})),
    ])
    .await;
    let start = Instant::now();
    assert_eq!(api.open_dm("U1").await.unwrap(), "D1");
    assert!(start.elapsed() >= Duration::from_secs(1));
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].at - seen[0].at >= Duration::from_secs(1));
    assert_eq!(
        serde_json::from_str::<Value>(&seen[0].body).unwrap(),
        json!({"users": "U1"})
    );
}

#[tokio::test]
async fn rate_limit_without_retry_after_waits_about_a_second() {
    let (api, fake) = fake(vec![status(429, None), ok(json!({"ok": true}))]).await;
    let start = Instant::now();
    api.call("chat.update", &json!({})).await.unwrap();
    let took = start.elapsed();
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_millis(1900), "{took:?}");
    assert_eq!(fake.seen().len(), 2);
}

#[tokio::test]
async fn ratelimited_in_the_body_counts_as_a_429() {
    let mut limited = ok(json!({"ok": false, "error": "ratelimited"}));
    limited.retry_after = Some("0");
    let (api, fake) = fake(vec![limited, ok(json!({"ok": true}))]).await;
    api.call("chat.update", &json!({})).await.unwrap();
    assert_eq!(fake.seen().len(), 2);
}

#[tokio::test]
async fn long_retry_after_is_returned_at_once() {
    let (api, fake) = fake(vec![status(429, Some("30"))]).await;
    let start = Instant::now();
    let err = api.call("chat.postMessage", &json!({})).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_millis(500));
    assert!(
        matches!(err, SlackError::RateLimited { retry_after } if retry_after == Duration::from_secs(30))
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
    assert!(err.is_transient());
    assert_eq!(fake.seen().len(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    let (api, fake) = fake(vec![
        status(500, None),
        status(502, None),
        ok(json!({"ok": true})),
    ])
    .await;
    api.open_view("trigger", &json!({"type": "modal"}))
        .await
        .unwrap();
    let seen = fake.seen();
    assert_eq!(seen.len(), 3);
    let body: Value = serde_json::from_str(&seen[2].body).unwrap();
    assert_eq!(
        body,
        json!({"trigger_id": "trigger", "view": {"type": "modal"}})
    );
}

#[tokio::test]
async fn server_errors_give_up_after_the_last_attempt() {
    let (api, fake) = fake(vec![status(500, None)]).await;
    let err = api.call("chat.update", &json!({})).await.unwrap_err();
    assert!(matches!(err, SlackError::Http(500)), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(fake.seen().len(), 4);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let (api, fake) = fake(vec![status(404, None)]).await;
    let err = api.call("chat.update", &json!({})).await.unwrap_err();
    assert!(matches!(err, SlackError::Http(404)));
    assert!(!err.is_transient());
    assert_eq!(fake.seen().len(), 1);
}

#[tokio::test]
async fn network_errors_are_retried_and_never_show_the_token() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let api = SlackApi::new(http, &format!("http://{addr}"), TOKEN.into()).with_retry(fast());
    let start = Instant::now();
    let err = api.auth_test().await.unwrap_err();
    assert!(matches!(err, SlackError::Transport(_)), "{err:?}");
    assert!(err.is_transient());
    assert!(start.elapsed() >= Duration::from_millis(2 + 5 + 10));
    let shown = format!("{err} {err:?} {api:?}");
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(shown.contains("[redacted]"));
}

#[tokio::test]
async fn read_methods_are_form_encoded() {
    let (api, fake) = fake(vec![
        ok(json!({"ok": true, "user": {"id": "U0ALICE"}})),
        ok(json!({"ok": false, "error": "users_not_found"})),
        ok(json!({"ok": true, "usergroups": [{"id": "S1", "handle": "dba-team"}, {"handle": "broken"}]})),
        ok(json!({"ok": true, "users": ["U1", "U2"]})),
        ok(json!({"ok": true, "channel": "C1", "permalink": "https://x.slack.com/archives/C1/p1"})),
        ok(json!({"ok": true, "user_id": "UBOT", "team_id": "T1", "bot_id": "B1"})),
    ])
    .await;
    assert_eq!(
        api.lookup_user_by_email("a+b@example.com")
            .await
            .unwrap()
            .as_deref(),
        Some("U0ALICE")
    );
    assert_eq!(
        api.lookup_user_by_email("nobody@example.com")
            .await
            .unwrap(),
        None
    );
    let groups = api.usergroups().await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(
        (groups[0].id.as_str(), groups[0].handle.as_str()),
        ("S1", "dba-team")
    );
    assert_eq!(api.usergroup_members("S1").await.unwrap(), ["U1", "U2"]);
    assert_eq!(
        api.permalink("C1", "1700.01").await.unwrap(),
        "https://x.slack.com/archives/C1/p1"
    );
    let me = api.auth_test().await.unwrap();
    assert_eq!((me.user_id.as_str(), me.team_id.as_str()), ("UBOT", "T1"));
    assert_eq!(me.bot_id.as_deref(), Some("B1"));

    let seen = fake.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/users.lookupByEmail",
            "/api/users.lookupByEmail",
            "/api/usergroups.list",
            "/api/usergroups.users.list",
            "/api/chat.getPermalink",
            "/api/auth.test",
        ]
    );
    for s in &seen {
        assert_eq!(
            s.content_type.as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(s.auth.as_deref(), Some(&*format!("Bearer {TOKEN}")));
    }
    assert_eq!(seen[0].body, "email=a%2Bb%40example.com");
    assert_eq!(seen[3].body, "usergroup=S1");
    assert_eq!(seen[4].body, "channel=C1&message_ts=1700.01");
    assert_eq!(seen[5].body, "");
}

#[tokio::test]
async fn respond_posts_json_without_the_token() {
    let reply = Reply {
        status: 200,
        retry_after: None,
        body: "ok".into(),
    };
    let (api, server) = fake(vec![status(503, None), reply]).await;
    let url = format!("{}/../hooks/actions/T1/1/abc", api.base);
    let body = json!({"response_type": "ephemeral", "text": "hi"});
    api.respond(&url, &body).await.unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].auth, None);
    assert_eq!(serde_json::from_str::<Value>(&seen[1].body).unwrap(), body);

    let (api, _) = fake(vec![ok(json!({"ok": false, "error": "expired_url"}))]).await;
    let url = format!("{}/../hooks/actions/T1/1/abc", api.base);
    let err = api.respond(&url, &body).await.unwrap_err();
    assert!(matches!(&err, SlackError::Api(e) if e == "expired_url"));
}

#[tokio::test]
async fn posts_to_one_channel_are_paced() {
    let posted = json!({"ok": true, "channel": "C1", "ts": "1.1"});
    let (api, fake) = fake(vec![ok(posted)]).await;
    let start = Instant::now();
    let m = message();
    let (a, b) = tokio::join!(
        api.post_message("C1", &m, None),
        api.post_message("C1", &m, None)
    );
    a.unwrap();
    b.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(300));
    let seen = fake.seen();
    assert!(
        seen[1].at - seen[0].at >= Duration::from_millis(250),
        "{seen:?}"
    );
}

#[tokio::test]
async fn posts_to_different_channels_are_not_paced() {
    let posted = json!({"ok": true, "channel": "C1", "ts": "1.1"});
    let (api, _fake) = fake(vec![ok(posted)]).await;
    let start = Instant::now();
    let m = message();
    let (a, b) = tokio::join!(
        api.post_message("C1", &m, None),
        api.post_message("C2", &m, None)
    );
    a.unwrap();
    b.unwrap();
    assert!(start.elapsed() < Duration::from_millis(250));
}

#[test]
fn debug_hides_the_token() {
    let api = SlackApi::new(reqwest::Client::new(), DEFAULT_BASE_URL, TOKEN.into());
    let shown = format!("{api:?}");
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(shown.contains("https://slack.com/api"));
}

//! The server's own logs, as an operator collects them: the real binary with JSON logs at
//! `debug`, every secret configured, a full flow through HTTP and Slack. Every line is
//! JSON, request lines carry their request id, and no secret shows anywhere.

use crate::common::slack::{FakeSlack, block_action, interaction_body, signed_slack_headers};
use crate::common::{CLIENTS, POLICY, free_port, request, sign_headers};
use greenlight::grants::generate_signing_key;
use greenlight::signing::Secret;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// A random string of `n` hex digits.
fn random_hex(n: usize) -> String {
    (0..n)
        .map(|_| char::from_digit(rand::random_range(0..16u32), 16).unwrap())
        .collect()
}

struct Server {
    base: String,
    http: reqwest::Client,
    secrets: HashMap<String, String>,
}

impl Server {
    /// Sends a request signed as `client`, with this `x-request-id` when given.
    async fn signed(
        &self,
        client: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
        request_id: Option<&str>,
    ) -> (u16, Value) {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let secret = Secret::parse(&self.secrets[client]).unwrap();
        let headers = sign_headers(
            client,
            &secret,
            method,
            path,
            &bytes,
            chrono::Utc::now().timestamp(),
        );
        self.send(method, path, bytes, &headers, request_id).await
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        headers: &[(String, String)],
        request_id: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        if !body.is_empty()
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req = req.header("content-type", "application/json");
        }
        if let Some(id) = request_id {
            req = req.header("x-request-id", id);
        }
        let resp = req.body(body).send().await.unwrap();
        let status = resp.status().as_u16();
        let echoed = resp.headers().get("x-request-id").cloned();
        match request_id {
            Some(id) => assert_eq!(echoed.unwrap(), id),
            None => assert!(echoed.is_some(), "every response has a request id"),
        }
        let body = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap_or(Value::Null);
        (status, body)
    }

    async fn status_becomes(&self, id: &str, status: &str) -> Value {
        for _ in 0..200 {
            let (_, action) = self
                .signed("app", "GET", &format!("/v1/actions/{id}"), None, None)
                .await;
            if action["status"] == status {
                return action;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{id} never became {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_request_ids_and_never_a_secret() {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let secrets: HashMap<String, String> = CLIENTS
        .iter()
        .map(|c| (c.to_string(), Secret::generate().1))
        .collect();
    let bot_token = format!("xoxb-{}-{}", random_hex(12), random_hex(24));
    let signing_secret = random_hex(32);
    let notify_secret = Secret::generate().1;
    let grant_key = generate_signing_key().unwrap().expose_secret().to_owned();
    let routing_key = random_hex(32).to_uppercase();
    let listen = format!("127.0.0.1:{}", free_port());

    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
        ("GREENLIGHT_LISTEN".into(), listen.clone()),
        ("GREENLIGHT_LOG_FORMAT".into(), "json".into()),
        ("RUST_LOG".into(), "debug".into()),
        ("GREENLIGHT_POLICY".into(), policy.display().to_string()),
        ("SLACK_API_BASE".into(), slack.base.clone()),
        ("SLACK_BOT_TOKEN".into(), bot_token.clone()),
        ("SLACK_SIGNING_SECRET".into(), signing_secret.clone()),
        ("GREENLIGHT_NOTIFY_SECRET".into(), notify_secret.clone()),
        ("GREENLIGHT_GRANT_SIGNING_KEY".into(), grant_key.clone()),
        ("PAGERDUTY_ROUTING_KEY".into(), routing_key.clone()),
        // Nothing pages in this flow; were it to, nothing listens there.
        (
            "PAGERDUTY_EVENTS_URL".into(),
            "http://127.0.0.1:9/v2/enqueue".into(),
        ),
    ];
    for (client, secret) in &secrets {
        env.push((
            format!("TEST_{}_SECRET", client.to_uppercase()),
            secret.clone(),
        ));
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_greenlight"))
        .arg("serve")
        .env_clear()
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Read as it comes: at `debug` the pipe would fill and block the server.
    let mut stderr = child.stderr.take().unwrap();
    let logs = tokio::spawn(async move {
        let mut out = Vec::new();
        stderr.read_to_end(&mut out).await.unwrap();
        String::from_utf8(out).expect("logs are UTF-8")
    });

    let server = Server {
        base: format!("http://{listen}"),
        http: reqwest::Client::new(),
        secrets: secrets.clone(),
    };
    let mut up = false;
    for _ in 0..100 {
        if server
            .http
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "the server starts");

    // A signed create, approved by a click in Slack; its grant verifies.
    let (status, created) = server
        .signed(
            "app",
            "POST",
            "/v1/actions",
            Some(&request("deploy.prod", "svc/payments")),
            Some("logs-test-create"),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let post = slack
        .wait_for("chat.postMessage", 1, Duration::from_secs(10))
        .await;
    assert!(post[0].args.to_string().contains(&id));
    assert_eq!(post[0].token.as_deref(), Some(bot_token.as_str()));
    let response_url = slack.response_url();
    let click = interaction_body(&block_action(
        "U0BOB",
        "greenlight_approve",
        &id,
        crate::common::slack::CHANNEL_ID,
        post[0].reply["ts"].as_str().unwrap(),
        &response_url,
    ));
    let headers = signed_slack_headers(&signing_secret, chrono::Utc::now().timestamp(), &click);
    let (status, _) = server
        .send(
            "POST",
            "/slack/interactions",
            click.clone(),
            &headers,
            Some("logs-test-click"),
        )
        .await;
    assert_eq!(status, 200);
    let approved = server.status_becomes(&id, "approved").await;
    let grant = approved["decision"]["grant"]["token"]
        .as_str()
        .expect("an approval carries a grant")
        .to_owned();
    let (status, verified) = server
        .signed(
            "app",
            "POST",
            "/v1/grants/verify",
            Some(&json!({"token": grant})),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(verified["valid"], true, "{verified}");

    // Break-glass decision by the admin client.
    let (_, second) = server
        .signed(
            "app",
            "POST",
            "/v1/actions",
            Some(&request("deploy.prod", "svc/other")),
            None,
        )
        .await;
    let second = second["id"].as_str().unwrap().to_owned();
    let (status, decided) = server
        .signed(
            "admin",
            "POST",
            &format!("/v1/actions/{second}/decision"),
            Some(&json!({"outcome": "denied", "by": "ops@example.com", "reason": "no"})),
            None,
        )
        .await;
    assert_eq!(status, 200, "{decided}");

    // A bad client signature and a bad Slack signature.
    let body = request("deploy.prod", "svc/x").to_string().into_bytes();
    let forged = Secret::generate().0;
    let headers = sign_headers(
        "app",
        &forged,
        "POST",
        "/v1/actions",
        &body,
        chrono::Utc::now().timestamp(),
    );
    let (status, _) = server
        .send(
            "POST",
            "/v1/actions",
            body,
            &headers,
            Some("logs-test-forged"),
        )
        .await;
    assert_eq!(status, 401);
    let headers = signed_slack_headers("not-the-secret", chrono::Utc::now().timestamp(), &click);
    let (status, _) = server
        .send("POST", "/slack/interactions", click, &headers, None)
        .await;
    assert_eq!(status, 401);
    // The approval message is updated (Slack work logs too) before the server stops.
    slack
        .wait_for("chat.update", 1, Duration::from_secs(10))
        .await;

    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("stops on SIGTERM")
        .unwrap();
    let logs = logs.await.unwrap();
    assert!(exit.success(), "{exit}:\n{logs}");

    // Every line is a JSON object; lines inside a request carry its id, method and route.
    let lines: Vec<Value> = logs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 20, "debug logs of a whole flow:\n{logs}");
    let mut responses = 0;
    for line in &lines {
        assert!(line.is_object() && line["level"].is_string(), "{line}");
        if line["span"]["name"] == "http" {
            let span = &line["span"];
            assert!(
                span["request_id"].as_str().is_some_and(|r| !r.is_empty()),
                "a request line without its request id: {line}"
            );
            assert!(
                span["method"].is_string() && span["route"].is_string(),
                "{line}"
            );
        }
        if line["message"] == "finished processing request" {
            responses += 1;
            assert!(line["status"].is_number(), "{line}");
            assert!(
                line["latency"].as_str().is_some_and(|l| l.ends_with("ms")),
                "{line}"
            );
        }
    }
    assert!(responses >= 8, "one line per answered request:\n{logs}");
    let line_of = |request_id: &str, message: &str| {
        lines.iter().find(|l| {
            l["span"]["request_id"] == request_id && l["message"].as_str() == Some(message)
        })
    };
    let created_line = line_of("logs-test-create", "action requested")
        .unwrap_or_else(|| panic!("the create is logged in its request:\n{logs}"));
    assert_eq!(created_line["action_id"], id.as_str());
    assert_eq!(created_line["span"]["route"], "/v1/actions");
    let forged_line = line_of("logs-test-forged", "finished processing request")
        .unwrap_or_else(|| panic!("the forged request is logged:\n{logs}"));
    assert_eq!(forged_line["status"], 401);

    // No secret, in any form it was configured or derived in.
    let mut never: Vec<(String, String)> = vec![
        ("SLACK_BOT_TOKEN".into(), bot_token),
        ("SLACK_SIGNING_SECRET".into(), signing_secret),
        ("PAGERDUTY_ROUTING_KEY".into(), routing_key),
        ("the grant".into(), grant.clone()),
        (
            "the grant's signature".into(),
            grant.rsplit('.').next().unwrap().to_owned(),
        ),
        ("the response_url".into(), response_url),
    ];
    let whsec = secrets
        .iter()
        .map(|(c, s)| (format!("{c}'s secret"), s.clone()))
        .chain([("GREENLIGHT_NOTIFY_SECRET".to_owned(), notify_secret)]);
    for (name, secret) in whsec {
        never.push((
            format!("{name}, base64"),
            secret["whsec_".len()..].to_owned(),
        ));
        never.push((name, secret));
    }
    for line in grant_key.lines().filter(|l| !l.starts_with("-----")) {
        // The first 16 characters are the ASN.1 header every Ed25519 key shares.
        never.push(("GREENLIGHT_GRANT_SIGNING_KEY".into(), line[16..].to_owned()));
    }
    for (name, value) in &never {
        assert!(value.len() >= 16, "{name} is long enough to search for");
        assert!(!logs.contains(value.as_str()), "{name} appears in the logs");
    }
}

//! What an operator meets when starting `greenlight serve`: a Redis that does not answer is
//! named (never its password) in the logs and by `/readyz`; Slack with nowhere to post is
//! warned about at start; `rediss://` works, with a private CA from
//! `GREENLIGHT_REDIS_CA_FILE`.

use crate::common::free_port;
use greenlight::client::Client;
use greenlight::domain::{ActionRequest, Outcome, Status};
use greenlight::signing::Secret;
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// `greenlight serve` with exactly `envs` (and JSON logs), its log lines collected.
struct Server {
    _child: Child,
    base: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Server {
    async fn start(envs: &[(&str, &str)]) -> Self {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_greenlight"))
            .args(["serve", "--log-format", "json"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("GREENLIGHT_LISTEN", &listen)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = logs.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        let base = format!("http://{listen}");
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if http.get(format!("{base}/healthz")).send().await.is_ok() {
                return Self {
                    _child: child,
                    base,
                    logs,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server did not start: {:#?}", logs.lock().unwrap());
    }

    /// The log lines so far, once one of them contains `needle` (within 10 s).
    async fn logs_once(&self, needle: &str) -> Vec<String> {
        for _ in 0..200 {
            let logs = self.logs.lock().unwrap().clone();
            if logs.iter().any(|l| l.contains(needle)) {
                return logs;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "no log line has {needle:?}: {:#?}",
            self.logs.lock().unwrap()
        );
    }

    async fn readyz(&self) -> (u16, Value) {
        let r = reqwest::get(format!("{}/readyz", self.base)).await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
}

#[tokio::test]
async fn an_unreachable_redis_is_named_in_the_logs_and_by_readyz() {
    let port = free_port();
    let url = format!("redis://:hunter2-password@127.0.0.1:{port}");
    let secret = Secret::generate().1;
    let server = Server::start(&[("REDIS_URL", &url), ("GREENLIGHT_CLIENT_SECRET", &secret)]).await;
    let address = format!("127.0.0.1:{port}");

    let (status, body) = server.readyz().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready", "{body}");
    assert_eq!(body["store"], "unreachable", "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!("redis unreachable at {address}: ")),
        "{body}"
    );
    // The error body every other 503 has is still there.
    assert_eq!(body["error"]["code"], "unavailable", "{body}");

    let logs = server.logs_once("cannot connect to Redis at").await;
    let warning = logs
        .iter()
        .find(|l| l.contains("cannot connect to Redis at"))
        .unwrap();
    assert!(warning.contains(&address), "{warning}");
    let started = logs.iter().find(|l| l.contains("using Redis")).unwrap();
    assert!(started.contains(&address), "{started}");
    // Every failed command says which Redis: here the timer scheduler's.
    let logs = server.logs_once("scheduler cannot reach the store").await;
    let scheduler = logs
        .iter()
        .find(|l| l.contains("scheduler cannot reach the store"))
        .unwrap();
    assert!(
        scheduler.contains(&format!("redis at {address}")),
        "{scheduler}"
    );
    for line in &logs {
        assert!(!line.contains("hunter2"), "the password is logged: {line}");
    }
    assert!(!body.to_string().contains("hunter2"), "{body}");
}

/// A policy whose `require` rule names no channel, and no `[defaults]` channel.
const NO_CHANNEL_POLICY: &str = r##"
[[client]]
id = "app"
secret_env = "APP_SECRET"

[[rule]]
name = "deploys"
match = { action = "deploy.*" }
decision = "require"

[[rule]]
name = "reads"
match = { action = "read.*" }
decision = "approve"

[[rule]]
name = "posted"
match = { action = "db.*" }
decision = "require"
channel = "#dba"
"##;

#[tokio::test]
async fn slack_with_no_channel_for_a_rule_is_warned_about_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, NO_CHANNEL_POLICY).unwrap();
    let secret = Secret::generate().1;
    let slack = [
        ("GREENLIGHT_POLICY", policy.to_str().unwrap()),
        ("APP_SECRET", &secret),
        ("SLACK_BOT_TOKEN", "xoxb-test"),
        ("SLACK_SIGNING_SECRET", "test-signing-secret"),
        // Nothing listens there: the warning needs no answer from Slack.
        ("SLACK_API_BASE", "http://127.0.0.1:9/api"),
    ];

    let server = Server::start(&slack).await;
    let logs = server.logs_once("no Slack channel").await;
    let warning = logs
        .iter()
        .find(|l| l.contains("no Slack channel"))
        .unwrap();
    assert!(warning.contains("\"level\":\"WARN\""), "{warning}");
    assert!(warning.contains("deploys, default"), "{warning}");
    assert!(warning.contains("SLACK_DEFAULT_CHANNEL"), "{warning}");
    drop(server);

    // With a default channel every message has somewhere to go: no warning.
    let mut with_default = slack.to_vec();
    with_default.push(("SLACK_DEFAULT_CHANNEL", "#approvals"));
    let server = Server::start(&with_default).await;
    let logs = server.logs_once("greenlight listening").await;
    assert!(
        !logs.iter().any(|l| l.contains("no Slack channel")),
        "{logs:#?}"
    );
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with the `openssl` command;
/// `None` (the test is skipped) without it.
fn make_certificates(dir: &Path) -> Option<()> {
    let openssl = |args: &[&str]| {
        std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let ok = openssl(
        &[
            &["req", "-x509"],
            &ec[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=greenlight test CA",
            ],
        ]
        .concat(),
    ) && openssl(
        &[
            &["req"],
            &ec[..],
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    ) && openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    ok.then_some(())
}

/// `redis-server` with TLS only, on a free port; `None` when this build of it has no TLS.
fn tls_redis(dir: &Path) -> Option<(std::process::Child, u16)> {
    let port = free_port();
    let mut child = std::process::Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
        .args([
            "--tls-cert-file",
            "server.pem",
            "--tls-key-file",
            "server.key",
        ])
        .args(["--tls-ca-cert-file", "ca.pem"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (apt-get install redis-server)");
    for _ in 0..100 {
        if let Ok(Some(_)) = child.try_wait() {
            return None; // exited: no TLS support in this build
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((child, port));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_private_ca_works_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    if make_certificates(dir.path()).is_none() {
        eprintln!("SKIPPED rediss_with_a_private_ca_works_end_to_end: no `openssl` command");
        return;
    }
    let Some((mut redis, port)) = tls_redis(dir.path()) else {
        eprintln!("SKIPPED rediss_with_a_private_ca_works_end_to_end: redis-server has no TLS");
        return;
    };
    let url = format!("rediss://127.0.0.1:{port}");
    let ca = dir.path().join("ca.pem");
    let (secret, text) = Secret::generate();

    // Without the CA the certificate is not trusted: not ready, and saying so.
    let untrusted =
        Server::start(&[("REDIS_URL", &url), ("GREENLIGHT_CLIENT_SECRET", &text)]).await;
    let (status, body) = untrusted.readyz().await;
    assert_eq!(status, 503, "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.contains(&format!("127.0.0.1:{port}")), "{body}");
    drop(untrusted);

    let server = Server::start(&[
        ("REDIS_URL", &url),
        ("GREENLIGHT_REDIS_CA_FILE", ca.to_str().unwrap()),
        ("GREENLIGHT_CLIENT_SECRET", &text),
    ])
    .await;
    let (status, body) = server.readyz().await;
    assert_eq!((status, &body["store"]), (200, &"ok".into()), "{body}");

    // A full round over TLS: the action stored by a script, decided, and the decision
    // heard by a waiter through the pub/sub connection.
    let client = Client::new(&server.base, "local", secret);
    let request: ActionRequest =
        serde_json::from_value(crate::common::request("deploy.prod", "svc/tls")).unwrap();
    let created = client.request(&request).await.unwrap();
    assert_eq!(created.status, Status::Pending);
    let waiter = {
        let client = client.clone();
        let id = created.id.clone();
        tokio::spawn(async move { client.wait(&id, Duration::from_secs(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    client
        .decide(&created.id, Outcome::Approved, "me", None)
        .await
        .unwrap();
    let waited = waiter.await.unwrap().unwrap();
    assert_eq!(waited.status, Status::Approved);

    let _ = redis.kill();
    let _ = redis.wait();
}

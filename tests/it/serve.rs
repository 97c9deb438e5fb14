//! `greenlight serve` as an operator runs it: the binary, its environment, its signals.

use crate::common::{POLICY, free_port, request};
use greenlight::client::Client;
use greenlight::domain::{ActionRequest, Status};
use greenlight::signing::Secret;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

struct Server {
    child: Child,
    base: String,
}

fn serve(envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_greenlight"));
    cmd.arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn start(envs: &[(&str, &str)]) -> Server {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut all = envs.to_vec();
    all.push(("GREENLIGHT_LISTEN", &listen));
    let child = serve(&all).spawn().unwrap();
    let base = format!("http://{listen}");
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            return Server { child, base };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not start");
}

fn signal(child: &Child, sig: &str) {
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success()
    );
}

fn action(name: &str) -> ActionRequest {
    serde_json::from_value(request(name, "svc/x")).unwrap()
}

async fn stop(mut server: Server) {
    signal(&server.child, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(10), server.child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "exit 0 on SIGTERM, got {status}");
}

/// The README quickstart: no Redis, no Slack, no policy file, one secret.
#[tokio::test]
async fn embedded_default_runs_with_one_secret() {
    let (secret, text) = Secret::generate();
    let server = start(&[("GREENLIGHT_CLIENT_SECRET", &text)]).await;
    let client = Client::new(&server.base, "local", secret);
    let created = client.request(&action("deploy.prod")).await.unwrap();
    assert_eq!(created.status, Status::Pending);
    assert_eq!(created.policy.rule, "default");
    let decided = client
        .decide(
            &created.id,
            greenlight::domain::Outcome::Approved,
            "me",
            None,
        )
        .await
        .unwrap();
    assert_eq!(decided.status, Status::Approved);
    let waited = client
        .wait(&created.id, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(waited.status, Status::Approved);
    stop(server).await;
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// SIGHUP swaps in a valid new policy at once; pending actions keep the rule they were
/// created under; an invalid file is refused and the running policy stays.
#[tokio::test]
async fn sighup_reloads_the_policy_and_refuses_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    write(&file, POLICY);
    let (secret, text) = Secret::generate();
    let server = start(&[
        ("GREENLIGHT_POLICY", file.to_str().unwrap()),
        ("TEST_APP_SECRET", &text),
        ("TEST_OTHER_SECRET", &Secret::generate().1),
        ("TEST_ADMIN_SECRET", &Secret::generate().1),
        ("TEST_AUDITOR_SECRET", &Secret::generate().1),
    ])
    .await;
    let client = Client::new(&server.base, "app", secret);
    assert_eq!(
        client.request(&action("read.a")).await.unwrap().status,
        Status::Approved
    );
    let pending = client.request(&action("deploy.prod")).await.unwrap();
    assert_eq!(pending.policy.min_approvals, 1);

    let stricter = POLICY.replace(
        "match = { action = \"read.*\" }\ndecision = \"approve\"",
        "match = { action = \"read.*\" }\ndecision = \"deny\"",
    );
    assert_ne!(stricter, POLICY);
    write(&file, &stricter);
    signal(&server.child, "-HUP");
    let mut denied = false;
    for _ in 0..50 {
        if client.request(&action("read.b")).await.unwrap().status == Status::Denied {
            denied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(denied, "the new policy applies after SIGHUP");
    let still = client.get(&pending.id).await.unwrap();
    assert_eq!(still.status, Status::Pending);
    assert_eq!(still.policy, pending.policy);

    write(&file, "[[rule]]\nname = \"x\"\nbogus = 1\n");
    signal(&server.child, "-HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        client.request(&action("read.c")).await.unwrap().status,
        Status::Denied,
        "a broken file leaves the running policy in place"
    );
    stop(server).await;
}

async fn start_fails(envs: &[(&str, &str)]) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        serve(envs).stderr(Stdio::piped()).output(),
    )
    .await
    .expect("exits")
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Bad configuration stops the start with a message naming the problem, not a secret.
#[tokio::test]
async fn bad_configuration_fails_at_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    write(
        &file,
        "[defaults]\nttl = \"15m\"\n\n[[rule]]\nname = \"x\"\nbogus = 1\n",
    );
    let err = start_fails(&[("GREENLIGHT_POLICY", file.to_str().unwrap())]).await;
    assert!(err.contains("policy.toml:"), "{err}");
    assert!(err.contains("bogus"), "{err}");

    write(&file, POLICY);
    let err = start_fails(&[("GREENLIGHT_POLICY", file.to_str().unwrap())]).await;
    assert!(err.contains("TEST_APP_SECRET"), "{err}");

    // The built-in policy's one client needs its secret too: without it the server
    // could only answer "unknown client".
    let err = start_fails(&[]).await;
    assert!(err.contains("GREENLIGHT_CLIENT_SECRET"), "{err}");
    assert!(err.contains("built-in policy"), "{err}");

    let err = start_fails(&[
        ("GREENLIGHT_POLICY", file.to_str().unwrap()),
        ("TEST_APP_SECRET", "not-a-secret-value"),
        ("TEST_OTHER_SECRET", "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ="),
        ("TEST_ADMIN_SECRET", "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ="),
        ("TEST_AUDITOR_SECRET", "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ="),
    ])
    .await;
    assert!(err.contains("TEST_APP_SECRET"), "{err}");
    assert!(
        !err.contains("not-a-secret-value"),
        "secrets never appear: {err}"
    );
}

/// `GREENLIGHT_LISTEN` takes a host name too; a value that is no address names the
/// variable, not a flag the user never passed.
#[tokio::test]
async fn listen_takes_a_host_name_and_names_the_variable_when_wrong() {
    let (_, text) = Secret::generate();
    let port = free_port();
    let listen = format!("localhost:{port}");
    let mut child = serve(&[
        ("GREENLIGHT_CLIENT_SECRET", &text),
        ("GREENLIGHT_LISTEN", &listen),
    ])
    .spawn()
    .unwrap();
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if http
            .get(format!("http://{listen}/healthz"))
            .send()
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().await.unwrap();
    assert!(up, "the server listens on {listen}");

    let out = serve(&[
        ("GREENLIGHT_CLIENT_SECRET", &text),
        ("GREENLIGHT_LISTEN", "no-port-here"),
    ])
    .output()
    .await
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("GREENLIGHT_LISTEN: expected HOST:PORT"),
        "{err}"
    );
}

//! Test setup, the same every time: a real server on port 0, on either backend, with its
//! own `redis-server` when the backend is Redis, and a client that signs like a real one.

pub mod cli;
pub mod pagerduty;
pub mod postgres;
pub mod process;
pub mod python;
pub mod slack;
pub mod topology;

use greenlight::app::Application;
use greenlight::config::Settings;
use greenlight::service::Service;
use greenlight::signing::{self, Secret};
use serde_json::Value;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs an async test body once per backend: `on_both_backends!(name1, name2)` expects
/// `async fn name1(backend: Backend)` in the same module.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Memory).await
                }
            )*
        }
        mod on_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::redis()).await
                }
            )*
        }
    };
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` of this test's own on a free loopback port, stopped on drop.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: std::sync::Mutex<Option<Child>>,
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start() -> Arc<Self> {
        Self::start_with(&[])
    }

    /// Extra `redis-server` arguments, e.g. `["--appendonly", "yes"]`.
    pub fn start_with(extra: &[&str]) -> Arc<Self> {
        let server = Self {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: std::sync::Mutex::new(None),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.launch();
        Arc::new(server)
    }

    fn launch(&self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dir", self.dir.path().to_str().unwrap()])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        *self.child.lock().unwrap() = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        for _ in 0..200 {
            if let Ok(mut c) = client.get_connection()
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops and starts it again on the same port (data kept only with persistence on).
    pub fn restart(&self) {
        self.stop();
        self.launch();
    }

    /// `CLIENT LIST TYPE {kind}`: one line per connection of that kind.
    pub fn clients(&self, kind: &str) -> String {
        redis::cmd("CLIENT")
            .arg("LIST")
            .arg("TYPE")
            .arg(kind)
            .query(&mut self.conn())
            .unwrap()
    }

    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Clone)]
pub enum Backend {
    Memory,
    Redis(Arc<RedisServer>),
    /// Redis Cluster (`GREENLIGHT_REDIS_CLUSTER`).
    Cluster(Arc<topology::RedisCluster>),
    /// A master and replica behind Redis Sentinel (`redis+sentinel://`).
    Sentinel(Arc<topology::RedisSentinel>),
}

impl Backend {
    pub fn redis() -> Self {
        Backend::Redis(RedisServer::start())
    }

    pub fn redis_server(&self) -> Option<&Arc<RedisServer>> {
        match self {
            Backend::Redis(r) => Some(r),
            _ => None,
        }
    }
}

/// The four test clients as policy TOML, to `concat!` into a test's policy: `app` and
/// `other` (requesters; `app` may call back to loopback and `hooks.example`), `admin`,
/// `auditor`, with secrets in `TEST_{ID}_SECRET`.
#[macro_export]
macro_rules! test_clients {
    () => {
        r##"[[client]]
id = "app"
secret_env = "TEST_APP_SECRET"
roles = ["requester"]
callback_hosts = ["127.0.0.1", "hooks.example"]
allow_insecure_callbacks = true

[[client]]
id = "other"
secret_env = "TEST_OTHER_SECRET"
roles = ["requester"]

[[client]]
id = "admin"
secret_env = "TEST_ADMIN_SECRET"
roles = ["admin"]

[[client]]
id = "auditor"
secret_env = "TEST_AUDITOR_SECRET"
roles = ["auditor"]
"##
    };
}

/// The policy most tests run under.
pub const POLICY: &str = concat!(
    r##"
[defaults]
channel = "#approvals"
ttl = "15m"
on_no_match = "require"

"##,
    test_clients!(),
    r##"
[[rule]]
name = "reads"
match = { action = "read.*" }
decision = "approve"

[[rule]]
name = "never-drop-databases"
match = { action = "db.drop_database" }
decision = "deny"

[[rule]]
name = "money"
match = { action = "money.*" }
decision = "require"
reason_required = true

[[rule]]
name = "short"
match = { action = "short.*" }
decision = "require"
ttl = "2s"

[[rule]]
name = "prod"
match = { resource = "prod/*", context = { env = "prod" } }
decision = "require"
approvers = ["U0BOB", "U0CAROL"]
min_approvals = 2
"##
);

pub const CLIENTS: [&str; 4] = ["app", "other", "admin", "auditor"];

pub struct TestApp {
    /// Its HTTP API, signing as the test clients (`app.create(..)`, `app.base`, ...).
    pub api: Api,
    pub shutdown: CancellationToken,
    pub service: Arc<Service>,
    pub backend: Backend,
    pub policy_file: PathBuf,
    /// This app's Redis key prefix.
    pub prefix: String,
    slack_api_base: Option<String>,
    grant_signing_key: Option<String>,
    _policy_dir: Arc<tempfile::TempDir>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// A signed response, decoded.
pub struct Resp {
    pub status: u16,
    pub body: Value,
}

impl Resp {
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("<none>")
    }
}

pub struct AppOptions {
    pub policy: String,
    pub prefix: String,
    pub max_wait_seconds: u64,
    /// The fake Slack's API base; Slack is on (with [`SLACK_SIGNING_SECRET`]) when set.
    pub slack_api_base: Option<String>,
    /// A fake PagerDuty's enqueue URL; paging is on (with a test routing key) when set.
    pub pagerduty_events_url: Option<String>,
    /// `GREENLIGHT_NOTIFY_SECRET`, signing escalation webhooks.
    pub notify_secret: Option<String>,
    /// `GREENLIGHT_GRANT_SIGNING_KEY` (PKCS#8 PEM); unset, the server generates one.
    /// Replicas started with [`TestApp::replica`] get the same key.
    pub grant_signing_key: Option<String>,
    /// `GREENLIGHT_GRANT_PREVIOUS_KEY`.
    pub grant_previous_key: Option<String>,
    /// `SLACK_TEAM_ID`: the workspace whose Slack callbacks count.
    pub slack_team_id: Option<String>,
}

/// The signing secret of the Slack app in tests.
pub const SLACK_SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
pub const SLACK_BOT_TOKEN: &str = "xoxb-test-token-not-a-real-one";

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            policy: POLICY.into(),
            prefix: format!("test{}", ulid::Ulid::new()),
            max_wait_seconds: 60,
            slack_api_base: None,
            pagerduty_events_url: None,
            notify_secret: None,
            grant_signing_key: None,
            grant_previous_key: None,
            slack_team_id: None,
        }
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, AppOptions::default()).await
}

/// A server under `policy` with Slack on, talking to a fake Slack started for it.
pub async fn spawn_with_slack(backend: Backend, policy: String) -> (TestApp, slack::FakeSlack) {
    let slack = slack::FakeSlack::start().await;
    let app = spawn_app_with(
        backend,
        AppOptions {
            policy,
            slack_api_base: Some(slack.base.clone()),
            ..Default::default()
        },
    )
    .await;
    (app, slack)
}

pub async fn spawn_app_with(backend: Backend, options: AppOptions) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let policy_file = dir.path().join("policy.toml");
    std::fs::write(&policy_file, &options.policy).unwrap();
    let secrets = CLIENTS
        .iter()
        .map(|c| (c.to_string(), Secret::generate().1))
        .collect();
    start(backend, policy_file, dir, secrets, &options).await
}

async fn start(
    backend: Backend,
    policy_file: PathBuf,
    dir: Arc<tempfile::TempDir>,
    secrets: std::collections::HashMap<String, String>,
    options: &AppOptions,
) -> TestApp {
    let mut settings = Settings::embedded();
    settings.policy = Some(policy_file.clone());
    settings.redis_prefix = options.prefix.clone();
    settings.max_wait_seconds = options.max_wait_seconds;
    settings.shutdown_timeout_seconds = 5;
    match &backend {
        Backend::Memory => {}
        Backend::Redis(r) => settings.redis_url = Some(r.url().into()),
        Backend::Cluster(c) => settings.redis_cluster = Some(c.seeds()),
        Backend::Sentinel(s) => settings.redis_url = Some(s.url().into()),
    }
    if let Some(base) = &options.slack_api_base {
        settings.slack_api_base = base.clone();
        settings.slack_bot_token = Some(SLACK_BOT_TOKEN.into());
        settings.slack_signing_secret = Some(SLACK_SIGNING_SECRET.into());
        settings.slack_default_channel = Some("#approvals".into());
        settings.slack_team_id = options.slack_team_id.clone();
    }
    if let Some(secret) = &options.notify_secret {
        settings.notify_secret = Some(secret.clone().into());
    }
    if let Some(key) = &options.grant_signing_key {
        settings.grant_signing_key = Some(key.clone().into());
    }
    if let Some(key) = &options.grant_previous_key {
        settings.grant_previous_key = Some(key.clone().into());
    }
    if let Some(url) = &options.pagerduty_events_url {
        settings.pagerduty_events_url = url.clone();
        settings.pagerduty_routing_key = Some("R0UTINGKEYFORTESTS".into());
    }
    for (client, secret) in &secrets {
        settings.secrets.insert(
            format!("TEST_{}_SECRET", client.to_uppercase()),
            secret.clone(),
        );
    }
    let app = Application::build(settings).await.expect("app builds");
    let addr = app.local_addr();
    let shutdown = app.shutdown_token();
    let service = app.service();
    let server = tokio::spawn(async move { app.run().await.expect("server runs") });
    TestApp {
        api: Api {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            secrets,
        },
        shutdown,
        service,
        backend,
        policy_file,
        prefix: options.prefix.clone(),
        slack_api_base: options.slack_api_base.clone(),
        grant_signing_key: options.grant_signing_key.clone(),
        _policy_dir: dir,
        server: Some(server),
    }
}

impl TestApp {
    /// Another replica: same backend, key prefix, policy and secrets.
    pub async fn replica(&self, prefix: &str) -> TestApp {
        let options = AppOptions {
            prefix: prefix.into(),
            slack_api_base: self.slack_api_base.clone(),
            grant_signing_key: self.grant_signing_key.clone(),
            ..Default::default()
        };
        start(
            self.backend.clone(),
            self.policy_file.clone(),
            self._policy_dir.clone(),
            self.secrets.clone(),
            &options,
        )
        .await
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
        }
    }
}

/// A Greenlight server's HTTP API as the test clients see it: requests signed as they sign.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    /// Client id to its secret (`whsec_...`).
    pub secrets: std::collections::HashMap<String, String>,
}

impl std::ops::Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Api {
    pub fn secret(&self, client: &str) -> Secret {
        Secret::parse(&self.secrets[client]).unwrap()
    }

    /// Signs as `client` at the current time.
    pub fn signed_headers(&self, client: &str, method: &str, path: &str, body: &[u8]) -> Headers {
        sign_headers(
            client,
            &self.secret(client),
            method,
            path,
            body,
            chrono::Utc::now().timestamp(),
        )
    }

    /// Sends with exactly these headers (and a JSON content type when there is a body).
    pub async fn send_raw(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        headers: &[(String, String)],
    ) -> Resp {
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
        let resp = req.body(body).send().await.expect("request sent");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp { status, body }
    }

    pub async fn send_as(&self, client: &str, method: &str, path: &str, body: &Value) -> Resp {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(body).unwrap()
        };
        let headers = self.signed_headers(client, method, path, &bytes);
        self.send_raw(method, path, bytes, &headers).await
    }

    pub async fn create(&self, body: &Value) -> Resp {
        self.send_as("app", "POST", "/v1/actions", body).await
    }

    /// Creates a pending action (default rule) and returns its id.
    pub async fn create_pending(&self) -> String {
        let r = self.create(&request("deploy.prod", "svc/payments")).await;
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(r.body["status"], "pending");
        r.body["id"].as_str().unwrap().to_owned()
    }

    pub async fn get(&self, client: &str, id: &str) -> Resp {
        self.send_as(client, "GET", &format!("/v1/actions/{id}"), &Value::Null)
            .await
    }

    pub async fn wait(&self, client: &str, id: &str, timeout: u64) -> Resp {
        self.send_as(
            client,
            "GET",
            &format!("/v1/actions/{id}/wait?timeout={timeout}"),
            &Value::Null,
        )
        .await
    }

    pub async fn decide(&self, id: &str, outcome: &str) -> Resp {
        self.send_as(
            "admin",
            "POST",
            &format!("/v1/actions/{id}/decision"),
            &serde_json::json!({"outcome": outcome, "by": "ops-lead@example.com", "reason": "break-glass test"}),
        )
        .await
    }

    pub async fn cancel(&self, client: &str, id: &str) -> Resp {
        self.send_as(
            client,
            "POST",
            &format!("/v1/actions/{id}/cancel"),
            &Value::Null,
        )
        .await
    }
}

pub type Headers = Vec<(String, String)>;

/// The four signature headers for `client_id` signing with `secret` at `timestamp`.
pub fn sign_headers(
    client_id: &str,
    secret: &Secret,
    method: &str,
    path: &str,
    body: &[u8],
    timestamp: i64,
) -> Headers {
    signing::headers(client_id, secret, body, method, path, timestamp)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// A minimal valid request body.
pub fn request(action: &str, resource: &str) -> Value {
    serde_json::json!({
        "action": action,
        "resource": resource,
        "requester": {"id": "u-123", "email": "alice@example.com", "slack_user_id": "U0ALICE", "name": "Alice"},
        "reason": "testing",
    })
}

/// Counts messages published on this app's decision channels, on a Redis backend.
pub struct ChannelRecorder {
    pub messages: Arc<std::sync::Mutex<Vec<(String, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ChannelRecorder {
    pub async fn start(redis: &RedisServer, prefix: &str) -> Self {
        use futures::StreamExt;
        let client = redis::Client::open(redis.url()).unwrap();
        let mut pubsub = client.get_async_pubsub().await.unwrap();
        pubsub
            .psubscribe(format!("{prefix}:decision:*"))
            .await
            .unwrap();
        let messages = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = messages.clone();
        let task = tokio::spawn(async move {
            let mut stream = pubsub.into_on_message();
            while let Some(msg) = stream.next().await {
                sink.lock().unwrap().push((
                    msg.get_channel_name().to_owned(),
                    String::from_utf8_lossy(msg.get_payload_bytes()).into_owned(),
                ));
            }
        });
        Self { messages, task }
    }

    pub fn count_for(&self, id: &str) -> usize {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|(ch, _)| ch.ends_with(id))
            .count()
    }
}

impl Drop for ChannelRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One HTTP/1.1 request with the target exactly as written (HTTP clients would normalise
/// it first): the status and the whole answer.
pub async fn raw_http(
    base: &str,
    method: &str,
    target: &str,
    headers: &str,
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {target} HTTP/1.1\r\nhost: {addr}\r\n{headers}connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    (answer[9..12].parse().unwrap(), answer)
}

//! Graceful shutdown of the real binary on a real Redis: on `SIGTERM` the listener closes,
//! open long-polls answer at once with the current state, the timer in flight finishes
//! (or is abandoned past `GREENLIGHT_SHUTDOWN_TIMEOUT`, still in Redis), and the process
//! exits 0; what is left pending is picked up by the next process.

use crate::common::{POLICY, RedisServer, free_port, request};
use axum::Router;
use axum::routing::post;
use greenlight::client::Client;
use greenlight::domain::{Action, ActionRequest, Outcome, Status};
use greenlight::signing::Secret;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// The clients of [`POLICY`], with their secrets.
struct Clients {
    secrets: Vec<(&'static str, Secret, String)>,
}

impl Clients {
    fn new() -> Self {
        Self {
            secrets: crate::common::CLIENTS
                .into_iter()
                .map(|c| {
                    let (secret, text) = Secret::generate();
                    (c, secret, text)
                })
                .collect(),
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        self.secrets
            .iter()
            .map(|(c, _, text)| (format!("TEST_{}_SECRET", c.to_uppercase()), text.clone()))
            .collect()
    }

    fn client(&self, server: &Server, id: &str) -> Client {
        let (_, secret, _) = self.secrets.iter().find(|(c, ..)| *c == id).unwrap();
        Client::new(&server.base, id, secret.clone())
    }
}

/// `greenlight serve`, with a clean environment and its log collected.
struct Server {
    child: Child,
    port: u16,
    base: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    async fn start(
        redis: &RedisServer,
        prefix: &str,
        policy: &std::path::Path,
        clients: &Clients,
        shutdown_timeout: u64,
    ) -> Self {
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_greenlight"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("GREENLIGHT_LISTEN", format!("127.0.0.1:{port}"))
            .env("REDIS_URL", redis.url())
            .env("GREENLIGHT_REDIS_PREFIX", prefix)
            .env("GREENLIGHT_POLICY", policy)
            .env("GREENLIGHT_SHUTDOWN_TIMEOUT", shutdown_timeout.to_string())
            // One callback at a time, so which timers are in flight at the signal is known.
            .env("GREENLIGHT_TIMER_CONCURRENCY", "1")
            .envs(clients.env())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if http.get(format!("{base}/readyz")).send().await.is_ok() {
                return Self {
                    child,
                    port,
                    base,
                    log,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server did not start: {}", log.lock().unwrap());
    }

    fn sigterm(&self) {
        self.signal("-TERM");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the exit, at most `within`.
    async fn exited(&mut self, within: Duration) -> ExitStatus {
        tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("still running after {within:?}: {}", self.log()))
            .unwrap()
    }

    fn refuses_connections(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err()
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

fn policy_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, POLICY).unwrap();
    path
}

fn action_request(ttl_seconds: Option<u64>, callback_url: Option<&str>) -> ActionRequest {
    let mut body = request("deploy.prod", "svc/payments");
    if let Some(ttl) = ttl_seconds {
        body["ttl_seconds"] = ttl.into();
    }
    if let Some(url) = callback_url {
        body["callback_url"] = url.into();
    }
    serde_json::from_value(body).unwrap()
}

/// The due time (unix ms) of a timer in Redis, if it is there.
fn timer_due(redis: &RedisServer, prefix: &str, member: &str) -> Option<i64> {
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg(format!("{prefix}:timers"))
        .arg(member)
        .query(&mut redis.conn())
        .unwrap();
    score.map(|s| s as i64)
}

fn is_pending_in_redis(redis: &RedisServer, prefix: &str, action: &Action) -> bool {
    redis::cmd("SISMEMBER")
        .arg(format!("{prefix}:pending"))
        .arg(action.id.as_str())
        .query(&mut redis.conn())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_waiters_exits_zero_and_leaves_pending_work_in_redis() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(&dir);
    let clients = Clients::new();
    let mut first = Server::start(&redis, "shut", &policy, &clients, 5).await;
    let app = clients.client(&first, "app");

    let action = app.request(&action_request(Some(10), None)).await.unwrap();
    assert_eq!(action.status, Status::Pending);
    let waiter = {
        let app = clients.client(&first, "app");
        let id = action.id.clone();
        tokio::spawn(async move { app.wait_once(&id, 50).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let signalled = Instant::now();
    first.sigterm();
    let answered = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .expect("the open long-poll answers at once")
        .unwrap()
        .expect("with 200 and the action");
    assert_eq!(answered.id, action.id);
    assert_eq!(
        answered.status,
        Status::Pending,
        "the current state: retry elsewhere"
    );

    let status = first.exited(Duration::from_secs(5)).await;
    assert!(status.success(), "exit 0, got {status}: {}", first.log());
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "within the shutdown timeout"
    );
    assert!(first.refuses_connections(), "nothing listens any more");
    assert!(
        !first.log().contains("shutdown timeout"),
        "nothing was abandoned: {}",
        first.log()
    );

    // The action and its expiry are still in Redis, for whichever process comes next.
    assert!(is_pending_in_redis(&redis, "shut", &action));
    assert_eq!(
        timer_due(&redis, "shut", &format!("expire:{}", action.id)),
        Some(action.expires_at.timestamp_millis())
    );

    let mut second = Server::start(&redis, "shut", &policy, &clients, 5).await;
    let app = clients.client(&second, "app");
    let expired = app.wait_once(&action.id, 30).await.unwrap();
    let at = chrono::Utc::now();
    assert_eq!(expired.status, Status::Expired, "{}", second.log());
    assert!(
        at >= action.expires_at && at - action.expires_at < chrono::Duration::seconds(3),
        "expired on time: due {}, answered {at}",
        action.expires_at
    );
    assert_eq!(
        timer_due(&redis, "shut", &format!("expire:{}", action.id)),
        None
    );
    // SIGINT (Ctrl-C) stops it the same way.
    second.signal("-INT");
    assert!(second.exited(Duration::from_secs(5)).await.success());
}

/// A receiver of decision callbacks that reports each arrival, then answers after
/// `delay` (never, in effect, for a long one).
async fn slow_receiver(delay: Duration) -> (String, mpsc::UnboundedReceiver<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let router = Router::new().route(
        "/cb",
        post(move || {
            let tx = tx.clone();
            async move {
                let _ = tx.send(());
                tokio::time::sleep(delay).await;
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cb", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, rx)
}

/// Creates an action with a callback and decides it, so that its callback timer runs
/// now; returns once the receiver has the callback in hand.
async fn callback_in_flight(
    server: &Server,
    clients: &Clients,
    url: &str,
    arrivals: &mut mpsc::UnboundedReceiver<()>,
) -> Action {
    let action = clients
        .client(server, "app")
        .request(&action_request(None, Some(url)))
        .await
        .unwrap();
    clients
        .client(server, "admin")
        .decide(&action.id, Outcome::Approved, "ops", None)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), arrivals.recv())
        .await
        .expect("the callback is sent")
        .unwrap();
    action
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timer_in_flight_finishes_while_new_connections_are_refused() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(&dir);
    let clients = Clients::new();
    let (url, mut arrivals) = slow_receiver(Duration::from_secs(3)).await;
    let mut server = Server::start(&redis, "drain", &policy, &clients, 10).await;
    let action = callback_in_flight(&server, &clients, &url, &mut arrivals).await;

    let signalled = Instant::now();
    server.sigterm();
    let deadline = Instant::now() + Duration::from_millis(1500);
    while !server.refuses_connections() {
        assert!(Instant::now() < deadline, "the listener is still open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "still draining the callback when the listener closed"
    );

    let status = server.exited(Duration::from_secs(10)).await;
    assert!(status.success(), "exit 0, got {status}: {}", server.log());
    assert!(
        signalled.elapsed() >= Duration::from_millis(2500),
        "waited for the callback in flight"
    );
    assert_eq!(
        timer_due(&redis, "drain", &format!("callback:{}", action.id)),
        None,
        "the callback was delivered and its timer finished: {}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_timeout_it_exits_zero_and_the_abandoned_timer_stays_leased() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(&dir);
    let clients = Clients::new();
    let (url, mut arrivals) = slow_receiver(Duration::from_secs(120)).await;
    let mut server = Server::start(&redis, "abandon", &policy, &clients, 2).await;
    let action = callback_in_flight(&server, &clients, &url, &mut arrivals).await;

    let signalled = Instant::now();
    server.sigterm();
    let status = server.exited(Duration::from_secs(6)).await;
    let took = signalled.elapsed();
    assert!(status.success(), "exit 0, got {status}: {}", server.log());
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "gave up at the 2 s timeout, took {took:?}"
    );
    let log = server.log();
    assert!(log.contains("shutdown timeout of 2s passed"), "{log}");
    assert!(
        log.contains("the timer(s) the scheduler was running"),
        "{log}"
    );

    // The callback is not lost: its timer is still there, leased, and runs again when
    // the lease ends.
    let due = timer_due(&redis, "abandon", &format!("callback:{}", action.id))
        .expect("the callback timer is still in Redis");
    let now = chrono::Utc::now().timestamp_millis();
    assert!(
        due > now + 20_000 && due <= now + 30_000,
        "leased until about 30 s after its claim: due {due}, now {now}"
    );
}

/// Timers waiting for a run slot when the signal came are not left leased: they are due
/// in the store, so the next process runs them at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claimed_timers_not_yet_started_are_handed_back() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(&dir);
    let clients = Clients::new();
    let (url, mut arrivals) = slow_receiver(Duration::from_secs(2)).await;
    let mut server = Server::start(&redis, "handback", &policy, &clients, 10).await;
    let app = clients.client(&server, "app");
    let admin = clients.client(&server, "admin");

    // While the first callback is in flight, two more come due and wait for its slot.
    callback_in_flight(&server, &clients, &url, &mut arrivals).await;
    let mut later = Vec::new();
    for _ in 0..2 {
        let action = app
            .request(&action_request(None, Some(&url)))
            .await
            .unwrap();
        admin
            .decide(&action.id, Outcome::Approved, "ops", None)
            .await
            .unwrap();
        later.push(action);
    }
    tokio::time::timeout(Duration::from_secs(5), arrivals.recv())
        .await
        .expect("the second callback is sent")
        .unwrap();
    server.sigterm();
    let status = server.exited(Duration::from_secs(10)).await;
    assert!(status.success(), "exit 0, got {status}: {}", server.log());
    assert!(
        arrivals.try_recv().is_err(),
        "no callback started after the signal"
    );

    let now = chrono::Utc::now().timestamp_millis();
    let left: Vec<i64> = later
        .iter()
        .filter_map(|a| timer_due(&redis, "handback", &format!("callback:{}", a.id)))
        .collect();
    assert_eq!(
        left.len(),
        1,
        "one delivered, one handed back: {}",
        server.log()
    );
    assert!(
        left[0] <= now,
        "due, not leased: due {}, now {now}",
        left[0]
    );
}

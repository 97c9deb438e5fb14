//! The processes under test: the real `greenlight serve` binary (built by `cargo bench` in
//! the bench profile, i.e. release) and the bare axum floor server, each a child process
//! on its own port, plus reading a process's resident memory.

use crate::http;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

pub struct Server {
    pub addr: SocketAddr,
    child: Child,
}

/// What a greenlight server is started with.
pub struct ServeOptions<'a> {
    pub redis_url: &'a str,
    pub prefix: &'a str,
    pub policy: &'a Path,
    pub secret_env: (&'a str, &'a str),
    /// The fake Slack's API base and signing secret; Slack is off when `None`.
    pub slack: Option<(&'a str, &'a str)>,
    pub log: &'a str,
}

impl Server {
    pub async fn greenlight(options: ServeOptions<'_>) -> anyhow::Result<Self> {
        let port = free_port();
        // `BENCH_SERVER_WRAPPER=heaptrack` (for instance) runs the server under a profiler;
        // memory numbers are then the profiler's too.
        let binary = env!("CARGO_BIN_EXE_greenlight");
        let mut cmd = match std::env::var("BENCH_SERVER_WRAPPER") {
            Ok(wrapper) => {
                let mut c = Command::new(wrapper);
                c.arg(binary);
                c
            }
            Err(_) => Command::new(binary),
        };
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", options.log)
            .env("GREENLIGHT_LOG_FORMAT", "json")
            .env("GREENLIGHT_LISTEN", format!("127.0.0.1:{port}"))
            .env("REDIS_URL", options.redis_url)
            .env("GREENLIGHT_REDIS_PREFIX", options.prefix)
            .env("GREENLIGHT_POLICY", options.policy)
            // Long enough to hold the largest waiter step while it is being set up.
            .env("GREENLIGHT_MAX_WAIT", "300")
            .env(options.secret_env.0, options.secret_env.1);
        if let Some((base, signing_secret)) = options.slack {
            cmd.env("SLACK_API_BASE", base)
                .env("SLACK_BOT_TOKEN", "xoxb-bench-token")
                .env("SLACK_SIGNING_SECRET", signing_secret)
                .env("SLACK_DEFAULT_CHANNEL", "#approvals");
        }
        let server = Self::spawn(cmd, port).await?;
        // For `perf record -p PID` while a phase runs.
        eprintln!(
            "load: greenlight serve ({}) is pid {}",
            options.prefix,
            server.pid()
        );
        Ok(server)
    }

    /// The bare axum handler: this same binary, started with `--floor-server PORT`.
    pub async fn floor() -> anyhow::Result<Self> {
        let port = free_port();
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["--floor-server", &port.to_string()]);
        Self::spawn(cmd, port).await
    }

    async fn spawn(mut cmd: Command, port: u16) -> anyhow::Result<Self> {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        for _ in 0..300 {
            if let Ok((200, _)) = http::get(addr, "/healthz").await {
                return Ok(Self { addr, child });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("the server on port {port} did not start")
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Resident memory (VmRSS) in bytes.
    pub fn rss(&self) -> u64 {
        rss(self.pid())
    }

    /// The value of one unlabelled metric, from `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let Ok((_, text)) = http::get(self.addr, "/metrics").await else {
            return f64::NAN;
        };
        metric_value(&String::from_utf8_lossy(&text), name, "").unwrap_or(0.0)
    }

    /// The whole `/metrics` text.
    pub async fn metrics(&self) -> String {
        match http::get(self.addr, "/metrics").await {
            Ok((_, text)) => String::from_utf8_lossy(&text).into_owned(),
            Err(_) => String::new(),
        }
    }
}

/// The value of `name{labels}` (labels written exactly as rendered, or empty) in
/// Prometheus text.
pub fn metric_value(text: &str, name: &str, labels: &str) -> Option<f64> {
    let key = if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{labels}}}")
    };
    text.lines()
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

pub fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The floor: the same load generator against a handler that does nothing but answer an
/// action-sized JSON, on the same kind of runtime as greenlight (multi-threaded tokio).
pub fn run_floor_server(port: u16) -> anyhow::Result<()> {
    use axum::routing::{get, post};
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let body: &'static str = r#"{"id":"act_01JD8Y3M6QW9T3V7K2X5N4B1C0","status":"pending","action":"deploy.bench","resource":"svc/bench","requester":{"id":"u-1"},"reason":"bench","context":{},"client":"bench","policy":{"rule":"people","min_approvals":1,"approvers":["U0BOB"]},"votes":[],"created_at":"2026-11-22T10:00:00Z","expires_at":"2026-11-22T11:00:00Z","decision":null}"#;
        // Long-polls that never end: the per-connection memory of a bare axum server.
        static WAITING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let app = axum::Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/v1/actions/{id}/wait",
                get(|| async {
                    WAITING.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    std::future::pending::<()>().await;
                }),
            )
            .route(
                "/waiting",
                get(|| async { WAITING.load(std::sync::atomic::Ordering::Relaxed).to_string() }),
            )
            .route(
                "/v1/actions",
                post(move |_body: bytes::Bytes| async move {
                    (
                        axum::http::StatusCode::CREATED,
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        body,
                    )
                }),
            );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        axum::serve(listener, app.into_make_service()).await?;
        anyhow::Ok(())
    })
}

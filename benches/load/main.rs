//! The load benchmark (`cargo bench --bench load`, `-- --quick` for a short run): starts its
//! own Redis, greenlight servers (the real release binary, as child processes) and a fake
//! Slack, measures intake, fan-out and memory against raw baselines from the same run, and
//! writes `docs/benchmarks.md`. It measures; it asserts nothing about speed.
//!
//! Options (after `--`): `--quick`, `--waiters N` (first fan-out step), `--max-waiters N`
//! (ceiling search: the steps double up to N while every waiter is answered), `--per-action N`,
//! `--click-rate N` (Slack callbacks per second), `--connections N`, `--paced-rate N` (req/s of the
//! open-loop auto-decided run), `--seconds N` (intake
//! window), `--server-log FILTER` (`RUST_LOG` of the servers, default `warn`), `--no-write`,
//! `--only intake|fanout` (one part, nothing written). `BENCH_SERVER_WRAPPER=heaptrack` runs
//! the servers under a profiler.

#[allow(dead_code, unused_imports, clippy::all)]
#[path = "../../tests/it/common/mod.rs"]
mod common;
mod fanout;
mod http;
mod intake;
mod procs;
mod report;
mod stats;

use common::RedisServer;
use common::slack::FakeSlack;
use greenlight::signing::Secret;
use http::Signer;
use procs::{ServeOptions, Server};
use std::sync::Arc;
use std::time::Duration;

const POLICY: &str = r##"
[defaults]
channel = "#approvals"
ttl = "1h"
on_no_match = "require"

[[client]]
id = "bench"
secret_env = "BENCH_CLIENT_SECRET"
roles = ["requester"]

[[rule]]
name = "auto"
match = { action = "read.*" }
decision = "approve"

[[rule]]
name = "people"
match = { action = "deploy.*" }
decision = "require"
approvers = ["U0BOB"]
"##;

struct Options {
    quick: bool,
    waiters: usize,
    max_waiters: usize,
    per_action: usize,
    click_rate: f64,
    connections: usize,
    /// The rate of the paced (open-loop) auto-decided run.
    paced_rate: f64,
    seconds: u64,
    server_log: String,
    write: bool,
    /// `intake` or `fanout`: run only that part (for profiling one of them).
    only: Option<String>,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let quick = args.iter().any(|a| a == "--quick");
    let waiters = value("--waiters")
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 2_000 } else { 10_000 });
    Options {
        quick,
        waiters,
        max_waiters: value("--max-waiters")
            .and_then(|v| v.parse().ok())
            .unwrap_or(if quick { waiters } else { 40_000 }),
        per_action: value("--per-action")
            .and_then(|v| v.parse().ok())
            .unwrap_or(10),
        click_rate: value("--click-rate")
            .and_then(|v| v.parse().ok())
            .unwrap_or(200.0),
        paced_rate: value("--paced-rate")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000.0),
        connections: value("--connections")
            .and_then(|v| v.parse().ok())
            .unwrap_or(64),
        seconds: value("--seconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(if quick { 3 } else { 10 }),
        server_log: value("--server-log").unwrap_or_else(|| "warn".into()),
        write: !args.iter().any(|a| a == "--no-write") && value("--only").is_none(),
        only: value("--only"),
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--floor-server") {
        let port = args
            .get(i + 1)
            .and_then(|p| p.parse().ok())
            .expect("--floor-server PORT");
        return procs::run_floor_server(port);
    }
    // cargo runs every bench target for `cargo bench`; `cargo test --benches` passes no flag
    // but `--bench` is always there when benchmarking.
    if !args.iter().any(|a| a == "--bench") && std::env::var_os("GREENLIGHT_BENCH").is_none() {
        eprintln!("load: run with `cargo bench --bench load`");
        return Ok(());
    }
    // Children inherit the limit: 10,000+ sockets on each side.
    // As root the hard limit can be raised too; otherwise up to the hard limit.
    let _ = rlimit::Resource::NOFILE.set(1 << 20, 1 << 20);
    let nofile = rlimit::increase_nofile_limit(1 << 20).unwrap_or(0);
    let options = options();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(options, nofile))
}

fn sh(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

async fn run(o: Options, nofile: u64) -> anyhow::Result<()> {
    let machine = report::Machine {
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_before: std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
        commit: sh("git", &["rev-parse", "--short", "HEAD"]),
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        mode: if o.quick { "quick" } else { "full" },
        nofile,
    };
    eprintln!(
        "load: {} cores, load {}, nofile {nofile}",
        machine.cores, machine.load_before
    );

    let redis = RedisServer::start();
    let dir = tempfile::tempdir()?;
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY)?;
    let (secret, secret_text) = Secret::generate();
    let signer = Arc::new(Signer {
        client_id: "bench".into(),
        secret,
    });
    let redis_url = redis.url();
    let serve = |prefix: &'static str, slack: Option<(&'static str, &'static str)>| ServeOptions {
        redis_url: &redis_url,
        prefix,
        policy: &policy,
        secret_env: ("BENCH_CLIENT_SECRET", &secret_text),
        slack,
        log: &o.server_log,
    };

    // Intake: one server without Slack (its posting is background work against a remote
    // API, which a loopback fake in this process would only distort).
    let load = intake::Load {
        connections: o.connections,
        warmup: Duration::from_secs(if o.quick { 1 } else { 2 }),
        measure: Duration::from_secs(o.seconds),
        rate: None,
    };
    let paced = intake::Load {
        connections: 16,
        rate: Some(o.paced_rate),
        ..load
    };
    let (floor, pending, auto, auto_server_side, auto_paced, paced_server_side) =
        if o.only.as_deref() == Some("fanout") {
            Default::default()
        } else {
            let floor_server = Server::floor().await?;
            eprintln!("load: intake floor (bare axum)");
            let floor =
                intake::run(floor_server.addr, signer.clone(), "deploy.bench", &load).await?;
            drop(floor_server);
            let server = Server::greenlight(serve("bench-intake", None)).await?;
            eprintln!("load: intake pending");
            let pending = intake::run(server.addr, signer.clone(), "deploy.bench", &load).await?;
            let before = server.metrics().await;
            eprintln!("load: intake auto-decided");
            let auto = intake::run(server.addr, signer.clone(), "read.bench", &load).await?;
            let auto_server_side = server_side(&before, &server.metrics().await);
            eprintln!("load: intake auto-decided, paced at {} req/s", o.paced_rate);
            let before = server.metrics().await;
            let auto_paced = intake::run(server.addr, signer.clone(), "read.bench", &paced).await?;
            let paced_server_side = server_side(&before, &server.metrics().await);
            drop(server);
            (
                floor,
                pending,
                auto,
                auto_server_side,
                auto_paced,
                paced_server_side,
            )
        };

    // Fan-out.
    let slack = FakeSlack::start().await;
    let slack_base = slack.base.clone();
    let slack_base: &'static str = Box::leak(slack_base.into_boxed_str());
    let server = Server::greenlight(serve(
        "bench-fanout",
        Some((slack_base, common::SLACK_SIGNING_SECRET)),
    ))
    .await?;
    eprintln!("load: bus floor");
    let bus = fanout::bus_floor(&redis_url, 2_000.min(o.waiters), o.click_rate).await?;
    eprintln!(
        "load: memory floor ({} idle connections on bare axum)",
        o.waiters
    );
    let floor_server = Server::floor().await?;
    let connection_floor = fanout::idle_connection_floor(&floor_server, o.waiters).await?;
    drop(floor_server);
    let mut steps = Vec::new();
    let mut waiters = o.waiters;
    let mut ceiling = String::new();
    while o.only.as_deref() != Some("intake") {
        // Each waiter is a socket in this process and one in the server.
        if waiters as u64 + 2_000 > nofile {
            ceiling = format!(
                "The search stopped before {waiters} waiters: the open-file limit ({nofile}) \
                 cannot hold that many sockets in one process. Raise it (`ulimit -Hn`, as root) \
                 to go further."
            );
            eprintln!("load: {ceiling}");
            break;
        }
        eprintln!("load: fan-out with {waiters} waiters");
        let plan = fanout::Plan {
            waiters,
            per_action: o.per_action,
            click_rate: o.click_rate,
        };
        match fanout::step(&server, &slack, signer.clone(), &plan).await {
            Ok(step) => {
                let lost = step.lost();
                eprintln!(
                    "load:   p99 {} ms, answered {}/{}, {:.0} bytes/waiter",
                    stats::ms(step.latency.p99),
                    step.answered,
                    step.waiters,
                    step.bytes_per_waiter()
                );
                steps.push(step);
                if lost > 0 {
                    ceiling = format!(
                        "The search stopped at {waiters} waiters: {lost} were not answered."
                    );
                    break;
                }
            }
            Err(e) => {
                eprintln!("load:   step with {waiters} waiters failed: {e:#}");
                ceiling = format!("The step with {waiters} waiters failed: {e:#}.");
                break;
            }
        }
        waiters *= 2;
        if waiters > o.max_waiters {
            break;
        }
    }
    drop(server);

    let results = report::Results {
        machine,
        connections: o.connections,
        pending,
        auto,
        floor,
        auto_server_side,
        auto_paced,
        paced_server_side,
        paced_rate: o.paced_rate,
        steps,
        bus,
        connection_floor,
        ceiling,
        click_rate: o.click_rate,
        per_action: o.per_action,
    };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/benchmarks.md");
    let previous = std::fs::read_to_string(&path).unwrap_or_default();
    let text = report::render(&results, &previous);
    println!("{text}");
    if o.write {
        std::fs::write(&path, text)?;
        eprintln!("load: wrote {}", path.display());
    }
    Ok(())
}

/// From two scrapes of the server's latency histogram around the auto-decided run: the share
/// of `POST /v1/actions` answered within 2 ms and the bucket bound under which 99% were.
fn server_side(before: &str, after: &str) -> Option<(f64, f64)> {
    let buckets = |text: &str| -> Vec<(f64, f64)> {
        text.lines()
            .filter(|l| {
                l.starts_with("greenlight_http_request_duration_seconds_bucket{")
                    && l.contains(r#"route="/v1/actions""#)
            })
            .filter_map(|l| {
                let le = l.split("le=\"").nth(1)?.split('"').next()?;
                let le: f64 = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                let count: f64 = l.rsplit_once(' ')?.1.parse().ok()?;
                Some((le, count))
            })
            .collect()
    };
    let (b, a) = (buckets(before), buckets(after));
    let delta: Vec<(f64, f64)> = a
        .iter()
        .map(|(le, n)| {
            (
                *le,
                n - b.iter().find(|(l, _)| l == le).map_or(0.0, |(_, m)| *m),
            )
        })
        .collect();
    let total = delta.iter().find(|(le, _)| le.is_infinite())?.1;
    if total <= 0.0 {
        return None;
    }
    let within_2ms = delta.iter().find(|(le, _)| (*le - 0.002).abs() < 1e-9)?.1 / total;
    let p99 = delta
        .iter()
        .find(|(_, n)| *n >= 0.99 * total)
        .map(|(le, _)| *le)?;
    Some((within_2ms, p99))
}

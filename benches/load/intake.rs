//! Intake: signed `POST /v1/actions` from a closed loop of N connections, each sending its
//! next request as soon as the previous one is answered; throughput and latency over the
//! measured window (after a warm-up).

use crate::http::{self, Signer};
use crate::stats::Summary;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Intake {
    pub requests_per_second: f64,
    pub latency: Summary,
    /// Answers other than 201, and transport errors (status 0), during the window.
    pub failures: BTreeMap<u16, usize>,
}

pub struct Load {
    pub connections: usize,
    pub warmup: Duration,
    pub measure: Duration,
    /// Requests per second over all connections, or `None` for as fast as answered.
    pub rate: Option<f64>,
}

/// The request body: an action the policy auto-approves (`read.*`) or sends to people.
pub fn body(action: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"action":"{action}","resource":"svc/bench","requester":{{"id":"u-bench","email":"bench@example.com","name":"Bench"}},"reason":"benchmark","context":{{"env":"bench"}}}}"#
    ))
}

pub async fn run(
    addr: SocketAddr,
    signer: Arc<Signer>,
    action: &str,
    load: &Load,
) -> anyhow::Result<Intake> {
    let body = body(action);
    let start = Instant::now();
    let window_start = start + load.warmup;
    let end = window_start + load.measure;
    let mut tasks = Vec::new();
    let (rate, connections) = (load.rate, load.connections);
    for _ in 0..load.connections {
        let (signer, body) = (signer.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 16);
            let mut failures: BTreeMap<u16, usize> = BTreeMap::new();
            let mut conn = http::connect(addr, None).await?;
            // Paced: each connection sends on its own schedule (an open loop, so latency is
            // service time plus real queueing, not the closed loop's self-inflicted queue).
            let mut tick = rate.map(|r| {
                let mut t = tokio::time::interval(Duration::from_secs_f64(connections as f64 / r));
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                t
            });
            loop {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let req = signer.request("POST", "/v1/actions", body.clone());
                let status = match http::send(&mut conn, req).await {
                    Ok((status, _)) => status,
                    Err(_) => {
                        conn = http::connect(addr, None).await?;
                        0
                    }
                };
                let done = Instant::now();
                if sent >= window_start && done <= end {
                    if status == 201 {
                        latencies.push(done - sent);
                    } else {
                        *failures.entry(status).or_default() += 1;
                    }
                }
            }
            anyhow::Ok((latencies, failures))
        }));
    }
    let mut all = Vec::new();
    let mut failures: BTreeMap<u16, usize> = BTreeMap::new();
    for task in tasks {
        let (latencies, f) = task.await??;
        all.extend(latencies);
        for (k, v) in f {
            *failures.entry(k).or_default() += v;
        }
    }
    Ok(Intake {
        requests_per_second: all.len() as f64 / load.measure.as_secs_f64(),
        latency: Summary::of(all),
        failures,
    })
}

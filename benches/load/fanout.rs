//! Fan-out: many long-poll waiters held open on one server process, then decisions made
//! through signed Slack callbacks; the latency from sending the callback to each waiter's
//! response, whether every waiter got its decision, and the memory the waiters cost.
//! Also the floor: raw Redis publish-to-subscriber latency, measured the same way.

use crate::common::SLACK_SIGNING_SECRET;
use crate::common::slack::{
    CHANNEL_ID, FakeSlack, block_action, interaction_body, signed_slack_headers,
};
use crate::http::{self, Signer};
use crate::intake;
use crate::procs::Server;
use crate::stats::Summary;
use bytes::Bytes;
use futures::StreamExt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

pub struct Step {
    pub waiters: usize,
    pub actions: usize,
    /// Time to open every waiter (connect, sign, register).
    pub setup: Duration,
    pub latency: Summary,
    pub answered: usize,
    pub rss_before: u64,
    pub rss_with: u64,
}

impl Step {
    pub fn lost(&self) -> usize {
        self.waiters - self.answered
    }

    /// Resident memory per waiter beyond the baseline, in bytes.
    pub fn bytes_per_waiter(&self) -> f64 {
        self.rss_with.saturating_sub(self.rss_before) as f64 / self.waiters as f64
    }
}

pub struct Plan {
    pub waiters: usize,
    pub per_action: usize,
    /// Slack callbacks per second.
    pub click_rate: f64,
}

/// Creates the actions, opens the waiters, clicks Approve on each action and collects.
pub async fn step(
    server: &Server,
    slack: &FakeSlack,
    signer: Arc<Signer>,
    plan: &Plan,
) -> anyhow::Result<Step> {
    let actions = plan.waiters.div_ceil(plan.per_action);
    // The approval messages go out paced at Slack's one message a second per channel:
    // the clicks do not wait for them (a click needs only the action id).
    let ids = create_pending(server, signer.clone(), actions).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = server.rss();
    let waiters_before = server.metric("greenlight_waiters").await;

    let clicked: Arc<Vec<OnceLock<Instant>>> =
        Arc::new((0..actions).map(|_| OnceLock::new()).collect());
    let setup_start = Instant::now();
    // A bounded number of connection attempts at a time: the listener's backlog is finite.
    let connecting = Arc::new(Semaphore::new(256));
    let mut tasks = Vec::with_capacity(plan.waiters);
    for i in 0..plan.waiters {
        let index = i % actions;
        let path = format!("/v1/actions/{}/wait?timeout=300", ids[index]);
        let (signer, connecting, clicked) = (signer.clone(), connecting.clone(), clicked.clone());
        // 25,000 waiters per loopback source address: each has ~28,000 ephemeral ports.
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i / 25_000) as u8));
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            let permit = connecting.acquire_owned().await?;
            let mut conn = http::connect(addr, Some(source)).await?;
            drop(permit);
            let (status, body) =
                http::send(&mut conn, signer.request("GET", &path, Bytes::new())).await?;
            let done = Instant::now();
            let approved = status == 200 && contains(&body, br#""status":"approved""#);
            let latency = clicked[index]
                .get()
                .map(|c| done.saturating_duration_since(*c));
            anyhow::Ok((approved, latency))
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    while server.metric("greenlight_waiters").await < waiters_before + plan.waiters as f64 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the waiters did not all register"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let setup = setup_start.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_with = server.rss();

    click_all(server, slack, &ids, &clicked, plan.click_rate).await?;

    let mut samples = Vec::with_capacity(plan.waiters);
    let mut answered = 0;
    for task in tasks {
        if let Ok(Ok(Ok((approved, latency)))) =
            tokio::time::timeout(Duration::from_secs(60), task).await
            && approved
        {
            answered += 1;
            samples.extend(latency);
        }
    }
    Ok(Step {
        waiters: plan.waiters,
        actions,
        setup,
        latency: Summary::of(samples),
        answered,
        rss_before,
        rss_with,
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn create_pending(
    server: &Server,
    signer: Arc<Signer>,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let body = intake::body("deploy.bench");
    let per_conn = n.div_ceil(16);
    let mut tasks = Vec::new();
    for c in 0..16 {
        let count = per_conn.min(n.saturating_sub(c * per_conn));
        let (signer, body, addr) = (signer.clone(), body.clone(), server.addr);
        tasks.push(tokio::spawn(async move {
            let mut conn = http::connect(addr, None).await?;
            let mut ids = Vec::with_capacity(count);
            for _ in 0..count {
                let (status, json) = http::send(
                    &mut conn,
                    signer.request("POST", "/v1/actions", body.clone()),
                )
                .await?;
                anyhow::ensure!(status == 201, "creating an action: {status}");
                let action: serde_json::Value = serde_json::from_slice(&json)?;
                ids.push(action["id"].as_str().unwrap_or_default().to_owned());
            }
            anyhow::Ok(ids)
        }));
    }
    let mut ids = Vec::with_capacity(n);
    for t in tasks {
        ids.extend(t.await??);
    }
    Ok(ids)
}

/// Clicks Approve, as the approver `U0BOB`, on every action, `rate` callbacks a second,
/// each stamped just before it is sent.
async fn click_all(
    server: &Server,
    slack: &FakeSlack,
    ids: &[String],
    clicked: &[OnceLock<Instant>],
    rate: f64,
) -> anyhow::Result<()> {
    let mut conn = http::connect(server.addr, None).await?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let response_url = slack.response_url();
    for (i, id) in ids.iter().enumerate() {
        tick.tick().await;
        let payload = block_action(
            "U0BOB",
            "greenlight_approve",
            id,
            CHANNEL_ID,
            "1700000000.000001",
            &response_url,
        );
        let body = interaction_body(&payload);
        let headers =
            signed_slack_headers(SLACK_SIGNING_SECRET, chrono::Utc::now().timestamp(), &body);
        let req = http::plain("POST", "/slack/interactions", &headers, Bytes::from(body));
        let _ = clicked[i].set(Instant::now());
        let (status, answer) = http::send(&mut conn, req).await?;
        anyhow::ensure!(
            status == 200,
            "Slack callback answered {status}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    Ok(())
}

/// The memory floor: `n` long-polls held open on the bare axum server (a handler that never
/// answers); its resident memory per connection, in bytes.
pub async fn idle_connection_floor(server: &Server, n: usize) -> anyhow::Result<f64> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss();
    let connecting = Arc::new(Semaphore::new(256));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (connecting, addr) = (connecting.clone(), server.addr);
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i / 25_000) as u8));
        tasks.push(tokio::spawn(async move {
            let permit = connecting.acquire_owned().await?;
            let mut conn = http::connect(addr, Some(source)).await?;
            drop(permit);
            let path = format!("/v1/actions/act_{i}/wait?timeout=300");
            http::send(&mut conn, http::plain("GET", &path, &[], Bytes::new())).await
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let waiting: usize = http::get(server.addr, "/waiting")
            .await
            .ok()
            .and_then(|(_, b)| std::str::from_utf8(&b).ok()?.parse().ok())
            .unwrap_or(0);
        if waiting >= n {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the floor's waiters did not all connect"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let with = server.rss();
    for t in tasks {
        t.abort();
    }
    Ok(with.saturating_sub(before) as f64 / n as f64)
}

/// The bus floor: `messages` PUBLISHes of an action-sized payload at `rate` a second to one
/// subscriber connection; latency from just before PUBLISH to the subscriber's receipt.
pub async fn bus_floor(redis_url: &str, messages: usize, rate: f64) -> anyhow::Result<Summary> {
    let client = redis::Client::open(redis_url)?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe("bench:floor").await?;
    let mut publisher = client.get_multiplexed_async_connection().await?;
    let sent: Arc<Vec<OnceLock<Instant>>> =
        Arc::new((0..messages).map(|_| OnceLock::new()).collect());
    let receiver = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut stream = pubsub.into_on_message();
            let mut samples = Vec::with_capacity(messages);
            while samples.len() < messages {
                let Some(msg) = stream.next().await else {
                    break;
                };
                let now = Instant::now();
                let payload = msg.get_payload_bytes();
                let index: usize = std::str::from_utf8(&payload[..8])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                if let Some(at) = sent[index].get() {
                    samples.push(now.saturating_duration_since(*at));
                }
            }
            samples
        })
    };
    let padding = "x".repeat(700);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    for (i, slot) in sent.iter().enumerate() {
        tick.tick().await;
        let payload = format!("{i:08}{padding}");
        let _ = slot.set(Instant::now());
        let _: i64 = redis::cmd("PUBLISH")
            .arg("bench:floor")
            .arg(payload)
            .query_async(&mut publisher)
            .await?;
    }
    let samples = tokio::time::timeout(Duration::from_secs(30), receiver).await??;
    Ok(Summary::of(samples))
}

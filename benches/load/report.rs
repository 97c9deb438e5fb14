//! `docs/benchmarks.md`: the latest run in full, one summary row per run (kept from run to
//! run, so they can be compared), and the hand-written analysis below, kept as it is.

use crate::fanout::Step;
use crate::intake::Intake;
use crate::stats::{Summary, ms, ratio};
use std::fmt::Write;

const RUNS_START: &str = "<!-- runs: one row per run, appended by the benchmark -->";
const RUNS_END: &str = "<!-- /runs -->";
const ANALYSIS: &str = "<!-- analysis: hand-written, kept by the benchmark -->";

pub struct Machine {
    pub cores: usize,
    pub load_before: String,
    pub commit: String,
    pub date: String,
    pub mode: &'static str,
    pub nofile: u64,
}

pub struct Results {
    pub machine: Machine,
    pub connections: usize,
    pub pending: Intake,
    pub auto: Intake,
    pub floor: Intake,
    /// Share of auto-decided requests the server answered within 2 ms, and the bucket
    /// bound under which 99% were answered, from its own latency histogram.
    pub auto_server_side: Option<(f64, f64)>,
    /// Auto-decided requests at a fixed rate below saturation (16 connections).
    pub auto_paced: Intake,
    pub paced_server_side: Option<(f64, f64)>,
    pub paced_rate: f64,
    pub steps: Vec<Step>,
    pub bus: Summary,
    /// Resident bytes per idle long-poll connection on the bare axum server.
    pub connection_floor: f64,
    /// Why the search for the ceiling stopped.
    pub ceiling: String,
    pub click_rate: f64,
    pub per_action: usize,
}

fn intake_row(out: &mut String, name: &str, r: &Intake, floor: &Intake) {
    let failures: Vec<String> = r.failures.iter().map(|(s, n)| format!("{n}×{s}")).collect();
    let _ = writeln!(
        out,
        "| {name} | {:.0} | {} | {} | {} | {} |",
        r.requests_per_second,
        ms(r.latency.p50),
        ms(r.latency.p99),
        ratio(r.requests_per_second, floor.requests_per_second),
        if failures.is_empty() {
            "none".into()
        } else {
            failures.join(", ")
        },
    );
}

pub fn render(r: &Results, previous: &str) -> String {
    let m = &r.machine;
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Written by `cargo bench --bench load` (add `-- --quick` for the short version); see \
         [How to run](#how-to-run). Ratios compare greenlight with a raw baseline measured in \
         the same run on the same machine, so runs on noisy or different \
         machines stay comparable.\n"
    );
    let _ = writeln!(out, "## Latest run\n");
    let _ = writeln!(
        out,
        "{} · commit `{}` · mode `{}` · **{} cores** · load average before the run: {} · open-file limit {}\n",
        m.date, m.commit, m.mode, m.cores, m.load_before, m.nofile
    );
    let _ = writeln!(
        out,
        "### Intake: signed `POST /v1/actions`, {} connections, Redis backend\n",
        r.connections
    );
    let _ = writeln!(
        out,
        "| target | req/s | p50 ms | p99 ms | ratio to floor | failures |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | --- |");
    intake_row(
        &mut out,
        "greenlight, pending (`require`)",
        &r.pending,
        &r.floor,
    );
    intake_row(
        &mut out,
        "greenlight, auto-decided (`approve`, grant signed)",
        &r.auto,
        &r.floor,
    );
    intake_row(&mut out, "floor: bare axum handler", &r.floor, &r.floor);
    intake_row(
        &mut out,
        &format!(
            "greenlight, auto-decided, paced at {} req/s (16 connections)",
            r.paced_rate
        ),
        &r.auto_paced,
        &r.floor,
    );
    let _ = writeln!(
        out,
        "\nClosed loop: each connection sends its next request when the previous one is \
         answered, so at saturation latency is mostly queueing. The paced row is an open loop \
         below saturation; its ratio is to the floor's saturated rate and means nothing."
    );
    for (name, side) in [
        ("saturated", r.auto_server_side),
        ("paced", r.paced_server_side),
    ] {
        if let Some((within, p99)) = side {
            let _ = writeln!(
                out,
                "\nServer-side, auto-decided, {name} (the server's own \
                 `greenlight_http_request_duration_seconds`): {:.1}% answered within 2 ms; 99% \
                 within {} ms (histogram bucket bound).",
                within * 100.0,
                p99 * 1000.0
            );
        }
    }
    let _ = writeln!(
        out,
        "\n### Fan-out: long-poll waiters on one process, decided through signed Slack callbacks\n"
    );
    let _ = writeln!(
        out,
        "{} waiters per action, {} callbacks/s; latency from sending the callback to each \
         waiter's response. Memory is the server's VmRSS before the waiters connect and with \
         all of them waiting.\n",
        r.per_action, r.click_rate
    );
    let _ = writeln!(
        out,
        "| waiters | actions | setup s | p50 ms | p99 ms | max ms | p99 ratio to bus | answered | lost | RSS before MiB | RSS with MiB | bytes/waiter | ÷ memory floor |"
    );
    let _ = writeln!(
        out,
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for s in &r.steps {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.0} | {} |",
            s.waiters,
            s.actions,
            s.setup.as_secs_f64(),
            ms(s.latency.p50),
            ms(s.latency.p99),
            ms(s.latency.max),
            ratio(s.latency.p99.as_secs_f64(), r.bus.p99.as_secs_f64()),
            s.answered,
            s.lost(),
            s.rss_before as f64 / 1048576.0,
            s.rss_with as f64 / 1048576.0,
            s.bytes_per_waiter(),
            ratio(s.bytes_per_waiter(), r.connection_floor),
        );
    }
    if !r.ceiling.is_empty() {
        let _ = writeln!(out, "\n{}", r.ceiling);
    }
    let _ = writeln!(
        out,
        "\nBus floor: raw Redis `PUBLISH` to one subscriber, {} messages of ~700 bytes at the \
         same rate: p50 {} ms, p99 {} ms, max {} ms.\n",
        r.bus.count,
        ms(r.bus.p50),
        ms(r.bus.p99),
        ms(r.bus.max)
    );
    let _ = writeln!(
        out,
        "Memory floor: the bare axum server holding the same number of idle long-polls (a \
         handler that never answers) costs {:.0} bytes of resident memory per connection.\n",
        r.connection_floor
    );

    let _ = writeln!(out, "## Runs\n");
    let _ = writeln!(out, "{RUNS_START}");
    let _ = writeln!(
        out,
        "| date | commit | mode | cores | load | pending req/s | ÷ floor | auto req/s | ÷ floor | waiters | fan-out p99 ms | ÷ bus | lost | bytes/waiter |"
    );
    let _ = writeln!(
        out,
        "| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for row in previous_rows(previous) {
        let _ = writeln!(out, "{row}");
    }
    let first = r.steps.first();
    let _ = writeln!(
        out,
        "| {} | `{}` | {} | {} | {} | {:.0} | {} | {:.0} | {} | {} | {} | {} | {} | {} |",
        m.date,
        m.commit,
        m.mode,
        m.cores,
        m.load_before,
        r.pending.requests_per_second,
        ratio(r.pending.requests_per_second, r.floor.requests_per_second),
        r.auto.requests_per_second,
        ratio(r.auto.requests_per_second, r.floor.requests_per_second),
        first.map_or(0, |s| s.waiters),
        first.map_or("–".into(), |s| ms(s.latency.p99)),
        first.map_or("–".into(), |s| ratio(
            s.latency.p99.as_secs_f64(),
            r.bus.p99.as_secs_f64()
        )),
        first.map_or(0, |s| s.lost()),
        first.map_or("–".into(), |s| format!("{:.0}", s.bytes_per_waiter())),
    );
    let _ = writeln!(out, "{RUNS_END}\n");
    let _ = writeln!(out, "{ANALYSIS}");
    out.push_str(previous_analysis(previous).unwrap_or("\n"));
    out
}

fn previous_rows(previous: &str) -> Vec<&str> {
    let Some((_, rest)) = previous.split_once(RUNS_START) else {
        return Vec::new();
    };
    let body = rest.split_once(RUNS_END).map_or(rest, |(b, _)| b);
    // Skip the header and separator rows.
    body.lines()
        .filter(|l| l.starts_with("| "))
        .skip(1)
        .filter(|l| !l.starts_with("| ---"))
        .collect()
}

fn previous_analysis(previous: &str) -> Option<&str> {
    previous.split_once(ANALYSIS).map(|(_, a)| a)
}

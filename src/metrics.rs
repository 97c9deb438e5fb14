//! Prometheus metrics: the recorder (installed once per process), every metric described
//! in one place, and typed helpers for the call sites, so that label values come from
//! fixed sets (enums, route templates, policy names) and never from ids or free text.
//!
//! `GET /metrics` renders them (see `http/metrics.rs`). The recorder is global to the
//! process: tests run many servers in one process, so [`install`] is idempotent and the
//! numbers are the sum over every server of the process.

use crate::domain::WindowEnd;
use crate::grants::GrantRejection;
use ::metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

pub const ACTIONS_CREATED: &str = "greenlight_actions_created_total";
pub const DECISIONS: &str = "greenlight_decisions_total";
pub const PENDING_ACTIONS: &str = "greenlight_pending_actions";
pub const TIME_TO_DECISION: &str = "greenlight_time_to_decision_seconds";
pub const WAITERS: &str = "greenlight_waiters";
pub const ESCALATIONS: &str = "greenlight_escalations_total";
pub const SLACK_API_CALLS: &str = "greenlight_slack_api_calls_total";
pub const SLACK_RATE_LIMITED: &str = "greenlight_slack_rate_limited_total";
pub const CALLBACKS: &str = "greenlight_callbacks_total";
pub const REDIS_ERRORS: &str = "greenlight_redis_errors_total";
pub const HTTP_REQUESTS: &str = "greenlight_http_requests_total";
pub const HTTP_DURATION: &str = "greenlight_http_request_duration_seconds";
pub const ACTIVE_WINDOWS: &str = "greenlight_access_windows_active";
pub const WINDOW_USES: &str = "greenlight_access_window_uses_total";
pub const WINDOWS_ENDED: &str = "greenlight_access_windows_ended_total";
pub const TIME_TO_REVOKE: &str = "greenlight_access_window_revoke_seconds";

/// From a policy auto-decision (0) to a day: people answer in seconds to hours.
const DECISION_BUCKETS: &[f64] = &[
    0.0, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
];
/// Handlers answer in milliseconds (sub-millisecond buckets so the 2 ms intake goal of
/// auto-decisions can be read off); long-polls last up to `GREENLIGHT_MAX_WAIT`.
const HTTP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder as the process's global recorder, once, and describes
/// every metric; later calls return the same handle. Metrics recorded before the first
/// call are lost, so the application calls this first thing when it is built.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(TIME_TO_DECISION.into()), DECISION_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), HTTP_BUCKETS)
            })
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(TIME_TO_REVOKE.into()), HTTP_BUCKETS)
            })
            .expect("bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if ::metrics::set_global_recorder(recorder).is_err() {
            // Only an embedder that installed its own recorder gets here: ours stays empty.
            tracing::warn!("another metrics recorder is installed; /metrics will be empty");
        }
        describe();
        // Series without labels are shown from the start, at zero.
        counter!(REDIS_ERRORS).increment(0);
        counter!(SLACK_RATE_LIMITED).increment(0);
        gauge!(WAITERS).increment(0.0);
        gauge!(PENDING_ACTIONS).increment(0.0);
        gauge!(ACTIVE_WINDOWS).increment(0.0);
        handle
    })
}

fn describe() {
    describe_counter!(
        ACTIONS_CREATED,
        Unit::Count,
        "Actions created, by client and matching rule"
    );
    describe_counter!(
        DECISIONS,
        Unit::Count,
        "Actions that left pending, by outcome and by what decided (slack, policy, admin, timer, cancel)"
    );
    describe_gauge!(
        PENDING_ACTIONS,
        Unit::Count,
        "Actions pending in the store (all replicas), sampled by the scheduler"
    );
    describe_histogram!(
        TIME_TO_DECISION,
        Unit::Seconds,
        "From creation to the decision, by outcome (0 for policy decisions)"
    );
    describe_gauge!(
        WAITERS,
        Unit::Count,
        "Long-polls waiting on a decision in this process"
    );
    describe_counter!(
        ESCALATIONS,
        Unit::Count,
        "Escalation stages reached, by stage number"
    );
    describe_counter!(
        SLACK_API_CALLS,
        Unit::Count,
        "Slack Web API calls (retries included in one call), by method and result"
    );
    describe_counter!(
        SLACK_RATE_LIMITED,
        Unit::Count,
        "Slack answers that were rate limits (HTTP 429 or `ratelimited`)"
    );
    describe_counter!(
        CALLBACKS,
        Unit::Count,
        "Decision callback attempts, by result (delivered, retry, failed)"
    );
    describe_counter!(
        REDIS_ERRORS,
        Unit::Count,
        "Redis commands that failed (the store answered 503 or a worker retried)"
    );
    describe_counter!(
        HTTP_REQUESTS,
        Unit::Count,
        "HTTP requests, by route template and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP request latency, by route template"
    );
    describe_gauge!(
        ACTIVE_WINDOWS,
        Unit::Count,
        "Access windows approved and not yet ended (all replicas), counted at each scrape"
    );
    describe_counter!(
        WINDOW_USES,
        Unit::Count,
        "Uses of access windows' grants (`verify` with `use`), by outcome (valid, or the refusal)"
    );
    describe_counter!(
        WINDOWS_ENDED,
        Unit::Count,
        "Access windows that ended, by how (expired, revoked)"
    );
    describe_histogram!(
        TIME_TO_REVOKE,
        Unit::Seconds,
        "From a revocation's request to its being in force on every replica (stored and its end recorded)"
    );
}

/// The Prometheus text exposition of every metric of the process.
pub fn render() -> String {
    let handle = install();
    handle.run_upkeep();
    handle.render()
}

/// What decided an action: the `by` label of [`DECISIONS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    /// Votes in Slack.
    Slack,
    /// A rule that approves or denies at once.
    Policy,
    /// A break-glass decision by an admin client.
    Admin,
    /// The expiry deadline.
    Timer,
    /// The creating client withdrew it.
    Cancel,
}

impl By {
    pub fn as_str(self) -> &'static str {
        match self {
            By::Slack => "slack",
            By::Policy => "policy",
            By::Admin => "admin",
            By::Timer => "timer",
            By::Cancel => "cancel",
        }
    }
}

/// A new action (not an idempotent repeat). Client ids and rule names come from the
/// policy file, so they are a small set the operator chose.
pub fn action_created(client: &str, rule: &str) {
    counter!(ACTIONS_CREATED, "client" => client.to_owned(), "rule" => rule.to_owned())
        .increment(1);
}

/// An action left pending with `outcome` (its status), decided by `by`, `time_to_decision`
/// after it was created: counts the decision and observes its time to decision (0 for a
/// policy decision, which is made at creation).
pub fn decided(outcome: &'static str, by: By, time_to_decision: Duration) {
    counter!(DECISIONS, "outcome" => outcome, "by" => by.as_str()).increment(1);
    let seconds = match by {
        By::Policy => 0.0,
        _ => time_to_decision.as_secs_f64(),
    };
    histogram!(TIME_TO_DECISION, "outcome" => outcome).record(seconds);
}

/// A long-poll started waiting in this process. Counted up and down (not sampled): waiters
/// are per process, so the gauge is exact.
pub fn waiter_added() {
    gauge!(WAITERS).increment(1.0);
}

/// A long-poll stopped waiting (answered, timed out, or the caller went away).
pub fn waiter_removed() {
    gauge!(WAITERS).decrement(1.0);
}

/// The pending actions of every replica, as last counted in the store (the scheduler
/// samples it on each step).
pub fn pending_actions(count: u64) {
    gauge!(PENDING_ACTIONS).set(count as f64);
}

/// Escalation stage `stage` (from 1) was reached. Stages are numbered by the rule, so few.
pub fn escalation(stage: u32) {
    counter!(ESCALATIONS, "stage" => stage.to_string()).increment(1);
}

/// The Web API methods Greenlight calls; any other is counted as `other`.
const SLACK_METHODS: &[&str] = &[
    "auth.test",
    "chat.getPermalink",
    "chat.postEphemeral",
    "chat.postMessage",
    "chat.update",
    "conversations.open",
    "usergroups.list",
    "usergroups.users.list",
    "users.lookupByEmail",
    "views.open",
    "response_url",
];

/// How a Slack call ended, after its retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlackResult {
    Ok,
    /// `ok:false` (or an answer that is not a Web API answer).
    Error,
    RateLimited,
    /// A non-2xx answer.
    Http,
    /// No answer: connection, TLS or timeout.
    Unreachable,
}

impl SlackResult {
    pub fn as_str(self) -> &'static str {
        match self {
            SlackResult::Ok => "ok",
            SlackResult::Error => "error",
            SlackResult::RateLimited => "rate_limited",
            SlackResult::Http => "http_error",
            SlackResult::Unreachable => "unreachable",
        }
    }
}

/// One Slack call (`method` is a Web API method or `response_url`) ended with `result`.
pub fn slack_call(method: &str, result: impl Into<SlackResult>) {
    let method = SLACK_METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other");
    counter!(SLACK_API_CALLS, "method" => method, "result" => result.into().as_str()).increment(1);
}

/// Slack answered one attempt with a rate limit.
pub fn slack_rate_limited() {
    counter!(SLACK_RATE_LIMITED).increment(1);
}

/// How one decision callback attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackResult {
    Delivered,
    /// Failed for now; another attempt is scheduled.
    Retry,
    /// Failed for good (refused, or retried for a day), or could not be sent at all.
    Failed,
}

pub fn callback(result: CallbackResult) {
    let result = match result {
        CallbackResult::Delivered => "delivered",
        CallbackResult::Retry => "retry",
        CallbackResult::Failed => "failed",
    };
    counter!(CALLBACKS, "result" => result).increment(1);
}

/// A Redis command failed.
pub fn redis_error() {
    counter!(REDIS_ERRORS).increment(1);
}

/// An HTTP request was answered. `route` is the matched route template (`/v1/actions/{id}`),
/// or `unmatched`: never the raw path, which carries ids.
pub fn http_request(route: &str, status: u16, elapsed: Duration) {
    let route = route.to_owned();
    counter!(HTTP_REQUESTS, "route" => route.clone(), "status" => status.to_string()).increment(1);
    histogram!(HTTP_DURATION, "route" => route).record(elapsed.as_secs_f64());
}

/// The access windows in force on every replica, counted when `/metrics` is scraped.
pub fn active_windows(count: usize) {
    gauge!(ACTIVE_WINDOWS).set(count as f64);
}

/// One use of a window's grant: valid (`None`), or refused for `rejection`.
pub fn window_use(rejection: Option<GrantRejection>) {
    let outcome = match rejection {
        None => "valid",
        Some(GrantRejection::Expired) => "expired",
        Some(GrantRejection::BadSignature) => "bad_signature",
        Some(GrantRejection::WrongAudience) => "wrong_audience",
        Some(GrantRejection::WrongScope) => "wrong_scope",
        Some(GrantRejection::AlreadyUsed) => "already_used",
        Some(GrantRejection::Revoked) => "revoked",
    };
    counter!(WINDOW_USES, "outcome" => outcome).increment(1);
}

/// A window ended (recorded once, whichever replica ended it).
pub fn window_ended(how: WindowEnd) {
    counter!(WINDOWS_ENDED, "how" => how.as_str()).increment(1);
}

/// A revocation took `elapsed` from its request to being in force.
pub fn revoked(elapsed: Duration) {
    histogram!(TIME_TO_REVOKE).record(elapsed.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_slack_methods_are_other() {
        install();
        slack_call("chat.postMessage", SlackResult::Ok);
        slack_call("act_01KAQ3Z7X0M9J8W2V5T4R6Y1NB", SlackResult::Error);
        let text = render();
        assert!(text.contains(
            r#"greenlight_slack_api_calls_total{method="chat.postMessage",result="ok"}"#
        ));
        assert!(
            text.contains(r#"greenlight_slack_api_calls_total{method="other",result="error"}"#)
        );
        assert!(!text.contains("act_"));
    }

    #[test]
    fn install_is_idempotent() {
        assert!(std::ptr::eq(install(), install()));
    }
}

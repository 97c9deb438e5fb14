//! What each client subcommand does, on top of [`crate::client::Client`].

use super::{DecideArgs, RequestArgs, RequestFields, exit};
use crate::app::{Application, stop_on_signal};
use crate::client::Client;
use crate::config::Settings;
use crate::domain::{Action, ActionId, ActionRequest, Outcome, Requester, Status, rfc3339};

impl RequestFields {
    pub(super) fn into_request(self) -> ActionRequest {
        ActionRequest {
            action: self.action,
            resource: self.resource,
            requester: Requester {
                id: self.requester,
                email: self.email,
                slack_user_id: self.slack_user,
                name: self.name,
            },
            reason: self.reason,
            context: (!self.context.is_empty()).then(|| self.context.into_iter().collect()),
            ttl_seconds: self.ttl.map(|t| t.as_secs()),
            callback_url: self.callback_url,
            binding: None,
            window_seconds: None,
            audience: None,
        }
    }
}
use std::process::ExitCode;
use std::time::Duration;

pub async fn serve(settings: Settings) -> ExitCode {
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("cannot start: {e:#}");
            eprintln!("greenlight: cannot start: {e:#}");
            return ExitCode::from(exit::ERROR);
        }
    };
    tokio::spawn(stop_on_signal(app.shutdown_token()));
    match app.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("server failed: {e:#}");
            ExitCode::from(exit::ERROR)
        }
    }
}

/// The exit code that tells a script what happened.
pub fn exit_code(status: Status) -> u8 {
    match status {
        Status::Approved => exit::APPROVED,
        Status::Denied => exit::DENIED,
        Status::Expired => exit::EXPIRED,
        Status::Cancelled => exit::CANCELLED,
        Status::Pending => exit::PENDING,
    }
}

pub(super) fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("greenlight: {e}");
    ExitCode::from(exit::ERROR)
}

/// The client from the environment and the action id argument, or the exit to take.
pub(super) fn client_and_id(id: &str) -> Result<(Client, ActionId), ExitCode> {
    let client = Client::from_env().map_err(fail)?;
    let id = id
        .parse()
        .map_err(|_| fail(format!("`{id}` is not an action id (act_...)")))?;
    Ok((client, id))
}

/// A line a person reads; `--json` prints the action object instead.
pub(super) fn print(action: &Action, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(action).expect("actions serialize")
        );
        return;
    }
    println!("{}", describe(action));
}

/// One line about an action: its id, status, what and on what, and how it was decided.
pub(super) fn describe(action: &Action) -> String {
    let mut line = format!(
        "{} {} {} on {}",
        action.id, action.status, action.action, action.resource
    );
    match &action.decision {
        None => line.push_str(&format!(
            " (rule {}, {} approval(s) needed, expires {})",
            action.policy.rule,
            action.policy.min_approvals,
            rfc3339::format(&action.expires_at)
        )),
        Some(d) => {
            if let Some(rule) = &d.by_policy {
                line.push_str(&format!(" by policy rule {rule}"));
            }
            if !d.decided_by.is_empty() {
                line.push_str(&format!(" by {}", d.decided_by.join(", ")));
            }
            if let Some(reason) = &d.reason {
                line.push_str(&format!(": {reason}"));
            }
        }
    }
    line
}

fn finish(action: &Action, json: bool) -> ExitCode {
    print(action, json);
    ExitCode::from(exit_code(action.status))
}

/// [`finish`] for an action read from the server: exit 0 means approved, so an approval
/// counts only when its grant verifies; otherwise it is an error.
async fn finish_checked(client: &Client, action: &Action, json: bool) -> ExitCode {
    if action.status == Status::Approved
        && let Err(e) = client.verify_grant(action).await
    {
        return fail(e);
    }
    finish(action, json)
}

pub async fn request(args: RequestArgs) -> ExitCode {
    let client = match Client::from_env() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let request = args.fields.into_request();
    let action = match client.request(&request).await {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    // Without --wait a pending action exits 13, never 0: 0 means approved, and scripts
    // run `greenlight request ... && do-it`.
    if !args.wait || !action.is_pending() {
        return finish_checked(&client, &action, args.json).await;
    }
    if !args.json {
        print(&action, false);
        eprintln!(
            "waiting for a decision on {} (up to {})...",
            action.id,
            humantime::format_duration(wait_bound(args.timeout, &action, chrono::Utc::now()))
        );
    }
    wait_for(&client, &action.id, args.timeout, args.json).await
}

/// How long a wait can last, as a person reads it: the timeout, or the time until the
/// action expires when that comes first (in whole seconds, rounded up).
pub(super) fn wait_bound(
    timeout: Duration,
    action: &Action,
    now: chrono::DateTime<chrono::Utc>,
) -> Duration {
    let left_ms = (action.expires_at - now).num_milliseconds().max(0);
    let left = Duration::from_secs(u64::try_from(left_ms).unwrap_or(0).div_ceil(1000));
    timeout.min(left)
}

async fn wait_for(client: &Client, id: &ActionId, timeout: Duration, json: bool) -> ExitCode {
    match client.wait(id, timeout).await {
        Ok(action) => finish(&action, json),
        Err(e) => fail(e),
    }
}

pub async fn pending(limit: usize, json: bool) -> ExitCode {
    let client = match Client::from_env() {
        Ok(client) => client,
        Err(e) => return fail(e),
    };
    match client.pending(limit).await {
        Ok(actions) => {
            for action in &actions {
                if json {
                    println!(
                        "{}",
                        serde_json::to_string(action).expect("actions serialize")
                    );
                } else {
                    println!("{}", describe(action));
                }
            }
            if actions.is_empty() && !json {
                eprintln!("no pending actions");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

pub async fn status(id: &str, json: bool) -> ExitCode {
    let (client, id) = match client_and_id(id) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    match client.get(&id).await {
        Ok(action) => finish_checked(&client, &action, json).await,
        Err(e) => fail(e),
    }
}

pub async fn wait(id: &str, timeout: Duration, json: bool) -> ExitCode {
    let (client, id) = match client_and_id(id) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    wait_for(&client, &id, timeout, json).await
}

pub async fn decide(args: DecideArgs) -> ExitCode {
    let (client, id) = match client_and_id(&args.id) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    let outcome = match (args.outcome.approve, args.outcome.deny) {
        (true, false) => Outcome::Approved,
        (false, true) => Outcome::Denied,
        // clap requires exactly one; never guess a decision.
        _ => {
            eprintln!("greenlight: decide needs exactly one of --approve and --deny");
            return ExitCode::from(exit::USAGE);
        }
    };
    let by = args
        .by
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".into());
    match client
        .decide(&id, outcome, &by, args.reason.as_deref())
        .await
    {
        Ok(action) => finish(&action, args.json),
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_lasts_until_the_timeout_or_the_expiry_whichever_is_first() {
        let now = chrono::Utc::now();
        let mut action: Action = serde_json::from_value(serde_json::json!({
            "id": "act_01JD8Y3M6QW9T3V7K2X5N4B1C0", "status": "pending",
            "action": "db.drop_table", "resource": "postgres://prod/users",
            "requester": {"id": "u-123"}, "reason": null, "context": {}, "client": "app",
            "policy": {"rule": "r", "min_approvals": 1, "approvers": []}, "votes": [],
            "created_at": "2026-11-22T10:00:00Z", "expires_at": "2026-11-22T10:10:00Z",
            "decision": null
        }))
        .unwrap();
        action.expires_at = now + chrono::Duration::milliseconds(9_400);
        let fifteen = Duration::from_secs(900);
        assert_eq!(wait_bound(fifteen, &action, now), Duration::from_secs(10));
        assert_eq!(
            wait_bound(Duration::from_secs(5), &action, now),
            Duration::from_secs(5)
        );
        action.expires_at = now - chrono::Duration::seconds(1);
        assert_eq!(wait_bound(fifteen, &action, now), Duration::ZERO);
    }
}

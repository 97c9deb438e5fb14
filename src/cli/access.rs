//! `greenlight access request|list|revoke`: access windows from a terminal or a script.
//! `request` asks and waits as `gate` does, and hands over the grant, on its own line for
//! `eval` with `--export`; `list` shows the windows in force; `revoke` ends one at once.

use super::commands::{client_and_id, describe, exit_code, fail};
use super::gate::{Interrupt, approval, submit};
use super::{RequestFields, exit, parse_duration};
use crate::client::Client;
use crate::domain::{Action, Status, Window, rfc3339};
use crate::domain::{MAX_WINDOW_SECONDS, MIN_WINDOW_SECONDS};
use clap::{Args, Subcommand};
use std::process::ExitCode;
use std::time::Duration;

/// The variable `--export` sets: the same name `gate` gives its command.
const GRANT_ENV: &str = super::gate::GRANT_ENV;

#[derive(Subcommand)]
pub enum AccessCommand {
    /// Ask for an access window: once approved, a grant that covers the action and resource
    /// (patterns when they end in `*`, e.g. `db.*`, `postgres://prod/*`) for the length of
    /// --for, used as often as needed. Exit 0 approved (the grant is printed), 10 denied,
    /// 11 expired, 12 cancelled, 13 still pending, 1 error (e.g. the rule allows no window).
    #[command(after_help = super::CLIENT_ENV)]
    Request(Box<RequestArgs>),
    /// List the access windows in force (this client's; all of them for an admin or auditor
    /// client), soonest to end first.
    #[command(after_help = super::CLIENT_ENV)]
    List {
        /// Print the action objects as JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// End an access window at once, on every replica (the client that requested it, or an
    /// admin client); prints how it ended and how many times it was used.
    #[command(after_help = super::CLIENT_ENV)]
    Revoke {
        /// The window's action id (`act_…`).
        id: String,
        /// Why, recorded in the server's log.
        #[arg(long)]
        reason: Option<String>,
        /// Print the action object as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct RequestArgs {
    #[command(flatten)]
    fields: RequestFields,
    /// How long the access lasts once approved, e.g. `30m`, `1h`, `4h` (1m to 24h; the
    /// matching rule's `max_window` caps it).
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_window)]
    length: Duration,
    /// The client id of the enforcement point that will accept the grant (a proxy, a
    /// service); this client when absent.
    #[arg(long)]
    audience: Option<String>,
    /// Block until the request is decided (or --timeout passes: then it is withdrawn and
    /// the exit is 13); Ctrl-C while waiting withdraws it too.
    #[arg(long)]
    wait: bool,
    /// With --wait: how long to wait for a decision.
    #[arg(long, value_parser = parse_duration, default_value = "15m")]
    timeout: Duration,
    /// Once approved, print only `export GREENLIGHT_GRANT=<token>` on standard output, for
    /// `eval "$(greenlight access request ... --wait --export)"`; everything else goes to
    /// standard error.
    #[arg(long, conflicts_with = "json")]
    export: bool,
    /// Print the action object as JSON (with the grant once approved).
    #[arg(long)]
    json: bool,
}

fn parse_window(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    let range = MIN_WINDOW_SECONDS..=MAX_WINDOW_SECONDS;
    if d.subsec_nanos() != 0 || !range.contains(&d.as_secs()) {
        return Err(format!(
            "`{s}`: a window lasts whole seconds from 1m to 24h (e.g. 30m, 1h, 4h)"
        ));
    }
    Ok(d)
}

impl AccessCommand {
    pub async fn run(self) -> ExitCode {
        match self {
            AccessCommand::Request(args) => request(*args).await,
            AccessCommand::List { json } => list(json).await,
            AccessCommand::Revoke { id, reason, json } => {
                revoke(&id, reason.as_deref(), json).await
            }
        }
    }
}

/// Where `request` writes: a person reads standard output, unless it is kept for the one
/// `export` line (`eval` runs whatever it holds) or for the JSON object.
struct Out {
    export: bool,
    json: bool,
}

impl Out {
    /// A line for people: on standard output unless it is kept for `export` or JSON.
    fn say(&self, line: &str) {
        if self.export || self.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }

    /// The action as it stands, and the exit its status gives.
    fn finish(&self, action: &Action) -> ExitCode {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(action).expect("actions serialize")
            );
        } else {
            self.say(&line(action));
        }
        ExitCode::from(exit_code(action.status))
    }

    /// An approved window (whose grant verified): its line, and the grant.
    fn granted(&self, action: &Action) -> ExitCode {
        let token = match action.decision.as_ref().and_then(|d| d.grant.as_ref()) {
            Some(grant) if !grant.token.is_empty() => grant.token.as_str(),
            _ => return fail(format!("{} is approved but carries no grant", action.id)),
        };
        if self.json {
            return self.finish(action);
        }
        self.say(&line(action));
        if self.export {
            // `eval` runs this line: only a compact JWT's characters may reach it.
            if !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return fail("the grant is not a compact token; not exporting it");
            }
            println!("export {GRANT_ENV}={token}");
        } else {
            println!("grant: {token}");
            let audience = action.window.as_ref().map_or("", |w| w.audience.as_str());
            eprintln!(
                "greenlight: send it as the `Greenlight-Grant` header to `{audience}`, or ask \
                 with --export to set {GRANT_ENV}"
            );
        }
        ExitCode::from(exit::APPROVED)
    }
}

async fn request(args: RequestArgs) -> ExitCode {
    let client = match Client::from_env() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    // As for gate: from here on Ctrl-C while waiting withdraws the request.
    let mut stop = match Interrupt::new() {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot handle signals: {e}")),
    };
    let out = Out {
        export: args.export,
        json: args.json,
    };
    let mut request = args.fields.into_request();
    request.window_seconds = Some(args.length.as_secs());
    request.audience = args.audience;
    let action = match submit(&client, &request, &mut stop).await {
        Ok(a) => a,
        Err(code) => return code,
    };
    match action.status {
        // Without --wait a pending request exits 13, never 0: 0 means the grant is here.
        Status::Pending if !args.wait => out.finish(&action),
        Status::Pending | Status::Approved => {
            if action.is_pending() && !args.json {
                out.say(&line(&action));
            }
            match approval(&client, &action, args.timeout, "access request", &mut stop).await {
                Ok(approved) => out.granted(&approved),
                Err(code) => code,
            }
        }
        // Decided by the policy at once.
        _ => out.finish(&action),
    }
}

async fn list(json: bool) -> ExitCode {
    let client = match Client::from_env() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let windows = match client.active_windows().await {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    if json {
        for action in &windows {
            println!(
                "{}",
                serde_json::to_string(action).expect("actions serialize")
            );
        }
    } else if windows.is_empty() {
        eprintln!("no access windows in force");
    } else {
        print!("{}", table(&windows));
    }
    ExitCode::SUCCESS
}

async fn revoke(id: &str, reason: Option<&str>, json: bool) -> ExitCode {
    let (client, id) = match client_and_id(id) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    match client.revoke(&id, reason).await {
        Ok(action) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&action).expect("actions serialize")
            );
            ExitCode::SUCCESS
        }
        Ok(action) => {
            println!("{}", revoked(&action));
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `act_… revoked: access to db.* on postgres://prod/* for u-123 ended (revoked) after 3 uses`
fn revoked(action: &Action) -> String {
    let what = format!(
        "{} on {} for {}",
        action.action, action.resource, action.requester.id
    );
    match &action.window {
        Some(w) => format!(
            "{} revoked: access to {what} ended ({}) after {}",
            action.id,
            w.ended.map_or("revoked", |e| e.as_str()),
            uses(w.uses)
        ),
        None => format!(
            "{} revoked: the grant of {what} no longer verifies",
            action.id
        ),
    }
}

/// The action's line (as `status` prints it), with its window.
fn line(action: &Action) -> String {
    match &action.window {
        Some(w) => format!("{}; {}", describe(action), window(w)),
        None => describe(action),
    }
}

/// `access for 1h to db-proxy, until 2026-11-22T11:00:00Z, 3 uses`
fn window(w: &Window) -> String {
    let length = humantime::format_duration(Duration::from_secs(w.seconds));
    let mut out = format!("access for {length} to {}", w.audience);
    match (w.ended, w.ends_at) {
        (Some(end), _) => out.push_str(&format!(
            ", ended ({}) after {}",
            end.as_str(),
            uses(w.uses)
        )),
        (None, Some(ends)) => out.push_str(&format!(
            ", until {}, {}",
            rfc3339::format(&ends),
            uses(w.uses)
        )),
        (None, None) => out.push_str(", from its approval"),
    }
    out
}

fn uses(n: u64) -> String {
    match n {
        1 => "1 use".into(),
        n => format!("{n} uses"),
    }
}

/// The windows as a table a person reads: a header and one aligned row each.
fn table(windows: &[Action]) -> String {
    let mut rows = vec![[
        "ID".to_owned(),
        "ACTION".into(),
        "RESOURCE".into(),
        "REQUESTER".into(),
        "ENDS AT".into(),
        "USES".into(),
    ]];
    for a in windows {
        let (ends, uses) = a.window.as_ref().map_or((String::new(), 0), |w| {
            (
                w.ends_at.map(|t| rfc3339::format(&t)).unwrap_or_default(),
                w.uses,
            )
        });
        rows.push([
            a.id.to_string(),
            a.action.clone(),
            a.resource.clone(),
            a.requester.id.clone(),
            ends,
            uses.to_string(),
        ]);
    }
    let mut widths = [0; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window_action() -> Action {
        serde_json::from_value(serde_json::json!({
            "id": "act_01JD8Y3M6QW9T3V7K2X5N4B1C0", "status": "approved",
            "action": "db.*", "resource": "postgres://prod/*",
            "requester": {"id": "u-123"}, "reason": "INC-42", "context": {}, "client": "ops",
            "policy": {"rule": "db", "min_approvals": 1, "approvers": []}, "votes": [],
            "created_at": "2026-11-22T10:00:00Z", "expires_at": "2026-11-22T10:15:00Z",
            "window": {"seconds": 3600, "audience": "db-proxy",
                "starts_at": "2026-11-22T10:01:00Z", "ends_at": "2026-11-22T11:01:00Z",
                "uses": 3, "ended": null},
            "decision": {"outcome": "approved", "decided_at": "2026-11-22T10:01:00Z",
                "decided_by": ["U0BOB"], "by_policy": null, "reason": null, "grant": null}
        }))
        .unwrap()
    }

    #[test]
    fn a_window_reads_as_its_length_audience_end_and_uses() {
        let mut a = window_action();
        let w = a.window.as_mut().unwrap();
        assert_eq!(
            window(w),
            "access for 1h to db-proxy, until 2026-11-22T11:01:00Z, 3 uses"
        );
        w.ended = Some(crate::domain::WindowEnd::Revoked);
        w.uses = 1;
        assert_eq!(
            window(w),
            "access for 1h to db-proxy, ended (revoked) after 1 use"
        );
        w.starts_at = None;
        w.ends_at = None;
        w.ended = None;
        assert_eq!(window(w), "access for 1h to db-proxy, from its approval");
    }

    #[test]
    fn the_table_aligns_its_columns() {
        let mut other = window_action();
        other.resource = "postgres://prod/orders".into();
        other.requester.id = "bob".into();
        let t = table(&[window_action(), other]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID  "), "{t}");
        let column = |l: &str| {
            l.find("REQUESTER")
                .or_else(|| l.find("u-123"))
                .or(l.find("bob"))
        };
        assert_eq!(column(lines[0]), column(lines[1]));
        assert_eq!(column(lines[1]), column(lines[2]));
        assert!(lines[1].ends_with("  3"), "{t}");
    }

    #[test]
    fn a_window_is_whole_seconds_from_a_minute_to_a_day() {
        assert_eq!(parse_window("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_window("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_window("24h").unwrap(), Duration::from_secs(86_400));
        for bad in ["59s", "25h", "90500ms", "soon"] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
    }
}

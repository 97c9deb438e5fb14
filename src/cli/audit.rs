//! `greenlight audit export|verify`: the audit trail as JSON lines, and its hash chain
//! checked, from a file or live through the API.

use super::exit;
use crate::audit::{Broken, GENESIS, MAX_LIMIT, Verified, Verifier, verify_lines};
use crate::client::{Client, ClientError};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Write the audit trail as JSON lines, oldest first, one entry as `GET /v1/audit`
    /// shows it per line (client settings from GREENLIGHT_URL, GREENLIGHT_CLIENT_ID,
    /// GREENLIGHT_CLIENT_SECRET; the client needs the auditor or admin role).
    #[command(after_help = crate::cli::CLIENT_ENV)]
    Export(ExportArgs),
    /// Check the hash chain of an export (exit 0 and `ok: N entries, head HASH`), or of the
    /// live trail with --live; exit 1 with `broken at line L (entry ID): reason` when an
    /// entry was changed, removed, added or reordered. The first entry's `prev` is trusted
    /// (the trail may have been trimmed, or exported --since).
    #[command(after_help = crate::cli::CLIENT_ENV)]
    Verify(VerifyArgs),
}

#[derive(Args)]
pub struct ExportArgs {
    /// Start at the first entry at or after this time (RFC 3339, e.g.
    /// 2026-11-22T00:00:00Z) and keep everything after it, so the export stays verifiable.
    #[arg(long, value_parser = parse_time)]
    since: Option<DateTime<Utc>>,
    /// Only this action's entries. Such an export skips the entries in between, so its
    /// chain cannot be checked with `verify`.
    #[arg(long)]
    action_id: Option<String>,
    /// Write here instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// An export made with `greenlight audit export` (without --action-id).
    #[arg(required_unless_present = "live", conflicts_with = "live")]
    file: Option<PathBuf>,
    /// Fetch the whole trail (as far as retention kept it) through the API and check it.
    #[arg(long)]
    live: bool,
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{s}`: {e} (use RFC 3339, e.g. 2026-11-22T00:00:00Z)"))
}

/// Stream ids are the append time in unix ms (Redis's clock), entry times this host's: a
/// `--since` seek starts this much earlier and then skips by the entries' own time.
const CLOCK_MARGIN_MS: i64 = 5 * 60 * 1000;

impl AuditCommand {
    pub fn run(self) -> ExitCode {
        match self {
            AuditCommand::Export(args) => runtime().block_on(export(args)),
            AuditCommand::Verify(VerifyArgs { file: Some(f), .. }) => verify_file(&f),
            AuditCommand::Verify(_) => runtime().block_on(verify_live()),
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("greenlight: {e}");
    ExitCode::from(exit::ERROR)
}

async fn export(args: ExportArgs) -> ExitCode {
    let client = match Client::from_env() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => match File::create(path) {
            Ok(f) => Box::new(BufWriter::new(f)),
            Err(e) => return fail(format!("cannot write {}: {e}", path.display())),
        },
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let mut after = args.since.map(|t| {
        let ms = (t.timestamp_millis() - CLOCK_MARGIN_MS).max(1);
        format!("{}-{}", ms - 1, u64::MAX)
    });
    let mut started = args.since.is_none();
    let mut written = 0u64;
    loop {
        let page = match client
            .audit(after.as_deref(), MAX_LIMIT, args.action_id.as_deref())
            .await
        {
            Ok(page) => page,
            Err(e) => return fail(e),
        };
        for entry in &page.entries {
            let line = entry.get();
            if !started {
                started = args.since.is_none_or(|since| !before(line, since));
                if !started {
                    continue;
                }
            }
            if let Err(e) = writeln!(out, "{line}") {
                return fail(format!("cannot write the export: {e}"));
            }
            written += 1;
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if let Err(e) = out.flush() {
        return fail(format!("cannot write the export: {e}"));
    }
    eprintln!("exported {written} entries");
    ExitCode::SUCCESS
}

/// Whether the entry's `time` is before `since` (an entry without a readable time is not).
fn before(line: &str, since: DateTime<Utc>) -> bool {
    #[derive(serde::Deserialize)]
    struct Time {
        time: String,
    }
    serde_json::from_str::<Time>(line)
        .ok()
        .and_then(|t| DateTime::parse_from_rfc3339(&t.time).ok())
        .is_some_and(|t| t < since)
}

fn verify_file(path: &std::path::Path) -> ExitCode {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return fail(format!("cannot read {}: {e}", path.display())),
    };
    match verify_lines(BufReader::new(file)) {
        Err(e) => fail(format!("cannot read {}: {e}", path.display())),
        Ok(Ok(verified)) => ok(&verified),
        Ok(Err(broken)) => {
            println!("{}", broken.describe("line"));
            ExitCode::from(exit::ERROR)
        }
    }
}

async fn verify_live() -> ExitCode {
    let client = match Client::from_env() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match fetch_and_verify(&client).await {
        Err(e) => fail(e),
        Ok(Ok(verified)) => ok(&verified),
        Ok(Err(broken)) => {
            println!("{}", broken.describe("position"));
            ExitCode::from(exit::ERROR)
        }
    }
}

/// Pages through the whole trail and checks it as it goes.
pub async fn fetch_and_verify(client: &Client) -> Result<Result<Verified, Broken>, ClientError> {
    let mut verifier = Verifier::new();
    let mut after: Option<String> = None;
    loop {
        let page = client.audit(after.as_deref(), MAX_LIMIT, None).await?;
        for entry in &page.entries {
            if let Err(broken) = verifier.push_line(entry.get()) {
                return Ok(Err(broken));
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(Ok(verifier.finish())),
        }
    }
}

fn ok(verified: &Verified) -> ExitCode {
    println!("ok: {} entries, head {}", verified.entries, verified.head);
    if let Some(prev) = verified.first_prev.as_deref().filter(|p| *p != GENESIS) {
        eprintln!(
            "note: the first entry follows {prev}, an entry not in this run (trimmed by \
             retention, or before --since); the chain is checked from there on"
        );
    }
    ExitCode::SUCCESS
}

//! `greenlight policy check|explain`: lint a policy file and show which rule a request hits;
//! `greenlight oncall`: who holds a rotation at some instant.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde_json::{Map, Value};

use crate::policy::{MatchInput, Policy, format_instant};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file, reporting every error; warns about clients whose secret
    /// variable is unset.
    #[command(
        after_help = "Reads the environment variable each client's `secret_env` names, only to warn when it is unset."
    )]
    Check {
        /// The policy file (TOML).
        file: PathBuf,
    },
    /// Show which rule a request would match, what it requires, and why earlier rules missed.
    Explain {
        /// The policy file (TOML).
        file: PathBuf,
        /// The request's action, e.g. `deploy.prod`.
        #[arg(long)]
        action: String,
        /// The request's resource, e.g. `svc/payments`.
        #[arg(long)]
        resource: String,
        /// The requesting client's id (for rules with `match.client`).
        #[arg(long, default_value = "")]
        client: String,
        /// `key=value`; numbers and booleans are compared as JSON, anything else as a string.
        #[arg(long = "context", value_parser = parse_kv)]
        context: Vec<(String, String)>,
    },
}

impl PolicyCommand {
    pub fn run(self) -> ExitCode {
        match self {
            PolicyCommand::Check { file } => {
                let Some(policy) = load(&file) else {
                    return ExitCode::FAILURE;
                };
                for c in &policy.clients {
                    if std::env::var_os(&c.secret_env).is_none() {
                        eprintln!(
                            "warning: client {:?}: environment variable {} is not set",
                            c.id, c.secret_env
                        );
                    }
                }
                println!(
                    "ok: {} rules, {} clients, {} on-call rotations",
                    policy.rules.len(),
                    policy.clients.len(),
                    policy.oncall.len()
                );
                for rule in &policy.rules {
                    if let Some(max) = rule.max_window {
                        println!(
                            "rule {:?}: access windows up to {}",
                            rule.name,
                            crate::policy::duration::format(max)
                        );
                    }
                }
                ExitCode::SUCCESS
            }
            PolicyCommand::Explain {
                file,
                action,
                resource,
                client,
                context,
            } => {
                let Some(policy) = load(&file) else {
                    return ExitCode::FAILURE;
                };
                let context = context_map(context);
                let input = MatchInput {
                    action: &action,
                    resource: &resource,
                    client: &client,
                    context: &context,
                };
                print!("{}", policy.explain(&input));
                ExitCode::SUCCESS
            }
        }
    }
}

/// `greenlight oncall NAME [--at TIME] [--policy FILE]`.
#[derive(Debug, Args)]
pub struct OncallArgs {
    /// The `[[oncall]]` rotation's name.
    pub name: String,
    /// RFC 3339 instant to ask about, e.g. 2026-11-20T12:00:00Z; defaults to now.
    #[arg(long, value_name = "TIME", value_parser = parse_instant)]
    pub at: Option<DateTime<Utc>>,
    /// The policy file defining the rotation.
    #[arg(long, value_name = "FILE", env = "GREENLIGHT_POLICY")]
    pub policy: Option<PathBuf>,
}

impl OncallArgs {
    pub fn run(self) -> ExitCode {
        match self.policy {
            Some(file) => oncall_command(&file, &self.name, self.at),
            None => {
                eprintln!(
                    "error: no policy file: pass --policy FILE or set GREENLIGHT_POLICY \
                     (on-call rotations are defined by [[oncall]] tables in it)"
                );
                ExitCode::from(super::exit::USAGE)
            }
        }
    }
}

/// Prints who is on call in rotation `name` at `at` (default now), when their shift began,
/// and the next hand-over. Exit 1 for an unreadable or invalid file or an unknown rotation.
pub fn oncall_command(file: &Path, name: &str, at: Option<DateTime<Utc>>) -> ExitCode {
    let Some(policy) = load(file) else {
        return ExitCode::FAILURE;
    };
    let Some(rotation) = policy.oncall(name) else {
        let known: Vec<&str> = policy.oncall.iter().map(|o| o.name.as_str()).collect();
        if known.is_empty() {
            eprintln!(
                "error: no on-call rotation named {name:?}: {} defines none",
                file.display()
            );
        } else {
            eprintln!(
                "error: no on-call rotation named {name:?} in {}; known: {}",
                file.display(),
                known.join(", ")
            );
        }
        return ExitCode::FAILURE;
    };
    let s = rotation.shift_at(at.unwrap_or_else(Utc::now));
    println!(
        "{name}: {} on call since {}; next hand-over {} to {}",
        s.person,
        format_instant(s.started),
        format_instant(s.ends),
        s.next_person
    );
    ExitCode::SUCCESS
}

fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{s}`: {e}; expected RFC 3339 such as 2026-11-20T12:00:00Z"))
}

fn load(file: &Path) -> Option<Policy> {
    Policy::load(file)
        .map_err(|e| e.each().iter().for_each(|e| eprintln!("error: {e}")))
        .ok()
}

/// Splits `key=value` at the first `=`.
pub fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

/// Values that read as JSON numbers or booleans are typed, so `--context rows=1200` matches a
/// rule's `rows = 1200`; everything else (including `null`) stays a string.
pub fn context_value(v: String) -> Value {
    match serde_json::from_str::<Value>(&v) {
        Ok(typed @ (Value::Number(_) | Value::Bool(_))) => typed,
        _ => Value::String(v),
    }
}

/// A `--context key=value` argument, typed as [`context_value`] does.
pub fn parse_context(s: &str) -> Result<(String, Value), String> {
    parse_kv(s).map(|(k, v)| (k, context_value(v)))
}

fn context_map(pairs: Vec<(String, String)>) -> Map<String, Value> {
    pairs
        .into_iter()
        .map(|(k, v)| (k, context_value(v)))
        .collect()
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;

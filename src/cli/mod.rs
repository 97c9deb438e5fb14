//! The `greenlight` command line: the server, and a client for scripts
//! and people, whose exit codes tell the outcome.

mod access;
pub mod audit;
mod commands;
mod gate;
mod pg_proxy;
mod policy;
mod progress;
mod proxy;
mod secret;

use crate::config::Settings;
use crate::telemetry::LogFormat;
use access::AccessCommand;
use audit::AuditCommand;
use clap::{Args, Parser, Subcommand};
use policy::{OncallArgs, PolicyCommand, parse_context};
use std::process::ExitCode;
use std::time::Duration;

/// What every client command reads from the environment (outside clap, in
/// `Client::from_env`), shown at the end of its `--help`.
pub const CLIENT_ENV: &str = "Environment:
  GREENLIGHT_URL               the server (default http://127.0.0.1:8080)
  GREENLIGHT_CLIENT_ID         this client's id in the policy (default local)
  GREENLIGHT_CLIENT_SECRET     its secret, whsec_... (required)
  GREENLIGHT_CLIENT_REDIS_URL  optional: wait for decisions on this Redis instead of long-polling
  GREENLIGHT_REDIS_PREFIX      the server's key prefix on that Redis (default greenlight)";

/// What `serve` reads besides its options.
const SERVE_ENV: &str = "Also read from the environment:
  each client's secret, from the variable its `secret_env` names in the policy file
    (GREENLIGHT_CLIENT_SECRET for the built-in policy)
  RUST_LOG  log filter (default info)";

/// The documented exit codes.
pub mod exit {
    pub const APPROVED: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const DENIED: u8 = 10;
    pub const EXPIRED: u8 = 11;
    pub const CANCELLED: u8 = 12;
    pub const PENDING: u8 = 13;
}

#[derive(Parser)]
#[command(
    name = "greenlight",
    version,
    about = "Just-in-time approval of dangerous actions",
    after_help = "Each command's --help names the environment variables it reads."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    #[command(after_help = SERVE_ENV)]
    Serve {
        #[command(flatten)]
        settings: Settings,
        /// Log lines as JSON (for collectors) or pretty (for a terminal).
        #[arg(
            long,
            env = "GREENLIGHT_LOG_FORMAT",
            value_enum,
            default_value = "pretty"
        )]
        log_format: LogFormat,
    },
    /// Ask for approval of an action (exit 0 approved, 10 denied, 11 expired, 12 cancelled, 13 still pending).
    #[command(after_help = CLIENT_ENV)]
    Request(RequestArgs),
    /// Run a command only once approved (with the grant in GREENLIGHT_GRANT); exits with the
    /// command's code, or 10 denied, 11 expired, 12 cancelled, 13 timed out, 1 error.
    #[command(after_help = CLIENT_ENV)]
    Gate(GateArgs),
    /// Reverse proxy in front of an HTTP API: requests matching routes.toml wait for approval.
    #[command(after_help = CLIENT_ENV)]
    Proxy(proxy::ProxyArgs),
    /// PostgreSQL wire proxy: statements matching the rules file wait for approval.
    #[command(after_help = CLIENT_ENV)]
    PgProxy(pg_proxy::PgProxyArgs),
    /// List pending actions with their ids (all of them for an admin or auditor client,
    /// the client's own otherwise).
    #[command(after_help = CLIENT_ENV)]
    Pending {
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: u16,
        /// Print the action objects as JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Show an action (exit code as for `request`).
    #[command(after_help = CLIENT_ENV)]
    Status {
        /// The action's id (`act_…`).
        id: String,
        /// Print the action object as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Wait for an action's decision (exit code as for `request`).
    #[command(after_help = CLIENT_ENV)]
    Wait {
        /// The action's id (`act_…`).
        id: String,
        /// How long to wait; then exit 13 with the action still pending, e.g. `90s`, `10m`.
        #[arg(long, value_parser = parse_duration, default_value = "15m")]
        timeout: Duration,
        /// Print the action object as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Decide an action yourself (break-glass; the client needs the admin role).
    #[command(after_help = CLIENT_ENV)]
    Decide(DecideArgs),
    /// Access windows: ask for access to actions and resources for a length of time, list
    /// the windows in force, revoke one.
    #[command(subcommand)]
    Access(AccessCommand),
    /// Lint a policy file or show which rule matches a request.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Show who is on call in a rotation of the policy file, and the next hand-over.
    Oncall(OncallArgs),
    /// Export the audit trail as JSON lines, or check its hash chain.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Keys for receivers: the `whsec_` key that verifies callbacks or escalation webhooks.
    #[command(subcommand)]
    Secret(secret::SecretCommand),
}

#[derive(Args)]
pub struct RequestArgs {
    #[command(flatten)]
    fields: RequestFields,
    /// Block until the action is decided (or --timeout passes).
    #[arg(long)]
    wait: bool,
    /// With --wait: how long to wait; then exit 13 with the action still pending.
    #[arg(long, value_parser = parse_duration, default_value = "15m")]
    timeout: Duration,
    /// Print the action object as JSON.
    #[arg(long)]
    json: bool,
}

/// What `request` and `gate` ask for: the fields of an action request.
#[derive(Args)]
pub struct RequestFields {
    /// What is to be done, e.g. `deploy.prod`, `db.drop_table` (policy rules match on it).
    #[arg(long)]
    action: String,
    /// What it is done to, e.g. `svc/payments` (policy rules match on it).
    #[arg(long)]
    resource: String,
    /// The requester's id.
    #[arg(long, env = "GREENLIGHT_REQUESTER")]
    requester: String,
    /// The requester's email (to find their Slack account, and so they cannot approve
    /// themselves).
    #[arg(long)]
    email: Option<String>,
    /// The requester's name, as approvers see it.
    #[arg(long)]
    name: Option<String>,
    /// The requester's Slack user id (so they get a DM and cannot approve themselves).
    #[arg(long)]
    slack_user: Option<String>,
    /// Why, as approvers see it (a rule may require one).
    #[arg(long)]
    reason: Option<String>,
    /// Context entry `key=value` (repeatable); values that parse as JSON are taken as such.
    #[arg(long = "context", value_parser = parse_context)]
    context: Vec<(String, serde_json::Value)>,
    /// How long the request stays open (capped by the policy), e.g. `10m`.
    #[arg(long, value_parser = parse_duration)]
    ttl: Option<Duration>,
    /// Where the server POSTs the decided action (signed), e.g. `https://ci.example.com/hook`.
    #[arg(long)]
    callback_url: Option<String>,
}

/// `greenlight gate [request fields] -- CMD ARGS...`
#[derive(Args)]
pub struct GateArgs {
    #[command(flatten)]
    fields: RequestFields,
    /// How long to wait for a decision; then the request is cancelled and gate exits 13.
    #[arg(long, value_parser = parse_duration, default_value = "15m")]
    timeout: Duration,
    /// The command to run once approved, and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<std::ffi::OsString>,
}

#[derive(Args)]
pub struct DecideArgs {
    /// The action's id (`act_…`).
    id: String,
    #[command(flatten)]
    outcome: OutcomeArgs,
    /// Why, recorded in the decision and the audit trail.
    #[arg(long)]
    reason: Option<String>,
    /// Who decides (recorded in the decision); defaults to $USER.
    #[arg(long)]
    by: Option<String>,
    /// Print the action object as JSON.
    #[arg(long)]
    json: bool,
}

/// Exactly one of `--approve` and `--deny`. A group of its own: a `#[group]` on
/// `DecideArgs` would also take in the id and every other flag.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct OutcomeArgs {
    /// Approve the action.
    #[arg(long)]
    approve: bool,
    /// Deny the action.
    #[arg(long)]
    deny: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}`: {e} (use e.g. 90s, 10m, 2h)"))
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Policy(cmd) => cmd.run(),
        Command::Oncall(args) => args.run(),
        Command::Audit(cmd) => cmd.run(),
        Command::Secret(cmd) => cmd.run(),
        Command::Serve {
            settings,
            log_format,
        } => {
            crate::telemetry::init(log_format);
            let runtime = runtime();
            let code = runtime.block_on(commands::serve(settings));
            // The server has drained (or given up) within its shutdown timeout: blocking
            // work left behind (a DNS lookup) must not hold the exit.
            runtime.shutdown_timeout(Duration::from_secs(1));
            code
        }
        Command::Request(args) => runtime().block_on(commands::request(args)),
        Command::Pending { limit, json } => {
            runtime().block_on(commands::pending(usize::from(limit), json))
        }
        Command::Status { id, json } => runtime().block_on(commands::status(&id, json)),
        Command::Wait { id, timeout, json } => {
            runtime().block_on(commands::wait(&id, timeout, json))
        }
        Command::Decide(args) => runtime().block_on(commands::decide(args)),
        Command::Access(cmd) => runtime().block_on(cmd.run()),
        Command::Gate(args) => runtime().block_on(gate::run(args)),
        Command::Proxy(args) => args.run(),
        Command::PgProxy(args) => args.run(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

//! Typed settings, read once from the environment and checked at start.

use secrecy::SecretString;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How many timers of each pool run at once by default (`GREENLIGHT_TIMER_CONCURRENCY`).
pub const DEFAULT_TIMER_CONCURRENCY: u16 = 32;

/// `greenlight serve` settings: every field can come from its environment variable or a flag.
#[derive(Clone, Debug, clap::Args)]
pub struct Settings {
    /// Address to listen on.
    #[arg(long, env = "GREENLIGHT_LISTEN", default_value = "127.0.0.1:8080", value_parser = listen_addr)]
    pub listen: SocketAddr,
    /// Public base URL of this service (grant issuer, links).
    #[arg(long, env = "GREENLIGHT_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Redis URL; unset runs the embedded in-memory backend (one process, nothing kept).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<SecretString>,
    /// Prefix of every Redis key and channel (several deployments can share one Redis).
    #[arg(long, env = "GREENLIGHT_REDIS_PREFIX", default_value = "greenlight")]
    pub redis_prefix: String,
    /// PEM file of the CA that signed the Redis server's certificate, for a `rediss://`
    /// REDIS_URL whose certificate the system's trust store does not vouch for.
    #[arg(long, env = "GREENLIGHT_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// Redis Cluster seed nodes, `host:port,host:port`.
    #[arg(long, env = "GREENLIGHT_REDIS_CLUSTER")]
    pub redis_cluster: Option<String>,
    /// Policy file (TOML); unset uses the built-in default policy.
    #[arg(long, env = "GREENLIGHT_POLICY")]
    pub policy: Option<PathBuf>,
    /// Slack bot token (`xoxb-…`); with the signing secret, approvals go to Slack.
    #[arg(long, env = "SLACK_BOT_TOKEN", hide_env_values = true)]
    pub slack_bot_token: Option<SecretString>,
    /// Slack app signing secret: verifies Slack's clicks and slash commands.
    #[arg(long, env = "SLACK_SIGNING_SECRET", hide_env_values = true)]
    pub slack_signing_secret: Option<SecretString>,
    /// Slack Web API base URL (tests point it at a fake Slack).
    #[arg(long, env = "SLACK_API_BASE", default_value = "https://slack.com/api")]
    pub slack_api_base: String,
    /// Channel for approval messages when neither the rule nor the policy's `[defaults]`
    /// names one, e.g. `#approvals` or a channel id.
    #[arg(long, env = "SLACK_DEFAULT_CHANNEL")]
    pub slack_default_channel: Option<String>,
    /// The Slack workspace (team id, `T…`) whose callbacks count; unset, the bot token's
    /// own workspace as `auth.test` names it.
    #[arg(long, env = "SLACK_TEAM_ID")]
    pub slack_team_id: Option<String>,
    /// Ed25519 PKCS#8 PEM that signs grants.
    #[arg(long, env = "GREENLIGHT_GRANT_SIGNING_KEY", hide_env_values = true)]
    pub grant_signing_key: Option<SecretString>,
    /// The key that signed grants before the current one (PKCS#8 private or SPKI public
    /// PEM): still published in the JWKS and accepted by verify during a rotation.
    #[arg(long, env = "GREENLIGHT_GRANT_PREVIOUS_KEY", hide_env_values = true)]
    pub grant_previous_key: Option<SecretString>,
    /// PagerDuty Events API v2 routing key, for escalation stages with `pagerduty = true`.
    #[arg(long, env = "PAGERDUTY_ROUTING_KEY", hide_env_values = true)]
    pub pagerduty_routing_key: Option<SecretString>,
    /// PagerDuty Events API URL (tests point it at a fake).
    #[arg(
        long,
        env = "PAGERDUTY_EVENTS_URL",
        default_value = "https://events.pagerduty.com/v2/enqueue"
    )]
    pub pagerduty_events_url: String,
    /// Secret (`whsec_…`) from which the key signing escalation webhooks is derived.
    #[arg(long, env = "GREENLIGHT_NOTIFY_SECRET", hide_env_values = true)]
    pub notify_secret: Option<SecretString>,
    /// Longest long-poll, in seconds.
    #[arg(long, env = "GREENLIGHT_MAX_WAIT", default_value_t = 60)]
    pub max_wait_seconds: u64,
    /// Audit stream length kept (approximate trimming).
    #[arg(long, env = "GREENLIGHT_AUDIT_MAXLEN", default_value_t = 1_000_000)]
    pub audit_maxlen: u64,
    /// Seconds to finish in-flight work on SIGTERM.
    #[arg(long, env = "GREENLIGHT_SHUTDOWN_TIMEOUT", default_value_t = 25)]
    pub shutdown_timeout_seconds: u64,
    /// Timers run at once per kind (expiries; decision callbacks; Slack, escalation and
    /// PagerDuty work), per process.
    #[arg(
        long,
        env = "GREENLIGHT_TIMER_CONCURRENCY",
        default_value_t = DEFAULT_TIMER_CONCURRENCY,
        value_parser = clap::value_parser!(u16).range(1..=1024)
    )]
    pub timer_concurrency: u16,
    /// Client secrets by environment variable name, for embedding (tests); the
    /// environment is read for any name not found here.
    #[arg(skip)]
    pub secrets: HashMap<String, String>,
}

impl Settings {
    /// Settings for an embedded server with nothing set: in-memory, built-in policy,
    /// listening on an OS-chosen loopback port.
    pub fn embedded() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: None,
            redis_url: None,
            redis_prefix: "greenlight".into(),
            redis_ca_file: None,
            redis_cluster: None,
            policy: None,
            slack_bot_token: None,
            slack_signing_secret: None,
            slack_api_base: "https://slack.com/api".into(),
            slack_default_channel: None,
            slack_team_id: None,
            grant_signing_key: None,
            grant_previous_key: None,
            pagerduty_routing_key: None,
            pagerduty_events_url: "https://events.pagerduty.com/v2/enqueue".into(),
            notify_secret: None,
            max_wait_seconds: 60,
            audit_maxlen: 1_000_000,
            shutdown_timeout_seconds: 25,
            timer_concurrency: DEFAULT_TIMER_CONCURRENCY,
            secrets: HashMap::new(),
        }
    }

    pub fn max_wait(&self) -> Duration {
        Duration::from_secs(self.max_wait_seconds.max(1))
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_seconds)
    }

    /// A client secret by the name of the variable that holds it.
    pub fn secret(&self, env_name: &str) -> Option<String> {
        self.secrets
            .get(env_name)
            .cloned()
            .or_else(|| std::env::var(env_name).ok())
            .filter(|s| !s.trim().is_empty())
    }
}

/// `HOST:PORT` for `GREENLIGHT_LISTEN`: an address, or a name such as `localhost:8080`
/// resolved once at start.
fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            "GREENLIGHT_LISTEN: expected HOST:PORT, e.g. 127.0.0.1:8080 or 0.0.0.0:8080".to_owned()
        })
}

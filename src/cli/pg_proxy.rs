//! `greenlight pg-proxy --upstream HOST:PORT --rules FILE --listen ADDR`: the command that
//! runs the PostgreSQL proxy.

use crate::pgproxy::{PgConfig, PgProxy};
use crate::telemetry::LogFormat;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct PgProxyArgs {
    /// The database to put approvals in front of, as `HOST:PORT`.
    #[arg(long, env = "GREENLIGHT_PG_UPSTREAM")]
    upstream: String,
    /// The rules file (see docs/pg-proxy.md).
    #[arg(long, env = "GREENLIGHT_PG_RULES")]
    rules: PathBuf,
    /// Address the proxy listens on; clients connect here instead of the database.
    #[arg(long, env = "GREENLIGHT_PG_LISTEN", default_value = "127.0.0.1:6432")]
    listen: String,
    /// Log lines as JSON (for collectors) or pretty (for a terminal).
    #[arg(
        long,
        env = "GREENLIGHT_LOG_FORMAT",
        value_enum,
        default_value = "pretty"
    )]
    log_format: LogFormat,
}

impl PgProxyArgs {
    pub fn run(self) -> ExitCode {
        let upstream = self.upstream.clone();
        let listen = self.listen.clone();
        super::proxy::serve(
            "pg-proxy",
            self.log_format,
            &self.listen,
            || PgConfig::load(&self.rules).map_err(|e| format!("{e:#}")),
            |config, client, listener, shutdown| async move {
                let rules = config.statements.len();
                let proxy = PgProxy::new(config, client, upstream.clone());
                tracing::info!(%listen, %upstream, rules, "greenlight pg-proxy listening");
                proxy.serve(listener, shutdown).await
            },
        )
    }
}

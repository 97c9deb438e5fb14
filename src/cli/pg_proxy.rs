//! `greenlight pg-proxy --upstream HOST:PORT --rules FILE --listen ADDR`: the command that
//! runs the PostgreSQL proxy.

use super::exit;
use crate::client::Client;
use crate::pgproxy::{PgConfig, PgProxy};
use crate::telemetry::LogFormat;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

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
        crate::telemetry::init(self.log_format);
        let fail = |e: String| {
            tracing::error!("{e}");
            eprintln!("greenlight pg-proxy: {e}");
            ExitCode::from(exit::ERROR)
        };
        let config = match PgConfig::load(&self.rules) {
            Ok(c) => c,
            Err(e) => return fail(format!("{e:#}")),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(async move {
            let client = match Client::from_env() {
                Ok(c) => c,
                Err(e) => return fail(e.to_string()),
            };
            let listener = match tokio::net::TcpListener::bind(&self.listen).await {
                Ok(l) => l,
                Err(e) => return fail(format!("cannot listen on {}: {e}", self.listen)),
            };
            let rules = config.statements.len();
            let proxy = PgProxy::new(config, client, self.upstream.clone());
            let shutdown = CancellationToken::new();
            tokio::spawn(crate::app::stop_on_signal(shutdown.clone()));
            tracing::info!(listen = %self.listen, upstream = %self.upstream, rules, "greenlight pg-proxy listening");
            match proxy.serve(listener, shutdown).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(format!("pg-proxy failed: {e}")),
            }
        })
    }
}

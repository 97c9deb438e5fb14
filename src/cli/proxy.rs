//! `greenlight proxy --upstream URL --routes routes.toml`: the command that runs the proxy.

use super::exit;
use crate::client::Client;
use crate::proxy::{Proxy, ProxyConfig};
use crate::telemetry::LogFormat;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[derive(Args)]
pub struct ProxyArgs {
    /// The API to put approvals in front of, e.g. `http://127.0.0.1:9000`.
    #[arg(long, env = "GREENLIGHT_PROXY_UPSTREAM")]
    upstream: url::Url,
    /// The routes file (see docs/proxy.md).
    #[arg(long, env = "GREENLIGHT_PROXY_ROUTES")]
    routes: PathBuf,
    /// Address the proxy listens on.
    #[arg(
        long,
        env = "GREENLIGHT_PROXY_LISTEN",
        default_value = "127.0.0.1:8081"
    )]
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

impl ProxyArgs {
    pub fn run(self) -> ExitCode {
        crate::telemetry::init(self.log_format);
        let fail = |e: String| {
            tracing::error!("{e}");
            eprintln!("greenlight proxy: {e}");
            ExitCode::from(exit::ERROR)
        };
        let config = match ProxyConfig::load(&self.routes) {
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
            let routes = config.routes.len();
            let proxy = Proxy::new(config, client, self.upstream.clone());
            let shutdown = CancellationToken::new();
            tokio::spawn(crate::app::stop_on_signal(shutdown.clone()));
            tracing::info!(listen = %self.listen, upstream = %self.upstream, routes, "greenlight proxy listening");
            match proxy.serve(listener, shutdown).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(format!("proxy failed: {e}")),
            }
        })
    }
}

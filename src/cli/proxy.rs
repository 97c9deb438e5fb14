//! `greenlight proxy --upstream URL --routes routes.toml`: the command that runs the proxy.

use super::exit;
use crate::client::Client;
use crate::proxy::{Proxy, ProxyConfig};
use crate::telemetry::LogFormat;
use clap::Args;
use std::fmt::Display;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio::net::TcpListener;
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
        let upstream = self.upstream.clone();
        let listen = self.listen.clone();
        serve(
            "proxy",
            self.log_format,
            &self.listen,
            || ProxyConfig::load(&self.routes).map_err(|e| format!("{e:#}")),
            |config, client, listener, shutdown| async move {
                let routes = config.routes.len();
                let proxy = Proxy::new(config, client, upstream.clone());
                tracing::info!(%listen, %upstream, routes, "greenlight proxy listening");
                proxy.serve(listener, shutdown).await
            },
        )
    }
}

/// What `greenlight proxy` and `greenlight pg-proxy` share: logging set up first, then
/// `load` (the routes or rules: an error exits 1 before anything listens), a Greenlight
/// client from the environment, the listener on `listen`, and `run` serving until
/// SIGTERM or SIGINT.
pub(super) fn serve<C, E, F>(
    command: &str,
    log_format: LogFormat,
    listen: &str,
    load: impl FnOnce() -> Result<C, String>,
    run: impl FnOnce(C, Client, TcpListener, CancellationToken) -> F,
) -> ExitCode
where
    F: Future<Output = Result<(), E>>,
    E: Display,
{
    crate::telemetry::init(log_format);
    let fail = |e: String| {
        tracing::error!("{e}");
        eprintln!("greenlight {command}: {e}");
        ExitCode::from(exit::ERROR)
    };
    let config = match load() {
        Ok(c) => c,
        Err(e) => return fail(e),
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
        let listener = match TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => return fail(format!("cannot listen on {listen}: {e}")),
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(crate::app::stop_on_signal(shutdown.clone()));
        match run(config, client, listener, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(format!("{command} failed: {e}")),
        }
    })
}

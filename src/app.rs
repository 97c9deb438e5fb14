//! Builds a server from settings (binding first, so callers learn the port, which lets
//! tests use port 0), runs it with its workers, and stops everything on one signal.

use crate::config::Settings;
use crate::grants::GrantKeys;
use crate::http::{self, AppState};
use crate::notify::pagerduty::PagerDuty;
use crate::notify::webhook::WebhookNotifier;
use crate::reload::{Reloader, Trigger};
use crate::service::{Service, load};
use crate::signing::{KeyPurpose, Secret};
use crate::slack::Slack;
use crate::slack::api::SlackApi;
use crate::store::{Deployment, MemoryStore, RedisStore, RedisStoreConfig, Store};
use crate::waiters::Waiters;
use crate::workers::LEASE;
use crate::workers::callbacks::Callbacks;
use crate::workers::escalation::Escalator;
use crate::workers::run::Worker;
use crate::workers::scheduler::Scheduler;
use anyhow::{Context, bail};
use secrecy::ExposeSecret;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;

pub struct Application {
    listener: TcpListener,
    http: reqwest::Client,
    service: Arc<Service>,
    slack: Option<Arc<Slack>>,
    pagerduty: Option<PagerDuty>,
    webhooks: WebhookNotifier,
    shutdown: CancellationToken,
    settings: Settings,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        // Before anything is counted: metrics recorded without a recorder are dropped.
        crate::metrics::install();
        let loaded = load(&settings)?;
        let shutdown = CancellationToken::new();
        let grants = Arc::new(GrantKeys::from_settings(&settings)?);
        let waiters = Waiters::with_check({
            let grants = grants.clone();
            Box::new(move |published| crate::grants::vouches_for(&grants, published))
        });
        let deployment = Deployment::from_settings(
            settings.redis_url.as_ref().map(|u| u.expose_secret()),
            settings.redis_cluster.as_deref(),
        )?;
        let store: Arc<dyn Store> = match deployment {
            Some(deployment) => {
                RedisStore::start(
                    RedisStoreConfig {
                        deployment,
                        prefix: settings.redis_prefix.clone(),
                        tls_ca: settings
                            .redis_ca_file
                            .as_ref()
                            .map(|path| {
                                std::fs::read(path).with_context(|| {
                                    format!(
                                        "GREENLIGHT_REDIS_CA_FILE: cannot read {}",
                                        path.display()
                                    )
                                })
                            })
                            .transpose()?,
                    },
                    waiters.clone(),
                    shutdown.clone(),
                )
                .await?
            }
            None => {
                tracing::warn!(
                    "REDIS_URL is not set: using the embedded in-memory store (one process; \
                     pending actions are lost on exit)"
                );
                Arc::new(MemoryStore::new(waiters.clone()))
            }
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the HTTP client")?;
        let slack = match (&settings.slack_bot_token, &settings.slack_signing_secret) {
            (Some(token), Some(signing)) => Some(Arc::new(Slack::new(
                SlackApi::new(http.clone(), &settings.slack_api_base, token.clone()),
                signing.clone(),
                settings.slack_default_channel.clone(),
                settings.slack_team_id.clone(),
            ))),
            _ => {
                tracing::warn!(
                    "Slack is not configured (SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET): approvals \
                     can only be given through `greenlight decide`"
                );
                None
            }
        };
        // Found now rather than at the first request, whose message would go nowhere.
        if slack.is_some() && settings.slack_default_channel.is_none() {
            let unposted = loaded.policy.rules_without_channel();
            if !unposted.is_empty() {
                tracing::warn!(
                    "no Slack channel for the approval messages of rule(s) {}: set \
                     SLACK_DEFAULT_CHANNEL, `channel` in the policy's [defaults], or each \
                     rule's `channel`",
                    unposted.join(", ")
                );
            }
        }
        let pagerduty = settings
            .pagerduty_routing_key
            .clone()
            .map(|key| PagerDuty::new(http.clone(), &settings.pagerduty_events_url, key));
        let notify_secret = settings
            .notify_secret
            .as_ref()
            .map(|s| Secret::parse(s.expose_secret()))
            .transpose()
            .map_err(|e| anyhow::anyhow!("GREENLIGHT_NOTIFY_SECRET {e}"))?
            // Signed with a key derived for escalation webhooks, not the secret itself.
            .map(|s| s.derive(KeyPurpose::EscalationWebhook));
        let webhooks = WebhookNotifier::new(http.clone(), notify_secret);
        let service = Arc::new(
            Service::new(
                store,
                waiters,
                loaded,
                settings.max_wait(),
                slack.is_some(),
                shutdown.clone(),
                grants,
            )
            .with_audit_maxlen(settings.audit_maxlen),
        );
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;
        Ok(Self {
            listener,
            http,
            service,
            slack,
            pagerduty,
            webhooks,
            shutdown,
            settings,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener")
    }

    /// Cancelling this token stops the server and its workers.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub fn service(&self) -> Arc<Service> {
        self.service.clone()
    }

    /// Serves until the shutdown token is cancelled, then drains: open long-polls are
    /// answered with the current state, and workers stop within the shutdown timeout.
    pub async fn run(self) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), "greenlight listening");
        if let Some(slack) = self.slack.clone() {
            let shutdown = self.shutdown.clone();
            tokio::spawn(async move { slack.check_auth(shutdown).await });
        }
        let scheduler = tokio::spawn(
            Scheduler::new(
                Worker {
                    service: self.service.clone(),
                    slack: self.slack.clone(),
                    escalator: Escalator {
                        service: self.service.clone(),
                        slack: self.slack.clone(),
                        pagerduty: self.pagerduty.clone(),
                        webhooks: self.webhooks.clone(),
                    },
                    callbacks: Callbacks {
                        service: self.service.clone(),
                        http: self.http.clone(),
                    },
                },
                usize::from(self.settings.timer_concurrency),
            )
            .run(self.shutdown.clone()),
        );
        let reloader = Arc::new(Reloader::new(self.service.clone(), self.settings.clone()));
        #[cfg(unix)]
        tokio::spawn(reload_on_sighup(reloader.clone(), self.shutdown.clone()));
        let router = http::router(AppState {
            service: self.service.clone(),
            slack: self.slack.clone(),
            reloader,
        });
        let shutdown = self.shutdown.clone();
        let listener = self.listener;
        let mut server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
        });
        // Serving ends with the signal; should it fail first, everything stops the same way.
        let failed = tokio::select! {
            // The server stops because of the signal: the signal is the reason to report.
            biased;
            _ = self.shutdown.cancelled() => None,
            served = &mut server => Some(served),
        };
        self.shutdown.cancel();
        drain(
            self.settings.shutdown_timeout(),
            self.slack.as_deref(),
            &mut server,
            scheduler,
            failed.is_some(),
        )
        .await;
        tracing::info!("greenlight stopped");
        match failed {
            Some(served) => {
                served_http(served)?;
                bail!("the HTTP server stopped before any signal")
            }
            None => Ok(()),
        }
    }
}

/// Runs once the shutdown token is cancelled, within `timeout`
/// (`GREENLIGHT_SHUTDOWN_TIMEOUT`): the listener is already closed and open long-polls
/// answer with the current state; requests in flight are answered, then the Slack work
/// they started finishes; the scheduler claims nothing more and waits for the timers it
/// is running (the rest stay due in the store). Past the timeout, whatever still runs is logged and abandoned:
/// the process exits all the same (status 0), since with Redis every abandoned timer is
/// still in the store and runs again when its lease ends.
async fn drain(
    timeout: Duration,
    slack: Option<&Slack>,
    server: &mut JoinHandle<std::io::Result<()>>,
    mut scheduler: JoinHandle<()>,
    server_done: bool,
) {
    tracing::info!(
        ?timeout,
        "shutting down: no new connections; finishing in-flight work"
    );
    let http_then_slack = async {
        if !server_done && let Err(e) = served_http((&mut *server).await) {
            tracing::error!("{e:#}");
        }
        // Slack work is started by requests: wait for it once they are all answered.
        if let Some(slack) = slack {
            slack.drain().await;
        }
    };
    let scheduled = async {
        if let Err(e) = (&mut scheduler).await
            && e.is_panic()
        {
            tracing::error!("the scheduler panicked");
        }
    };
    let all = async { tokio::join!(http_then_slack, scheduled) };
    if tokio::time::timeout(timeout, all).await.is_ok() {
        return;
    }
    let mut abandoned = Vec::new();
    if !server.is_finished() {
        abandoned.push("HTTP requests in flight".to_owned());
    }
    if let Some(n) = slack.map(Slack::running_tasks)
        && n > 0
    {
        abandoned.push(format!("{n} Slack background task(s)"));
    }
    if !scheduler.is_finished() {
        abandoned.push("the timer(s) the scheduler was running".to_owned());
    }
    tracing::warn!(
        abandoned = %abandoned.join(", "),
        "shutdown timeout of {}s passed; exiting anyway. Timers abandoned mid-run stay in \
         the store and run again when their {}s lease ends (with Redis; the in-memory \
         store goes with the process)",
        timeout.as_secs(),
        LEASE.as_secs(),
    );
    server.abort();
    scheduler.abort();
}

/// The HTTP server task's outcome as an error, if it failed.
fn served_http(served: Result<std::io::Result<()>, JoinError>) -> anyhow::Result<()> {
    served
        .context("the HTTP server panicked")?
        .context("serving HTTP")
}

/// Re-reads the policy file and client secrets on SIGHUP, as `POST /v1/admin/reload` does.
/// A file that does not load is refused with its error (logged), and the running policy stays.
#[cfg(unix)]
async fn reload_on_sighup(reloader: Arc<Reloader>, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; policy reload is off");
        return;
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = hup.recv() => {}
        }
        // The reloader logs what it did or why it refused.
        let _ = reloader.reload(Trigger::Signal).await;
    }
}

/// Cancels `token` on SIGTERM or Ctrl-C.
pub async fn stop_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
    token.cancel();
}

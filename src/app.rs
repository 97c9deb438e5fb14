//! Builds a server from settings (binding first, so callers learn the port, which lets
//! tests use port 0), runs it with its workers, and stops everything on one signal.

use crate::audit::AuditEvent;
use crate::config::Settings;
use crate::grants::GrantKeys;
use crate::http::{self, AppState};
use crate::notify::pagerduty::PagerDuty;
use crate::notify::webhook::WebhookNotifier;
use crate::policy::Policy;
use crate::service::{Client, Loaded, Service};
use crate::signing::Secret;
use crate::slack::Slack;
use crate::slack::api::SlackApi;
use crate::store::{MemoryStore, RedisStore, RedisStoreConfig, Store};
use crate::waiters::Waiters;
use crate::workers::callbacks::Callbacks;
use crate::workers::escalation::Escalator;
use crate::workers::scheduler::Scheduler;
use anyhow::{Context, bail};
use secrecy::ExposeSecret;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
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

/// Reads the policy and resolves every client's secrets. A missing or malformed secret
/// fails the start with the variable's name (never its value).
pub fn load(settings: &Settings) -> anyhow::Result<Loaded> {
    let (policy, builtin) = match &settings.policy {
        Some(path) => (Policy::load(path)?, false),
        None => (
            Policy::builtin(settings.slack_default_channel.as_deref()),
            true,
        ),
    };
    let mut clients = HashMap::new();
    for spec in &policy.clients {
        let Some(raw) = settings.secret(&spec.secret_env) else {
            if builtin {
                tracing::warn!(
                    client = %spec.id,
                    "{} is not set: client `{}` cannot sign requests until it is",
                    spec.secret_env, spec.id
                );
                continue;
            }
            bail!(
                "client `{}`: environment variable {} (its secret) is not set",
                spec.id,
                spec.secret_env
            );
        };
        let secrets = raw
            .split_ascii_whitespace()
            .map(Secret::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("{}: secret {e}", spec.secret_env))?;
        clients.insert(
            spec.id.clone(),
            Arc::new(Client {
                spec: spec.clone(),
                secrets,
            }),
        );
    }
    Ok(Loaded { policy, clients })
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let loaded = load(&settings)?;
        let shutdown = CancellationToken::new();
        let waiters = Waiters::new();
        let store: Arc<dyn Store> = match (&settings.redis_url, &settings.redis_cluster) {
            (_, Some(_)) => bail!("GREENLIGHT_REDIS_CLUSTER is not supported yet"),
            (Some(url), None) => RedisStore::start(
                &RedisStoreConfig {
                    url: url.expose_secret().to_owned(),
                    prefix: settings.redis_prefix.clone(),
                },
                waiters.clone(),
                shutdown.clone(),
            )?,
            (None, None) => {
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
            ))),
            _ => {
                tracing::warn!(
                    "Slack is not configured (SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET): approvals \
                     can only be given through `greenlight decide`"
                );
                None
            }
        };
        let pagerduty = settings
            .pagerduty_routing_key
            .clone()
            .map(|key| PagerDuty::new(http.clone(), &settings.pagerduty_events_url, key));
        let notify_secret = settings
            .notify_secret
            .as_ref()
            .map(|s| Secret::parse(s.expose_secret()))
            .transpose()
            .map_err(|e| anyhow::anyhow!("GREENLIGHT_NOTIFY_SECRET {e}"))?;
        let webhooks = WebhookNotifier::new(http.clone(), notify_secret);
        let grants = Arc::new(GrantKeys::from_settings(&settings)?);
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
            tokio::spawn(async move { slack.check_auth().await });
        }
        let scheduler = tokio::spawn(
            Scheduler::new(
                self.service.clone(),
                self.slack.clone(),
                Escalator {
                    service: self.service.clone(),
                    slack: self.slack.clone(),
                    pagerduty: self.pagerduty.clone(),
                    webhooks: self.webhooks.clone(),
                },
                Callbacks {
                    service: self.service.clone(),
                    http: self.http.clone(),
                },
            )
            .run(self.shutdown.clone()),
        );
        #[cfg(unix)]
        tokio::spawn(reload_on_sighup(
            self.service.clone(),
            self.settings.clone(),
            self.shutdown.clone(),
        ));
        let router = http::router(AppState {
            service: self.service.clone(),
            slack: self.slack.clone(),
        });
        let shutdown = self.shutdown.clone();
        axum::serve(self.listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .context("serving HTTP")?;
        let timeout = self.settings.shutdown_timeout();
        let drained = async {
            let _ = scheduler.await;
            if let Some(slack) = &self.slack {
                slack.drain().await;
            }
        };
        if tokio::time::timeout(timeout, drained).await.is_err() {
            tracing::warn!(
                "background work did not stop within the shutdown timeout; timers stay due in the store"
            );
        }
        tracing::info!("greenlight stopped");
        Ok(())
    }
}

/// Re-reads the policy file and client secrets on SIGHUP. A file that does not load is
/// refused with its error, and the running policy stays.
#[cfg(unix)]
async fn reload_on_sighup(service: Arc<Service>, settings: Settings, shutdown: CancellationToken) {
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
        match load(&settings) {
            Ok(loaded) => {
                let rules = loaded.policy.rules.len();
                let clients = loaded.clients.len();
                service.reload(loaded);
                tracing::info!(rules, "policy reloaded");
                let file = settings.policy.as_ref().map(|p| p.display().to_string());
                service
                    .audit()
                    .record(AuditEvent::policy_reloaded(file.as_deref(), rules, clients))
                    .await;
            }
            Err(e) => tracing::error!("policy reload refused, keeping the running policy: {e:#}"),
        }
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

//! Policy reload, one implementation for `SIGHUP` and `POST /v1/admin/reload`: re-read the
//! policy file and the client secrets, swap them in whole, or refuse and keep what runs.

use crate::audit::AuditEvent;
use crate::config::Settings;
use crate::service::{Service, load};
use std::sync::Arc;

/// Who asked for a reload, for the log and the audit trail.
#[derive(Clone, Copy, Debug)]
pub enum Trigger<'a> {
    /// `SIGHUP`.
    Signal,
    /// `POST /v1/admin/reload` by this admin client.
    Client(&'a str),
}

/// What a reload swapped in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reloaded {
    pub rules: usize,
    pub clients: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// `GREENLIGHT_POLICY` is unset: the built-in policy has no file to re-read.
    #[error(
        "no policy file to reload: GREENLIGHT_POLICY is unset and the built-in policy is in use"
    )]
    NoFile,
    /// The file, or a client secret it names, does not load (`FILE:LINE: message`, or
    /// the variable's name, never its value). The running policy stays.
    #[error("{0:#}")]
    Invalid(anyhow::Error),
}

/// Holds the settings a reload reads again (the policy path, the secrets).
pub struct Reloader {
    service: Arc<Service>,
    settings: Settings,
    /// One reload at a time, so the audit trail records them in the order they took effect.
    running: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub fn new(service: Arc<Service>, settings: Settings) -> Self {
        Self {
            service,
            settings,
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// Loads the policy file and client secrets again and swaps them in at once. Pending
    /// actions keep the rule snapshot they were created under.
    pub async fn reload(&self, trigger: Trigger<'_>) -> Result<Reloaded, ReloadError> {
        let by = match trigger {
            Trigger::Signal => "sighup",
            Trigger::Client(id) => id,
        };
        let Some(file) = &self.settings.policy else {
            tracing::warn!(by, "{}", ReloadError::NoFile);
            return Err(ReloadError::NoFile);
        };
        let _one = self.running.lock().await;
        let loaded = load(&self.settings).map_err(|e| {
            tracing::error!(
                by,
                "policy reload refused, keeping the running policy: {e:#}"
            );
            ReloadError::Invalid(e)
        })?;
        let reloaded = Reloaded {
            rules: loaded.policy.rules.len(),
            clients: loaded.clients.len(),
        };
        self.service.reload(loaded);
        let file = file.display().to_string();
        tracing::info!(
            by,
            file,
            reloaded.rules,
            reloaded.clients,
            "policy reloaded"
        );
        let event = AuditEvent::policy_reloaded(Some(&file), reloaded.rules, reloaded.clients);
        let event = match trigger {
            Trigger::Signal => event,
            Trigger::Client(id) => event.client(id).actor(id),
        };
        self.service.audit().record(event).await;
        Ok(reloaded)
    }
}

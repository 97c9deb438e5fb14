//! Slack: the Web API client, Block Kit rendering, signed callbacks, votes and the sync
//! effect that keeps each approval message true.

pub mod api;
mod commands;
mod directory;
mod escalation;
mod interactions;
pub mod render;
mod sync;
pub mod verify;

pub use commands::SlashCommand;
pub use escalation::Target;
pub use interactions::{Ack, Interaction};
pub use sync::Synced;

use api::SlackApi;
use directory::Directory;
use secrecy::{ExposeSecret, SecretString};
use std::future::Future;
use std::sync::OnceLock;
use tokio_util::task::TaskTracker;

pub struct Slack {
    pub api: SlackApi,
    signing_secret: SecretString,
    directory: Directory,
    default_channel: Option<String>,
    /// Background work started by callbacks; drained at shutdown.
    tasks: TaskTracker,
    /// Whether `auth.test` succeeded at start (None until it answered).
    auth: OnceLock<Result<String, String>>,
}

impl Slack {
    pub fn new(
        api: SlackApi,
        signing_secret: SecretString,
        default_channel: Option<String>,
    ) -> Self {
        Self {
            directory: Directory::new(api.clone()),
            api,
            signing_secret,
            default_channel,
            tasks: TaskTracker::new(),
            auth: OnceLock::new(),
        }
    }

    /// Checks the bot token once (`auth.test`) and remembers the answer for `/readyz`.
    pub async fn check_auth(&self) {
        let result = match self.api.auth_test().await {
            Ok(info) => {
                tracing::info!(bot_user = %info.user_id, team = %info.team_id, "Slack auth.test succeeded");
                Ok(info.user_id)
            }
            Err(e) => {
                tracing::error!(error = %e, "Slack auth.test failed: check SLACK_BOT_TOKEN");
                Err(e.to_string())
            }
        };
        let _ = self.auth.set(result);
    }

    /// `ok`, `failed` or `unknown` (not answered yet).
    pub fn auth_status(&self) -> &'static str {
        match self.auth.get() {
            Some(Ok(_)) => "ok",
            Some(Err(_)) => "failed",
            None => "unknown",
        }
    }

    pub fn verify(
        &self,
        timestamp: &str,
        signature: &str,
        body: &[u8],
    ) -> Result<(), verify::SlackSignatureError> {
        verify::verify_at(
            self.signing_secret.expose_secret().as_bytes(),
            timestamp,
            signature,
            body,
            chrono::Utc::now().timestamp(),
        )
    }

    /// Runs callback work in the background, tracked so shutdown waits for it and a
    /// panic is logged rather than lost.
    fn spawn(&self, what: &'static str, work: impl Future<Output = ()> + Send + 'static) {
        let task = self.tasks.spawn(work);
        tokio::spawn(async move {
            if let Err(e) = task.await
                && e.is_panic()
            {
                tracing::error!(what, "Slack background work panicked");
            }
        });
    }

    /// Stops taking background work and waits for what is running.
    pub async fn drain(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Background tasks still running (what a shutdown past its timeout abandons).
    pub fn running_tasks(&self) -> usize {
        self.tasks.len()
    }
}

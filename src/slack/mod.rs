//! Slack: the Web API client, Block Kit rendering, signed callbacks, votes and the sync
//! effect that keeps each approval message true.

pub mod api;
mod commands;
mod directory;
mod escalation;
mod interactions;
pub mod render;
mod revoke;
mod sync;
pub mod verify;
mod workspace;

pub use commands::SlashCommand;
pub use escalation::Target;
pub use interactions::{Ack, Interaction};
pub use sync::Synced;
pub use workspace::Refusal;

use crate::retry::Backoff;
use api::SlackApi;
use directory::Directory;
use secrecy::{ExposeSecret, SecretString};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use workspace::Workspace;

/// How long a callback that arrives before the workspace is known waits for `auth.test`
/// (Slack wants an answer within 3 s).
const INLINE_AUTH_TEST: Duration = Duration::from_secs(2);
/// Between two `auth.test` attempts while it fails: from 1 s, doubling, to a minute.
const AUTH_RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));

pub struct Slack {
    pub api: SlackApi,
    signing_secret: SecretString,
    directory: Directory,
    default_channel: Option<String>,
    /// Background work started by callbacks; drained at shutdown.
    tasks: TaskTracker,
    /// The last answer of `auth.test` (None until it answered): the bot user, or why not.
    auth: Mutex<Option<Result<String, String>>>,
    /// The workspace whose callbacks count.
    workspace: Workspace,
    /// One inline `auth.test` at a time for callbacks that find the workspace unknown.
    team_lookup: tokio::sync::Mutex<()>,
}

impl Slack {
    pub fn new(
        api: SlackApi,
        signing_secret: SecretString,
        default_channel: Option<String>,
        team_id: Option<String>,
    ) -> Self {
        Self {
            directory: Directory::new(api.clone()),
            api,
            signing_secret,
            default_channel,
            tasks: TaskTracker::new(),
            auth: Mutex::new(None),
            workspace: Workspace::new(team_id),
            team_lookup: tokio::sync::Mutex::new(()),
        }
    }

    /// Checks the bot token (`auth.test`), remembers the answer for `/readyz` and learns
    /// the bot's workspace; while it fails, tries again, backing off to a minute apart,
    /// until it succeeds or `shutdown`.
    pub async fn check_auth(&self, shutdown: CancellationToken) {
        let mut delays = AUTH_RETRY.delays();
        while !self.auth_test_once().await {
            tokio::select! {
                _ = tokio::time::sleep(delays.next_delay()) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// One `auth.test`; whether it succeeded.
    async fn auth_test_once(&self) -> bool {
        let result = match self.api.auth_test().await {
            Ok(info) => {
                tracing::info!(bot_user = %info.user_id, team = %info.team_id, "Slack auth.test succeeded");
                self.workspace.learn(&info.team_id);
                Ok(info.user_id)
            }
            Err(e) => {
                tracing::error!(error = %e, "Slack auth.test failed: check SLACK_BOT_TOKEN");
                Err(e.to_string())
            }
        };
        let ok = result.is_ok();
        let mut auth = self.auth.lock().unwrap_or_else(|p| p.into_inner());
        // A success stands: a later failure (an inline retry) does not undo it.
        if !matches!(*auth, Some(Ok(_))) {
            *auth = Some(result);
        }
        ok
    }

    /// `ok`, `failed` or `unknown` (not answered yet).
    pub fn auth_status(&self) -> &'static str {
        match *self.auth.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(Ok(_)) => "ok",
            Some(Err(_)) => "failed",
            None => "unknown",
        }
    }

    /// The workspace whose callbacks count, when known.
    pub fn own_workspace(&self) -> Option<&str> {
        self.workspace.own()
    }

    /// Whether a callback from workspace `team` may change anything. Before the bot's
    /// own workspace is known, asks `auth.test` once more (briefly), so a click right after
    /// start is not refused needlessly; still unknown, it is refused.
    pub async fn admit(&self, team: Option<&str>) -> Result<(), Refusal> {
        if self.workspace.own().is_none() {
            let _one_at_a_time = self.team_lookup.lock().await;
            if self.workspace.own().is_none() {
                let _ = tokio::time::timeout(INLINE_AUTH_TEST, self.auth_test_once()).await;
            }
        }
        self.workspace.admit(team)
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

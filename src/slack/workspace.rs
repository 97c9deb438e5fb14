//! Which Slack workspace this Greenlight serves. Slack's signing secret is per app, and
//! one app can be installed in several workspaces: a correctly signed callback may come
//! from a workspace whose users mean nothing here (their `U…` ids are not ours). Only
//! callbacks from the bot's own workspace change anything: `SLACK_TEAM_ID` when set, else
//! the `team_id` that `auth.test` names for the bot token. While neither is known (Slack
//! did not answer `auth.test` yet), every callback is refused: fail closed.

use std::sync::OnceLock;

/// Why a callback was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The bot's own workspace is not known yet.
    Unknown,
    /// From another workspace (or from none: a payload without a team).
    Foreign(Option<String>),
}

impl Refusal {
    /// What the user who sent the callback is told.
    pub fn text(&self) -> &'static str {
        match self {
            Refusal::Unknown => {
                "Greenlight cannot confirm its Slack workspace right now; nothing changed. Please try again."
            }
            Refusal::Foreign(_) => "This Greenlight does not serve this Slack workspace.",
        }
    }
}

/// The bot's own workspace, configured or learned once.
pub struct Workspace {
    configured: Option<String>,
    learned: OnceLock<String>,
}

impl Workspace {
    pub fn new(configured: Option<String>) -> Self {
        Self {
            configured: configured.filter(|t| !t.trim().is_empty()),
            learned: OnceLock::new(),
        }
    }

    pub fn own(&self) -> Option<&str> {
        self.configured
            .as_deref()
            .or(self.learned.get().map(String::as_str))
    }

    /// Records what `auth.test` said. A configured team wins; a different answer is a
    /// misconfiguration, logged.
    pub fn learn(&self, team_id: &str) {
        match &self.configured {
            Some(configured) if configured != team_id => tracing::error!(
                configured = %configured, bot_team = team_id,
                "SLACK_TEAM_ID is not the bot token's workspace; only SLACK_TEAM_ID's callbacks count"
            ),
            Some(_) => {}
            None => {
                let _ = self.learned.set(team_id.to_owned());
            }
        }
    }

    /// Whether a callback from `team` counts.
    pub fn admit(&self, team: Option<&str>) -> Result<(), Refusal> {
        let own = self.own().ok_or(Refusal::Unknown)?;
        match team {
            Some(t) if t == own => Ok(()),
            other => Err(Refusal::Foreign(other.map(str::to_owned))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_own_workspace_is_admitted_and_unknown_refuses_all() {
        let w = Workspace::new(None);
        assert_eq!(w.admit(Some("T1")), Err(Refusal::Unknown));
        w.learn("T1");
        assert_eq!(w.admit(Some("T1")), Ok(()));
        assert_eq!(
            w.admit(Some("T2")),
            Err(Refusal::Foreign(Some("T2".into())))
        );
        assert_eq!(w.admit(None), Err(Refusal::Foreign(None)));
        // Learned once: a later answer does not move it.
        w.learn("T2");
        assert_eq!(w.admit(Some("T1")), Ok(()));
    }

    #[test]
    fn a_configured_workspace_wins_over_auth_test() {
        let w = Workspace::new(Some("T9".into()));
        assert_eq!(w.admit(Some("T9")), Ok(()));
        w.learn("T1");
        assert_eq!(
            w.admit(Some("T1")),
            Err(Refusal::Foreign(Some("T1".into())))
        );
        assert_eq!(Workspace::new(Some(" ".into())).own(), None);
    }
}

//! Who an approver entry stands for: Slack user ids as they are, user groups (`@handle`
//! or `S…`) through `usergroups.users.list`, emails through `users.lookupByEmail`.
//! Answers are cached for a few minutes: clicks must be answered within 3 s.

use super::api::{SlackApi, SlackError};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(300);

pub struct Directory {
    api: SlackApi,
    cache: Mutex<HashMap<String, (Instant, Vec<String>)>>,
}

/// A Slack user id (`U…`, or `W…` on Enterprise Grid).
pub fn is_user_id(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('U' | 'W'))
        && s.len() >= 3
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

fn is_group_id(s: &str) -> bool {
    s.starts_with('S')
        && s.len() >= 3
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

impl Directory {
    pub fn new(api: SlackApi) -> Self {
        Self {
            api,
            cache: Mutex::default(),
        }
    }

    fn cached(&self, key: &str) -> Option<Vec<String>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(key)
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, users)| users.clone())
    }

    fn remember(&self, key: &str, users: Vec<String>) -> Vec<String> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(key.to_owned(), (Instant::now(), users.clone()));
        users
    }

    /// The Slack user ids an approver entry stands for.
    pub async fn members(&self, entry: &str) -> Result<Vec<String>, SlackError> {
        if is_user_id(entry) {
            return Ok(vec![entry.to_owned()]);
        }
        if let Some(users) = self.cached(entry) {
            return Ok(users);
        }
        let users = if is_group_id(entry) {
            self.api.usergroup_members(entry).await?
        } else if let Some(handle) = entry.strip_prefix('@') {
            let groups = self.api.usergroups().await?;
            match groups
                .iter()
                .find(|g| g.handle.eq_ignore_ascii_case(handle))
            {
                Some(g) => self.api.usergroup_members(&g.id).await?,
                None => {
                    tracing::warn!(entry, "approver group handle not found in Slack");
                    Vec::new()
                }
            }
        } else if entry.contains('@') {
            self.api
                .lookup_user_by_email(entry)
                .await?
                .into_iter()
                .collect()
        } else {
            tracing::warn!(
                entry,
                "approver entry is neither a user, a group nor an email"
            );
            Vec::new()
        };
        Ok(self.remember(entry, users))
    }

    /// The id of a user group given as `S…` or `@handle`.
    pub async fn group_id(&self, entry: &str) -> Result<Option<String>, SlackError> {
        if is_group_id(entry) {
            return Ok(Some(entry.to_owned()));
        }
        let Some(handle) = entry.strip_prefix('@') else {
            return Ok(None);
        };
        let key = format!("group-id:{handle}");
        if let Some(ids) = self.cached(&key) {
            return Ok(ids.into_iter().next());
        }
        let groups = self.api.usergroups().await?;
        let ids = groups
            .into_iter()
            .filter(|g| g.handle.eq_ignore_ascii_case(handle))
            .map(|g| g.id)
            .collect();
        Ok(self.remember(&key, ids).into_iter().next())
    }

    /// Whether `user` may vote under `approvers`; an empty list means anyone.
    pub async fn is_approver(&self, approvers: &[String], user: &str) -> Result<bool, SlackError> {
        if approvers.is_empty() {
            return Ok(true);
        }
        for entry in approvers {
            if self.members(entry).await?.iter().any(|u| u == user) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The Slack user with this email, if Slack knows one.
    pub async fn user_for_email(&self, email: &str) -> Result<Option<String>, SlackError> {
        Ok(self.members(email).await?.into_iter().next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_recognised() {
        assert!(is_user_id("U0BOB"));
        assert!(is_user_id("W012ABC"));
        assert!(!is_user_id("u0bob"));
        assert!(!is_user_id("S0DBA"));
        assert!(!is_user_id("@dba-team"));
        assert!(!is_user_id("bob@example.com"));
        assert!(is_group_id("S0DBA"));
    }
}

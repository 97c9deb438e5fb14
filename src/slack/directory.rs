//! Who an approver entry stands for: Slack user ids as they are, user groups (`@handle`
//! or `S…`) through `usergroups.users.list`, emails through `users.lookupByEmail`.
//! Answers are cached: clicks must be answered within 3 s. The cache is bounded, since
//! its keys come partly from requests (requester emails): an entry lives [`TTL`] (5
//! minutes), and at [`MAX_ENTRIES`] (10,000) the expired entries go, then the oldest
//! tenth.

use super::api::{SlackApi, SlackError};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an answer is used.
const TTL: Duration = Duration::from_secs(300);
/// The most answers kept.
const MAX_ENTRIES: usize = 10_000;

pub struct Directory {
    api: SlackApi,
    cache: Mutex<HashMap<String, (Instant, Vec<String>)>>,
    max_entries: usize,
}

/// Drops the expired entries; if that is not enough, the oldest tenth, so a full cache
/// is not scanned again on every insert.
fn make_room(cache: &mut HashMap<String, (Instant, Vec<String>)>, max_entries: usize) {
    cache.retain(|_, (at, _)| at.elapsed() < TTL);
    if cache.len() < max_entries {
        return;
    }
    let mut ages: Vec<Instant> = cache.values().map(|(at, _)| *at).collect();
    let evict = (max_entries / 10).max(1).min(ages.len());
    let (_, cutoff, _) = ages.select_nth_unstable(evict - 1);
    let cutoff = *cutoff;
    cache.retain(|_, (at, _)| *at > cutoff);
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
            max_entries: MAX_ENTRIES,
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
        if cache.len() >= self.max_entries && !cache.contains_key(key) {
            make_room(&mut cache, self.max_entries);
        }
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

    fn directory(max_entries: usize) -> Directory {
        let api = SlackApi::new(
            reqwest::Client::new(),
            "http://127.0.0.1:9",
            "xoxb-test".to_owned().into(),
        );
        Directory {
            max_entries,
            ..Directory::new(api)
        }
    }

    #[test]
    fn the_cache_stays_bounded_and_keeps_the_newest() {
        let d = directory(100);
        for i in 0..1_000 {
            d.remember(&format!("user{i}@example.com"), vec![format!("U{i}")]);
            assert!(d.cache.lock().unwrap().len() <= 100);
        }
        assert_eq!(
            d.cached("user999@example.com"),
            Some(vec!["U999".to_owned()])
        );
        assert_eq!(d.cached("user0@example.com"), None);
        // Refreshing a key already there evicts nothing.
        let before = d.cache.lock().unwrap().len();
        d.remember("user999@example.com", vec!["U999".to_owned()]);
        assert_eq!(d.cache.lock().unwrap().len(), before);
    }

    #[test]
    fn entries_expire() {
        let d = directory(10);
        d.remember("old@example.com", vec!["U1".to_owned()]);
        d.cache
            .lock()
            .unwrap()
            .get_mut("old@example.com")
            .unwrap()
            .0 = Instant::now() - TTL - Duration::from_secs(1);
        assert_eq!(d.cached("old@example.com"), None);
        // Expired entries are the first to go when the cache is full.
        for i in 0..10 {
            d.remember(&format!("u{i}"), vec![]);
        }
        assert!(!d.cache.lock().unwrap().contains_key("old@example.com"));
        assert!(d.cache.lock().unwrap().contains_key("u9"));
    }

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

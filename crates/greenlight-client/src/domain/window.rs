//! An access window: an action approved for a length of time instead of once, whose
//! grant covers its action and resource (patterns when they end in `*`) until it ends.

use super::action::rfc3339;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The window of an action that asked for one (`window_seconds`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Window {
    /// The effective length: the request's, capped by the rule's `max_window`.
    pub seconds: u64,
    /// The client id that accepts the grant (its `aud`).
    pub audience: String,
    /// The decision time, once approved.
    #[serde(default, with = "optional_rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, required = true))]
    pub starts_at: Option<DateTime<Utc>>,
    /// `starts_at` plus `seconds`: when the grant expires.
    #[serde(default, with = "optional_rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, required = true))]
    pub ends_at: Option<DateTime<Utc>>,
    /// How many times the grant was used (`POST /v1/grants/verify` with `use`).
    #[serde(default)]
    pub uses: u64,
    /// Why the window is over, once it is.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub ended: Option<WindowEnd>,
    /// Who revoked it (a client id, or a Slack user id), once revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<String>,
}

/// How a window ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum WindowEnd {
    /// `ends_at` passed.
    Expired,
    /// Revoked (`POST /v1/actions/{id}/revoke`).
    Revoked,
}

impl WindowEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            WindowEnd::Expired => "expired",
            WindowEnd::Revoked => "revoked",
        }
    }
}

impl Window {
    /// A window of `seconds` for `audience`, not yet started.
    pub fn new(seconds: u64, audience: String) -> Self {
        Self {
            seconds,
            audience,
            starts_at: None,
            ends_at: None,
            uses: 0,
            ended: None,
            ended_by: None,
        }
    }

    /// Starts the window at the approval, `at`.
    pub fn start(&mut self, at: DateTime<Utc>) {
        self.starts_at = Some(at);
        self.ends_at = Some(at + chrono::Duration::seconds(self.seconds as i64));
    }

    /// Started, not revoked, and before `ends_at` at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.ended.is_none() && self.ends_at.is_some_and(|end| now < end)
    }
}

/// An optional instant in the API's RFC 3339 form, `null` when absent.
mod optional_rfc3339 {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => rfc3339::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| {
            DateTime::parse_from_rfc3339(&s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(serde::de::Error::custom)
        })
        .transpose()
    }
}

//! `POST /v1/actions` bodies, parsed at the edge into values the rest of the code trusts.

use super::text::{deceptive_format_char, deceptive_in_map};
use super::{Binding, Requester};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The body as sent. Unknown fields are rejected.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// With `window_seconds`, may end in `*` (a pattern of actions).
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^(\\*|[a-z0-9][a-z0-9._:-]{0,127}\\*?)$")
    )]
    pub action: String,
    /// With `window_seconds`, may end in `*` (a pattern of resources).
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 512))]
    pub resource: String,
    pub requester: Requester,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 2000))]
    pub reason: Option<String>,
    /// A JSON object of at most 16 KiB, shown to approvers and matched by policy rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub context: Option<serde_json::Map<String, serde_json::Value>>,
    /// Capped by the matching rule's `ttl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 10, maximum = 86400))]
    pub ttl_seconds: Option<u64>,
    /// Where the decision is POSTed, signed; https to one of the client's `callback_hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// Set by a gate that holds one HTTP request: the approval then releases only a
    /// request with this digest (the grant carries it), and approvers see the preview.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<Binding>,
    /// Asks for an access window of this long, capped by the rule's `max_window`: once
    /// approved, the grant covers `action` and `resource` (patterns when they end in `*`)
    /// for that time, for any number of uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 60, maximum = 86400))]
    pub window_seconds: Option<u64>,
    /// With a window: the client id of the enforcement point that will accept the grant
    /// (its `aud`); the creating client when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

/// A request that passed every rule of the HTTP API that does not depend on the policy.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidRequest {
    pub action: String,
    pub resource: String,
    pub requester: Requester,
    pub reason: Option<String>,
    pub context: serde_json::Map<String, serde_json::Value>,
    pub ttl: Option<Duration>,
    pub callback_url: Option<url::Url>,
    pub binding: Option<Binding>,
    /// An access window, with its audience when one was named.
    pub window: Option<WindowRequest>,
}

/// What a request asks of an access window.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowRequest {
    pub length: Duration,
    pub audience: Option<String>,
}

/// A field and what is wrong with it; becomes a `400 invalid_request`.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{field}: {problem}")]
pub struct Invalid {
    pub field: &'static str,
    pub problem: String,
}

fn invalid(field: &'static str, problem: impl Into<String>) -> Invalid {
    Invalid {
        field,
        problem: problem.into(),
    }
}

fn deceptive(c: char) -> String {
    format!(
        "must not contain U+{:04X}, a bidirectional or invisible formatting character",
        c as u32
    )
}

/// Refuses text that reads differently from what it is (see [`super::text`]): approvers
/// must see exactly what they approve.
fn plain_text(field: &'static str, value: Option<&str>) -> Result<(), Invalid> {
    match value.and_then(deceptive_format_char) {
        Some(c) => Err(invalid(field, deceptive(c))),
        None => Ok(()),
    }
}

pub const MAX_RESOURCE_CHARS: usize = 512;
pub const MAX_REASON_CHARS: usize = 2000;
pub const MAX_CONTEXT_BYTES: usize = 16 * 1024;
pub const MIN_TTL_SECONDS: u64 = 10;
pub const MAX_TTL_SECONDS: u64 = 86_400;
pub const MIN_WINDOW_SECONDS: u64 = 60;
pub const MAX_WINDOW_SECONDS: u64 = 86_400;
const MAX_REQUESTER_FIELD_CHARS: usize = 256;

/// `[a-z0-9][a-z0-9._:-]{0,127}`
pub fn is_action_name(s: &str) -> bool {
    let b = s.as_bytes();
    let first_ok = matches!(b.first(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit());
    first_ok
        && b.len() <= 128
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b':' | b'-')
        })
}

/// An action name, or with a window a pattern of them: a name that may end in `*`, or `*`.
fn is_action_pattern(s: &str) -> bool {
    match s.strip_suffix('*') {
        Some("") => true,
        Some(prefix) => is_action_name(prefix),
        None => is_action_name(s),
    }
}

/// Where the sending client may have its decisions POSTed (`callback_url`). The server
/// implements it for the clients of its policy.
pub trait CallbackRules {
    /// The hosts a `callback_url` may name.
    fn callback_hosts(&self) -> &[String];
    /// Whether plain http is allowed to a loopback host (for local development).
    fn allow_insecure_callbacks(&self) -> bool;
}

impl ActionRequest {
    /// Checks every field; the callback URL against the sending client's allowed hosts.
    pub fn validate(self, client: &impl CallbackRules) -> Result<ValidRequest, Invalid> {
        let window = match self.window_seconds {
            None => None,
            Some(s) if (MIN_WINDOW_SECONDS..=MAX_WINDOW_SECONDS).contains(&s) => {
                Some(Duration::from_secs(s))
            }
            Some(_) => return Err(invalid("window_seconds", "must be between 60 and 86400")),
        };
        if window.is_some() {
            if !is_action_pattern(&self.action) {
                return Err(invalid(
                    "action",
                    "must match [a-z0-9][a-z0-9._:-]{0,127}, and may end in `*`",
                ));
            }
            if self.resource.trim_end_matches('*').contains('*') || self.resource.ends_with("**") {
                return Err(invalid("resource", "may contain `*` only once, at the end"));
            }
        } else if !is_action_name(&self.action) {
            return Err(invalid("action", "must match [a-z0-9][a-z0-9._:-]{0,127}"));
        }
        match &self.audience {
            Some(_) if window.is_none() => {
                return Err(invalid("audience", "applies only with window_seconds"));
            }
            Some(a) if a.trim().is_empty() || a.chars().count() > MAX_REQUESTER_FIELD_CHARS => {
                return Err(invalid("audience", "must be a client id"));
            }
            _ => {}
        }
        let resource_len = self.resource.chars().count();
        if resource_len == 0 || resource_len > MAX_RESOURCE_CHARS {
            return Err(invalid("resource", "must be 1 to 512 characters"));
        }
        if self.resource.chars().any(char::is_control) {
            return Err(invalid("resource", "must not contain control characters"));
        }
        let r = &self.requester;
        if r.id.trim().is_empty() {
            return Err(invalid("requester.id", "is required"));
        }
        for (field, value) in [
            ("requester.id", Some(&r.id)),
            ("requester.email", r.email.as_ref()),
            ("requester.slack_user_id", r.slack_user_id.as_ref()),
            ("requester.name", r.name.as_ref()),
        ] {
            if value.is_some_and(|v| v.chars().count() > MAX_REQUESTER_FIELD_CHARS) {
                return Err(invalid(field, "must be at most 256 characters"));
            }
        }
        if let Some(reason) = &self.reason
            && reason.chars().count() > MAX_REASON_CHARS
        {
            return Err(invalid("reason", "must be at most 2000 characters"));
        }
        plain_text("action", Some(&self.action))?;
        plain_text("resource", Some(&self.resource))?;
        plain_text("reason", self.reason.as_deref())?;
        plain_text("requester.id", Some(&r.id))?;
        plain_text("requester.email", r.email.as_deref())?;
        plain_text("requester.slack_user_id", r.slack_user_id.as_deref())?;
        plain_text("requester.name", r.name.as_deref())?;
        let context = self.context.unwrap_or_default();
        if let Some((at, c)) = deceptive_in_map(&context, "") {
            return Err(invalid("context", format!("at `{at}`: {}", deceptive(c))));
        }
        let context_len = serde_json::to_vec(&context).map(|v| v.len()).unwrap_or(0);
        if context_len > MAX_CONTEXT_BYTES {
            return Err(invalid(
                "context",
                "must be a JSON object of at most 16 KiB",
            ));
        }
        let ttl = match self.ttl_seconds {
            None => None,
            Some(s) if (MIN_TTL_SECONDS..=MAX_TTL_SECONDS).contains(&s) => {
                Some(Duration::from_secs(s))
            }
            Some(_) => return Err(invalid("ttl_seconds", "must be between 10 and 86400")),
        };
        if let Some(binding) = &self.binding {
            binding.validate().map_err(|e| invalid("binding", e))?;
        }
        let callback_url = self
            .callback_url
            .as_deref()
            .map(|u| parse_callback_url(u, client))
            .transpose()?;
        Ok(ValidRequest {
            action: self.action,
            resource: self.resource,
            requester: self.requester,
            reason: self.reason.filter(|r| !r.trim().is_empty()),
            context,
            ttl,
            callback_url,
            binding: self.binding,
            window: window.map(|length| WindowRequest {
                length,
                audience: self.audience,
            }),
        })
    }
}

fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// https to a host the client declared; plain http only to loopback, and only when the
/// client allows it. No credentials in the URL.
fn parse_callback_url(raw: &str, client: &impl CallbackRules) -> Result<url::Url, Invalid> {
    let field = "callback_url";
    let url = url::Url::parse(raw).map_err(|e| invalid(field, format!("not a URL: {e}")))?;
    let host = url
        .host()
        .ok_or_else(|| invalid(field, "must have a host"))?;
    match url.scheme() {
        "https" => {}
        "http" if client.allow_insecure_callbacks() && is_loopback(&host) => {}
        "http" => {
            return Err(invalid(
                field,
                "must use https (http is allowed only to loopback hosts for clients with allow_insecure_callbacks)",
            ));
        }
        _ => return Err(invalid(field, "must use https")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(field, "must not carry credentials"));
    }
    let host_str = url.host_str().unwrap_or_default();
    let host_bare = host_str.trim_start_matches('[').trim_end_matches(']');
    let allowed = client
        .callback_hosts()
        .iter()
        .any(|h| h.eq_ignore_ascii_case(host_str) || h.eq_ignore_ascii_case(host_bare));
    if !allowed {
        return Err(invalid(
            field,
            format!("host `{host_str}` is not in this client's callback_hosts"),
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Client {
        callback_hosts: Vec<String>,
        allow_insecure_callbacks: bool,
    }

    impl CallbackRules for Client {
        fn callback_hosts(&self) -> &[String] {
            &self.callback_hosts
        }
        fn allow_insecure_callbacks(&self) -> bool {
            self.allow_insecure_callbacks
        }
    }

    fn client(insecure: bool) -> Client {
        Client {
            callback_hosts: vec!["api.internal.example".into(), "127.0.0.1".into()],
            allow_insecure_callbacks: insecure,
        }
    }

    fn base() -> ActionRequest {
        ActionRequest {
            action: "db.drop_table".into(),
            resource: "postgres://prod/users".into(),
            requester: Requester {
                id: "u-123".into(),
                email: None,
                slack_user_id: None,
                name: None,
            },
            ..Default::default()
        }
    }

    #[test]
    fn action_names_follow_the_documented_pattern() {
        for ok in [
            "a",
            "db.drop_table",
            "0x",
            "deploy:prod-eu_1",
            &"a".repeat(128),
        ] {
            assert!(is_action_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Db",
            ".db",
            "-x",
            "db drop",
            "db/drop",
            &"a".repeat(129),
            "é",
        ] {
            assert!(!is_action_name(bad), "{bad}");
        }
    }

    #[test]
    fn each_rule_names_its_field() {
        let c = client(false);
        let cases: Vec<(ActionRequest, &str)> = vec![
            (
                ActionRequest {
                    action: "DROP".into(),
                    ..base()
                },
                "action",
            ),
            (
                ActionRequest {
                    resource: "".into(),
                    ..base()
                },
                "resource",
            ),
            (
                ActionRequest {
                    resource: "r".repeat(513),
                    ..base()
                },
                "resource",
            ),
            (
                ActionRequest {
                    requester: Requester {
                        id: " ".into(),
                        email: None,
                        slack_user_id: None,
                        name: None,
                    },
                    ..base()
                },
                "requester.id",
            ),
            (
                ActionRequest {
                    reason: Some("x".repeat(2001)),
                    ..base()
                },
                "reason",
            ),
            (
                ActionRequest {
                    ttl_seconds: Some(9),
                    ..base()
                },
                "ttl_seconds",
            ),
            (
                ActionRequest {
                    ttl_seconds: Some(86_401),
                    ..base()
                },
                "ttl_seconds",
            ),
            (
                ActionRequest {
                    context: Some(
                        serde_json::from_value(serde_json::json!({"big": "x".repeat(17_000)}))
                            .unwrap(),
                    ),
                    ..base()
                },
                "context",
            ),
            (
                ActionRequest {
                    callback_url: Some("http://api.internal.example/h".into()),
                    ..base()
                },
                "callback_url",
            ),
            (
                ActionRequest {
                    callback_url: Some("https://evil.example/h".into()),
                    ..base()
                },
                "callback_url",
            ),
            (
                ActionRequest {
                    callback_url: Some("https://u:p@api.internal.example/h".into()),
                    ..base()
                },
                "callback_url",
            ),
            (
                ActionRequest {
                    callback_url: Some("http://127.0.0.1:9/h".into()),
                    ..base()
                },
                "callback_url",
            ),
        ];
        for (req, field) in cases {
            assert_eq!(req.validate(&c).unwrap_err().field, field);
        }
    }

    #[test]
    fn windows_allow_a_trailing_star_and_nothing_else_does() {
        let c = client(false);
        let window = |action: &str, resource: &str, seconds: u64| ActionRequest {
            action: action.into(),
            resource: resource.into(),
            window_seconds: Some(seconds),
            ..base()
        };
        for (action, resource) in [("db.*", "postgres://prod/*"), ("*", "*"), ("db.x", "r")] {
            let ok = window(action, resource, 3600).validate(&c).unwrap();
            assert_eq!(ok.window.unwrap().length, Duration::from_secs(3600));
        }
        for (req, field) in [
            (window("db.*", "r", 59), "window_seconds"),
            (window("db.*", "r", 86_401), "window_seconds"),
            (window("db.**", "r", 60), "action"),
            (window("*db", "r", 60), "action"),
            (window("db", "a*b", 60), "resource"),
            (window("db", "ab**", 60), "resource"),
            (
                ActionRequest {
                    action: "db.*".into(),
                    ..base()
                },
                "action",
            ),
            (
                ActionRequest {
                    audience: Some("proxy".into()),
                    ..base()
                },
                "audience",
            ),
        ] {
            assert_eq!(req.validate(&c).unwrap_err().field, field);
        }
    }

    #[test]
    fn valid_requests_pass_and_boundaries_hold() {
        let c = client(false);
        let ok = ActionRequest {
            reason: Some("x".repeat(2000)),
            resource: "r".repeat(512),
            ttl_seconds: Some(10),
            callback_url: Some("https://api.internal.example/approvals/hook".into()),
            ..base()
        }
        .validate(&c)
        .unwrap();
        assert_eq!(ok.ttl, Some(Duration::from_secs(10)));
        assert!(ok.callback_url.is_some());
        let loopback = ActionRequest {
            callback_url: Some("http://127.0.0.1:9/h".into()),
            ..base()
        };
        assert!(loopback.validate(&client(true)).is_ok());
    }
}

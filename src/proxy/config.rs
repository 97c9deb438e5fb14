//! `routes.toml` of `greenlight proxy` (documented in `docs/proxy.md`): which requests need
//! approval, how each is described to Greenlight, who the requester is, and the proxy's
//! limits. Parsed once at start into checked types; unknown fields are errors.

use super::template::Template;
use crate::middleware::canonical;
use crate::sql::{Dialect, Selector};
use axum::http::Method;
use regex::Regex;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub struct ProxyConfig {
    pub limits: Limits,
    pub requester: RequesterSource,
    pub routes: Vec<Route>,
}

#[derive(Clone, Debug)]
pub struct Limits {
    /// How long a matching request is held waiting for a decision.
    pub hold_timeout: Duration,
    /// How long the upstream may take to answer with its status and headers.
    pub upstream_timeout: Duration,
    /// The largest request body passed to the upstream (413 beyond).
    pub max_body_bytes: u64,
    /// The largest body read to check a route's `body` condition, and of a held request
    /// (read whole to bind the approval to it); 413 beyond.
    pub max_inspected_body_bytes: usize,
    /// How many requests are held at once; more are answered `503`.
    pub max_held: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            hold_timeout: Duration::from_secs(300),
            upstream_timeout: Duration::from_secs(60),
            max_body_bytes: 1 << 30,
            max_inspected_body_bytes: 1 << 20,
            max_held: crate::middleware::DEFAULT_MAX_HELD,
        }
    }
}

#[derive(Debug)]
pub enum RequesterSource {
    /// Request headers set by a trusted front proxy or gateway.
    Header(Fields),
    /// Claims of a bearer JWT verified against a JWKS.
    Jwt(JwtSource),
}

/// Where the requester's id, email and Slack member id come from: header names, or claim
/// names of the verified JWT. Email or Slack id let Greenlight recognise the requester
/// among the approvers (rules that forbid self-approval refuse requests without either).
#[derive(Debug, Default)]
pub struct Fields {
    pub id: String,
    pub email: Option<String>,
    pub slack_user: Option<String>,
}

#[derive(Debug)]
pub struct JwtSource {
    pub jwks_url: String,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Claim names: `id` is the JWT's `claim` (default `sub`).
    pub claims: Fields,
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
}

#[derive(Debug)]
pub struct Route {
    pub name: String,
    /// Empty: any method.
    pub methods: Vec<Method>,
    pub path: String,
    matcher: matchit::Router<()>,
    /// Shared so that a blocking task can evaluate it (see `body.rs`).
    pub body: Option<Arc<BodyCondition>>,
    pub action: Template,
    pub resource: Template,
    pub reason: Option<Template>,
    pub context: BTreeMap<String, Template>,
    pub ttl: Option<Duration>,
}

/// The route applies depending on the string at `pointer` in the JSON body: its SQL
/// (`sql`), and/or a regular expression on its text (`matches`). Evaluated in `body.rs`.
#[derive(Debug)]
pub struct BodyCondition {
    pub pointer: String,
    /// Without `sql`: the route applies when the text matches. With `sql`: a pre-filter
    /// narrowing which statements the route is about; never a way around `on_unparsable`.
    pub matches: Option<Regex>,
    pub sql: Option<SqlCondition>,
}

/// `sql = "writes" | "ddl" | "any"` with its `dialect` and `on_unparsable`.
#[derive(Debug)]
pub struct SqlCondition {
    /// Which statements make the route apply.
    pub hold: Selector,
    pub dialect: Dialect,
    pub on_unparsable: OnUnparsable,
}

/// What a body the proxy cannot inspect gets, on a route whose method and path matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnUnparsable {
    /// Held for approval with `{sql.kind}` = `unknown`.
    Hold,
    /// Answered `400 invalid_request`, never forwarded.
    Refuse,
}

impl Route {
    /// The path parameters, percent-decoded, when `method` and `path` match (the body is
    /// checked apart). `path` must be canonical ([`canonical::path`]); a `GET` route
    /// covers `HEAD`.
    pub fn matches(&self, method: &Method, path: &str) -> Option<Vec<(String, String)>> {
        if !self.methods.is_empty()
            && !self
                .methods
                .iter()
                .any(|m| canonical::method_matches(m, method))
        {
            return None;
        }
        let found = self.matcher.at(path).ok()?;
        Some(
            found
                .params
                .iter()
                .map(|(k, v)| (k.to_owned(), canonical::decode_param(v).into_owned()))
                .collect(),
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    proxy: RawLimits,
    requester: RawRequester,
    #[serde(default, rename = "route")]
    routes: Vec<RawRoute>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    hold_timeout: Option<String>,
    upstream_timeout: Option<String>,
    max_body_bytes: Option<u64>,
    max_inspected_body_bytes: Option<usize>,
    max_held: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequester {
    header: Option<String>,
    email_header: Option<String>,
    slack_user_header: Option<String>,
    jwt: Option<RawJwt>,
    email_claim: Option<String>,
    slack_user_claim: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    jwks_url: String,
    issuer: Option<String>,
    audience: Option<String>,
    #[serde(default = "default_claim")]
    claim: String,
    #[serde(default = "default_algorithms")]
    algorithms: Vec<String>,
}

fn default_claim() -> String {
    "sub".into()
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into(), "EdDSA".into()]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: String,
    #[serde(default)]
    methods: Vec<String>,
    path: String,
    body: Option<RawBody>,
    action: String,
    resource: String,
    reason: Option<String>,
    #[serde(default)]
    context: BTreeMap<String, String>,
    ttl: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBody {
    pointer: String,
    matches: Option<String>,
    sql: Option<String>,
    dialect: Option<String>,
    on_unparsable: Option<String>,
}

impl ProxyConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// Parses a `routes.toml`; errors name the line (TOML errors) or the route and field.
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: Raw = toml::from_str(text).map_err(|e| e.to_string())?;
        let limits = limits(raw.proxy)?;
        let requester = requester(raw.requester)?;
        let routes = raw
            .routes
            .into_iter()
            .map(route)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            limits,
            requester,
            routes,
        })
    }
}

fn requester(raw: RawRequester) -> Result<RequesterSource, String> {
    let header = |field: &str, h: String| {
        axum::http::HeaderName::try_from(h.as_str())
            .map(|_| h.to_ascii_lowercase())
            .map_err(|_| format!("requester.{field}: `{h}` is not a header name"))
    };
    match (raw.header, raw.jwt) {
        (Some(h), None) => {
            // With headers, identities come from headers only, and the reverse: a claim
            // name here, or a header beside a verified token, would be taken on trust.
            if raw.email_claim.is_some() || raw.slack_user_claim.is_some() {
                return Err(
                    "requester: `email_claim`/`slack_user_claim` need `jwt`; with `header` use `email_header`/`slack_user_header`".into(),
                );
            }
            Ok(RequesterSource::Header(Fields {
                id: header("header", h)?,
                email: raw
                    .email_header
                    .map(|h| header("email_header", h))
                    .transpose()?,
                slack_user: raw
                    .slack_user_header
                    .map(|h| header("slack_user_header", h))
                    .transpose()?,
            }))
        }
        (None, Some(jwt)) => {
            if raw.email_header.is_some() || raw.slack_user_header.is_some() {
                return Err(
                    "requester: with `jwt`, email and Slack id come from the verified token: use `email_claim`/`slack_user_claim`".into(),
                );
            }
            let mut source = jwt_source(jwt)?;
            source.claims.email = raw.email_claim;
            source.claims.slack_user = raw.slack_user_claim;
            Ok(RequesterSource::Jwt(source))
        }
        _ => Err("[requester] needs exactly one of `header` and `jwt`".into()),
    }
}

fn duration(field: &str, value: Option<String>, default: Duration) -> Result<Duration, String> {
    match value {
        None => Ok(default),
        Some(s) => humantime::parse_duration(&s)
            .map_err(|e| format!("{field}: `{s}`: {e} (use e.g. 90s, 10m)")),
    }
}

fn limits(raw: RawLimits) -> Result<Limits, String> {
    let d = Limits::default();
    Ok(Limits {
        hold_timeout: duration("proxy.hold_timeout", raw.hold_timeout, d.hold_timeout)?,
        upstream_timeout: duration(
            "proxy.upstream_timeout",
            raw.upstream_timeout,
            d.upstream_timeout,
        )?,
        max_body_bytes: raw.max_body_bytes.unwrap_or(d.max_body_bytes),
        max_inspected_body_bytes: raw
            .max_inspected_body_bytes
            .unwrap_or(d.max_inspected_body_bytes),
        max_held: match raw.max_held {
            Some(0) => return Err("proxy.max_held: at least 1".into()),
            n => n.unwrap_or(d.max_held),
        },
    })
}

fn jwt_source(raw: RawJwt) -> Result<JwtSource, String> {
    url::Url::parse(&raw.jwks_url)
        .map_err(|e| format!("requester.jwt.jwks_url: `{}`: {e}", raw.jwks_url))?;
    let algorithms = raw
        .algorithms
        .iter()
        .map(|a| {
            let alg: jsonwebtoken::Algorithm = a
                .parse()
                .map_err(|_| format!("requester.jwt.algorithms: unknown algorithm `{a}`"))?;
            // A JWKS publishes public keys: an HMAC "key" there would be a shared secret.
            if a.starts_with("HS") {
                return Err(format!(
                    "requester.jwt.algorithms: `{a}` needs a shared secret, not a JWKS"
                ));
            }
            Ok(alg)
        })
        .collect::<Result<Vec<_>, String>>()?;
    if algorithms.is_empty() {
        return Err("requester.jwt.algorithms: at least one algorithm".into());
    }
    Ok(JwtSource {
        jwks_url: raw.jwks_url,
        issuer: raw.issuer,
        audience: raw.audience,
        claims: Fields {
            id: raw.claim,
            ..Fields::default()
        },
        algorithms,
    })
}

fn route(raw: RawRoute) -> Result<Route, String> {
    let at = |field: &str, e: String| format!("route `{}`, {field}: {e}", raw.name);
    let methods = raw
        .methods
        .iter()
        .map(|m| {
            Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                .map_err(|_| at("methods", format!("`{m}` is not an HTTP method")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !raw.path.starts_with('/') {
        return Err(at("path", format!("`{}` must start with `/`", raw.path)));
    }
    let mut matcher = matchit::Router::new();
    matcher
        .insert(raw.path.clone(), ())
        .map_err(|e| at("path", e.to_string()))?;
    let params = path_params(&raw.path);
    let body = raw
        .body
        .map(|b| body_condition(b, &at).map(Arc::new))
        .transpose()?;
    let has_body = body.is_some();
    let has_sql = body.as_ref().is_some_and(|b| b.sql.is_some());
    let template = |field: &str, s: &str| {
        Template::parse(s, &params, has_body, has_sql).map_err(|e| at(field, e))
    };
    let action = template("action", &raw.action)?;
    let resource = template("resource", &raw.resource)?;
    let reason = raw
        .reason
        .as_deref()
        .map(|r| template("reason", r))
        .transpose()?;
    let context = raw
        .context
        .iter()
        .map(|(k, v)| Ok((k.clone(), template(&format!("context.{k}"), v)?)))
        .collect::<Result<BTreeMap<_, _>, String>>()?;
    let ttl = raw
        .ttl
        .map(|t| duration("ttl", Some(t), Duration::ZERO).map_err(|e| at("ttl", e)))
        .transpose()?;
    Ok(Route {
        name: raw.name,
        methods,
        path: raw.path,
        matcher,
        body,
        action,
        resource,
        reason,
        context,
        ttl,
    })
}

fn body_condition(
    raw: RawBody,
    at: &dyn Fn(&str, String) -> String,
) -> Result<BodyCondition, String> {
    if !raw.pointer.starts_with('/') {
        return Err(at(
            "body.pointer",
            format!("`{}` is not a JSON pointer (e.g. `/query`)", raw.pointer),
        ));
    }
    let matches = raw
        .matches
        .map(|m| Regex::new(&m).map_err(|e| at("body.matches", e.to_string())))
        .transpose()?;
    let sql = match raw.sql {
        None => {
            for (field, set) in [
                ("body.dialect", raw.dialect.is_some()),
                ("body.on_unparsable", raw.on_unparsable.is_some()),
            ] {
                if set {
                    return Err(at(field, "needs `sql` on the same condition".into()));
                }
            }
            if matches.is_none() {
                return Err(at("body", "needs `sql` or `matches`".into()));
            }
            None
        }
        Some(hold) => Some(SqlCondition {
            hold: Selector::parse(&hold).ok_or_else(|| {
                at(
                    "body.sql",
                    format!("`{hold}`: use `writes`, `ddl` or `any`"),
                )
            })?,
            dialect: match raw.dialect.as_deref() {
                None => Dialect::Postgres,
                Some(d) => Dialect::parse(d).ok_or_else(|| {
                    at(
                        "body.dialect",
                        format!("unknown dialect `{d}` (one of {})", Dialect::NAMES),
                    )
                })?,
            },
            on_unparsable: match raw.on_unparsable.as_deref() {
                None | Some("hold") => OnUnparsable::Hold,
                Some("refuse") => OnUnparsable::Refuse,
                Some(other) => {
                    return Err(at(
                        "body.on_unparsable",
                        format!("`{other}`: use `hold` or `refuse`"),
                    ));
                }
            },
        }),
    };
    Ok(BodyCondition {
        pointer: raw.pointer,
        matches,
        sql,
    })
}

/// The parameter names of a path pattern: `/db/{name}/{*rest}` has `name` and `rest`.
fn path_params(path: &str) -> Vec<String> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|p| p.trim_start_matches('*').to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../examples/routes.toml");

    #[test]
    fn the_example_file_parses() {
        let config = ProxyConfig::parse(EXAMPLE).unwrap();
        assert!(!config.routes.is_empty());
        let delete = &config.routes[0];
        let params = delete
            .matches(&Method::DELETE, "/accounts/42")
            .expect("matches");
        assert_eq!(params, vec![("id".to_owned(), "42".to_owned())]);
        assert!(delete.matches(&Method::GET, "/accounts/42").is_none());
        let sql = config
            .routes
            .iter()
            .find(|r| r.name == "sql-writes")
            .unwrap();
        let condition = sql.body.as_ref().and_then(|b| b.sql.as_ref()).unwrap();
        assert_eq!(condition.hold, Selector::Writes);
        assert_eq!(condition.dialect, Dialect::Postgres);
    }

    #[test]
    fn mistakes_are_named() {
        let base = "[requester]\nheader = \"x-user\"\n";
        let with = |route: &str| ProxyConfig::parse(&format!("{base}{route}")).unwrap_err();
        let e = with(
            "[[route]]\nname = \"r\"\npath = \"/a/{id}\"\naction = \"a\"\nresource = \"{nope}\"\n",
        );
        assert!(
            e.contains("route `r`, resource") && e.contains("nope"),
            "{e}"
        );
        let e = with(
            "[[route]]\nname = \"r\"\npath = \"/a\"\naction = \"a\"\nresource = \"x\"\nmethods = [\"GE T\"]\n",
        );
        assert!(e.contains("methods"), "{e}");
        let e = with(
            "[[route]]\nname = \"r\"\npath = \"/a\"\naction = \"a\"\nresource = \"x\"\nbody = { pointer = \"/q\", matches = \"(\" }\n",
        );
        assert!(e.contains("body.matches"), "{e}");
        let e =
            with("[[route]]\nname = \"r\"\npath = \"/a\"\naction = \"a\"\nresource = \"{body}\"\n");
        assert!(e.contains("{body}"), "{e}");
        let sql = |body: &str, resource: &str| {
            with(&format!(
                "[[route]]\nname = \"r\"\npath = \"/a\"\naction = \"a\"\nresource = \"{resource}\"\nbody = {body}\n"
            ))
        };
        for (body, resource, named) in [
            (
                r#"{ pointer = "/q", sql = "write" }"#,
                "x",
                "route `r`, body.sql",
            ),
            (
                r#"{ pointer = "/q", sql = "writes", dialect = "oracle9" }"#,
                "x",
                "route `r`, body.dialect",
            ),
            (
                r#"{ pointer = "/q", sql = "writes", on_unparsable = "pass" }"#,
                "x",
                "route `r`, body.on_unparsable",
            ),
            (
                r#"{ pointer = "/q", on_unparsable = "hold", matches = "x" }"#,
                "x",
                "route `r`, body.on_unparsable",
            ),
            (
                r#"{ pointer = "/q" }"#,
                "x",
                "route `r`, body: needs `sql` or `matches`",
            ),
            (
                r#"{ pointer = "q", sql = "any" }"#,
                "x",
                "route `r`, body.pointer",
            ),
            (
                r#"{ pointer = "/q", matches = "x" }"#,
                "{sql.kind}",
                "route `r`, resource",
            ),
        ] {
            let e = sql(body, resource);
            assert!(e.contains(named), "{body}: {e}");
        }
        let e = ProxyConfig::parse("[requester]\n").unwrap_err();
        assert!(e.contains("exactly one"), "{e}");
        let e = ProxyConfig::parse("[requester]\nheader = \"x\"\nfoo = 1\n").unwrap_err();
        assert!(e.contains("foo"), "{e}");
    }
}

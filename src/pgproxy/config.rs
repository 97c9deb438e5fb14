//! The rules file of `greenlight pg-proxy` (documented in `docs/pg-proxy.md`): which
//! statements are held, how each is described to Greenlight, who the startup `user` is,
//! and the proxy's limits. Parsed once at start into checked types; every mistake is
//! reported as `FILE:LINE: …`, unknown fields included.

use super::template::Template;
use crate::domain::Requester;
use crate::sql::{Classification, Selector, Statement};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;
use wildmatch::WildMatch;

#[derive(Debug)]
pub struct PgConfig {
    pub limits: Limits,
    /// Startup `user` → the person Greenlight is told about.
    pub requesters: BTreeMap<String, Requester>,
    pub statements: Vec<StatementRule>,
    /// `[audit] statements = "all"`: every statement that passes is written to the
    /// proxy's log too (Greenlight has no audit entry a client writes).
    pub audit_all: bool,
}

#[derive(Clone, Debug)]
pub struct Limits {
    /// How long a held statement waits for a decision before it is cancelled (`57014`).
    pub hold_timeout: Duration,
    /// The largest `Query` or `Parse` message read whole to classify, and the largest
    /// extended-protocol batch kept while held; a bigger one closes the connection.
    pub max_inspected_bytes: usize,
    /// How many statements are held at once, over all connections; more are refused.
    pub max_held: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            hold_timeout: Duration::from_secs(300),
            max_inspected_bytes: 1 << 20,
            max_held: 1000,
        }
    }
}

/// One `[[statement]]`: when it applies and how a held statement is described.
#[derive(Debug)]
pub struct StatementRule {
    pub name: String,
    pub sql: Selector,
    /// Empty: any table.
    pub tables: Vec<TableGlob>,
    pub action: Template,
    pub resource: Template,
    pub reason: Option<Template>,
    pub ttl: Option<Duration>,
}

impl StatementRule {
    /// Whether the rule holds this statement: the selector picks it, and, with a `tables`
    /// filter, one of its tables matches. A statement that names no table (`DO`, `CALL`,
    /// `CREATE ROLE`, SQL that does not parse) may reach any table, so it matches every
    /// filter: fail closed. An unqualified name (`users`) may be in any schema of the
    /// `search_path`, so it matches `public.users` as well as `users`.
    pub fn holds(&self, statement: &Statement) -> bool {
        let one = Classification {
            statements: vec![statement.clone()],
        };
        if !self.sql.selects(&one) {
            return false;
        }
        if self.tables.is_empty() || statement.tables.is_empty() {
            return true;
        }
        statement
            .tables
            .iter()
            .any(|table| self.tables.iter().any(|glob| glob.matches(table)))
    }
}

/// One glob of `tables`, and its part after the schema (`public.*` → `*`).
#[derive(Debug)]
pub struct TableGlob {
    whole: WildMatch,
    table: Option<WildMatch>,
}

impl TableGlob {
    fn new(glob: &str) -> Self {
        Self {
            whole: WildMatch::new(glob),
            table: glob.split_once('.').map(|(_, t)| WildMatch::new(t)),
        }
    }

    /// An unqualified name (`users`) may be in any schema of the `search_path`: it is
    /// matched against the glob's table part.
    fn matches(&self, table: &str) -> bool {
        self.whole.matches(table)
            || (!table.contains('.') && self.table.as_ref().is_some_and(|t| t.matches(table)))
    }
}

impl PgConfig {
    /// The first rule that holds some statement of the text.
    pub fn rule_for(&self, sql: &Classification) -> Option<&StatementRule> {
        self.statements
            .iter()
            .find(|rule| sql.statements.iter().any(|s| rule.holds(s)))
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|(line, e)| anyhow::anyhow!("{}:{line}: {e}", path.display()))
    }

    /// Parses a rules file; an error carries its 1-based line.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or(1, |s| line(s.start));
            (at, e.message().to_owned())
        })?;
        let limits = limits(raw.proxy).map_err(|(at, e)| (line(at), e))?;
        let audit_all = match raw.audit.statements {
            None => false,
            Some(s) => match s.get_ref().as_str() {
                "held" => false,
                "all" => true,
                other => {
                    let e = format!("audit.statements: `{other}` is not \"held\" or \"all\"");
                    return Err((line(s.span().start), e));
                }
            },
        };
        let requesters = raw
            .requester
            .map
            .into_iter()
            .map(|(user, person)| {
                let person = person.into_inner();
                let requester = Requester {
                    id: user.clone(),
                    email: person.email,
                    slack_user_id: person.slack_user_id,
                    name: person.name,
                };
                (user, requester)
            })
            .collect();
        let statements = raw
            .statements
            .into_iter()
            .map(|s| statement(s).map_err(|(at, e)| (line(at), e)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            limits,
            requesters,
            statements,
            audit_all,
        })
    }
}

type Located = (usize, String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    proxy: RawLimits,
    #[serde(default)]
    requester: RawRequester,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default, rename = "statement")]
    statements: Vec<RawStatement>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    hold_timeout: Option<Spanned<String>>,
    max_inspected_bytes: Option<Spanned<usize>>,
    max_held: Option<Spanned<usize>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    statements: Option<Spanned<String>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequester {
    #[serde(default)]
    map: BTreeMap<String, Spanned<RawPerson>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPerson {
    email: Option<String>,
    slack_user_id: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatement {
    name: Spanned<String>,
    sql: Spanned<String>,
    #[serde(default)]
    tables: Option<Spanned<Vec<String>>>,
    action: Spanned<String>,
    resource: Spanned<String>,
    reason: Option<Spanned<String>>,
    ttl: Option<Spanned<String>>,
}

fn duration(field: &str, value: &Spanned<String>) -> Result<Duration, Located> {
    humantime::parse_duration(value.get_ref()).map_err(|e| {
        (
            value.span().start,
            format!("{field}: `{}`: {e} (use e.g. 90s, 10m)", value.get_ref()),
        )
    })
}

fn limits(raw: RawLimits) -> Result<Limits, Located> {
    let d = Limits::default();
    let at_least_one = |field: &str, v: Option<Spanned<usize>>, default: usize| match v {
        None => Ok(default),
        Some(v) if *v.get_ref() == 0 => Err((v.span().start, format!("{field}: at least 1"))),
        Some(v) => Ok(v.into_inner()),
    };
    Ok(Limits {
        hold_timeout: match &raw.hold_timeout {
            None => d.hold_timeout,
            Some(v) => duration("proxy.hold_timeout", v)?,
        },
        max_inspected_bytes: at_least_one(
            "proxy.max_inspected_bytes",
            raw.max_inspected_bytes,
            d.max_inspected_bytes,
        )?,
        max_held: at_least_one("proxy.max_held", raw.max_held, d.max_held)?,
    })
}

fn statement(raw: RawStatement) -> Result<StatementRule, Located> {
    let name = raw.name.get_ref().clone();
    let at = |span: std::ops::Range<usize>, field: &str, e: String| {
        (span.start, format!("statement `{name}`, {field}: {e}"))
    };
    let sql = Selector::parse(raw.sql.get_ref()).ok_or_else(|| {
        at(
            raw.sql.span(),
            "sql",
            format!("`{}`: use `writes`, `ddl` or `any`", raw.sql.get_ref()),
        )
    })?;
    let tables = match raw.tables {
        None => Vec::new(),
        Some(t) => {
            if t.get_ref().is_empty() || t.get_ref().iter().any(|g| g.is_empty()) {
                return Err(at(
                    t.span(),
                    "tables",
                    "give table globs (`public.*`), or leave `tables` out for any table".into(),
                ));
            }
            t.get_ref().iter().map(|g| TableGlob::new(g)).collect()
        }
    };
    let template = |field: &str, s: &Spanned<String>| {
        Template::parse(s.get_ref()).map_err(|e| at(s.span(), field, e))
    };
    let action = template("action", &raw.action)?;
    let resource = template("resource", &raw.resource)?;
    let reason = raw
        .reason
        .as_ref()
        .map(|r| template("reason", r))
        .transpose()?;
    let ttl = raw
        .ttl
        .as_ref()
        .map(|t| duration("ttl", t).map_err(|(_, e)| at(t.span(), "ttl", e)))
        .transpose()?;
    Ok(StatementRule {
        name,
        sql,
        tables,
        action,
        resource,
        reason,
        ttl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{Dialect, classify};

    const EXAMPLE: &str = include_str!("../../examples/pg-rules.toml");

    #[test]
    fn the_example_file_parses_and_holds_what_it_says() {
        let config = PgConfig::parse(EXAMPLE).unwrap();
        assert_eq!(
            config.requesters["alice"].email.as_deref(),
            Some("alice@example.com")
        );
        let rule = |sql: &str| {
            let c = classify(sql, Dialect::Postgres).unwrap();
            config.rule_for(&c).map(|r| r.name.clone())
        };
        assert_eq!(rule("SELECT * FROM users"), None);
        assert_eq!(rule("DROP TABLE public.users").as_deref(), Some("ddl"));
        assert_eq!(
            rule("DELETE FROM users WHERE id = 1").as_deref(),
            Some("writes")
        );
        // Two statements: the one that a rule holds holds the message.
        assert_eq!(
            rule("SELECT 1; UPDATE audit.log SET x = 1").as_deref(),
            None,
            "audit.* is outside `public.*`"
        );
        assert_eq!(
            rule("SELECT 1; UPDATE users SET x = 1").as_deref(),
            Some("writes")
        );
        // No table named: it may reach any, so the filter does not let it pass.
        assert_eq!(
            rule("DO $$ BEGIN DELETE FROM users; END $$").as_deref(),
            Some("ddl")
        );
    }

    #[test]
    fn mistakes_are_named_with_their_line() {
        let err = |text: &str| PgConfig::parse(text).unwrap_err();
        let base = "[[statement]]\nname = \"w\"\nsql = \"writes\"\naction = \"pg.{sql.kind}\"\n";
        let (line, e) = err(&format!("{base}resource = \"{{nope}}\"\n"));
        assert_eq!(line, 5, "{e}");
        assert!(
            e.contains("statement `w`, resource") && e.contains("nope"),
            "{e}"
        );
        let (line, e) = err(
            "\n[[statement]]\nname = \"w\"\nsql = \"write\"\naction = \"a\"\nresource = \"r\"\n",
        );
        assert_eq!(line, 4, "{e}");
        assert!(e.contains("sql"), "{e}");
        let (line, e) = err(&format!("{base}resource = \"r\"\ncolour = \"red\"\n"));
        assert!(e.contains("colour"), "{e}");
        assert!(line >= 1);
        let (line, e) = err(&format!("{base}resource = \"r\"\nttl = \"soon\"\n"));
        assert_eq!(line, 6, "{e}");
        let (line, e) = err("[proxy]\nmax_held = 0\n");
        assert_eq!(line, 2, "{e}");
        let (_, e) = err(&format!("{base}resource = \"r\"\ntables = []\n"));
        assert!(e.contains("tables"), "{e}");
        let (_, e) = err("[requester]\nmap = { alice = { mail = \"a@b\" } }\n");
        assert!(e.contains("mail"), "{e}");
        let (line, e) = err("\n[audit]\nstatements = \"some\"\n");
        assert_eq!(line, 3, "{e}");
        assert!(e.contains("audit.statements"), "{e}");
    }

    #[test]
    fn only_held_statements_are_recorded_unless_the_rules_say_all() {
        assert!(!PgConfig::parse("").unwrap().audit_all);
        let held = PgConfig::parse("[audit]\nstatements = \"held\"\n").unwrap();
        assert!(!held.audit_all);
        let all = PgConfig::parse("[audit]\nstatements = \"all\"\n").unwrap();
        assert!(all.audit_all);
    }
}

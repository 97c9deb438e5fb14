//! Access windows in a session: `SET greenlight.grant = '<window grant>'` offers a
//! window's grant for the statements that follow, as `Greenlight-Grant` does for
//! `greenlight proxy`. The setting is the proxy's own: it is answered here and never
//! reaches the database (nor its logs). Each held statement is then checked against it
//! by the client crate's [`Holder::window_pass`](crate::middleware::Holder::window_pass):
//! a window's grant, issued to this proxy, for this very requester, covering the rule's
//! action and resource, with one use counted by Greenlight; nothing cached.
//!
//! Read with PostgreSQL's own grammar, so every spelling PostgreSQL accepts is the same
//! setting (`SET SESSION`, `TO`, a quoted name, any case). A text that names the setting
//! in any other way (beside other statements, `SET LOCAL`, several values, SQL that does
//! not parse) is refused whole: fail closed.

use crate::sql::Classification;
use pg_query::NodeEnum;
use pg_query::protobuf::{DiscardMode, VariableSetKind, a_const};

/// The setting's name, compared as PostgreSQL compares setting names: ignoring case.
pub const SETTING: &str = "greenlight.grant";

/// The longest grant taken (a grant is under 2 KiB).
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// What a text does with the session's grant.
#[derive(Debug, PartialEq, Eq)]
pub enum GrantSetting {
    /// Nothing: it runs as any text.
    Untouched,
    /// `SET greenlight.grant = '…'`: answered here; the session offers this grant.
    Set(String),
    /// `RESET greenlight.grant`, `SET greenlight.grant TO DEFAULT`: answered here; the
    /// session offers no grant.
    Reset,
    /// `RESET ALL`, `DISCARD ALL`: runs as any text, and the session offers no grant.
    ResetsAll,
    /// Refused whole, never forwarded: the reason the client is told.
    Refused(&'static str),
}

/// What `sql`, classified as `classified` (`None`: no statement), does with the grant.
/// Parsed again only when it holds a `SET`/`RESET`/`DISCARD`, or does not parse: the
/// other texts never touch it, and cost nothing more.
pub fn grant_setting(sql: &str, classified: Option<&Classification>) -> GrantSetting {
    let Some(classified) = classified else {
        return GrantSetting::Untouched;
    };
    let may_touch = classified
        .statements
        .iter()
        .any(|s| matches!(s.kind.as_str(), "set" | "discard") || s.kind.as_str() == "unknown");
    if !may_touch {
        return GrantSetting::Untouched;
    }
    let Some(parsed) = parse(sql) else {
        // `GRANT` is a reserved word: PostgreSQL reads `greenlight.grant` only quoted
        // (`greenlight."grant"`). The unquoted spelling, which PostgreSQL would refuse,
        // is read as the quoted one; anything else that may name it and does not parse
        // is refused. SQL that does not parse and names no `greenlight` stays an
        // ordinary text of kind `unknown`, held as such.
        let lower = sql.to_ascii_lowercase();
        let Some(at) = lower.find(SETTING) else {
            return if lower.contains("greenlight") {
                GrantSetting::Refused("a statement naming greenlight.grant that does not parse")
            } else {
                GrantSetting::Untouched
            };
        };
        let quoted = format!(
            "{}greenlight.\"grant\"{}",
            &sql[..at],
            &sql[at + SETTING.len()..]
        );
        return match parse(&quoted) {
            Some(parsed) => match of(&parsed) {
                GrantSetting::Untouched | GrantSetting::ResetsAll => {
                    GrantSetting::Refused("a statement naming greenlight.grant that does not parse")
                }
                setting => setting,
            },
            None => {
                GrantSetting::Refused("a statement naming greenlight.grant that does not parse")
            }
        };
    };
    of(&parsed)
}

/// Parsed by PostgreSQL's grammar; `None` when it does not parse.
fn parse(sql: &str) -> Option<pg_query::ParseResult> {
    std::panic::catch_unwind(|| pg_query::parse(sql, 0))
        .ok()?
        .ok()
}

/// What a parsed text does with the grant.
fn of(parsed: &pg_query::ParseResult) -> GrantSetting {
    let statements = &parsed.protobuf.stmts;
    let mut resets_all = false;
    let mut ours = None;
    for raw in statements {
        match raw.stmt.as_ref().and_then(|n| n.node.as_ref()) {
            Some(NodeEnum::VariableSetStmt(set)) if set.name.eq_ignore_ascii_case(SETTING) => {
                ours = Some(set);
            }
            Some(NodeEnum::VariableSetStmt(set))
                if set.kind == VariableSetKind::VarResetAll as i32 =>
            {
                resets_all = true;
            }
            Some(NodeEnum::DiscardStmt(d)) if d.target == DiscardMode::DiscardAll as i32 => {
                resets_all = true;
            }
            _ => {}
        }
    }
    let Some(set) = ours else {
        return if resets_all {
            GrantSetting::ResetsAll
        } else {
            GrantSetting::Untouched
        };
    };
    if statements.len() != 1 {
        return GrantSetting::Refused(
            "SET greenlight.grant must be sent alone, not with other statements in one message",
        );
    }
    if set.is_local {
        return GrantSetting::Refused(
            "SET LOCAL greenlight.grant is not supported; use SET greenlight.grant",
        );
    }
    match VariableSetKind::try_from(set.kind) {
        Ok(VariableSetKind::VarReset | VariableSetKind::VarSetDefault) => GrantSetting::Reset,
        Ok(VariableSetKind::VarSetValue) => match token(&set.args) {
            Some(token) => GrantSetting::Set(token),
            None => GrantSetting::Refused(
                "SET greenlight.grant takes one value: a window's grant, as a string",
            ),
        },
        _ => GrantSetting::Refused("greenlight.grant can only be set to a grant, or reset"),
    }
}

/// The one string value of a `SET`, trimmed; an empty one is no grant.
fn token(args: &[pg_query::Node]) -> Option<String> {
    let [arg] = args else { return None };
    let Some(NodeEnum::AConst(constant)) = &arg.node else {
        return None;
    };
    let Some(a_const::Val::Sval(s)) = &constant.val else {
        return None;
    };
    let token = s.sval.trim();
    (!token.is_empty() && token.len() <= MAX_TOKEN_BYTES).then(|| token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{Dialect, Kind, SqlError, Statement};

    /// As the session classifies a text: one `unknown` statement when it does not parse.
    fn setting(sql: &str) -> GrantSetting {
        let classified = match crate::sql::classify(sql, Dialect::Postgres) {
            Ok(c) => Some(c),
            Err(SqlError::Empty) => None,
            Err(_) => Some(Classification {
                statements: vec![Statement {
                    kind: Kind::unknown(),
                    ddl: true,
                    tables: Default::default(),
                }],
            }),
        };
        grant_setting(sql, classified.as_ref())
    }

    #[test]
    fn every_spelling_of_the_setting_is_read() {
        for sql in [
            "SET greenlight.grant = 'eyJ.a.b'",
            "set greenlight.grant to 'eyJ.a.b';",
            "SET SESSION greenlight.grant = 'eyJ.a.b'",
            "SET \"greenlight\".\"grant\" = 'eyJ.a.b'",
            "SET greenlight.\"grant\" = 'eyJ.a.b'",
            "SET \"greenlight.grant\" TO 'eyJ.a.b'",
            "SET Greenlight.Grant = E'eyJ.a.b'",
            "/* window */ SET greenlight.grant = ' eyJ.a.b '",
        ] {
            assert_eq!(setting(sql), GrantSetting::Set("eyJ.a.b".into()), "{sql}");
        }
        for sql in ["RESET greenlight.grant", "SET greenlight.grant TO DEFAULT"] {
            assert_eq!(setting(sql), GrantSetting::Reset, "{sql}");
        }
        assert_eq!(setting("RESET ALL"), GrantSetting::ResetsAll);
        assert_eq!(setting("DISCARD ALL"), GrantSetting::ResetsAll);
    }

    #[test]
    fn anything_else_naming_it_is_refused_and_other_settings_are_untouched() {
        for sql in [
            "SET greenlight.grant = 'eyJ.a.b'; DELETE FROM users",
            "SELECT 1; RESET greenlight.grant",
            "SET LOCAL greenlight.grant = 'eyJ.a.b'",
            "SET greenlight.grant = 'a', 'b'",
            "SET greenlight.grant = 42",
            "SET greenlight.grant = ''",
            "SET greenlight.grant FROM CURRENT",
            "SET greenlight.grant = = 'x'",
            "SET greenlight.grant = 'x'; GRANT ALL ON users TO bob",
            "SET greenlight.grant = 'x' GRANT",
        ] {
            assert!(
                matches!(setting(sql), GrantSetting::Refused(_)),
                "{sql}: {:?}",
                setting(sql)
            );
        }
        for sql in [
            "SET search_path = public",
            "SELECT current_setting('greenlight.grant')",
            "DELETE FROM users",
            "DISCARD PLANS",
            "GRANT SELECT ON users TO",
            "",
        ] {
            assert_eq!(setting(sql), GrantSetting::Untouched, "{sql}");
        }
    }
}

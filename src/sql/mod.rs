//! What a SQL text does, read from a real parser: whether each statement is a plain read,
//! whether it changes the schema, its kind and the tables it touches. No HTTP here: the
//! HTTP proxy's `body = { sql = … }` and a PostgreSQL wire proxy share this one judgement.
//!
//! PostgreSQL text is parsed by PostgreSQL's own grammar (`pg_query`, libpg_query), so
//! what is classified is exactly what the server will run; other dialects by `sqlparser`.

mod functions;
mod kind;
mod other;
mod postgres;

#[cfg(test)]
mod other_tests;
#[cfg(test)]
mod tests;

pub use kind::Kind;

use std::collections::BTreeSet;
use std::fmt;

/// The grammar a SQL text is read with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL's own parser.
    Postgres,
    MySql,
    Sqlite,
    MsSql,
    /// `sqlparser`'s permissive grammar, for anything else.
    Generic,
}

impl Dialect {
    /// The names accepted in configuration files.
    pub const NAMES: &'static str = "postgres, mysql, sqlite, mssql, generic";

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "postgres" | "postgresql" => Self::Postgres,
            "mysql" => Self::MySql,
            "sqlite" => Self::Sqlite,
            "mssql" => Self::MsSql,
            "generic" => Self::Generic,
            _ => return None,
        })
    }
}

/// Which texts a rule is about: `sql = "writes" | "ddl" | "any"` in configuration files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selector {
    /// Some statement is not a plain read.
    Writes,
    /// Some statement changes the schema or privileges (or may).
    Ddl,
    /// Every text.
    Any,
}

impl Selector {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "writes" => Self::Writes,
            "ddl" => Self::Ddl,
            "any" => Self::Any,
            _ => return None,
        })
    }

    pub fn selects(self, sql: &Classification) -> bool {
        match self {
            Self::Writes => !sql.is_plain_read(),
            Self::Ddl => sql.is_ddl(),
            Self::Any => true,
        }
    }
}

/// One statement of a SQL text, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// The most dangerous thing the statement does, nested parts included (a `SELECT`
    /// whose `WITH` deletes rows is a `delete`).
    pub kind: Kind,
    /// Changes the schema or privileges, or runs code that may (see [`Kind::is_ddl`]).
    pub ddl: bool,
    /// Tables read or written, as qualified in the text.
    pub tables: BTreeSet<String>,
}

impl Statement {
    /// A `SELECT`/`VALUES`/`TABLE`/`SHOW`/`EXPLAIN` (without `ANALYZE`) that modifies
    /// nothing, or transaction control (`BEGIN`, `COMMIT`, …), which writes no data itself.
    pub fn is_plain_read(&self) -> bool {
        self.kind.is_read()
    }
}

/// A whole SQL text (one or more statements), classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classification {
    pub statements: Vec<Statement>,
}

impl Classification {
    /// The most dangerous statement's kind (never empty: a text without statements does
    /// not classify).
    pub fn kind(&self) -> &Kind {
        self.statements
            .iter()
            .map(|s| &s.kind)
            .max()
            .expect("a classification has at least one statement")
    }

    /// Every statement is a plain read.
    pub fn is_plain_read(&self) -> bool {
        self.statements.iter().all(Statement::is_plain_read)
    }

    /// Some statement changes the schema (or may).
    pub fn is_ddl(&self) -> bool {
        self.statements.iter().any(|s| s.ddl)
    }

    /// Every table of every statement, sorted and deduplicated.
    pub fn tables(&self) -> BTreeSet<&str> {
        self.statements
            .iter()
            .flat_map(|s| s.tables.iter().map(String::as_str))
            .collect()
    }

    /// The tables as one comma-separated string (`public.users,orders`).
    pub fn tables_joined(&self) -> String {
        self.tables().into_iter().collect::<Vec<_>>().join(",")
    }
}

/// Why a SQL text could not be classified; callers treat every case as "unknown".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    #[error("the SQL does not parse: {0}")]
    Parse(String),
    #[error("the SQL holds no statement")]
    Empty,
    /// Text the dialect's server reads differently from the parser, refused outright.
    #[error("{0}")]
    Ambiguous(&'static str),
}

/// Classifies `sql`, which may hold several statements separated by `;`.
pub fn classify(sql: &str, dialect: Dialect) -> Result<Classification, SqlError> {
    let statements = match dialect {
        Dialect::Postgres => postgres::classify(sql)?,
        other => other::classify(sql, other)?,
    };
    if statements.is_empty() {
        return Err(SqlError::Empty);
    }
    Ok(Classification { statements })
}

/// Renders one identifier so that a name with dots, commas or capitals stays one
/// unambiguous name in `tables` (PostgreSQL's `quote_ident` rule, keywords aside).
fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

impl fmt::Display for Classification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on [{}]", self.kind(), self.tables_joined())
    }
}

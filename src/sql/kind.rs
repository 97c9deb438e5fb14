//! The kind of a SQL statement (`select`, `delete`, `drop_table`, …) and the danger order
//! that picks the kind of a text of several statements.

use std::cmp::Ordering;
use std::fmt;

/// A statement's kind: a short lowercase word of `[a-z_]`, fit for an action name
/// (`db.{sql.kind}`). Ordered by danger, least dangerous first:
///
/// | rank | kinds |
/// | --- | --- |
/// | 0 | `transaction` (`BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`, …) |
/// | 1 | `show`, `explain` |
/// | 2 | `select` |
/// | 3 | `set`, `reset`, `use`, `discard`, `deallocate`, `listen`, `unlisten`, `prepared_transaction` |
/// | 4 | `select_lock` (`FOR UPDATE`/`FOR SHARE`), `lock` |
/// | 5 | `insert` |
/// | 6 | `copy` |
/// | 7 | `update` |
/// | 8 | `merge` |
/// | 9 | `delete` |
/// | 10 | any other statement (`vacuum`, `analyze`, `cluster`, `reindex`, `notify`, `refresh_materialized_view`, `load`, …) |
/// | 11 | `function` (a `SELECT` calling a function with side effects) |
/// | 12 | `call`, `execute` |
/// | 13 | `do` |
/// | 14 | `create_*`, `select_into` |
/// | 15 | `comment`, `security_label`, `rename`, `alter_*` |
/// | 16 | `grant`, `grant_role`, `revoke`, `revoke_role`, `reassign_owned` |
/// | 17 | `truncate` |
/// | 18 | `drop_*` |
/// | 19 | `unknown` (did not parse) |
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Kind(String);

impl Kind {
    pub const UNKNOWN: &'static str = "unknown";

    /// `name` must be lowercase `[a-z_]`; other characters are replaced by `_`.
    pub fn new(name: &str) -> Self {
        Self(
            name.chars()
                .map(|c| match c {
                    'a'..='z' | '_' => c,
                    'A'..='Z' => c.to_ascii_lowercase(),
                    _ => '_',
                })
                .collect(),
        )
    }

    pub fn unknown() -> Self {
        Self(Self::UNKNOWN.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A plain read, or transaction control (which writes nothing itself).
    pub fn is_read(&self) -> bool {
        matches!(
            self.0.as_str(),
            "transaction" | "show" | "explain" | "select"
        )
    }

    /// Changes the schema or privileges. `truncate` counts (it replaces the table's
    /// storage under an exclusive lock, and is DDL in MySQL), and so do `do`, `call` and
    /// `execute`: they run code this parser cannot see, which may change the schema; and
    /// so does `unknown`.
    pub fn is_ddl(&self) -> bool {
        let k = self.0.as_str();
        k.starts_with("create_")
            || k.starts_with("alter_")
            || k.starts_with("drop_")
            || matches!(
                k,
                "select_into"
                    | "comment"
                    | "security_label"
                    | "rename"
                    | "grant"
                    | "grant_role"
                    | "revoke"
                    | "revoke_role"
                    | "reassign_owned"
                    | "import_foreign_schema"
                    | "truncate"
                    | "do"
                    | "call"
                    | "execute"
                    | "unknown"
            )
    }

    /// The rank in the danger order (see the table above).
    pub fn danger(&self) -> u8 {
        let k = self.0.as_str();
        match k {
            "transaction" => 0,
            "show" | "explain" => 1,
            "select" => 2,
            "set"
            | "reset"
            | "use"
            | "discard"
            | "deallocate"
            | "listen"
            | "unlisten"
            | "prepared_transaction" => 3,
            "select_lock" | "lock" => 4,
            "insert" => 5,
            "copy" => 6,
            "update" => 7,
            "merge" => 8,
            "delete" => 9,
            "function" => 11,
            "call" | "execute" => 12,
            "do" => 13,
            "select_into" => 14,
            "comment" | "security_label" | "rename" => 15,
            "grant" | "grant_role" | "revoke" | "revoke_role" | "reassign_owned" => 16,
            "truncate" => 17,
            Self::UNKNOWN => 19,
            _ if k.starts_with("create_") || k == "import_foreign_schema" => 14,
            _ if k.starts_with("alter_") => 15,
            _ if k.starts_with("drop_") => 18,
            _ => 10,
        }
    }
}

impl Ord for Kind {
    fn cmp(&self, other: &Self) -> Ordering {
        self.danger()
            .cmp(&other.danger())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for Kind {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `CreateForeignTableStmt` → `create_foreign_table`, `AlterTSConfiguration` →
/// `alter_ts_configuration`: the fallback kind of a statement type without its own name.
pub(crate) fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev.is_ascii_lowercase() || (prev.is_ascii_uppercase() && next_lower) {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

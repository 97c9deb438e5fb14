//! Dialects other than PostgreSQL (MySQL, SQLite, MSSQL, generic) through `sqlparser`.
//! Its grammar is not the server's own, so a difference between the two is possible;
//! known ones are refused outright (MySQL's executable comments).

use super::functions::{SideEffect, side_effect};
use super::kind::{Kind, snake_case};
use super::{Dialect, SqlError, Statement as Classified, quote_ident};
use sqlparser::ast::{Expr, ObjectName, ObjectNamePart, Query, Select, Statement, Visit, Visitor};
use sqlparser::dialect::{
    GenericDialect, MsSqlDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect,
};
use sqlparser::parser::Parser;
use std::collections::BTreeSet;
use std::ops::ControlFlow;

pub fn classify(sql: &str, dialect: Dialect) -> Result<Vec<Classified>, SqlError> {
    // MySQL runs the text of `/*! … */` comments, which any other parser skips. Refused
    // wherever it appears, string literals included: failing closed costs little here.
    if matches!(dialect, Dialect::MySql) && sql.contains("/*!") {
        return Err(SqlError::Ambiguous(
            "MySQL executable comments (`/*! … */`) are not inspected",
        ));
    }
    let parsed = match dialect {
        Dialect::MySql => Parser::parse_sql(&MySqlDialect {}, sql),
        Dialect::Sqlite => Parser::parse_sql(&SQLiteDialect {}, sql),
        Dialect::MsSql => Parser::parse_sql(&MsSqlDialect {}, sql),
        Dialect::Generic => Parser::parse_sql(&GenericDialect {}, sql),
        // Not reached (PostgreSQL text goes to its own parser), but never a looser grammar.
        Dialect::Postgres => Parser::parse_sql(&PostgreSqlDialect {}, sql),
    }
    .map_err(|e| SqlError::Parse(e.to_string()))?;
    Ok(parsed.iter().map(statement).collect())
}

fn statement(statement: &Statement) -> Classified {
    let mut walk = Walk::default();
    walk.statement(statement);
    let kind = walk
        .kinds
        .iter()
        .max()
        .cloned()
        .unwrap_or_else(Kind::unknown);
    // CTE names read as tables; dropped only when nothing is written, so that a write
    // target never goes missing behind a CTE of the same name.
    let tables = if kind.is_read() {
        walk.tables
            .into_iter()
            .filter(|t| !walk.ctes.contains(t))
            .collect()
    } else {
        walk.tables
    };
    Classified {
        ddl: walk.ddl || walk.kinds.iter().any(Kind::is_ddl),
        kind,
        tables,
    }
}

#[derive(Default)]
struct Walk {
    kinds: Vec<Kind>,
    ddl: bool,
    tables: BTreeSet<String>,
    ctes: BTreeSet<String>,
}

impl Walk {
    fn statement(&mut self, statement: &Statement) {
        match statement {
            Statement::Explain {
                analyze,
                options,
                statement: inner,
                ..
            } => {
                let analyze = *analyze
                    || options
                        .iter()
                        .flatten()
                        .any(|o| o.name.value.eq_ignore_ascii_case("analyze"));
                if analyze {
                    self.statement(inner);
                } else {
                    self.kinds.push(Kind::new("explain"));
                    // Only for the tables: nothing under a plain EXPLAIN runs.
                    let mut tables = Walk::default();
                    let _ = inner.visit(&mut tables);
                    self.tables.extend(tables.tables);
                }
            }
            Statement::Prepare {
                statement: inner, ..
            } => self.statement(inner),
            _ => {
                let _ = statement.visit(self);
            }
        }
    }
}

impl Visitor for Walk {
    type Break = ();

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        self.kinds.push(kind_of(statement));
        if let Statement::Drop { names, .. } = statement {
            self.tables.extend(names.iter().map(render));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if !query.locks.is_empty() {
            self.kinds.push(Kind::new("select_lock"));
        }
        for cte in query.with.iter().flat_map(|w| &w.cte_tables) {
            self.ctes.insert(quote_ident(&cte.alias.name.value));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        if let Some(into) = &select.into {
            self.kinds.push(Kind::new("select_into"));
            for target in &into.targets {
                let name = match target {
                    Expr::Identifier(ident) => ObjectName::from(vec![ident.clone()]),
                    Expr::CompoundIdentifier(idents) => ObjectName::from(idents.clone()),
                    _ => continue,
                };
                self.tables.insert(render(&name));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        self.tables.insert(render(relation));
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = expr {
            match side_effect(&render(&f.name)) {
                Some(SideEffect::Writes) => self.kinds.push(Kind::new("function")),
                Some(SideEffect::RunsSql) => {
                    self.kinds.push(Kind::new("function"));
                    self.ddl = true;
                }
                None => {}
            }
        }
        ControlFlow::Continue(())
    }
}

fn kind_of(statement: &Statement) -> Kind {
    let name = match statement {
        Statement::Query(_) => "select".to_owned(),
        Statement::Insert(_) => "insert".into(),
        Statement::Update(_) => "update".into(),
        Statement::Delete(_) => "delete".into(),
        Statement::Merge(_) => "merge".into(),
        Statement::Truncate(_) => "truncate".into(),
        Statement::Copy { .. } => "copy".into(),
        Statement::Call(_) => "call".into(),
        Statement::Execute { .. } => "execute".into(),
        Statement::Set(_) => "set".into(),
        Statement::Grant(_) => "grant".into(),
        Statement::Revoke(_) => "revoke".into(),
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => "transaction".into(),
        Statement::ExplainTable { .. } => "explain".into(),
        Statement::Drop { object_type, .. } => {
            format!(
                "drop_{}",
                object_type.to_string().to_lowercase().replace(' ', "_")
            )
        }
        Statement::CreateTable(t) if t.query.is_some() => "create_table_as".into(),
        other => {
            // `ShowTables { … }` → `show`; `CreateIndex(…)` → `create_index`: the variant name.
            let debug = format!("{other:?}");
            let variant: String = debug
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect();
            let snake = snake_case(&variant);
            if snake.starts_with("show") {
                "show".into()
            } else {
                snake
            }
        }
    };
    Kind::new(&name)
}

/// `schema.table` with each part as written (quoted when it needs quotes to stay one name).
fn render(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => {
                let v = &ident.value;
                if v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
                    && !v.is_empty()
                {
                    v.clone()
                } else {
                    quote_ident(v)
                }
            }
            other => quote_ident(&other.to_string()),
        })
        .collect::<Vec<_>>()
        .join(".")
}

//! PostgreSQL text through PostgreSQL's own grammar (`pg_query`). The parse tree is walked
//! whole, through its serde form, so that no node type is skipped: pg_query's own node
//! iterator covers a subset, and `WITH d AS (DELETE …) SELECT …` is a `SelectStmt` at the
//! top with the `DeleteStmt` deep inside.

use super::functions::{SideEffect, side_effect};
use super::kind::{Kind, snake_case};
use super::{SqlError, Statement, quote_ident};
use pg_query::protobuf::{ObjectType, TransactionStmtKind};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

pub fn classify(sql: &str) -> Result<Vec<Statement>, SqlError> {
    // A NUL byte ends a C string early: the server would never see what follows it, but
    // neither can we classify it, so it is refused like any parse error.
    // pg_query's Rust side asserts on the tree's shape in places; a panic there is one
    // more text we cannot classify, not a crash of the caller.
    let parsed = std::panic::catch_unwind(|| pg_query::parse(sql, 0))
        .map_err(|_| SqlError::Parse("the parser failed".into()))?
        .map_err(|e| SqlError::Parse(e.to_string()))?;
    parsed
        .protobuf
        .stmts
        .iter()
        .map(|raw| {
            let node = raw
                .stmt
                .as_ref()
                .and_then(|s| s.node.as_ref())
                .ok_or_else(|| SqlError::Parse("an empty statement node".into()))?;
            let tree = serde_json::to_value(node).map_err(|e| SqlError::Parse(e.to_string()))?;
            Ok(statement(&tree))
        })
        .collect()
}

/// `tree` is one statement as serde renders a `NodeEnum`: `{"SelectStmt": {…}}`.
fn statement(tree: &Value) -> Statement {
    let mut walk = Walk::default();
    walk.value(tree, true);
    let kind = walk.kinds.iter().max().cloned().unwrap_or_else(|| {
        // Every statement node records a kind; none means a tree we do not understand.
        Kind::unknown()
    });
    Statement {
        ddl: walk.ddl || walk.kinds.iter().any(Kind::is_ddl),
        kind,
        tables: walk.tables,
    }
}

#[derive(Default)]
struct Walk {
    /// The kinds of every statement node that runs, nested ones included.
    kinds: Vec<Kind>,
    /// Set by a function that runs SQL of its own.
    ddl: bool,
    tables: BTreeSet<String>,
    /// Names of the common table expressions in scope: `FROM d` reads no table `d`.
    ctes: Vec<String>,
}

impl Walk {
    /// `runs`: whether what is walked executes (not so under a plain `EXPLAIN`).
    fn value(&mut self, value: &Value, runs: bool) {
        match value {
            Value::Array(items) => items.iter().for_each(|v| self.value(v, runs)),
            Value::Object(object) => self.object(object, runs),
            _ => {}
        }
    }

    fn object(&mut self, object: &Map<String, Value>, runs: bool) {
        if object.contains_key("relname") && object.contains_key("relpersistence") {
            self.range_var(object, false);
        }
        let scoped = self.ctes.len();
        if let Some(ctes) = object
            .get("with_clause")
            .and_then(|w| w.get("ctes"))
            .and_then(Value::as_array)
        {
            for cte in ctes {
                if let Some(name) = cte.pointer("/node/CommonTableExpr/ctename") {
                    self.ctes.extend(name.as_str().map(str::to_owned));
                }
            }
        }
        if runs {
            if object.get("into_clause").is_some_and(|v| !v.is_null()) {
                self.kinds.push(Kind::new("select_into"));
            }
            if object
                .get("locking_clause")
                .and_then(Value::as_array)
                .is_some_and(|l| !l.is_empty())
            {
                self.kinds.push(Kind::new("select_lock"));
            }
        }
        for (key, child) in object {
            if key.ends_with("Stmt") && key.starts_with(|c: char| c.is_ascii_uppercase()) {
                self.statement(key, child, runs);
            } else {
                if key == "FuncCall" && runs {
                    self.function(child);
                }
                self.value(child, runs);
            }
        }
        self.ctes.truncate(scoped);
    }

    /// A statement node, at the top or nested (a CTE's `DELETE`, `EXPLAIN`'s statement).
    fn statement(&mut self, variant: &str, body: &Value, runs: bool) {
        match variant {
            "ExplainStmt" => {
                // EXPLAIN only plans; with ANALYZE (in any spelling or value) it also runs
                // the statement, which is then classified as that statement.
                let analyze =
                    body.get("options")
                        .and_then(Value::as_array)
                        .is_some_and(|options| {
                            options.iter().any(|o| {
                                o.pointer("/node/DefElem/defname")
                                    .and_then(Value::as_str)
                                    .is_some_and(|n| n.eq_ignore_ascii_case("analyze"))
                            })
                        });
                if runs && !analyze {
                    self.kinds.push(Kind::new("explain"));
                }
                self.value(body, runs && analyze);
            }
            // `PREPARE p AS DELETE …` is classified as what it prepares (a later `EXECUTE p`
            // is an opaque `execute`).
            "PrepareStmt" => self.value(body, runs),
            _ => {
                if runs {
                    self.kinds.push(kind_of(variant, body));
                }
                self.targets(variant, body);
                self.value(body, runs);
            }
        }
    }

    /// Tables a statement names outside range variables, and DML targets, which are
    /// tables even when a CTE has the same name.
    fn targets(&mut self, variant: &str, body: &Value) {
        match variant {
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => {
                if let Some(relation) = body.get("relation").and_then(Value::as_object) {
                    self.range_var(relation, true);
                }
            }
            "DropStmt" if drops_relations(body) => {
                for object in body
                    .get("objects")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(name) = qualified_name(object) {
                        self.tables.insert(name);
                    }
                }
            }
            _ => {}
        }
    }

    fn range_var(&mut self, object: &Map<String, Value>, target: bool) {
        let part = |k: &str| {
            object
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let Some(relname) = part("relname") else {
            return;
        };
        let parts: Vec<&str> = [part("catalogname"), part("schemaname"), Some(relname)]
            .into_iter()
            .flatten()
            .collect();
        if !target && parts.len() == 1 && self.ctes.iter().any(|c| c == relname) {
            return;
        }
        let name = parts
            .iter()
            .map(|p| quote_ident(p))
            .collect::<Vec<_>>()
            .join(".");
        self.tables.insert(name);
    }

    fn function(&mut self, call: &Value) {
        let name = call
            .get("funcname")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|n| n.pointer("/node/String/sval").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(".");
        match side_effect(&name) {
            Some(SideEffect::Writes) => self.kinds.push(Kind::new("function")),
            Some(SideEffect::RunsSql) => {
                self.kinds.push(Kind::new("function"));
                self.ddl = true;
            }
            None => {}
        }
    }
}

/// The kind of one statement node by its type, with the few that need a field to say more.
fn kind_of(variant: &str, body: &Value) -> Kind {
    let int = |field: &str| {
        body.get(field)
            .and_then(Value::as_i64)
            .and_then(|v| i32::try_from(v).ok())
    };
    let flag = |field: &str| body.get(field).and_then(Value::as_bool).unwrap_or(false);
    let object = |field: &str| object_name(int(field).unwrap_or_default());
    let name = match variant {
        "SelectStmt" => "select".to_owned(),
        "InsertStmt" => "insert".into(),
        "UpdateStmt" => "update".into(),
        "DeleteStmt" => "delete".into(),
        "MergeStmt" => "merge".into(),
        "TruncateStmt" => "truncate".into(),
        "CopyStmt" => "copy".into(),
        "CallStmt" => "call".into(),
        "DoStmt" => "do".into(),
        "ExecuteStmt" => "execute".into(),
        "VariableShowStmt" => "show".into(),
        "VariableSetStmt" => "set".into(),
        "TransactionStmt" => {
            // Committing or rolling back a *prepared* transaction applies writes made
            // elsewhere, maybe never seen here.
            let prepared = int("kind").and_then(|k| TransactionStmtKind::try_from(k).ok());
            match prepared {
                Some(
                    TransactionStmtKind::TransStmtPrepare
                    | TransactionStmtKind::TransStmtCommitPrepared
                    | TransactionStmtKind::TransStmtRollbackPrepared,
                ) => "prepared_transaction".into(),
                _ => "transaction".into(),
            }
        }
        "DropStmt" => format!("drop_{}", object("remove_type")),
        "AlterTableStmt" => format!("alter_{}", object("objtype")),
        "CreateTableAsStmt" => match object("objtype").as_str() {
            "materialized_view" => "create_materialized_view".into(),
            _ => "create_table_as".into(),
        },
        "DefineStmt" => format!("create_{}", object("kind")),
        "GrantStmt" if flag("is_grant") => "grant".into(),
        "GrantStmt" => "revoke".into(),
        "GrantRoleStmt" if flag("is_grant") => "grant_role".into(),
        "GrantRoleStmt" => "revoke_role".into(),
        "VacuumStmt" if flag("is_vacuumcmd") => "vacuum".into(),
        "VacuumStmt" => "analyze".into(),
        "CreateStmt" => "create_table".into(),
        "IndexStmt" => "create_index".into(),
        "ViewStmt" => "create_view".into(),
        "RuleStmt" => "create_rule".into(),
        "CompositeTypeStmt" => "create_type".into(),
        "CreateTrigStmt" => "create_trigger".into(),
        "CreatePLangStmt" => "create_language".into(),
        "CreateSeqStmt" => "create_sequence".into(),
        "AlterSeqStmt" => "alter_sequence".into(),
        "CreatedbStmt" => "create_database".into(),
        "DropdbStmt" => "drop_database".into(),
        "AlterDatabaseStmt" | "AlterDatabaseSetStmt" | "AlterDatabaseRefreshCollStmt" => {
            "alter_database".into()
        }
        "SecLabelStmt" => "security_label".into(),
        "RefreshMatViewStmt" => "refresh_materialized_view".into(),
        "ClosePortalStmt" => "close".into(),
        "DeclareCursorStmt" => "declare_cursor".into(),
        "LockStmt" => "lock".into(),
        _ => snake_case(variant.strip_suffix("Stmt").unwrap_or(variant)),
    };
    Kind::new(&name)
}

/// `OBJECT_FOREIGN_TABLE` → `foreign_table`; `OBJECT_MATVIEW` → `materialized_view`.
fn object_name(value: i32) -> String {
    match ObjectType::try_from(value) {
        Ok(ObjectType::ObjectMatview) => "materialized_view".into(),
        Ok(o) => o
            .as_str_name()
            .trim_start_matches("OBJECT_")
            .to_ascii_lowercase(),
        Err(_) => "object".into(),
    }
}

/// Whether a `DROP` removes relations (whose names then count as tables).
fn drops_relations(body: &Value) -> bool {
    let kind = body
        .get("remove_type")
        .and_then(Value::as_i64)
        .and_then(|v| i32::try_from(v).ok())
        .and_then(|v| ObjectType::try_from(v).ok());
    matches!(
        kind,
        Some(
            ObjectType::ObjectTable
                | ObjectType::ObjectView
                | ObjectType::ObjectMatview
                | ObjectType::ObjectForeignTable
                | ObjectType::ObjectSequence
        )
    )
}

/// A name given as a list of strings (`DROP TABLE public.users`): `public.users`.
fn qualified_name(object: &Value) -> Option<String> {
    let items = object.pointer("/node/List/items")?.as_array()?;
    let parts: Vec<String> = items
        .iter()
        .filter_map(|i| i.pointer("/node/String/sval").and_then(Value::as_str))
        .map(quote_ident)
        .collect();
    (!parts.is_empty()).then(|| parts.join("."))
}

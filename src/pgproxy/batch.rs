//! An extended-protocol batch the proxy keeps while it decides (see `extended.rs`), and
//! what a rule holds in it.

use super::config::StatementRule;
use super::wire::Param;
use crate::sql::Statement;

/// What a rule holds in a statement: the rule, the SQL and its classification.
#[derive(Clone)]
pub struct Matched<'r> {
    pub rule: &'r StatementRule,
    pub sql: String,
    pub statements: Vec<Statement>,
}

/// The messages kept since a held `Parse` or `Bind`, up to `Sync`.
#[derive(Default)]
pub struct Batch<'r> {
    pub held: Option<Matched<'r>>,
    pub bytes: Vec<u8>,
    /// Statements parsed in `bytes`, and what a rule holds in each (none: it passes).
    pub parsed: Vec<(String, Option<Matched<'r>>)>,
}

impl<'r> Batch<'r> {
    pub fn is_held(&self) -> bool {
        self.held.is_some()
    }

    /// Adds what a held statement of the batch is: the first rule stays, the SQL of all.
    pub fn hold(&mut self, matched: &Matched<'r>) {
        match &mut self.held {
            None => self.held = Some(matched.clone()),
            Some(held) => {
                held.sql.push_str(";\n");
                held.sql.push_str(&matched.sql);
                held.statements.extend(matched.statements.iter().cloned());
            }
        }
    }

    /// Adds a `Bind`'s values to what approvers see: `-- $1 = 'ada'` after the SQL.
    pub fn show_parameters(&mut self, params: &[Param]) {
        let Some(held) = &mut self.held else { return };
        if params.is_empty() {
            return;
        }
        held.sql.push_str("\n-- parameters:");
        for (i, param) in params.iter().enumerate() {
            let value = match param {
                Param::Null => "NULL".to_owned(),
                Param::Text(t) => format!("'{}'", t.replace('\'', "''")),
                Param::Binary(b) => format!("(binary) {}", hex::encode(b)),
            };
            held.sql.push_str(&format!(" ${} = {value}", i + 1));
        }
    }
}

//! A route's `body` condition evaluated against one request's body: read the string at
//! the JSON pointer, classify its SQL, and say whether the route applies. Fails closed:
//! on a route with `sql`, a body that cannot be inspected (compressed, not JSON, no string
//! at the pointer, SQL that does not parse) is held as `unknown`, or refused.

use super::config::{BodyCondition, OnUnparsable, SqlHold};
use super::strict_json;
use crate::sql::{self, Kind};
use axum::http::{HeaderMap, header};

/// What a body condition decides for one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Evaluation {
    /// The route does not apply; the next one is tried.
    Skip,
    /// The route applies, with what its templates may show.
    Apply(BodyVars),
    /// Answer `400`: the body cannot be inspected and the route says `on_unparsable = "refuse"`.
    Refuse(String),
}

/// The template variables a body condition provides.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BodyVars {
    /// `{body}`: the string at the pointer, when there is one.
    pub field: Option<String>,
    /// `{sql.kind}`: `unknown` when the body could not be inspected.
    pub sql_kind: String,
    /// `{sql.tables}`: comma-separated, empty when unknown.
    pub sql_tables: String,
}

impl BodyCondition {
    pub fn evaluate(&self, headers: &HeaderMap, body: &[u8]) -> Evaluation {
        let field = self.field(headers, body);
        let Some(sql) = &self.sql else {
            // A regular expression alone: a filter, not an inspection (see docs/proxy.md).
            return match field {
                Ok(text) if self.pre_filter(&text) => Evaluation::Apply(BodyVars {
                    field: Some(text),
                    ..BodyVars::default()
                }),
                _ => Evaluation::Skip,
            };
        };
        let classified = field
            .as_deref()
            .map_err(Clone::clone)
            .and_then(|text| sql::classify(text, sql.dialect).map_err(|e| e.to_string()));
        let classified = match classified {
            Ok(c) => c,
            // Checked before `matches`: a regex miss must never let through a body we
            // could not read.
            Err(why) => {
                return match sql.on_unparsable {
                    OnUnparsable::Hold => Evaluation::Apply(BodyVars {
                        field: field.ok(),
                        sql_kind: Kind::UNKNOWN.into(),
                        sql_tables: String::new(),
                    }),
                    OnUnparsable::Refuse => {
                        Evaluation::Refuse(format!("the request body cannot be inspected: {why}"))
                    }
                };
            }
        };
        let text = field.unwrap_or_default();
        let holds = match sql.hold {
            SqlHold::Writes => !classified.is_plain_read(),
            SqlHold::Ddl => classified.is_ddl(),
            SqlHold::Any => true,
        };
        if !holds || !self.pre_filter(&text) {
            return Evaluation::Skip;
        }
        Evaluation::Apply(BodyVars {
            sql_kind: classified.kind().to_string(),
            sql_tables: classified.tables_joined(),
            field: Some(text),
        })
    }

    fn pre_filter(&self, text: &str) -> bool {
        self.matches.as_ref().is_none_or(|re| re.is_match(text))
    }

    /// The string at the pointer, or why there is none.
    fn field(&self, headers: &HeaderMap, body: &[u8]) -> Result<String, String> {
        // The proxy forwards the bytes as they came; a compressed body would be read by
        // the upstream after decompression, which the proxy does not do.
        for encoding in headers.get_all(header::CONTENT_ENCODING) {
            let identity = encoding
                .to_str()
                .is_ok_and(|e| e.trim().eq_ignore_ascii_case("identity"));
            if !identity {
                return Err("the body is compressed (Content-Encoding)".into());
            }
        }
        let json = strict_json::parse(body).map_err(|e| format!("the body is not JSON: {e}"))?;
        match json.pointer(&self.pointer) {
            Some(serde_json::Value::String(text)) => Ok(text.clone()),
            Some(_) => Err(format!("the value at `{}` is not a string", self.pointer)),
            None => Err(format!("the body has nothing at `{}`", self.pointer)),
        }
    }
}

#[cfg(test)]
#[path = "body_tests.rs"]
mod tests;

//! A route's `body` condition evaluated against one request's body: read the string at
//! the JSON pointer, classify its SQL, and say whether the route applies. Fails closed:
//! on a route with `sql`, a body that cannot be inspected (compressed, not JSON, no string
//! at the pointer, SQL that does not parse) is held as `unknown`, or refused.

use super::config::{BodyCondition, OnUnparsable, SqlHold};
use super::strict_json;
use crate::sql::{self, Kind};
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use std::sync::Arc;

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
    /// [`evaluate`](Self::evaluate) on a blocking thread: parsing up to
    /// `max_inspected_body_bytes` of SQL takes long enough to stall the requests sharing
    /// an async worker.
    pub async fn evaluate_blocking(
        self: &Arc<Self>,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Evaluation {
        let (this, headers, body) = (self.clone(), headers.clone(), body.clone());
        match tokio::task::spawn_blocking(move || this.evaluate(&headers, &body)).await {
            Ok(evaluation) => evaluation,
            Err(e) => {
                tracing::error!(error = %e, "evaluating a body condition failed");
                self.unreadable(None, "the request body could not be evaluated".into())
            }
        }
    }

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
            Err(why) => return self.unreadable(field.ok(), why),
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

    /// A body that could not be inspected: held as `unknown`, or refused. Without `sql`
    /// (a regex alone), the route does not apply.
    fn unreadable(&self, field: Option<String>, why: String) -> Evaluation {
        match self.sql.as_ref().map(|s| s.on_unparsable) {
            None => Evaluation::Skip,
            Some(OnUnparsable::Hold) => Evaluation::Apply(BodyVars {
                field,
                sql_kind: Kind::UNKNOWN.into(),
                sql_tables: String::new(),
            }),
            Some(OnUnparsable::Refuse) => {
                Evaluation::Refuse(format!("the request body cannot be inspected: {why}"))
            }
        }
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
        // An upstream that reads the same bytes as a form (or anything else) would find
        // another query in them than the one inspected here.
        let mut declared = headers.get_all(header::CONTENT_TYPE).iter();
        if let Some(content_type) = declared.next() {
            let json = declared.next().is_none()
                && content_type
                    .to_str()
                    .ok()
                    .and_then(|v| v.parse::<mime::Mime>().ok())
                    .is_some_and(|m| {
                        m.type_() == mime::APPLICATION
                            && (m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON))
                    });
            if !json {
                return Err("the body is not declared as JSON (one JSON Content-Type)".into());
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

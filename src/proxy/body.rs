//! A route's `body` condition evaluated against one request's body: read the string at
//! the JSON pointer, classify its SQL, and say whether the route applies. Fails closed:
//! on a route with `sql`, a body that cannot be inspected (compressed, not JSON, no string
//! at the pointer, SQL that does not parse) is held as `unknown`, or refused.

use super::config::{BodyCondition, OnUnparsable};
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

/// Why a body could not be inspected: each case is held as `unknown`, or refused.
#[derive(Debug, thiserror::Error)]
enum Unreadable {
    #[error("the body is compressed (Content-Encoding)")]
    Compressed,
    #[error("the body is not declared as JSON (one JSON Content-Type)")]
    NotDeclaredJson,
    #[error("the body is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("the value at `{0}` is not a string")]
    NotAString(String),
    #[error("the body has nothing at `{0}`")]
    Missing(String),
    #[error(transparent)]
    Sql(#[from] sql::SqlError),
    #[error("the body could not be evaluated")]
    Failed,
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
                self.unreadable(None, Unreadable::Failed)
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
        // Checked before `matches`: a regex miss must never let through a body we could
        // not read.
        let text = match field {
            Ok(text) => text,
            Err(why) => return self.unreadable(None, why),
        };
        let classified = match sql::classify(&text, sql.dialect) {
            Ok(c) => c,
            Err(why) => return self.unreadable(Some(text), why.into()),
        };
        if !sql.hold.selects(&classified) || !self.pre_filter(&text) {
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
    fn unreadable(&self, field: Option<String>, why: Unreadable) -> Evaluation {
        tracing::info!(reason = %why, "a request body cannot be inspected");
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
    fn field(&self, headers: &HeaderMap, body: &[u8]) -> Result<String, Unreadable> {
        // The proxy forwards the bytes as they came; a compressed body would be read by
        // the upstream after decompression, which the proxy does not do.
        for encoding in headers.get_all(header::CONTENT_ENCODING) {
            let identity = encoding
                .to_str()
                .is_ok_and(|e| e.trim().eq_ignore_ascii_case("identity"));
            if !identity {
                return Err(Unreadable::Compressed);
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
                return Err(Unreadable::NotDeclaredJson);
            }
        }
        let json = strict_json::parse(body).map_err(Unreadable::NotJson)?;
        match json.pointer(&self.pointer) {
            Some(serde_json::Value::String(text)) => Ok(text.clone()),
            Some(_) => Err(Unreadable::NotAString(self.pointer.clone())),
            None => Err(Unreadable::Missing(self.pointer.clone())),
        }
    }
}

#[cfg(test)]
#[path = "body_tests.rs"]
mod tests;

//! `BodyCondition::evaluate`: which bodies make an `sql` route apply, and that every body
//! it cannot read is held (or refused), never skipped.

use super::*;
use crate::proxy::config::SqlCondition;
use crate::sql::{Dialect, Selector};
use axum::http::HeaderValue;
use regex::Regex;

fn condition(hold: Selector, matches: Option<&str>, on_unparsable: OnUnparsable) -> BodyCondition {
    BodyCondition {
        pointer: "/query".into(),
        matches: matches.map(|m| Regex::new(m).unwrap()),
        sql: Some(SqlCondition {
            hold,
            dialect: Dialect::Postgres,
            on_unparsable,
        }),
    }
}

fn writes() -> BodyCondition {
    condition(Selector::Writes, None, OnUnparsable::Hold)
}

fn query(sql: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "query": sql })).unwrap()
}

fn eval(c: &BodyCondition, body: &[u8]) -> Evaluation {
    c.evaluate(&HeaderMap::new(), body)
}

fn applied(kind: &str, tables: &str, field: Option<&str>) -> Evaluation {
    Evaluation::Apply(BodyVars {
        field: field.map(str::to_owned),
        sql_kind: kind.into(),
        sql_tables: tables.into(),
    })
}

#[test]
fn writes_apply_and_plain_reads_skip() {
    let c = writes();
    assert_eq!(eval(&c, &query("SELECT * FROM users")), Evaluation::Skip);
    let sql = "SELECT 1; DROP TABLE users";
    assert_eq!(
        eval(&c, &query(sql)),
        applied("drop_table", "users", Some(sql))
    );
    let sql = "WITH d AS (DELETE FROM public.payments RETURNING *) SELECT * FROM d";
    assert_eq!(
        eval(&c, &query(sql)),
        applied("delete", "public.payments", Some(sql))
    );
}

#[test]
fn ddl_and_any() {
    let ddl = condition(Selector::Ddl, None, OnUnparsable::Hold);
    assert_eq!(eval(&ddl, &query("DELETE FROM users")), Evaluation::Skip);
    assert!(matches!(
        eval(&ddl, &query("ALTER TABLE users DROP COLUMN x")),
        Evaluation::Apply(_)
    ));
    let any = condition(Selector::Any, None, OnUnparsable::Hold);
    assert_eq!(
        eval(&any, &query("SELECT * FROM t")),
        applied("select", "t", Some("SELECT * FROM t"))
    );
}

#[test]
fn unreadable_bodies_are_held_as_unknown() {
    let c = writes();
    let unknown = |field: Option<&str>| applied("unknown", "", field);
    assert_eq!(eval(&c, b"DROP TABLE users"), unknown(None));
    assert_eq!(
        eval(&c, br#"{"query": "\ud800 DROP TABLE users"}"#),
        unknown(None)
    );
    assert_eq!(
        eval(&c, br#"{"query": "SELECT 1", "query": "DROP TABLE users"}"#),
        unknown(None)
    );
    assert_eq!(eval(&c, br#"{"sql": "DROP TABLE users"}"#), unknown(None));
    assert_eq!(eval(&c, br#"{"query": 42}"#), unknown(None));
    assert_eq!(eval(&c, b""), unknown(None));
    assert_eq!(
        eval(&c, &query("DELET FROM users")),
        unknown(Some("DELET FROM users"))
    );
    assert_eq!(eval(&c, &query("")), unknown(Some("")));
}

#[test]
fn compressed_bodies_are_not_inspected() {
    let c = writes();
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    let body = query("SELECT 1");
    assert_eq!(c.evaluate(&headers, &body), applied("unknown", "", None));
    headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    assert_eq!(c.evaluate(&headers, &body), Evaluation::Skip);
}

#[test]
fn only_json_content_types_are_inspected() {
    let c = writes();
    let body = query("SELECT 1");
    let with = |content_type: &'static str| {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        c.evaluate(&headers, &body)
    };
    assert_eq!(with("application/json"), Evaluation::Skip);
    assert_eq!(with("application/json; charset=utf-8"), Evaluation::Skip);
    assert_eq!(with("application/vnd.api+json"), Evaluation::Skip);
    assert_eq!(
        with("application/x-www-form-urlencoded"),
        applied("unknown", "", None)
    );
    assert_eq!(with("text/plain"), applied("unknown", "", None));
    let mut twice = HeaderMap::new();
    twice.append(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    twice.append(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    assert_eq!(c.evaluate(&twice, &body), applied("unknown", "", None));
}

#[test]
fn refuse_answers_instead_of_holding() {
    let c = condition(Selector::Writes, None, OnUnparsable::Refuse);
    let Evaluation::Refuse(why) = eval(&c, b"not json") else {
        panic!("not refused");
    };
    assert!(why.contains("not JSON"), "{why}");
    assert_eq!(eval(&c, &query("SELECT 1")), Evaluation::Skip);
}

#[test]
fn a_regex_narrows_but_never_lets_an_unreadable_body_through() {
    let c = condition(Selector::Writes, Some("(?i)payments"), OnUnparsable::Hold);
    assert_eq!(eval(&c, &query("DELETE FROM users")), Evaluation::Skip);
    assert!(matches!(
        eval(&c, &query("DELETE FROM payments")),
        Evaluation::Apply(_)
    ));
    // Neither matches the regex, yet neither can be read: held.
    assert_eq!(eval(&c, b"{not json"), applied("unknown", "", None));
    assert_eq!(
        eval(&c, &query("DELET FROM users")),
        applied("unknown", "", Some("DELET FROM users"))
    );
}

#[test]
fn a_regex_alone_keeps_its_old_meaning() {
    let c = BodyCondition {
        pointer: "/query".into(),
        matches: Some(Regex::new("(?i)^drop").unwrap()),
        sql: None,
    };
    assert!(matches!(
        eval(&c, &query("DROP TABLE t")),
        Evaluation::Apply(_)
    ));
    assert_eq!(eval(&c, &query("SELECT 1")), Evaluation::Skip);
    assert_eq!(eval(&c, b"not json"), Evaluation::Skip);
}

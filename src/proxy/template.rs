//! The templates of `routes.toml` (`resource = "accounts/{id}"`): literal text with
//! `{name}` path parameters, `{method}`, `{path}`, `{query}`, `{header.NAME}`, and
//! `{body}` (the body field a route's `body` condition matched), `{sql.kind}` and
//! `{sql.tables}` (on routes with an `sql` condition). Checked at load, so a typo is an
//! error at start, not an empty string at the worst moment.

use axum::http::{HeaderMap, HeaderName, Method};

#[derive(Clone, Debug)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug)]
enum Part {
    Text(String),
    Param(String),
    Method,
    Path,
    Query,
    Header(HeaderName),
    Body,
    SqlKind,
    SqlTables,
}

/// What a template is rendered from: one request.
pub struct Vars<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub params: &'a [(String, String)],
    pub body: Option<&'a str>,
    /// The classified SQL's kind (`unknown` when it could not be read) and tables.
    pub sql_kind: &'a str,
    pub sql_tables: &'a str,
}

impl Template {
    /// `params`: the route's path parameter names; `has_body`: whether `{body}` exists;
    /// `has_sql`: whether `{sql.kind}` and `{sql.tables}` do.
    pub fn parse(
        s: &str,
        params: &[String],
        has_body: bool,
        has_sql: bool,
    ) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in `{s}`"))?;
            let name = &rest[open + 1..open + close];
            parts.push(match name {
                "method" => Part::Method,
                "path" => Part::Path,
                "query" => Part::Query,
                "body" if has_body => Part::Body,
                "body" => return Err("`{body}` needs a `body` condition on the route".into()),
                "sql.kind" if has_sql => Part::SqlKind,
                "sql.tables" if has_sql => Part::SqlTables,
                "sql.kind" | "sql.tables" => {
                    return Err(format!(
                        "`{{{name}}}` needs a `body` condition with `sql` on the route"
                    ));
                }
                _ if name.starts_with("header.") => {
                    let header = HeaderName::try_from(&name["header.".len()..])
                        .map_err(|_| format!("`{{{name}}}`: not a header name"))?;
                    Part::Header(header)
                }
                _ if params.iter().any(|p| p == name) => Part::Param(name.to_owned()),
                _ => {
                    return Err(format!(
                        "unknown `{{{name}}}` (path parameters: {}; or method, path, query, header.NAME, body, sql.kind, sql.tables)",
                        if params.is_empty() { "none".into() } else { params.join(", ") }
                    ));
                }
            });
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("unmatched `}}` in `{s}`"));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// The text for one request; a missing header renders empty.
    pub fn render(&self, vars: &Vars<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Param(name) => {
                    if let Some((_, v)) = vars.params.iter().find(|(k, _)| k == name) {
                        out.push_str(v);
                    }
                }
                Part::Method => out.push_str(vars.method.as_str()),
                Part::Path => out.push_str(vars.path),
                Part::Query => out.push_str(vars.query),
                Part::Header(h) => {
                    if let Some(v) = vars.headers.get(h).and_then(|v| v.to_str().ok()) {
                        out.push_str(v);
                    }
                }
                Part::Body => out.push_str(vars.body.unwrap_or_default()),
                Part::SqlKind => out.push_str(vars.sql_kind),
                Part::SqlTables => out.push_str(vars.sql_tables),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_kind_of_variable() {
        let t = Template::parse(
            "{method} {path}?{query} {id} by {header.x-user}: {body} ({sql.kind} on {sql.tables})",
            &["id".into()],
            true,
            true,
        )
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-user", "alice".parse().unwrap());
        let vars = Vars {
            method: &Method::DELETE,
            path: "/accounts/42",
            query: "force=1",
            headers: &headers,
            params: &[("id".into(), "42".into())],
            body: Some("DROP TABLE users"),
            sql_kind: "drop_table",
            sql_tables: "users",
        };
        assert_eq!(
            t.render(&vars),
            "DELETE /accounts/42?force=1 42 by alice: DROP TABLE users (drop_table on users)"
        );
    }

    #[test]
    fn rejects_what_it_cannot_render() {
        assert!(
            Template::parse("{nope}", &[], false, false)
                .unwrap_err()
                .contains("nope")
        );
        assert!(Template::parse("{id", &["id".into()], false, false).is_err());
        assert!(Template::parse("id}", &[], false, false).is_err());
        assert!(Template::parse("{body}", &[], false, false).is_err());
        // A regex-only body condition has no SQL to describe.
        assert!(Template::parse("{sql.kind}", &[], true, false).is_err());
        assert!(Template::parse("{sql.tables}", &[], true, false).is_err());
    }
}

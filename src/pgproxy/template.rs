//! The templates of a `[[statement]]` (`resource = "postgres://prod/{sql.tables}"`):
//! literal text with `{sql.kind}`, `{sql.tables}`, `{user}` and `{database}`. Checked at
//! load, so a typo is an error at start, not an empty string at the worst moment.

#[derive(Clone, Debug)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug)]
enum Part {
    Text(String),
    SqlKind,
    SqlTables,
    User,
    Database,
}

/// What a template is rendered from: one held statement on one session.
pub struct Vars<'a> {
    /// The most dangerous statement's kind (`unknown` when the SQL does not parse).
    pub sql_kind: &'a str,
    /// Every table named, comma-separated.
    pub sql_tables: &'a str,
    /// The startup `user`.
    pub user: &'a str,
    /// The startup `database` (the user name when the client sent none).
    pub database: &'a str,
}

impl Template {
    pub fn parse(s: &str) -> Result<Self, String> {
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
                "sql.kind" => Part::SqlKind,
                "sql.tables" => Part::SqlTables,
                "user" => Part::User,
                "database" => Part::Database,
                _ => {
                    return Err(format!(
                        "unknown `{{{name}}}` (use sql.kind, sql.tables, user, database)"
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

    pub fn render(&self, vars: &Vars<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            out.push_str(match part {
                Part::Text(t) => t,
                Part::SqlKind => vars.sql_kind,
                Part::SqlTables => vars.sql_tables,
                Part::User => vars.user,
                Part::Database => vars.database,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_refuses() {
        let t = Template::parse("pg.{sql.kind}:{database}/{sql.tables} by {user}").unwrap();
        let vars = Vars {
            sql_kind: "delete",
            sql_tables: "public.users,orders",
            user: "alice",
            database: "prod",
        };
        assert_eq!(
            t.render(&vars),
            "pg.delete:prod/public.users,orders by alice"
        );
        for bad in ["{sql.kinds}", "{user", "user}", "{body}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }
}

//! A corpus of ways to hide a write from a SQL check, each with what it must be classified as.

use super::*;

/// (sql, kind, plain read, ddl, tables)
pub(super) fn check(dialect: Dialect, sql: &str, kind: &str, read: bool, ddl: bool, tables: &str) {
    let c = classify(sql, dialect).unwrap_or_else(|e| panic!("{sql:?}: {e}"));
    assert_eq!(c.kind().as_str(), kind, "kind of {sql:?}");
    assert_eq!(c.is_plain_read(), read, "plain read of {sql:?}");
    assert_eq!(c.is_ddl(), ddl, "ddl of {sql:?}");
    assert_eq!(c.tables_joined(), tables, "tables of {sql:?}");
}

fn pg(sql: &str, kind: &str, read: bool, ddl: bool, tables: &str) {
    check(Dialect::Postgres, sql, kind, read, ddl, tables);
}

#[test]
fn plain_reads_are_reads() {
    pg("SELECT * FROM users", "select", true, false, "users");
    pg(
        "select id from public.users u join orders o on o.uid = u.id",
        "select",
        true,
        false,
        "orders,public.users",
    );
    pg("VALUES (1), (2)", "select", true, false, "");
    pg("TABLE users", "select", true, false, "users");
    pg("SHOW search_path", "show", true, false, "");
    pg(
        "SELECT * FROM (SELECT * FROM a) s WHERE x IN (SELECT y FROM b)",
        "select",
        true,
        false,
        "a,b",
    );
    pg(
        "WITH t AS (SELECT * FROM users) SELECT * FROM t",
        "select",
        true,
        false,
        "users",
    );
    pg(
        "SELECT now(), lower('DROP TABLE users')",
        "select",
        true,
        false,
        "",
    );
}

#[test]
fn comments_case_and_whitespace_do_not_hide_a_write() {
    pg(
        "/* x */ DROP TABLE users",
        "drop_table",
        false,
        true,
        "users",
    );
    pg("-- c\nDELETE FROM users", "delete", false, false, "users");
    pg(
        "/* outer /* nested */ still comment */ DELETE FROM users",
        "delete",
        false,
        false,
        "users",
    );
    pg("dElEtE\n\t FROM\tusers", "delete", false, false, "users");
    pg(
        "  \n\n  drop   table   public.users  ",
        "drop_table",
        false,
        true,
        "public.users",
    );
}

#[test]
fn stacked_statements_take_the_most_dangerous_kind() {
    pg(
        "SELECT 1; DROP TABLE users",
        "drop_table",
        false,
        true,
        "users",
    );
    pg(
        "SELECT * FROM a; DELETE FROM b; SELECT 1",
        "delete",
        false,
        false,
        "a,b",
    );
    pg("BEGIN; SELECT * FROM a; COMMIT", "select", true, false, "a");
    pg(
        "BEGIN; UPDATE a SET x = 1; COMMIT",
        "update",
        false,
        false,
        "a",
    );
    let c = classify("SELECT 1; TRUNCATE t", Dialect::Postgres).unwrap();
    assert_eq!(c.statements.len(), 2);
    assert!(c.statements[0].is_plain_read());
    assert!(!c.statements[1].is_plain_read());
}

#[test]
fn data_modifying_ctes_are_found_anywhere_in_the_tree() {
    pg(
        "WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d",
        "delete",
        false,
        false,
        "users",
    );
    pg(
        "WITH u AS (UPDATE accounts SET b = 0 RETURNING id) SELECT count(*) FROM u",
        "update",
        false,
        false,
        "accounts",
    );
    pg(
        "WITH i AS (INSERT INTO log VALUES (1) RETURNING 1) SELECT 1",
        "insert",
        false,
        false,
        "log",
    );
    pg(
        "SELECT * FROM (WITH d AS (DELETE FROM payments RETURNING *) SELECT * FROM d) s",
        "delete",
        false,
        false,
        "payments",
    );
    pg(
        "SELECT (SELECT count(*) FROM (WITH x AS (DELETE FROM t RETURNING 1) SELECT * FROM x) y)",
        "delete",
        false,
        false,
        "t",
    );
    // A CTE named like the table it deletes from: the target is still reported.
    pg(
        "WITH payments AS (SELECT 1) DELETE FROM payments",
        "delete",
        false,
        false,
        "payments",
    );
}

#[test]
fn dollar_quoting_and_string_literals() {
    pg(
        "DO $$ BEGIN DELETE FROM users; END $$",
        "do",
        false,
        true,
        "",
    );
    pg(
        "DO $body$ BEGIN EXECUTE 'DROP TABLE users'; END $body$",
        "do",
        false,
        true,
        "",
    );
    // A DROP inside a literal is data, not a statement.
    pg("SELECT $$DROP TABLE users$$", "select", true, false, "");
    pg(
        "SELECT $tag$ ; DROP TABLE users; $tag$ AS x",
        "select",
        true,
        false,
        "",
    );
    pg(
        "SELECT 'a''; DROP TABLE users; --'",
        "select",
        true,
        false,
        "",
    );
    pg(
        "SELECT E'\\'; DROP TABLE users; --'",
        "select",
        true,
        false,
        "",
    );
}

#[test]
fn copy_select_into_and_locking_are_writes() {
    pg(
        "COPY users FROM PROGRAM 'rm -rf /'",
        "copy",
        false,
        false,
        "users",
    );
    pg("COPY users TO '/tmp/x'", "copy", false, false, "users");
    pg(
        "COPY (SELECT * FROM users) TO STDOUT",
        "copy",
        false,
        false,
        "users",
    );
    pg(
        "SELECT * INTO backup FROM users",
        "select_into",
        false,
        true,
        "backup,users",
    );
    pg(
        "SELECT * FROM users FOR UPDATE",
        "select_lock",
        false,
        false,
        "users",
    );
    pg(
        "SELECT * FROM users FOR SHARE SKIP LOCKED",
        "select_lock",
        false,
        false,
        "users",
    );
    pg(
        "SELECT * FROM (SELECT * FROM users FOR NO KEY UPDATE) s",
        "select_lock",
        false,
        false,
        "users",
    );
    pg(
        "CREATE TABLE b AS SELECT * FROM users",
        "create_table_as",
        false,
        true,
        "b,users",
    );
}

#[test]
fn explain_runs_the_statement_only_with_analyze() {
    pg("EXPLAIN DELETE FROM users", "explain", true, false, "users");
    pg(
        "EXPLAIN SELECT * FROM users",
        "explain",
        true,
        false,
        "users",
    );
    pg(
        "EXPLAIN ANALYZE DELETE FROM users",
        "delete",
        false,
        false,
        "users",
    );
    pg(
        "EXPLAIN (ANALYZE, BUFFERS) DELETE FROM users",
        "delete",
        false,
        false,
        "users",
    );
    // Any ANALYZE option counts, whatever its value: failing closed.
    pg(
        "EXPLAIN (ANALYZE false) DELETE FROM users",
        "delete",
        false,
        false,
        "users",
    );
    pg(
        "EXPLAIN ANALYZE SELECT * FROM users",
        "select",
        true,
        false,
        "users",
    );
}

#[test]
fn prepare_execute_call_set_and_transactions() {
    pg(
        "PREPARE p AS DELETE FROM users WHERE id = $1",
        "delete",
        false,
        false,
        "users",
    );
    pg(
        "PREPARE p AS SELECT * FROM users",
        "select",
        true,
        false,
        "users",
    );
    pg("EXECUTE p(1)", "execute", false, true, "");
    pg("CALL do_things()", "call", false, true, "");
    pg(
        "SET session_replication_role = replica",
        "set",
        false,
        false,
        "",
    );
    pg("RESET ALL", "set", false, false, "");
    pg("BEGIN", "transaction", true, false, "");
    pg(
        "START TRANSACTION READ WRITE",
        "transaction",
        true,
        false,
        "",
    );
    pg(
        "COMMIT PREPARED 'x'",
        "prepared_transaction",
        false,
        false,
        "",
    );
    pg(
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
        "merge",
        false,
        false,
        "s,t",
    );
    pg(
        "TRUNCATE payments, public.orders",
        "truncate",
        false,
        true,
        "payments,public.orders",
    );
    pg("LOCK TABLE users", "lock", false, false, "users");
    pg("VACUUM users", "vacuum", false, false, "users");
}

#[test]
fn schema_changes_are_ddl() {
    pg(
        "GRANT SELECT ON users TO bob",
        "grant",
        false,
        true,
        "users",
    );
    pg(
        "REVOKE ALL ON users FROM bob",
        "revoke",
        false,
        true,
        "users",
    );
    pg(
        "ALTER TABLE users ADD COLUMN x int",
        "alter_table",
        false,
        true,
        "users",
    );
    pg("CREATE TABLE t (id int)", "create_table", false, true, "t");
    pg(
        "CREATE INDEX ON users (email)",
        "create_index",
        false,
        true,
        "users",
    );
    pg("DROP VIEW v", "drop_view", false, true, "v");
    pg("DROP SCHEMA s CASCADE", "drop_schema", false, true, "");
    pg("DROP DATABASE prod", "drop_database", false, true, "");
    pg("COMMENT ON TABLE users IS 'x'", "comment", false, true, "");
    pg("CREATE ROLE r", "create_role", false, true, "");
    pg("ALTER TABLE a RENAME TO b", "rename", false, true, "a");
}

#[test]
fn side_effect_functions_make_a_select_a_write() {
    pg(
        "SELECT pg_terminate_backend(1)",
        "function",
        false,
        false,
        "",
    );
    pg(
        "SELECT pg_catalog.set_config('role', 'admin', false)",
        "function",
        false,
        false,
        "",
    );
    pg("SELECT nextval('s')", "function", false, false, "");
    pg("SELECT lo_unlink(42)", "function", false, false, "");
    pg(
        "SELECT * FROM users WHERE pg_advisory_lock(1) IS NOT NULL",
        "function",
        false,
        false,
        "users",
    );
    // SQL run by a function may do anything, a schema change included.
    pg(
        "SELECT dblink_exec('conn', 'DROP TABLE users')",
        "function",
        false,
        true,
        "",
    );
    pg(
        "SELECT query_to_xml('select 1', true, true, '')",
        "function",
        false,
        true,
        "",
    );
}

#[test]
fn identifiers_are_rendered_as_the_server_reads_them() {
    pg(
        r#"DELETE FROM "Users""#,
        "delete",
        false,
        false,
        r#""Users""#,
    );
    pg(
        r#"DELETE FROM "public"."users""#,
        "delete",
        false,
        false,
        "public.users",
    );
    pg(
        "DELETE FROM PUBLIC.USERS",
        "delete",
        false,
        false,
        "public.users",
    );
    pg(
        r#"DROP TABLE U&"d\0061ta""#,
        "drop_table",
        false,
        true,
        "data",
    );
    pg(r#"SELECT * FROM "a,b""#, "select", true, false, r#""a,b""#);
    pg(
        r#"SELECT * FROM "we""ird""#,
        "select",
        true,
        false,
        r#""we""ird""#,
    );
}

#[test]
fn what_does_not_parse_is_an_error() {
    for sql in [
        "",
        "   ",
        "-- only a comment",
        "DELET FROM users",
        "SELECT 'unterminated",
        "SELECT 1; DROP",
        "DO $$ BEGIN DELETE FROM users; END",
        "SELECT 1\0; DROP TABLE users",
        "garbage ; ; (",
    ] {
        assert!(
            classify(sql, Dialect::Postgres).is_err(),
            "{sql:?} classified"
        );
    }
    assert_eq!(classify("", Dialect::Postgres), Err(SqlError::Empty));
}

#[test]
fn selectors_pick_writes_schema_changes_or_everything() {
    let c = |sql| classify(sql, Dialect::Postgres).unwrap();
    let (read, delete, alter) = (
        c("SELECT 1"),
        c("SELECT 1; DELETE FROM t"),
        c("ALTER TABLE t ADD x int"),
    );
    assert_eq!(Selector::parse("writes"), Some(Selector::Writes));
    assert_eq!(Selector::parse("write"), None);
    let picks = |s: Selector| [&read, &delete, &alter].map(|c| s.selects(c));
    assert_eq!(picks(Selector::Writes), [false, true, true]);
    assert_eq!(picks(Selector::Ddl), [false, false, true]);
    assert_eq!(picks(Selector::Any), [true, true, true]);
}

#[test]
fn kinds_are_ordered_by_danger() {
    let order = [
        "transaction",
        "select",
        "set",
        "select_lock",
        "insert",
        "copy",
        "update",
        "merge",
        "delete",
        "vacuum",
        "function",
        "call",
        "do",
        "create_table",
        "alter_table",
        "grant",
        "truncate",
        "drop_table",
        "unknown",
    ];
    for pair in order.windows(2) {
        assert!(
            Kind::new(pair[0]) < Kind::new(pair[1]),
            "{} < {}",
            pair[0],
            pair[1]
        );
    }
    for kind in order {
        assert!(
            crate::domain::is_action_name(&format!("db.{kind}")),
            "{kind}"
        );
    }
}

#[test]
fn nesting_beyond_the_parsers_limits_is_an_error_not_a_crash() {
    let nested = |n: usize| {
        format!(
            "SELECT * FROM {}users{}",
            "(SELECT * FROM ".repeat(n),
            ") x".repeat(n)
        )
    };
    pg(&nested(10), "select", true, false, "users");
    for n in [40, 300, 5000] {
        assert!(classify(&nested(n), Dialect::Postgres).is_err(), "{n}");
        assert!(classify(&nested(n), Dialect::MySql).is_err(), "{n}");
    }
}

mod disguises {
    //! Property: however a write is dressed (comments, case, whitespace, reads stacked
    //! around it, a CTE wrapping it), it stays a write of the same kind.

    use super::*;
    use proptest::prelude::*;

    const WRITES: &[(&str, &str)] = &[
        ("DELETE FROM users", "delete"),
        ("UPDATE users SET a = 1", "update"),
        ("INSERT INTO users VALUES (1)", "insert"),
        ("DROP TABLE users", "drop_table"),
        ("TRUNCATE users", "truncate"),
    ];

    fn gap() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                Just(" ".to_owned()),
                Just("\n\t".to_owned()),
                Just("/* DROP */".to_owned()),
                Just("/* a /* nested */ b */".to_owned()),
                Just("-- SELECT 1;\n".to_owned()),
            ],
            0..4,
        )
        .prop_map(|parts| parts.concat())
    }

    fn recase(sql: &str, mask: u64) -> String {
        sql.chars()
            .enumerate()
            .map(|(i, c)| {
                if mask >> (i % 64) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn a_disguised_write_is_still_that_write(
            which in 0..WRITES.len(),
            before in gap(),
            after in gap(),
            mask in any::<u64>(),
            stacked in 0..3usize,
            wrapped in any::<bool>(),
        ) {
            let (write, kind) = WRITES[which];
            // Only statements with RETURNING can hide in a CTE.
            let core = if wrapped && matches!(kind, "delete" | "update" | "insert") {
                format!("WITH w AS ({write} RETURNING 1) SELECT * FROM w")
            } else {
                write.to_owned()
            };
            let reads = "SELECT 1;".repeat(stacked);
            let sql = format!("{reads}{before}{}{after}", recase(&core, mask));
            let c = classify(&sql, Dialect::Postgres).unwrap();
            prop_assert!(!c.is_plain_read(), "{sql:?}");
            prop_assert_eq!(c.kind().as_str(), kind, "{:?}", sql);
            prop_assert!(c.tables().contains("users"), "{sql:?}");
        }
    }
}

//! MySQL, MSSQL and SQLite through sqlparser: the same bypass attempts, read the way
//! each server reads them.

use super::tests::check;
use super::*;

fn mysql(sql: &str, kind: &str, read: bool, ddl: bool, tables: &str) {
    check(Dialect::MySql, sql, kind, read, ddl, tables);
}

#[test]
fn mysql_through_sqlparser() {
    mysql("SELECT * FROM users", "select", true, false, "users");
    mysql(
        "select * from `db`.`users` where id = 1",
        "select",
        true,
        false,
        "db.users",
    );
    mysql(
        "SELECT 1; DROP TABLE users",
        "drop_table",
        false,
        true,
        "users",
    );
    mysql("/* x */ DELETE FROM users", "delete", false, false, "users");
    mysql(
        "# c\nUPDATE users SET a = 1",
        "update",
        false,
        false,
        "users",
    );
    mysql(
        "-- c\nINSERT INTO t VALUES (1)",
        "insert",
        false,
        false,
        "t",
    );
    mysql("REPLACE INTO t VALUES (1)", "insert", false, false, "t");
    mysql("TRUNCATE TABLE t", "truncate", false, true, "t");
    mysql(
        "SELECT * FROM users FOR UPDATE",
        "select_lock",
        false,
        false,
        "users",
    );
    mysql("SELECT 'x; DROP TABLE users'", "select", true, false, "");
    mysql("SELECT GET_LOCK('a', 1)", "function", false, false, "");
    mysql("EXPLAIN DELETE FROM users", "explain", true, false, "users");
    mysql(
        "ALTER TABLE users ADD COLUMN x INT",
        "alter_table",
        false,
        true,
        "users",
    );
    mysql("SHOW TABLES", "show", true, false, "");
    // MySQL runs what is in `/*! … */`: never inspected.
    assert!(classify("SELECT 1 /*! ; DROP TABLE users */", Dialect::MySql).is_err());
    assert!(classify("DELET FROM users", Dialect::MySql).is_err());
}

#[test]
fn mysql_comments_and_strings_as_mysql_reads_them() {
    // MySQL needs whitespace after `--`: `--1` is minus minus one, and the DROP runs.
    mysql(
        "SELECT 1 --1; DROP TABLE users",
        "drop_table",
        false,
        true,
        "users",
    );
    mysql(
        "SELECT 1 # x\n; DROP TABLE users",
        "drop_table",
        false,
        true,
        "users",
    );
    // Backslash escapes in MySQL strings: all of this is one literal.
    mysql(
        "SELECT 'a\\'; DROP TABLE users; -- '",
        "select",
        true,
        false,
        "",
    );
    mysql(
        "SELECT * FROM `we``ird`",
        "select",
        true,
        false,
        "\"we`ird\"",
    );
    mysql(
        "WITH d AS (SELECT 1) DELETE FROM users",
        "delete",
        false,
        false,
        "users",
    );
    mysql("EXECUTE s", "execute", false, true, "");
    // What sqlparser does not know is unknown, never a read.
    for sql in [
        "SELECT * FROM users INTO OUTFILE '/tmp/x'",
        "SELECT * FROM users LOCK IN SHARE MODE",
        "PREPARE s FROM 'DELETE FROM users'",
        "LOAD DATA INFILE '/x' INTO TABLE users",
        "HANDLER users OPEN",
    ] {
        assert!(classify(sql, Dialect::MySql).is_err(), "{sql:?} classified");
    }
}

#[test]
fn other_dialects() {
    let mssql = |sql, kind, read, ddl, tables| check(Dialect::MsSql, sql, kind, read, ddl, tables);
    mssql("SELECT 1 --1; DROP TABLE users", "select", true, false, "");
    mssql(
        "SELECT * FROM [dbo].[users]",
        "select",
        true,
        false,
        "dbo.users",
    );
    mssql(
        "EXEC sp_executesql N'DROP TABLE users'",
        "execute",
        false,
        true,
        "",
    );
    mssql(
        "SELECT * INTO t2 FROM t",
        "select_into",
        false,
        true,
        "t,t2",
    );
    let sqlite =
        |sql, kind, read, ddl, tables| check(Dialect::Sqlite, sql, kind, read, ddl, tables);
    sqlite("PRAGMA writable_schema = 1", "pragma", false, false, "");
    sqlite(
        "SELECT * FROM t; DELETE FROM t",
        "delete",
        false,
        false,
        "t",
    );
}

//! Built-in functions with side effects. Grammar alone calls `SELECT pg_terminate_backend(1)`
//! a plain read; a call to one of these makes the statement a `function` write instead.
//! The list is of known built-ins and common extensions only: a user-defined function
//! with side effects is still classified by grammar (see docs/proxy.md).

/// What calling a function does, when it is on the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SideEffect {
    /// Writes, signals or changes server state.
    Writes,
    /// Runs SQL text of its own (`dblink_exec`, `query_to_xml`): it may do anything,
    /// schema changes included.
    RunsSql,
}

/// Matched on the last part of the name, case-insensitively (`pg_catalog.setval` too).
pub fn side_effect(name: &str) -> Option<SideEffect> {
    let name = name.rsplit('.').next().unwrap_or(name).to_ascii_lowercase();
    let n = name.as_str();
    if RUNS_SQL.contains(&n) {
        return Some(SideEffect::RunsSql);
    }
    let writes = WRITES.contains(&n)
        || n.starts_with("pg_advisory")
        || n.starts_with("pg_try_advisory")
        || n.starts_with("pg_stat_reset")
        || n.starts_with("pg_replication_origin_")
        || n.starts_with("lo_")
        || n.starts_with("pg_file_");
    writes.then_some(SideEffect::Writes)
}

const RUNS_SQL: &[&str] = &[
    "dblink",
    "dblink_exec",
    "dblink_send_query",
    "dblink_open",
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "cursor_to_xml",
];

const WRITES: &[&str] = &[
    // Server and session control.
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_wal_replay_pause",
    "pg_wal_replay_resume",
    "pg_log_backend_memory_contexts",
    "set_config",
    "pg_notify",
    "pg_import_system_collations",
    // Sequences.
    "nextval",
    "setval",
    // Large objects (`lo_*` above) and the old names without the prefix.
    "lowrite",
    "loread",
    // Replication slots.
    "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_drop_replication_slot",
    "pg_copy_physical_replication_slot",
    "pg_copy_logical_replication_slot",
    "pg_logical_slot_get_changes",
    "pg_logical_slot_get_binary_changes",
    "pg_replication_slot_advance",
    "pg_logical_emit_message",
    // Files on the server (adminpack; `pg_file_*` above) and reading them.
    "pg_read_file",
    "pg_read_binary_file",
    // MySQL.
    "get_lock",
    "release_lock",
    "release_all_locks",
    "load_file",
    "sys_exec",
    "sys_eval",
];

//! `greenlight policy check` and `greenlight policy explain` on policy files.

use super::*;

#[test]
fn policy_check_accepts_a_valid_file_and_names_the_line_of_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("policy.toml");
    std::fs::write(&good, POLICY).unwrap();
    let r = run_sync(&["policy", "check", good.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("ok:"), "{r:?}");
    assert!(
        r.stdout.contains("5 rules") && r.stdout.contains("4 clients"),
        "{r:?}"
    );

    // An unknown field in the `never-drop-databases` rule.
    let bad_policy = POLICY.replace(
        "decision = \"deny\"\n",
        "decision = \"deny\"\ncolour = \"red\"\n",
    );
    let line = bad_policy
        .lines()
        .position(|l| l.starts_with("colour"))
        .unwrap()
        + 1;
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, bad_policy).unwrap();
    let r = run_sync(&["policy", "check", bad.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains(&format!(":{line}:")),
        "line {line}: {r:?}"
    );
    assert!(r.stderr.contains("colour"), "{r:?}");
    assert!(!r.stdout.contains("ok:"), "{r:?}");

    // `max_pending` is known, and checked.
    let capped = |n: &str| {
        POLICY.replacen(
            "id = \"app\"\n",
            &format!("id = \"app\"\nmax_pending = {n}\n"),
            1,
        )
    };
    std::fs::write(&good, capped("5")).unwrap();
    assert_eq!(
        run_sync(&["policy", "check", good.to_str().unwrap()]).code,
        0
    );
    std::fs::write(&bad, capped("0")).unwrap();
    let r = run_sync(&["policy", "check", bad.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("field `max_pending`"), "{r:?}");

    let r = run_sync(&[
        "policy",
        "check",
        dir.path().join("missing.toml").to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("missing.toml"), "{r:?}");
}

#[test]
fn policy_explain_names_the_matching_rule() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, POLICY).unwrap();
    let file = file.to_str().unwrap();
    let explain = |action: &str, resource: &str, context: &str| {
        run_sync(&[
            "policy",
            "explain",
            file,
            "--action",
            action,
            "--resource",
            resource,
            "--client",
            "app",
            "--context",
            context,
        ])
    };

    let r = explain("deploy.api", "prod/api", "env=prod");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("matched rule \"prod\""), "{r:?}");
    assert!(r.stdout.contains("U0BOB, U0CAROL"), "{r:?}");

    // First match wins: reads are approved even on prod.
    let r = explain("read.logs", "prod/api", "env=prod");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("matched rule \"reads\""), "{r:?}");
    assert!(r.stdout.contains("approve"), "{r:?}");

    let r = explain("db.drop_database", "pg/main", "env=dev");
    assert!(
        r.stdout.contains("matched rule \"never-drop-databases\""),
        "{r:?}"
    );
    assert!(r.stdout.contains("deny"), "{r:?}");

    // Same resource, other environment: no rule, the default applies.
    let r = explain("deploy.api", "prod/api", "env=staging");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("no rule matched"), "{r:?}");
}

/// Three mistakes in three places: `policy check` names all three, each with its line,
/// not only the first; the exit code is the same as for one.
#[test]
fn policy_check_reports_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    let broken = POLICY
        .replacen("id = \"app\"\n", "id = \"app\"\nmax_pending = 0\n", 1)
        .replacen(
            "decision = \"deny\"\n",
            "decision = \"deny\"\nttl = \"forever\"\n",
            1,
        )
        .replacen("decision = \"approve\"\n", "decision = \"maybe\"\n", 1);
    std::fs::write(&file, &broken).unwrap();
    let line_of = |needle: &str| broken.lines().position(|l| l.contains(needle)).unwrap() + 1;

    let r = run_sync(&["policy", "check", file.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(!r.stdout.contains("ok:"), "{r:?}");
    let errors: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 3, "{r:?}");
    let path = file.display().to_string();
    for (error, needle, field) in [
        (errors[0], "max_pending = 0", "max_pending"),
        (errors[1], "decision = \"maybe\"", "decision"),
        (errors[2], "ttl = \"forever\"", "ttl"),
    ] {
        let located = format!("error: {path}:{}:", line_of(needle));
        assert!(error.starts_with(&located), "{located} in {r:?}");
        assert!(
            error.contains(&format!("field `{field}`")),
            "{field} in {r:?}"
        );
    }
}

#[test]
fn policy_check_and_explain_show_max_window() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    let policy = POLICY.replace(
        "name = \"money\"\n",
        "name = \"money\"\nmax_window = \"4h\"\n",
    );
    std::fs::write(&file, policy).unwrap();
    let file = file.to_str().unwrap();
    let r = run_sync(&["policy", "check", file]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("rule \"money\": access windows up to 4h"),
        "{r:?}"
    );
    let r = run_sync(&[
        "policy",
        "explain",
        file,
        "--action",
        "money.*",
        "--resource",
        "ledger/*",
        "--client",
        "app",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("max window:           4h"), "{r:?}");
}

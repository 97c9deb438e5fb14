//! `greenlight oncall` and the escalation part of `greenlight policy explain`, run as the real
//! binary against a policy file, with `--at` pinning the instant so the answers are fixed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use chrono::Utc;
use greenlight::policy::Policy;

const BIN: &str = env!("CARGO_BIN_EXE_greenlight");

/// Two rotations; the rule escalates through the documented three kinds of stage.
const POLICY: &str = r#"
[[oncall]]
name = "dba"
rotation = ["U0DAVE", "U0ERIN"]
shift = "7d"
start = "2026-01-12T09:00:00Z"

[[oncall]]
name = "sre"
rotation = ["U0SAM"]
shift = "1d"
start = "2026-01-01T00:00:00Z"

[[rule]]
name = "prod-db"
match = { action = "db.*" }
decision = "require"
approvers = ["@dba-team"]
remind_every = "3m"
escalate = [
  { after = "2m", notify = ["oncall:dba"] },
  { after = "5m", notify = ["oncall:dba", "@dba-leads"], pagerduty = true },
  { after = "8m", webhook = "https://hooks.internal.example/greenlight" },
]
"#;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `greenlight ARGS` with no `GREENLIGHT_*` variable from the environment this test runs in.
fn run(args: &[&str], policy_env: Option<&Path>) -> Run {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("GREENLIGHT_") {
            cmd.env_remove(k);
        }
    }
    if let Some(p) = policy_env {
        cmd.env("GREENLIGHT_POLICY", p);
    }
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the greenlight binary runs");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn policy_file(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn prints_who_is_on_call_and_the_next_hand_over() {
    let dir = tempfile::tempdir().unwrap();
    let file = policy_file(&dir, POLICY);
    let file = file.to_str().unwrap();

    let r = run(
        &[
            "oncall",
            "dba",
            "--policy",
            file,
            "--at",
            "2026-11-20T12:00:00Z",
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "dba: U0DAVE on call since 2026-11-16T09:00:00Z; next hand-over 2026-11-23T09:00:00Z to U0ERIN\n"
    );

    let r = run(
        &[
            "oncall",
            "dba",
            "--policy",
            file,
            "--at",
            "2026-11-23T09:00:00Z",
        ],
        None,
    );
    assert_eq!(
        r.stdout,
        "dba: U0ERIN on call since 2026-11-23T09:00:00Z; next hand-over 2026-11-30T09:00:00Z to U0DAVE\n",
        "the hand-over instant belongs to the new shift"
    );

    let r = run(
        &["oncall", "dba", "--at", "2026-11-20T13:00:00+01:00"],
        Some(Path::new(file)),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .starts_with("dba: U0DAVE on call since 2026-11-16T09:00:00Z;"),
        "the file from GREENLIGHT_POLICY, any offset in --at: {}",
        r.stdout
    );
}

#[test]
fn before_start_counts_backwards_through_the_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let file = policy_file(&dir, POLICY);
    let r = run(
        &[
            "oncall",
            "dba",
            "--policy",
            file.to_str().unwrap(),
            "--at",
            "2026-01-12T08:59:59Z",
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "dba: U0ERIN on call since 2026-01-05T09:00:00Z; next hand-over 2026-01-12T09:00:00Z to U0DAVE\n"
    );
}

#[test]
fn without_at_it_answers_for_now() {
    let dir = tempfile::tempdir().unwrap();
    let file = policy_file(&dir, POLICY);
    let r = run(&["oncall", "sre", "--policy", file.to_str().unwrap()], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.starts_with("sre: U0SAM on call since ") && r.stdout.ends_with(" to U0SAM\n"),
        "{}",
        r.stdout
    );
}

#[test]
fn an_unknown_rotation_exits_1_naming_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let file = policy_file(&dir, POLICY);
    let r = run(&["oncall", "dbb", "--policy", file.to_str().unwrap()], None);
    assert_eq!(r.code, 1);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(
        r.stderr.contains("no on-call rotation named \"dbb\"")
            && r.stderr.contains("known: dba, sre"),
        "{}",
        r.stderr
    );
}

#[test]
fn an_invalid_or_missing_file_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = policy_file(&dir, "[[oncall]]\nname = \"dba\"\nrotation = []\n");
    let r = run(&["oncall", "dba", "--policy", file.to_str().unwrap()], None);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("policy.toml:"), "{}", r.stderr);

    let gone = dir.path().join("nope.toml");
    let r = run(&["oncall", "dba", "--policy", gone.to_str().unwrap()], None);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("cannot read policy file"), "{}", r.stderr);
}

#[test]
fn no_policy_at_all_is_a_usage_error() {
    let r = run(&["oncall", "dba"], None);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("--policy") && r.stderr.contains("GREENLIGHT_POLICY"),
        "{}",
        r.stderr
    );

    let dir = tempfile::tempdir().unwrap();
    let file = policy_file(&dir, POLICY);
    let r = run(
        &[
            "oncall",
            "dba",
            "--policy",
            file.to_str().unwrap(),
            "--at",
            "tomorrow",
        ],
        None,
    );
    assert_eq!(r.code, 2, "a bad --at is a usage error too");
    assert!(r.stderr.contains("RFC 3339"), "{}", r.stderr);
}

#[test]
fn policy_explain_lists_escalation_with_whoever_is_on_call_now() {
    let dir = tempfile::tempdir().unwrap();
    let file = policy_file(&dir, POLICY);
    let dba = Policy::parse(POLICY)
        .unwrap()
        .oncall("dba")
        .unwrap()
        .clone();
    let before = dba.shift_at(Utc::now());
    let r = run(
        &[
            "policy",
            "explain",
            file.to_str().unwrap(),
            "--action",
            "db.drop",
            "--resource",
            "postgres://prod/users",
        ],
        None,
    );
    let after = dba.shift_at(Utc::now());
    assert_eq!(r.code, 0, "{}", r.stderr);

    // Whoever held the rotation when the command ran: before or, across a hand-over, after.
    let holder = [before, after]
        .into_iter()
        .map(|s| {
            format!(
                "oncall:dba (now {} until {})",
                s.person,
                s.ends.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            )
        })
        .find(|h| r.stdout.contains(h))
        .unwrap_or_else(|| panic!("no current on-call person in:\n{}", r.stdout));
    for want in [
        "  remind every:         3m\n".to_owned(),
        "  escalation:\n".to_owned(),
        format!("    after 2m: notify {holder}\n"),
        format!("    after 5m: notify {holder}, @dba-leads; pagerduty\n"),
        "    after 8m: webhook https://hooks.internal.example/greenlight\n".to_owned(),
    ] {
        assert!(
            r.stdout.contains(&want),
            "missing {want:?} in:\n{}",
            r.stdout
        );
    }
}

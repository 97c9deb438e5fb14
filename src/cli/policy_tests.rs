//! Tests of `greenlight policy` (check, explain, oncall).

use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: PolicyCommand,
}

#[test]
fn context_values_are_typed_like_json() {
    let m = context_map(vec![
        ("rows".into(), "1200".into()),
        ("dry".into(), "true".into()),
        ("env".into(), "prod".into()),
        ("note".into(), "null".into()),
    ]);
    assert_eq!(m["rows"], Value::from(1200));
    assert_eq!(m["dry"], Value::Bool(true));
    assert_eq!(m["env"], Value::from("prod"));
    assert_eq!(m["note"], Value::from("null"));
}

#[test]
fn explain_arguments_parse_and_bad_context_is_a_usage_error() {
    let cli = Cli::try_parse_from([
        "p",
        "explain",
        "f.toml",
        "--action",
        "db.drop",
        "--resource",
        "r",
        "--context",
        "url=a=b",
    ])
    .unwrap();
    let PolicyCommand::Explain {
        client, context, ..
    } = cli.cmd
    else {
        panic!("expected explain")
    };
    assert_eq!(client, "", "client defaults to empty");
    assert_eq!(
        context,
        vec![("url".to_owned(), "a=b".to_owned())],
        "split at the first ="
    );

    let err = Cli::try_parse_from([
        "p",
        "explain",
        "f",
        "--action",
        "a",
        "--resource",
        "r",
        "--context",
        "novalue",
    ])
    .err()
    .expect("usage error");
    assert_eq!(err.exit_code(), 2);
}

#[derive(Parser)]
struct OncallCli {
    #[command(flatten)]
    args: OncallArgs,
}

#[test]
fn oncall_takes_an_rfc3339_instant_in_any_offset() {
    let cli = OncallCli::try_parse_from(["o", "dba", "--at", "2026-11-20T13:00:00+01:00"]).unwrap();
    assert_eq!(cli.args.name, "dba");
    assert_eq!(
        cli.args.at,
        Some("2026-11-20T12:00:00Z".parse::<DateTime<Utc>>().unwrap())
    );
    let err = OncallCli::try_parse_from(["o", "dba", "--at", "2026-11-20"])
        .err()
        .expect("a date alone is not an instant");
    assert_eq!(err.exit_code(), 2);
}

#[test]
fn oncall_without_a_policy_file_is_a_usage_error() {
    let args = OncallArgs {
        name: "dba".into(),
        at: None,
        policy: None,
    };
    assert_eq!(args.run(), ExitCode::from(2));
}

#[test]
fn check_exits_1_on_an_invalid_file_and_0_on_a_valid_one() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[rule]]\nname = \"x\"\ndecision = \"maybe\"\n").unwrap();
    assert_eq!(PolicyCommand::Check { file: bad }.run(), ExitCode::FAILURE);
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[[rule]]\nname = \"x\"\ndecision = \"deny\"\n").unwrap();
    assert_eq!(
        PolicyCommand::Check { file: good.clone() }.run(),
        ExitCode::SUCCESS
    );
    let explain = PolicyCommand::Explain {
        file: good,
        action: "a".into(),
        resource: "r".into(),
        client: String::new(),
        context: Vec::new(),
    };
    assert_eq!(explain.run(), ExitCode::SUCCESS);
}

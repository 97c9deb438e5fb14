//! Mistakes on the command line: exit 2 naming the argument, or exit 1 naming what is
//! missing from the environment.

use super::*;

#[test]
fn usage_errors_exit_2() {
    let id = "act_01JD8Y3M6QW9T3V7K2X5N4B1C0";
    let request = [
        "request",
        "--action",
        "a",
        "--resource",
        "r",
        "--requester",
        "u",
        "--email",
        "alice@example.com",
    ];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["decide", id], "--approve"),
        (vec!["decide", id, "--approve", "--deny"], "--deny"),
        ([&request[..], &["--bogus"]].concat(), "--bogus"),
        (
            request[..3].iter().chain(&request[5..]).copied().collect(),
            "--resource",
        ),
        (
            [&request[..], &["--context", "novalue"]].concat(),
            "novalue",
        ),
        ([&request[..], &["--ttl", "soon"]].concat(), "soon"),
        (vec!["wait", id, "--timeout", "soon"], "soon"),
        (vec!["frobnicate"], "frobnicate"),
    ];
    for (args, names) in cases {
        let r = run_sync(&args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stderr.starts_with("error:"), "{args:?}: {r:?}");
        assert!(r.stderr.contains(names), "{args:?} names {names}: {r:?}");
        assert!(r.stdout.is_empty(), "{args:?}: {r:?}");
    }
}

#[test]
fn a_missing_secret_is_named() {
    let r = run_sync(&["status", "act_01JD8Y3M6QW9T3V7K2X5N4B1C0"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("GREENLIGHT_CLIENT_SECRET"), "{r:?}");
}

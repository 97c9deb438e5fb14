//! Evaluation: glob, client and context matching, first-match order, defaults, on-call, explain.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::tests_parse::REFERENCE_EXAMPLE;
use super::*;

fn ctx(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

fn input<'a>(
    action: &'a str,
    resource: &'a str,
    client: &'a str,
    context: &'a Map<String, Value>,
) -> MatchInput<'a> {
    MatchInput {
        action,
        resource,
        client,
        context,
    }
}

/// One rule with the given `match` table and no others.
fn matcher(m: &str) -> Policy {
    Policy::parse(&format!(
        "[[rule]]\nname = \"r\"\nmatch = {m}\ndecision = \"deny\"\n"
    ))
    .unwrap()
}

fn hits(p: &Policy, action: &str, resource: &str, client: &str, context: Value) -> bool {
    p.evaluate(&input(action, resource, client, &ctx(context)))
        .rule
        .is_some()
}

#[test]
fn globs_cross_dots_and_slashes_and_question_mark_is_one_char() {
    let p = matcher(r#"{ action = "db.*", resource = "postgres://prod/*" }"#);
    assert!(hits(
        &p,
        "db.drop_table",
        "postgres://prod/users",
        "",
        json!({})
    ));
    assert!(
        hits(
            &p,
            "db.schema.migrate",
            "postgres://prod/app/users",
            "",
            json!({})
        ),
        "* spans . and /"
    );
    assert!(
        !hits(&p, "db", "postgres://prod/users", "", json!({})),
        "the dot is literal"
    );
    assert!(
        !hits(&p, "mydb.drop", "postgres://prod/users", "", json!({})),
        "anchored at the start"
    );
    assert!(
        !hits(&p, "DB.drop", "postgres://prod/users", "", json!({})),
        "case-sensitive"
    );
    assert!(!hits(
        &p,
        "db.drop",
        "postgres://staging/users",
        "",
        json!({})
    ));

    let p = matcher(r#"{ action = "deploy.v?" }"#);
    assert!(hits(&p, "deploy.v1", "x", "", json!({})));
    assert!(!hits(&p, "deploy.v10", "x", "", json!({})));
    assert!(!hits(&p, "deploy.v", "x", "", json!({})));
}

#[test]
fn client_is_list_membership_and_absent_criteria_match_everything() {
    let p = matcher(r#"{ client = ["ci", "payments-api"] }"#);
    assert!(hits(&p, "a", "r", "payments-api", json!({})));
    assert!(hits(&p, "a", "r", "ci", json!({})));
    assert!(
        !hits(&p, "a", "r", "payments", json!({})),
        "no prefix matching"
    );
    assert!(!hits(&p, "a", "r", "", json!({})));

    let p = matcher("{}");
    assert!(hits(&p, "anything", "at/all", "whoever", json!({"k": 1})));
}

#[test]
fn context_is_typed_equality_and_missing_keys_do_not_match() {
    let p = matcher(r#"{ context = { env = "prod", rows = 1200, dry_run = false } }"#);
    let all = json!({"env": "prod", "rows": 1200, "dry_run": false, "extra": "ignored"});
    assert!(hits(&p, "a", "r", "c", all));
    assert!(
        hits(
            &p,
            "a",
            "r",
            "c",
            json!({"env": "prod", "rows": 1200.0, "dry_run": false})
        ),
        "1200.0 == 1200"
    );
    assert!(!hits(
        &p,
        "a",
        "r",
        "c",
        json!({"env": "staging", "rows": 1200, "dry_run": false})
    ));
    assert!(
        !hits(
            &p,
            "a",
            "r",
            "c",
            json!({"env": "prod", "rows": "1200", "dry_run": false})
        ),
        "string is not a number"
    );
    assert!(
        !hits(
            &p,
            "a",
            "r",
            "c",
            json!({"env": "prod", "rows": 1200, "dry_run": "false"})
        ),
        "string is not a bool"
    );
    assert!(
        !hits(&p, "a", "r", "c", json!({"env": "prod", "rows": 1200})),
        "missing key"
    );
    assert!(!hits(
        &p,
        "a",
        "r",
        "c",
        json!({"env": "prod", "rows": 1200, "dry_run": null})
    ));
}

const LAYERED: &str = r##"
[defaults]
channel = "#approvals"
ttl = "20m"
grant_ttl = "5m"
on_no_match = "deny"

[[rule]]
name = "reads"
match = { action = "*.read" }
decision = "approve"

[[rule]]
name = "prod"
match = { resource = "prod/*" }
decision = "require"
approvers = ["U1", "U2"]
min_approvals = 2
channel = "#prod"
ttl = "5m"
reason_required = true
allow_self_approval = true

[[rule]]
name = "anything-else-db"
match = { action = "db.*" }
decision = "require"
"##;

#[test]
fn first_matching_rule_wins_and_its_settings_apply() {
    let p = Policy::parse(LAYERED).unwrap();
    let empty = Map::new();
    // "db.read" on prod matches all three rules; the first one decides.
    let e = p.evaluate(&input("db.read", "prod/users", "c", &empty));
    assert_eq!(
        (e.rule_name.as_str(), e.decision),
        ("reads", RuleDecision::Approve)
    );

    let e = p.evaluate(&input("db.drop", "prod/users", "c", &empty));
    assert_eq!(
        (e.rule_name.as_str(), e.decision),
        ("prod", RuleDecision::Require)
    );
    assert_eq!(e.rule.unwrap().line, 13);
    assert_eq!((e.approvers.len(), e.min_approvals), (2, 2));
    assert_eq!(e.channel.as_deref(), Some("#prod"));
    assert_eq!(
        (e.max_ttl.as_secs(), e.grant_ttl.as_secs()),
        (300, 300),
        "rule ttl, default grant_ttl"
    );
    assert!(e.reason_required && e.allow_self_approval && !e.deny_reason_required);

    let e = p.evaluate(&input("db.drop", "staging/users", "c", &empty));
    assert_eq!(e.rule_name, "anything-else-db");
    assert_eq!(
        e.channel.as_deref(),
        Some("#approvals"),
        "falls back to the default channel"
    );
    assert_eq!(e.max_ttl.as_secs(), 1200, "falls back to the default ttl");
    assert!(e.approvers.is_empty() && e.min_approvals == 1);
}

#[test]
fn no_match_uses_on_no_match_and_never_approves() {
    let p = Policy::parse(LAYERED).unwrap();
    let empty = Map::new();
    let e = p.evaluate(&input("s3.delete", "bucket", "c", &empty));
    assert!(e.rule.is_none());
    assert_eq!(
        (e.rule_name.as_str(), e.decision),
        ("default", RuleDecision::Deny)
    );

    let p =
        Policy::parse(&LAYERED.replace(r#"on_no_match = "deny""#, r#"on_no_match = "require""#))
            .unwrap();
    let e = p.evaluate(&input("s3.delete", "bucket", "c", &empty));
    assert_eq!((e.decision, e.min_approvals), (RuleDecision::Require, 1));
    assert!(e.approvers.is_empty() && !e.allow_self_approval);
    assert_eq!(
        (
            e.channel.as_deref(),
            e.max_ttl.as_secs(),
            e.grant_ttl.as_secs()
        ),
        (Some("#approvals"), 1200, 300)
    );

    let builtin = Policy::builtin(Some("#ops"));
    let e = builtin.evaluate(&input("x", "y", "local", &empty));
    assert_eq!(
        (e.rule_name.as_str(), e.decision, e.min_approvals),
        ("default", RuleDecision::Require, 1)
    );
    assert_eq!(
        (e.channel.as_deref(), e.max_ttl.as_secs()),
        (Some("#ops"), 900)
    );
}

#[test]
fn spec_example_rule_matches_only_its_requests() {
    let p = Policy::parse(REFERENCE_EXAMPLE).unwrap();
    let prod = ctx(json!({"env": "prod", "rows": 1200}));
    let e = p.evaluate(&input(
        "db.drop_table",
        "postgres://prod/users",
        "payments-api",
        &prod,
    ));
    assert_eq!((e.rule_name.as_str(), e.min_approvals), ("prod-db", 2));
    let e = p.evaluate(&input(
        "db.drop_table",
        "postgres://prod/users",
        "other-api",
        &prod,
    ));
    assert_eq!(e.rule_name, "default");
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

#[test]
fn spec_oncall_is_dave_then_erin() {
    let p = Policy::parse(REFERENCE_EXAMPLE).unwrap();
    let o = p.oncall("dba").unwrap();
    assert_eq!(o.on_call_at(at("2026-01-07T12:00:00Z")), "U0DAVE");
    assert_eq!(o.on_call_at(at("2026-01-12T09:00:00Z")), "U0ERIN");
    assert_eq!(
        o.on_call_at(at("2026-01-01T00:00:00Z")),
        "U0ERIN",
        "before start"
    );
}

#[test]
fn explain_names_the_matched_rule_and_why_earlier_rules_failed() {
    let p = Policy::parse(LAYERED).unwrap();
    let empty = Map::new();
    let x = p.explain(&input("db.drop", "prod/users", "c", &empty));
    assert_eq!(x.evaluation.rule_name, "prod");
    assert_eq!(x.checks.len(), 2);
    assert_eq!(
        x.checks[0].result,
        Err(Mismatch::Action {
            pattern: "*.read".into(),
            actual: "db.drop".into()
        })
    );
    assert_eq!(x.not_reached, 1);
    let text = x.to_string();
    assert!(
        text.starts_with("matched rule \"prod\" (line 13)\n"),
        "{text}"
    );
    for want in [
        "decision:             require",
        "approvers:            U1, U2",
        "min approvals:        2",
        "channel:              #prod",
        "ttl:                  5m",
        "grant ttl:            5m",
        "line 8: \"reads\" does not match: action \"db.drop\" does not match \"*.read\"",
        "line 13: \"prod\" matches",
        "1 later rule(s) not consulted",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn explain_without_a_match_shows_the_default_and_every_failure() {
    let p = Policy::parse(REFERENCE_EXAMPLE).unwrap();
    let c = ctx(json!({"env": "staging"}));
    let text = p
        .explain(&input(
            "db.drop_table",
            "postgres://prod/users",
            "payments-api",
            &c,
        ))
        .to_string();
    assert!(
        text.starts_with("no rule matched: the default applies (on_no_match = \"require\")"),
        "{text}"
    );
    assert!(
        text.contains("approvers:            any Slack user"),
        "{text}"
    );
    assert!(
        text.contains(
            "\"prod-db\" does not match: context \"env\" is \"staging\", rule wants \"prod\""
        ),
        "{text}"
    );
    let text = p
        .explain(&input(
            "db.drop_table",
            "postgres://prod/users",
            "payments-api",
            &Map::new(),
        ))
        .to_string();
    assert!(text.contains("context has no key \"env\""), "{text}");
    let text = p
        .explain(&input("db.drop_table", "postgres://prod/users", "ci", &c))
        .to_string();
    assert!(
        text.contains("client \"ci\" is not in [payments-api]"),
        "{text}"
    );
}

#[test]
fn max_window_is_parsed_applied_and_explained() {
    let src = LAYERED.replace(
        "name = \"anything-else-db\"\n",
        "name = \"anything-else-db\"\nmax_window = \"4h\"\n",
    );
    let p = Policy::parse(&src).unwrap();
    let empty = Map::new();
    let x = p.explain(&input("db.*", "postgres://prod/*", "c", &empty));
    assert_eq!(x.evaluation.max_window, Some(Duration::from_secs(4 * 3600)));
    assert!(x.to_string().contains("max window:           4h"), "{x}");
    let x = p.explain(&input("db.drop", "prod/users", "c", &empty));
    assert_eq!(x.evaluation.max_window, None);
    assert!(x.to_string().contains("max window:           (no windows)"));
    let bad = LAYERED.replace(
        "name = \"anything-else-db\"\n",
        "name = \"anything-else-db\"\nmax_window = \"forever\"\n",
    );
    let e = Policy::parse(&bad).unwrap_err().to_string();
    assert!(e.contains("max_window"), "{e}");
}

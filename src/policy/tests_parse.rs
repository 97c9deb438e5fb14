//! Parsing and validation: the reference example loads, and every mistake names its line and field.

use std::time::Duration;

use super::*;

/// The policy reference example, verbatim.
pub(super) const REFERENCE_EXAMPLE: &str = r##"[defaults]
channel = "#approvals"
ttl = "15m"
grant_ttl = "15m"
on_no_match = "require"          # or "deny"; never silently approve

[[client]]
id = "payments-api"
secret_env = "GREENLIGHT_CLIENT_PAYMENTS_API_SECRET"
roles = ["requester"]            # "admin", "auditor"
callback_hosts = ["api.internal.example"]
allow_insecure_callbacks = false # true allows http:// callbacks to loopback hosts (development)

[[oncall]]
name = "dba"
rotation = ["U0DAVE", "U0ERIN"]
shift = "7d"
start = "2026-01-05T09:00:00Z"

[[rule]]
name = "prod-db"
match = { action = "db.*", resource = "postgres://prod/*", client = ["payments-api"], context = { env = "prod" } }
decision = "require"             # "approve" | "deny" | "require"
approvers = ["@dba-team", "U0BOB", "carol@example.com"]
min_approvals = 2
channel = "#prod-approvals"
ttl = "10m"
grant_ttl = "15m"
deny_reason_required = true
reason_required = true           # reject requests without a reason (400)
allow_self_approval = false
remind_every = "3m"
severity = "critical"            # PagerDuty severity: critical | error | warning | info
escalate = [
  { after = "2m", notify = ["oncall:dba"] },
  { after = "5m", notify = ["oncall:dba", "@dba-leads"], pagerduty = true },
  { after = "8m", webhook = "https://hooks.internal.example/greenlight" },
]
"##;

fn min(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

/// Parses `src`, expecting an error; returns (line, message).
fn fails(src: &str) -> (Option<usize>, String) {
    let e = Policy::parse(src).expect_err("policy should be rejected");
    (e.line(), e.to_string())
}

#[test]
fn spec_example_parses_with_every_field() {
    let p = Policy::parse(REFERENCE_EXAMPLE).unwrap();
    assert_eq!(
        p.defaults,
        Defaults {
            channel: Some("#approvals".into()),
            ttl: min(15),
            grant_ttl: min(15),
            on_no_match: NoMatch::Require
        }
    );
    let c = p.client("payments-api").unwrap();
    assert_eq!(c.secret_env, "GREENLIGHT_CLIENT_PAYMENTS_API_SECRET");
    assert!(c.has_role(Role::Requester) && !c.has_role(Role::Admin));
    assert_eq!(c.callback_hosts, ["api.internal.example"]);
    assert!(!c.allow_insecure_callbacks);
    assert_eq!(c.max_pending, 1000, "the documented default");

    let o = &p.oncall[0];
    assert_eq!(
        (o.name.as_str(), o.shift),
        ("dba", Duration::from_secs(7 * 86400))
    );
    assert_eq!(o.rotation, ["U0DAVE", "U0ERIN"]);

    let r = &p.rules[0];
    assert_eq!((r.name.as_str(), r.line), ("prod-db", 20));
    assert_eq!(r.matcher.action.as_ref().unwrap().as_str(), "db.*");
    assert_eq!(
        r.matcher.resource.as_ref().unwrap().as_str(),
        "postgres://prod/*"
    );
    assert_eq!(
        r.matcher.client.as_deref(),
        Some(&["payments-api".to_owned()][..])
    );
    assert_eq!(r.matcher.context["env"], serde_json::json!("prod"));
    assert_eq!(r.decision, RuleDecision::Require);
    assert_eq!(r.approvers, ["@dba-team", "U0BOB", "carol@example.com"]);
    assert_eq!(r.min_approvals, 2);
    assert_eq!(r.channel.as_deref(), Some("#prod-approvals"));
    assert_eq!(
        (r.ttl, r.grant_ttl, r.remind_every),
        (Some(min(10)), Some(min(15)), Some(min(3)))
    );
    assert!(r.deny_reason_required && r.reason_required && !r.allow_self_approval);
    assert_eq!(r.severity, Severity::Critical);
    assert_eq!(
        r.escalate,
        [
            EscalationStage {
                after: min(2),
                notify: vec!["oncall:dba".into()],
                pagerduty: false,
                webhook: None
            },
            EscalationStage {
                after: min(5),
                notify: vec!["oncall:dba".into(), "@dba-leads".into()],
                pagerduty: true,
                webhook: None
            },
            EscalationStage {
                after: min(8),
                notify: vec![],
                pagerduty: false,
                webhook: Some("https://hooks.internal.example/greenlight".into())
            },
        ]
    );
}

#[test]
fn minimal_rule_gets_documented_defaults() {
    let p = Policy::parse("[[client]]\nid = \"ci\"\nsecret_env = \"CI_SECRET\"\n\n[[rule]]\nname = \"r\"\ndecision = \"require\"\n").unwrap();
    assert_eq!(p.defaults, Defaults::default());
    assert_eq!(p.defaults.ttl, min(15));
    assert_eq!(p.clients[0].roles, [Role::Requester]);
    let r = &p.rules[0];
    assert_eq!(
        (r.min_approvals, r.severity, r.line),
        (1, Severity::Critical, 5)
    );
    assert!(r.approvers.is_empty() && r.escalate.is_empty() && r.ttl.is_none());
    assert!(
        r.matcher.action.is_none() && r.matcher.client.is_none() && r.matcher.context.is_empty()
    );
}

#[test]
fn unknown_fields_are_rejected_with_their_line() {
    let (line, msg) = fails("[[rule]]\nname = \"r\"\ndecision = \"deny\"\nfoo = 1\n");
    assert_eq!(line, Some(4));
    assert!(msg.contains("unknown field `foo`"), "{msg}");
    let (line, msg) = fails(
        "[[rule]]\nname = \"r\"\ndecision = \"deny\"\nmatch = { action = \"a\", actor = \"b\" }\n",
    );
    assert_eq!(line, Some(4));
    assert!(msg.contains("unknown field `actor`"), "{msg}");
    let (line, msg) = fails("[defaults]\nchanel = \"#x\"\n");
    assert_eq!(
        (line, msg.contains("unknown field `chanel`")),
        (Some(2), true),
        "{msg}"
    );
    let (line, msg) = fails("[[rules]]\nname = \"r\"\n");
    assert_eq!(
        (line, msg.contains("unknown field `rules`")),
        (Some(1), true),
        "{msg}"
    );
}

#[test]
fn type_errors_quote_the_offending_line() {
    let (line, msg) = fails("[[rule]]\nname = \"r\"\ndecision = \"deny\"\nmin_approvals = \"2\"\n");
    assert_eq!(line, Some(4));
    assert!(msg.contains("min_approvals = \"2\""), "{msg}");
    let (line, msg) = fails("[[rule]]\nname = \"r\"\n");
    assert_eq!(line, Some(1));
    assert!(msg.contains("missing field `decision`"), "{msg}");
    let (_, msg) = fails("[[rule]\n");
    assert!(msg.starts_with("line 1: "), "{msg}");
}

#[test]
fn load_errors_name_the_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    let src = REFERENCE_EXAMPLE.replace("min_approvals = 2", "min_approvals = 0");
    std::fs::write(&path, src).unwrap();
    let msg = Policy::load(&path).unwrap_err().to_string();
    assert_eq!(
        msg,
        format!(
            "{}:25: rule \"prod-db\": field `min_approvals`: must be at least 1",
            path.display()
        )
    );
    let missing = dir.path().join("nope.toml");
    let msg = Policy::load(&missing).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!("{}: cannot read policy file", missing.display())),
        "{msg}"
    );
}

#[test]
fn each_semantic_check_reports_line_and_field() {
    let rule = |extra: &str| {
        format!(
            "[[oncall]]\nname = \"dba\"\nrotation = [\"U1\"]\nshift = \"1d\"\nstart = \"2026-01-05T09:00:00Z\"\n\n[[rule]]\nname = \"r\"\ndecision = \"require\"\n{extra}\n"
        )
    };
    // Line 10 is the first line of `extra`.
    let cases: &[(&str, &str)] = &[
        (
            "min_approvals = -1",
            "field `min_approvals`: must be at least 1",
        ),
        (
            "approvers = [\"U1\", \"U2\"]\nmin_approvals = 3",
            "field `min_approvals`: 3 approvals required but only 2 approver(s) listed",
        ),
        (
            "ttl = \"0s\"",
            "field `ttl`: duration \"0s\" must be greater than zero",
        ),
        (
            "remind_every = \"often\"",
            "field `remind_every`: invalid duration \"often\"",
        ),
        (
            "severity = \"panic\"",
            "field `severity`: unknown value \"panic\"",
        ),
        (
            "escalate = [{ after = \"5m\", notify = [\"U1\"] }, { after = \"5m\", notify = [\"U2\"] }]",
            "field `escalate[1].after`: must be later than the previous stage (5m)",
        ),
        (
            "escalate = [{ after = \"5m\", notify = [\"oncall:sre\"] }]",
            "field `escalate[0].notify`: no [[oncall]] named \"sre\"",
        ),
        (
            "escalate = [{ after = \"5m\", webhook = \"http://hooks.example/x\" }]",
            "field `escalate[0].webhook`: \"http://hooks.example/x\" must be an https:// URL (http:// only to a loopback host)",
        ),
        (
            "escalate = [{ after = \"5m\" }]",
            "field `escalate[0]`: does nothing",
        ),
        (
            "match = { client = [] }",
            "field `match.client`: empty list can never match",
        ),
        (
            "match = { context = { since = 2026-01-01 } }",
            "field `match.context.since`: must be a string, number or boolean",
        ),
    ];
    for (extra, want) in cases {
        let (line, msg) = fails(&rule(extra));
        assert!(
            msg.contains(&format!("rule \"r\": {want}")),
            "{extra}: {msg}"
        );
        assert_eq!(
            line,
            Some(10 + extra.matches('\n').count()),
            "{extra}: {msg}"
        );
    }
}

#[test]
fn approvers_of_no_known_form_are_named() {
    for bad in ["bob", "u0bob", "U0 BOB", "carol@", "@", "dba team"] {
        let (line, msg) = fails(&format!(
            "[[rule]]\nname = \"r\"\ndecision = \"require\"\napprovers = [\"U0BOB\", {bad:?}]\n"
        ));
        assert_eq!(line, Some(4), "{bad}: {msg}");
        assert!(
            msg.contains("approvers") && msg.contains(&format!("{bad:?}")),
            "{msg}"
        );
    }
}

#[test]
fn groups_and_emails_skip_the_approver_count_check() {
    for approvers in [
        r#"["@dba-team"]"#,
        r#"["S0GROUP", "U1"]"#,
        r#"["carol@example.com"]"#,
    ] {
        let src = format!(
            "[[rule]]\nname = \"r\"\ndecision = \"require\"\napprovers = {approvers}\nmin_approvals = 3\n"
        );
        assert!(Policy::parse(&src).is_ok(), "{approvers}");
    }
    // Only `require` rules collect approvals.
    assert!(
        Policy::parse(
            "[[rule]]\nname = \"r\"\ndecision = \"deny\"\napprovers = [\"U1\"]\nmin_approvals = 2\n"
        )
        .is_ok()
    );
    // Listing the same user twice does not make two approvers.
    let (_, msg) = fails(
        "[[rule]]\nname = \"r\"\ndecision = \"require\"\napprovers = [\"U1\", \"U1\"]\nmin_approvals = 2\n",
    );
    assert!(msg.contains("only 1 approver"), "{msg}");
}

#[test]
fn bad_decision_and_duplicate_names_are_rejected() {
    let (line, msg) = fails("[[rule]]\nname = \"r\"\ndecision = \"maybe\"\n");
    assert_eq!(line, Some(3));
    assert!(msg.contains("rule \"r\": field `decision`: unknown value \"maybe\", expected approve, deny or require"), "{msg}");

    let (line, msg) = fails(
        "[[rule]]\nname = \"r\"\ndecision = \"deny\"\n\n[[rule]]\nname = \"r\"\ndecision = \"require\"\n",
    );
    assert_eq!(line, Some(5));
    assert!(
        msg.contains("duplicate rule name (first defined at line 1)"),
        "{msg}"
    );

    let (line, msg) = fails("[[rule]]\nname = \"default\"\ndecision = \"deny\"\n");
    assert_eq!((line, msg.contains("reserved")), (Some(2), true), "{msg}");

    let client = "[[client]]\nid = \"ci\"\nsecret_env = \"S\"\n";
    let (line, msg) = fails(&format!("{client}{client}"));
    assert_eq!(line, Some(5));
    assert!(
        msg.contains("client \"ci\": field `id`: duplicate client id (first defined at line 2)"),
        "{msg}"
    );
}

#[test]
fn client_and_oncall_mistakes_are_rejected() {
    let (line, msg) = fails("[[client]]\nid = \"ci\"\nsecret_env = \"\"\n");
    assert_eq!(line, Some(3));
    assert!(
        msg.contains("client \"ci\": field `secret_env`: must not be empty"),
        "{msg}"
    );
    let (line, msg) =
        fails("[[client]]\nid = \"ci\"\nsecret_env = \"S\"\nroles = [\"requester\", \"root\"]\n");
    assert_eq!(line, Some(4));
    assert!(
        msg.contains("field `roles`: unknown role \"root\""),
        "{msg}"
    );

    let oncall = |rotation: &str, start: &str| {
        format!(
            "[[oncall]]\nname = \"dba\"\nrotation = {rotation}\nshift = \"7d\"\nstart = \"{start}\"\n"
        )
    };
    let (line, msg) = fails(&oncall("[]", "2026-01-05T09:00:00Z"));
    assert_eq!(line, Some(3));
    assert!(
        msg.contains("oncall \"dba\": field `rotation`: must list at least one"),
        "{msg}"
    );
    let (line, msg) = fails(&oncall("[\"U1\"]", "next monday"));
    assert_eq!(line, Some(5));
    assert!(msg.contains("oncall \"dba\": field `start`"), "{msg}");
}

#[test]
fn max_pending_is_a_positive_count() {
    let client =
        |n: &str| format!("[[client]]\nid = \"ci\"\nsecret_env = \"S\"\nmax_pending = {n}\n");
    let p = Policy::parse(&client("3")).unwrap();
    assert_eq!(p.client("ci").unwrap().max_pending, 3);
    for bad in ["0", "-1", "4294967296"] {
        let (line, msg) = fails(&client(bad));
        assert_eq!(line, Some(4), "{bad}");
        assert!(
            msg.contains("client \"ci\": field `max_pending`: must be a whole number"),
            "{bad}: {msg}"
        );
    }
    let (line, _) = fails(&client("\"lots\""));
    assert_eq!(line, Some(4));
}

#[test]
fn on_no_match_never_approves() {
    let (line, msg) = fails("[defaults]\nchannel = \"#a\"\non_no_match = \"approve\"\n");
    assert_eq!(line, Some(3));
    assert!(
        msg.contains("field `on_no_match`") && msg.contains("Greenlight never silently approves"),
        "{msg}"
    );
    let (_, msg) = fails("[defaults]\non_no_match = \"ask\"\n");
    assert!(msg.contains("expected \"require\" or \"deny\""), "{msg}");
    let p = Policy::parse("[defaults]\non_no_match = \"deny\"\n").unwrap();
    assert_eq!(p.defaults.on_no_match, NoMatch::Deny);
}

#[test]
fn builtin_policy_requires_one_approval_and_has_a_local_client() {
    let p = Policy::builtin(Some("#ops"));
    assert!(p.rules.is_empty());
    assert_eq!(p.defaults.on_no_match, NoMatch::Require);
    assert_eq!(p.defaults.channel.as_deref(), Some("#ops"));
    let c = p.client("local").unwrap();
    assert_eq!(c.secret_env, "GREENLIGHT_CLIENT_SECRET");
    assert!(
        [Role::Requester, Role::Admin, Role::Auditor]
            .iter()
            .all(|r| c.has_role(*r))
    );
    assert_eq!(c.callback_hosts, ["localhost", "127.0.0.1"]);
    assert!(c.allow_insecure_callbacks);
    assert_eq!(Policy::builtin(None).defaults.channel, None);
}

#[test]
fn every_independent_error_is_reported_in_line_order() {
    let src = REFERENCE_EXAMPLE
        .replace("roles = [\"requester\"] ", "roles = [\"boss\"]      ")
        .replace("shift = \"7d\"", "shift = \"a week\"")
        .replace("min_approvals = 2", "min_approvals = 0");
    let err = Policy::parse(&src).unwrap_err();
    let lines: Vec<String> = err.each().iter().map(ToString::to_string).collect();
    let line_of = |needle: &str| src.lines().position(|l| l.contains(needle)).unwrap() + 1;
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines[0].starts_with(&format!("line {}: client", line_of("\"boss\""))),
        "{lines:#?}"
    );
    assert!(lines[0].contains("field `roles`"), "{lines:#?}");
    assert!(
        lines[1].starts_with(&format!("line {}: oncall", line_of("a week"))),
        "{lines:#?}"
    );
    assert!(lines[2].contains("field `min_approvals`"), "{lines:#?}");
    assert_eq!(err.line(), Some(line_of("\"boss\"")));
    // Displayed whole, one error a line.
    assert_eq!(err.to_string(), lines.join("\n"));
}

#[test]
fn a_rotation_with_an_error_is_not_reported_again_by_the_rules_naming_it() {
    let src = REFERENCE_EXAMPLE.replace("shift = \"7d\"", "shift = \"a week\"");
    let err = Policy::parse(&src).unwrap_err();
    assert_eq!(err.each().len(), 1, "{err}");
    assert!(err.to_string().contains("oncall \"dba\""), "{err}");
}

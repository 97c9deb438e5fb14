//! Rendering tests: every wording and limit, and request text that tries to ping, link or
//! break out of its block.

use super::escape::*;
use super::message::*;
use super::*;
use crate::domain::{ActionId, DecidedBy, Outcome, PolicySnapshot, Requester, Vote, VoteKind};
use chrono::TimeZone;
use chrono::{DateTime, Utc};

const EVIL: &str =
    "<!channel> <https://evil|click> <@U123> &amp; ```x``` *Approved* _by_ <!subteam^S1>\n> forged";

fn at(min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, min, 0).unwrap()
}

fn action() -> Action {
    Action {
        id: "act_01JD8Y3M6QW9T3V7K2X5N4B1C0".parse().unwrap(),
        status: Status::Pending,
        action: "db.drop_table".into(),
        resource: "postgres://prod/users".into(),
        requester: Requester {
            id: "u-123".into(),
            email: Some("alice@example.com".into()),
            slack_user_id: Some("U0ALICE".into()),
            name: Some("Alice".into()),
        },
        reason: Some("remove table left over by migration 42".into()),
        context: json!({"env": "prod", "rows": 1200})
            .as_object()
            .unwrap()
            .clone(),
        client: "payments-api".into(),
        policy: PolicySnapshot {
            rule: "prod-db".into(),
            min_approvals: 2,
            approvers: vec!["S0DBA".into(), "U0BOB".into(), "@dba-team".into()],
            ..Default::default()
        },
        votes: vec![],
        created_at: at(0),
        expires_at: at(10),
        callback_url: None,
        escalation: None,
        binding: None,
        window: None,
        decision: None,
    }
}

fn evil() -> Action {
    let mut a = action();
    a.resource = format!("postgres://prod/{EVIL}");
    a.requester = Requester {
        id: EVIL.into(),
        email: Some(EVIL.into()),
        slack_user_id: Some("<!channel>".into()),
        name: Some(EVIL.into()),
    };
    a.reason = Some(EVIL.into());
    a.client = EVIL.into();
    a.context = json!({"note": EVIL, EVIL: 1}).as_object().unwrap().clone();
    a.votes = vec![Vote {
        user: EVIL.into(),
        vote: VoteKind::Approve,
        at: at(1),
    }];
    a
}

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        Value::Object(o) => o.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// Every `<` must open one of our constructs, built from a trusted id.
fn assert_only_our_angles(s: &str) {
    for (i, _) in s.match_indices('<') {
        let rest = &s[i..];
        let ours = [
            "<@U0",
            "<!date^",
            "<!subteam^S0DBA>",
            "<https://example.slack.com/",
        ];
        assert!(
            ours.iter().any(|p| rest.starts_with(p)),
            "raw `<` from request text in {s:?}"
        );
    }
    assert!(!s.contains("<!channel>"));
    assert!(!s.contains("<https://evil"));
    assert!(!s.contains("<@U123>"));
}

fn all_text(m: &Message) -> Vec<String> {
    let mut out = vec![m.text.clone()];
    strings(&m.blocks, &mut out);
    out
}

fn blocks_of<'a>(m: &'a Message, kind: &str) -> Vec<&'a Value> {
    m.blocks
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == kind)
        .collect()
}

fn decide(a: &mut Action, outcome: Outcome, by: DecidedBy, reason: Option<&str>) {
    a.decide(outcome, by, reason.map(str::to_owned), at(5))
        .unwrap();
}

#[test]
fn escapes_only_what_slack_requires() {
    assert_eq!(escape("<!channel>"), "&lt;!channel&gt;");
    assert_eq!(escape("<@U123>"), "&lt;@U123&gt;");
    assert_eq!(escape("<https://evil|click>"), "&lt;https://evil|click&gt;");
    assert_eq!(escape("&amp;"), "&amp;amp;");
    assert_eq!(escape("*bold* _it_ `code` ~s~"), "*bold* _it_ `code` ~s~");
}

#[test]
fn injection_renders_as_text_everywhere() {
    let mut a = evil();
    for s in all_text(&approval_message(&a)) {
        assert_only_our_angles(&s);
    }
    let vote = a.votes[0].clone();
    assert_only_our_angles(&vote_reply(&a, &vote));
    assert_only_our_angles(&action_line(&a));
    let mut modal = Vec::new();
    strings(&deny_reason_modal(&a), &mut modal);
    modal.iter().for_each(|s| assert_only_our_angles(s));

    decide(
        &mut a,
        Outcome::Denied,
        DecidedBy::People(vec![EVIL.into()]),
        Some(EVIL),
    );
    let m = approval_message(&a);
    for s in all_text(&m) {
        assert_only_our_angles(&s);
    }
    assert_only_our_angles(&outcome_dm(
        &a,
        Some("https://example.slack.com/archives/C1/p1"),
    ));
    assert_only_our_angles(&action_line(&a));
    let dump = m.blocks.to_string();
    assert!(dump.contains("&lt;!channel&gt;"));
}

#[test]
fn request_text_cannot_close_the_code_block_or_start_lines() {
    let a = evil();
    let m = approval_message(&a);
    let context = all_text(&m)
        .into_iter()
        .find(|s| s.starts_with("*Context*"))
        .unwrap();
    let body = context.strip_prefix("*Context*\n```").unwrap();
    let body = body.strip_suffix("```").unwrap();
    assert!(!body.contains('`'), "{body}");
    // One-line fields stay one line; the reason stays inside its quote.
    let fields = &blocks_of(&m, "section")[0]["fields"];
    let resource = fields[1]["text"].as_str().unwrap();
    assert_eq!(resource.lines().count(), 2);
    let reason = all_text(&m)
        .into_iter()
        .find(|s| s.starts_with("*Reason*"))
        .unwrap();
    assert!(
        reason.lines().skip(1).all(|l| l.starts_with('>')),
        "{reason}"
    );
}

#[test]
fn pending_message_shows_the_request_and_both_buttons() {
    let a = action();
    let m = approval_message(&a);
    assert_eq!(
        m.text,
        "Approval needed: db.drop_table on postgres://prod/users"
    );
    let dump = m.blocks.to_string();
    for needle in [
        "db.drop_table",
        "postgres://prod/users",
        "Alice (<@U0ALICE>)",
        "payments-api",
        "prod-db",
        "<!subteam^S0DBA>, <@U0BOB>, @dba-team",
        "*Approvals needed*\\n2",
        "remove table left over by migration 42",
        r#"```{\"env\":\"prod\",\"rows\":1200}```"#,
        "<!date^1795342200^{date_short_pretty} at {time}|2026-11-22T10:10:00Z>",
    ] {
        assert!(dump.contains(needle), "missing {needle} in {dump}");
    }
    let actions = blocks_of(&m, "actions");
    assert_eq!(actions.len(), 1);
    let [approve, deny] = actions[0]["elements"].as_array().unwrap().as_slice() else {
        panic!("two buttons");
    };
    assert_eq!(approve["action_id"], APPROVE_ACTION_ID);
    assert_eq!(approve["style"], "primary");
    assert_eq!(approve["value"], a.id.as_str());
    assert!(approve.get("confirm").is_none());
    assert_eq!(deny["action_id"], DENY_ACTION_ID);
    assert_eq!(deny["style"], "danger");
    assert_eq!(deny["value"], a.id.as_str());
    assert_eq!(deny["confirm"]["confirm"]["text"], "Deny");
    assert_eq!(deny["confirm"]["style"], "danger");
}

#[test]
fn the_held_request_is_shown_as_it_will_run() {
    let mut a = action();
    a.binding = Some(crate::domain::Binding::of(
        "POST",
        "/sql",
        b"",
        Some("DELETE FROM `users` <@U0BOB>\u{202e}1=1 WHERE id = 1"),
    ));
    let dump = approval_message(&a).blocks.to_string();
    assert!(
        dump.contains(
            "*Request*\\n```DELETE FROM \u{2cb}users\u{2cb} &lt;@U0BOB&gt;\u{fffd}1=1 WHERE id = 1```"
        ),
        "{dump}"
    );
}

#[test]
fn votes_so_far_are_listed_while_pending() {
    let mut a = action();
    a.votes.push(Vote {
        user: "U0BOB".into(),
        vote: VoteKind::Approve,
        at: at(1),
    });
    let dump = approval_message(&a).blocks.to_string();
    assert!(dump.contains("*Votes* (1 of 2 approvals)"));
    assert!(dump.contains(":white_check_mark: <@U0BOB> approved <!date^"));
    assert_eq!(
        vote_reply(&a, &a.votes[0]),
        ":white_check_mark: <@U0BOB> approved (1 of 2)"
    );
    let carol = Vote {
        user: "U0CAROL".into(),
        vote: VoteKind::Approve,
        at: at(2),
    };
    assert_eq!(
        vote_reply(&a, &carol),
        ":white_check_mark: <@U0CAROL> approved (2 of 2)"
    );
    let deny = Vote {
        user: "U0DAVE".into(),
        vote: VoteKind::Deny,
        at: at(2),
    };
    assert_eq!(vote_reply(&a, &deny), ":x: <@U0DAVE> denied");
}

#[test]
fn decided_message_has_no_buttons_and_names_the_decider() {
    let mut a = action();
    decide(
        &mut a,
        Outcome::Approved,
        DecidedBy::People(vec!["U0BOB".into(), "U0CAROL".into()]),
        None,
    );
    let m = approval_message(&a);
    assert!(blocks_of(&m, "actions").is_empty());
    assert_eq!(m.text, "Approved: db.drop_table on postgres://prod/users");
    let dump = m.blocks.to_string();
    assert!(
        dump.contains(":white_check_mark: *Approved* by <@U0BOB>, <@U0CAROL> · <!date^1795341900^"),
        "{dump}"
    );

    let mut a = action();
    decide(
        &mut a,
        Outcome::Denied,
        DecidedBy::People(vec!["ops-lead@example.com".into()]),
        Some("not during the freeze"),
    );
    let dump = approval_message(&a).blocks.to_string();
    assert!(
        dump.contains(":x: *Denied* by ops-lead@example.com"),
        "{dump}"
    );
    assert!(dump.contains("*Deny reason*\\n>not during the freeze"));

    let mut a = action();
    decide(
        &mut a,
        Outcome::Approved,
        DecidedBy::Policy("auto-staging".into()),
        None,
    );
    let dump = approval_message(&a).blocks.to_string();
    assert!(dump.contains("*Approved* automatically by policy rule auto-staging"));

    let mut a = action();
    decide(&mut a, Outcome::Expired, DecidedBy::Timer, None);
    let m = approval_message(&a);
    assert!(blocks_of(&m, "actions").is_empty());
    assert!(m.blocks.to_string().contains(":hourglass: *Expired*"));

    let mut a = action();
    decide(
        &mut a,
        Outcome::Cancelled,
        DecidedBy::Client("payments-api".into()),
        None,
    );
    let dump = approval_message(&a).blocks.to_string();
    assert!(dump.contains(":no_entry_sign: *Cancelled* by client payments-api"));
}

#[test]
fn context_is_truncated_to_500_characters() {
    let mut a = action();
    a.context = json!({"blob": "x".repeat(2000)})
        .as_object()
        .unwrap()
        .clone();
    let context = all_text(&approval_message(&a))
        .into_iter()
        .find(|s| s.starts_with("*Context*"))
        .unwrap();
    let body = context
        .strip_prefix("*Context*\n```")
        .and_then(|s| s.strip_suffix("```"))
        .unwrap();
    assert_eq!(body.chars().count(), 500);
    assert!(body.starts_with(r#"{"blob":"xxx"#));
    assert!(body.ends_with('…'));
}

#[test]
fn long_request_text_stays_within_block_kit_limits() {
    let mut a = action();
    a.action = "a".repeat(128);
    a.resource = "&".repeat(512);
    a.reason = Some("<\n".repeat(1000));
    a.requester.name = Some("<".repeat(2000));
    a.client = "c".repeat(3000);
    a.policy.approvers = (0..500).map(|i| format!("U{i:08}")).collect();
    a.votes = (0..200)
        .map(|i| Vote {
            user: format!("U{i:08}"),
            vote: VoteKind::Approve,
            at: at(1),
        })
        .collect();
    let m = approval_message(&a);
    let blocks = m.blocks.as_array().unwrap();
    assert!(blocks.len() <= 50);
    for b in blocks {
        if let Some(t) = b["text"]["text"].as_str() {
            let max = if b["type"] == "header" {
                HEADER_MAX
            } else {
                SECTION_MAX
            };
            assert!(t.chars().count() <= max, "{} chars", t.chars().count());
        }
        if let Some(fields) = b["fields"].as_array() {
            assert!(fields.len() <= 10);
            for f in fields {
                let t = f["text"].as_str().unwrap();
                assert!(
                    t.chars().count() <= FIELD_MAX,
                    "{} chars",
                    t.chars().count()
                );
                // Never a half entity left behind by the cut.
                assert!(!t.contains("&a…") && !t.contains("&l…"));
            }
        }
        for e in b["elements"].as_array().into_iter().flatten() {
            if let Some(t) = e["text"]["text"].as_str() {
                assert!(t.chars().count() <= 75);
            }
            if let Some(t) = e["confirm"]["text"]["text"].as_str() {
                assert!(t.chars().count() <= CONFIRM_TEXT_MAX);
            }
        }
    }
    let fields = &blocks[1]["fields"];
    assert!(fields[1]["text"].as_str().unwrap().ends_with('…'));
    for s in all_text(&m) {
        assert_only_our_angles(&s);
    }
}

#[test]
fn deny_modal_carries_the_action_id() {
    let a = action();
    let v = deny_reason_modal(&a);
    assert_eq!(v["type"], "modal");
    assert_eq!(v["callback_id"], DENY_REASON_CALLBACK_ID);
    assert_eq!(v["private_metadata"], a.id.as_str());
    assert_eq!(v["submit"]["text"], "Deny");
    assert_eq!(v["close"]["text"], "Cancel");
    assert!(v["title"]["text"].as_str().unwrap().len() <= 24);
    let input = &v["blocks"][1];
    assert_eq!(input["type"], "input");
    assert_eq!(input["block_id"], DENY_REASON_BLOCK_ID);
    assert_eq!(input["element"]["type"], "plain_text_input");
    assert_eq!(input["element"]["action_id"], DENY_REASON_INPUT_ID);
    assert_eq!(input["element"]["multiline"], true);
}

#[test]
fn mentions() {
    assert_eq!(mention("U0BOB"), "<@U0BOB>");
    assert_eq!(mention("W0ENT"), "<@W0ENT>");
    assert_eq!(mention("S0DBA"), "<!subteam^S0DBA>");
    assert_eq!(mention("@dba-team"), "@dba-team");
    assert_eq!(mention("bob@example.com"), "bob@example.com");
    assert_eq!(mention("<!here>"), "&lt;!here&gt;");
    assert_eq!(mention("u0lower"), "u0lower");
    assert_eq!(mention("U"), "U");
}

#[test]
fn requester_mention_only_for_real_slack_ids() {
    let mut a = action();
    a.requester.slack_user_id = Some("alice".into());
    let dump = approval_message(&a).blocks.to_string();
    assert!(dump.contains("Alice (Slack: alice)"));
    assert!(!dump.contains("<@alice>"));
}

#[test]
fn outcome_dm_and_action_line() {
    let mut a = action();
    decide(
        &mut a,
        Outcome::Denied,
        DecidedBy::People(vec!["U0BOB".into()]),
        Some("freeze\nuntil monday"),
    );
    let dm = outcome_dm(&a, Some("https://example.slack.com/archives/C1/p1?a=1&b=2"));
    assert!(
        dm.starts_with(":x: Your request was *denied* by <@U0BOB>."),
        "{dm}"
    );
    assert!(dm.contains(">*Reason:* freeze\n>until monday"));
    assert!(dm.contains("<https://example.slack.com/archives/C1/p1?a=1&amp;b=2|Open"));
    assert!(!outcome_dm(&a, Some("javascript:alert(1)")).contains("javascript"));
    assert!(!outcome_dm(&a, Some("https://x|y")).contains("x|y"));

    let line = action_line(&a);
    assert!(line.contains("`act_01JD8Y3M6QW9T3V7K2X5N4B1C0`"));
    assert!(line.contains("*db.drop_table*"));
    assert!(line.contains("postgres://prod/users"));
    assert!(line.contains("requested by <@U0ALICE>"));
    assert!(line.contains("denied"));
    assert!(line.contains("decided <!date^"));
    assert!(!line.contains('\n'));
    assert!(action_line(&action()).contains("pending · expires <!date^"));
}

#[test]
fn generated_ids_render() {
    let mut a = action();
    a.id = ActionId::generate();
    let m = approval_message(&a);
    assert_eq!(
        blocks_of(&m, "actions")[0]["elements"][0]["value"],
        a.id.as_str()
    );
}

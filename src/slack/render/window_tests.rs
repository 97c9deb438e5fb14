//! Rendering an access window: what it grants, active with its **Revoke** button, how it
//! ended, the requester's DM, and request text that tries to break out of its code span.

use super::*;
use crate::domain::{DecidedBy, Outcome, PolicySnapshot, Requester, Window, WindowEnd};
use crate::service::Revoker;
use chrono::{DateTime, TimeZone, Utc};

fn at(min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 15, min, 0).unwrap()
}

fn window() -> Action {
    Action {
        id: "act_01JD8Y3M6QW9T3V7K2X5N4B1C0".parse().unwrap(),
        status: Status::Pending,
        action: "db.*".into(),
        resource: "postgres://prod/*".into(),
        requester: Requester {
            id: "u-123".into(),
            email: None,
            slack_user_id: Some("U0ALICE".into()),
            name: Some("Alice".into()),
        },
        reason: Some("INC-42".into()),
        context: Default::default(),
        client: "ops-tools".into(),
        policy: PolicySnapshot {
            rule: "prod-db-access".into(),
            min_approvals: 1,
            approvers: vec!["U0BOB".into()],
            ..Default::default()
        },
        votes: vec![],
        created_at: at(0),
        expires_at: at(10),
        callback_url: None,
        escalation: None,
        binding: None,
        window: Some(Window::new(3600, "db-proxy".into())),
        decision: None,
    }
}

/// Approved at 15:30 by Bob: the window runs to 16:30.
fn approved() -> Action {
    let mut a = window();
    a.decide(
        Outcome::Approved,
        DecidedBy::People(vec!["U0BOB".into()]),
        None,
        at(30),
    )
    .unwrap();
    a.window.as_mut().unwrap().start(at(30));
    a
}

fn blocks_of<'a>(m: &'a Message, kind: &str) -> Vec<&'a Value> {
    m.blocks
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == kind)
        .collect()
}

#[test]
fn a_window_request_says_what_access_for_how_long() {
    let m = approval_message(&window());
    assert_eq!(
        m.text,
        "Approval needed: access for 1h to db.* on postgres://prod/*"
    );
    let dump = m.blocks.to_string();
    assert!(
        dump.contains(":key: *Access for 1h* to `db.*` on `postgres://prod/*`"),
        "{dump}"
    );
    // Voted on like any request; nothing to revoke yet.
    let actions = blocks_of(&m, "actions");
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0]["elements"][0]["action_id"], APPROVE_ACTION_ID);
    assert!(!dump.contains(REVOKE_ACTION_ID));
    assert!(!dump.contains("Access active"));

    let mut a = window();
    a.window = Some(Window::new(5400, "db-proxy".into()));
    assert!(approval_message(&a).text.contains("access for 1h 30m to"));
}

#[test]
fn an_approved_window_is_active_with_a_revoke_button() {
    let m = approval_message(&approved());
    assert_eq!(
        m.text,
        "Approved: access for 1h to db.* on postgres://prod/*"
    );
    let dump = m.blocks.to_string();
    let until = at(30).timestamp() + 3600;
    assert!(
        dump.contains(&format!(
            ":large_green_circle: *Access active* until <!date^{until}^"
        )),
        "{dump}"
    );
    assert!(dump.contains("|2026-11-22T16:30:00Z> · 0 uses"), "{dump}");
    let actions = blocks_of(&m, "actions");
    assert_eq!(actions.len(), 1, "{dump}");
    let button = &actions[0]["elements"][0];
    assert_eq!(button["action_id"], REVOKE_ACTION_ID);
    assert_eq!(button["value"], "act_01JD8Y3M6QW9T3V7K2X5N4B1C0");
    assert_eq!(button["style"], "danger");
    assert_eq!(button["text"]["text"], "Revoke");
    assert_eq!(button["confirm"]["title"]["text"], "Revoke this access?");
    assert_eq!(button["confirm"]["confirm"]["text"], "Revoke");
    assert!(
        button["confirm"]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("db.*")
    );

    let mut a = approved();
    a.window.as_mut().unwrap().uses = 1;
    assert!(
        approval_message(&a)
            .blocks
            .to_string()
            .contains("· 1 use\"")
    );
}

#[test]
fn an_ended_window_says_how_with_no_buttons() {
    let mut a = approved();
    let w = a.window.as_mut().unwrap();
    w.uses = 3;
    w.ended = Some(WindowEnd::Revoked);
    for (by, shown) in [
        (
            Some(Revoker::SlackUser("U0ALICE".into())),
            ":no_entry: *Access ended*: revoked by <@U0ALICE> · 3 uses",
        ),
        (
            Some(Revoker::Client("ops-tools".into())),
            ":no_entry: *Access ended*: revoked by client `ops-tools` · 3 uses",
        ),
        (None, ":no_entry: *Access ended*: revoked · 3 uses"),
    ] {
        let m = approval_message_with(&a, by.as_ref());
        let dump = m.blocks.to_string();
        assert!(dump.contains(shown), "{dump}");
        assert!(blocks_of(&m, "actions").is_empty(), "{dump}");
        assert!(!dump.contains("Access active"));
    }
    a.window.as_mut().unwrap().ended = Some(WindowEnd::Expired);
    let m = approval_message_with(&a, Some(&Revoker::SlackUser("U0ALICE".into())));
    let dump = m.blocks.to_string();
    assert!(
        dump.contains(":checkered_flag: *Access ended*: expired · 3 uses"),
        "{dump}"
    );
    assert!(blocks_of(&m, "actions").is_empty());

    // A denied window has nothing to show but the denial.
    let mut a = window();
    a.decide(
        Outcome::Denied,
        DecidedBy::People(vec!["U0BOB".into()]),
        None,
        at(30),
    )
    .unwrap();
    let dump = approval_message(&a).blocks.to_string();
    assert!(!dump.contains("Access active") && !dump.contains("Access ended"));
    assert!(!dump.contains(REVOKE_ACTION_ID));
}

#[test]
fn window_patterns_cannot_break_out_of_their_code_span() {
    let mut a = approved();
    a.resource = "postgres://prod/` <!channel> <@U1>\n*".into();
    let dump = approval_message(&a).blocks.to_string();
    assert!(!dump.contains("<!channel>"), "{dump}");
    assert!(!dump.contains("<@U1>"), "{dump}");
    assert!(
        dump.contains("`postgres://prod/\u{2cb} &lt;!channel&gt; &lt;@U1&gt; *`"),
        "{dump}"
    );
}

#[test]
fn the_requester_is_told_how_to_use_the_window_never_the_grant() {
    let mut a = approved();
    a.decision.as_mut().unwrap().grant = Some(crate::domain::Grant {
        token: "eyJ.secret.token".into(),
        expires_at: at(30) + chrono::Duration::hours(1),
        action: a.action.clone(),
        resource: a.resource.clone(),
    });
    let dm = requester_dm(&a, None);
    assert!(
        dm.starts_with(":white_check_mark: Your request was *approved* by <@U0BOB>."),
        "{dm}"
    );
    assert!(
        dm.contains(":key: Your access is active until <!date^"),
        "{dm}"
    );
    assert!(
        dm.contains("to `db-proxy` in the `Greenlight-Grant` header"),
        "{dm}"
    );
    assert!(dm.contains("(`ops-tools`)"), "{dm}");
    assert!(dm.contains("--export"), "{dm}");
    assert!(!dm.contains("eyJ"), "{dm}");

    // Anything else, or a window already over: the outcome alone.
    let mut over = approved();
    over.window.as_mut().unwrap().ended = Some(WindowEnd::Expired);
    assert_eq!(requester_dm(&over, None), outcome_dm(&over, None));
    let mut plain = approved();
    plain.window = None;
    assert_eq!(requester_dm(&plain, None), outcome_dm(&plain, None));
    let pending = window();
    assert_eq!(requester_dm(&pending, None), outcome_dm(&pending, None));
}

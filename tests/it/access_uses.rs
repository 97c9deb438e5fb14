//! Each use of an access window answers to the policy in force for the concrete action
//! and resource, and uses racing the window's end are all accounted for: the count the
//! end records is the number of uses that were answered valid.

use crate::access::{approved_window, spawn, token, use_grant};
use crate::audit::{entries_of, entries_until};
use crate::common::{AppOptions, Backend, POLICY, TestApp, spawn_app_with};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Before the `db.*` window rule: drops are never allowed, grants need the security team.
fn guarded_policy() -> String {
    POLICY.replacen(
        "[[rule]]",
        r#"[[rule]]
name = "no-drops"
match = { action = "db.drop*" }
decision = "deny"

[[rule]]
name = "security-grants"
match = { action = "db.grant*", resource = "postgres://prod/*" }
decision = "require"
approvers = ["U0SECURITY"]

[[rule]]
name = "read-replicas"
match = { action = "db.select", resource = "postgres://prod/replica-*" }
decision = "approve"

[[rule]]
name = "db-access"
match = { action = "db.*", resource = "postgres://prod/*" }
decision = "require"
max_window = "1h"

[[rule]]"#,
        1,
    )
}

async fn an_earlier_rule_keeps_its_part_out_of_a_window(backend: Backend) {
    let app = spawn_app_with(
        backend,
        AppOptions {
            policy: guarded_policy(),
            ..Default::default()
        },
    )
    .await;
    let action = approved_window(&app, "app").await;
    assert_eq!(action["policy"]["rule"], "db-access");
    let token = token(&action);
    let id = action["id"].as_str().unwrap();

    // The window's rule governs these; a rule that approves at once may come first.
    for (name, resource) in [
        ("db.select", "postgres://prod/orders"),
        ("db.update", "postgres://prod/orders"),
        ("db.select", "postgres://prod/replica-1"),
    ] {
        let r = use_grant(&app, "app", &token, name, resource).await;
        assert_eq!(r.body["valid"], true, "{name} on {resource}: {}", r.body);
    }
    // `db.*` covers them as text, but an earlier rule decides them: no use.
    for (name, resource) in [
        ("db.drop_table", "postgres://prod/orders"),
        ("db.grant_all", "postgres://prod/orders"),
    ] {
        let r = use_grant(&app, "app", &token, name, resource).await;
        assert_eq!(
            r.body,
            json!({"valid": false, "reason": "wrong_scope"}),
            "{name} on {resource}"
        );
    }
    // Refused uses are not counted.
    let a = app.get("app", id).await.body;
    assert_eq!(a["window"]["uses"], 3, "{a}");
}

async fn uses_racing_a_revocation_are_all_accounted_for(backend: Backend) {
    let app = Arc::new(spawn(backend).await);
    let action = approved_window(&app, "app").await;
    let id = action["id"].as_str().unwrap().to_owned();
    let token = token(&action);

    let one_use = |app: &Arc<TestApp>| {
        let (app, token) = (Arc::clone(app), token.clone());
        tokio::spawn(async move {
            use_grant(&app, "app", &token, "db.select", "postgres://prod/orders")
                .await
                .body
        })
    };
    let mut uses: Vec<_> = (0..20).map(|_| one_use(&app)).collect();
    let path = format!("/v1/actions/{id}/revoke");
    let revoke = app.send_as("admin", "POST", &path, &Value::Null);
    let (revoked, more) = tokio::join!(revoke, async {
        (0..20).map(|_| one_use(&app)).collect::<Vec<_>>()
    });
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    uses.extend(more);
    let mut valid = 0;
    for u in uses {
        let body = u.await.unwrap();
        match body["valid"].as_bool() {
            Some(true) => valid += 1,
            _ => assert_eq!(body, json!({"valid": false, "reason": "revoked"})),
        }
    }
    // After the revocation answered, nothing is valid any more.
    let r = use_grant(&app, "app", &token, "db.select", "postgres://prod/orders").await;
    assert_eq!(r.body, json!({"valid": false, "reason": "revoked"}));

    // The uses answered valid are exactly the ones the action and the trail count.
    let a = app.get("app", &id).await.body;
    assert_eq!(a["window"]["uses"], valid, "{a}");
    assert_eq!(a["window"]["ended"], "revoked");
    assert_eq!(a["window"]["ended_by"], "admin");
    let entries = entries_until(&app, &id, "access_ended").await;
    let ended = entries
        .iter()
        .find(|e| e["event"] == "access_ended")
        .unwrap();
    assert_eq!(ended["details"], json!({"ended": "revoked", "uses": valid}));
    // Each valid use is in the trail too (entries follow their answer by a moment).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let audited = entries_of(&app, &id)
            .await
            .iter()
            .filter(|e| e["event"] == "access_used")
            .count();
        if audited == valid as usize {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{audited} uses audited, {valid} valid"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

on_both_backends!(
    an_earlier_rule_keeps_its_part_out_of_a_window,
    uses_racing_a_revocation_are_all_accounted_for,
);

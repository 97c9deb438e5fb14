//! The `greenlight` binary as a test runs it: configured as one client of a test app,
//! with nothing from the environment the tests run in.

use super::TestApp;
use std::process::Stdio;
use tokio::process::Command;

pub const BIN: &str = env!("CARGO_BIN_EXE_greenlight");

/// `greenlight` with no `GREENLIGHT_*` settings from this test's environment.
pub fn bare() -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("GREENLIGHT_") {
            cmd.env_remove(k);
        }
    }
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

/// `greenlight` configured as `client` of `app`, as a user would set it up.
pub fn greenlight(app: &TestApp, client: &str) -> Command {
    let mut cmd = bare();
    cmd.env("GREENLIGHT_URL", &app.base)
        .env("GREENLIGHT_CLIENT_ID", client)
        .env("GREENLIGHT_CLIENT_SECRET", &app.secrets[client]);
    cmd
}

/// Sends SIGINT (what Ctrl-C sends) to a process.
pub fn interrupt(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill -INT {pid} failed");
}

/// A JSON copy of `action` (the object `GET /v1/actions/{id}` answered) made to look
/// approved, with `token` as its grant: what someone who can reach Redis could publish.
pub fn forged_approval(action: &serde_json::Value, token: &str) -> serde_json::Value {
    let mut forged = action.clone();
    forged["status"] = "approved".into();
    forged["decision"] = serde_json::json!({
        "outcome": "approved",
        "decided_at": action["created_at"],
        "decided_by": ["U0MALLORY"],
        "by_policy": null,
        "reason": null,
        "grant": {
            "token": token,
            "expires_at": action["expires_at"],
            "action": action["action"],
            "resource": action["resource"],
        },
    });
    forged
}

/// Publishes `payload` on the decision channel of action `id` of `app`, straight onto
/// Redis, as an attacker with Redis access could.
pub fn publish_decision(app: &TestApp, id: &str, payload: &serde_json::Value) {
    let redis = app.backend.redis_server().expect("a Redis backend");
    let mut conn = redis.conn();
    let _: i64 = redis::cmd("PUBLISH")
        .arg(format!("{}:decision:{id}", app.prefix))
        .arg(payload.to_string())
        .query(&mut conn)
        .unwrap();
}

/// A real grant of another action: signed by the server, but not for the action at hand.
pub async fn grant_of_another_action(app: &TestApp) -> String {
    let r = app
        .create(&super::request("read.logs", "svc/payments"))
        .await;
    assert_eq!(r.body["status"], "approved", "{}", r.body);
    r.body["decision"]["grant"]["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

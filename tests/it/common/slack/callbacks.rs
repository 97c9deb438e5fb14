//! Requests as Slack sends them to the service: signed, form-encoded interactions and slash
//! commands, with payloads shaped like Slack's documented ones.

use super::{APP_ID, BOT_ID, BOT_USER_ID, CHANNEL_ID, TEAM_DOMAIN, TEAM_ID};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use url::form_urlencoded;

/// `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`, as Slack signs its requests.
pub fn slack_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// The headers Slack sends with a form-encoded interaction or slash command.
pub fn signed_slack_headers(secret: &str, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
    vec![
        ("X-Slack-Request-Timestamp".into(), timestamp.to_string()),
        (
            "X-Slack-Signature".into(),
            slack_signature(secret, timestamp, body),
        ),
        (
            "Content-Type".into(),
            "application/x-www-form-urlencoded".into(),
        ),
    ]
}

/// An interaction request body: one form field, `payload`, holding the JSON.
pub fn interaction_body(payload: &Value) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
        .into_bytes()
}

fn user(user_id: &str) -> Value {
    let name = user_id.to_lowercase();
    json!({"id": user_id, "username": name, "name": name, "team_id": TEAM_ID})
}

const TRIGGER_ID: &str = "1700000001.4744562912.803a0bc887a14d10d2c447fce8b6703c";

/// A `block_actions` payload for a click on a button of the approval message.
pub fn block_action(
    user_id: &str,
    action_id: &str,
    action_value: &str,
    channel: &str,
    message_ts: &str,
    response_url: &str,
) -> Value {
    let (label, style) = match action_id {
        "greenlight_deny" => ("Deny", "danger"),
        _ => ("Approve", "primary"),
    };
    let button = |id: &str, text: &str, style: &str| {
        json!({
            "type": "button", "action_id": id, "value": action_value, "style": style,
            "text": {"type": "plain_text", "text": text, "emoji": true},
        })
    };
    let channel_name = if channel.starts_with('D') {
        "directmessage"
    } else {
        "approvals"
    };
    json!({
        "type": "block_actions",
        "user": user(user_id),
        "api_app_id": APP_ID,
        "token": "Shh_its_a_seekrit",
        "container": {
            "type": "message", "message_ts": message_ts, "channel_id": channel,
            "is_ephemeral": false,
        },
        "trigger_id": TRIGGER_ID,
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "enterprise": null,
        "is_enterprise_install": false,
        "channel": {"id": channel, "name": channel_name},
        "message": {
            "type": "message", "subtype": "bot_message", "text": "Approval requested",
            "ts": message_ts, "user": BOT_USER_ID, "bot_id": BOT_ID, "app_id": APP_ID,
            "team": TEAM_ID,
            "blocks": [{
                "type": "actions", "block_id": "greenlight_buttons",
                "elements": [
                    button("greenlight_approve", "Approve", "primary"),
                    button("greenlight_deny", "Deny", "danger"),
                ],
            }],
        },
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [{
            "action_id": action_id,
            "block_id": "greenlight_buttons",
            "text": {"type": "plain_text", "text": label, "emoji": true},
            "value": action_value,
            "style": style,
            "type": "button",
            "action_ts": "1700000002.000200",
        }],
    })
}

/// The `view_submission` of the deny-reason modal for the action `action_id_value`.
pub fn deny_reason_submission(user_id: &str, action_id_value: &str, reason: &str) -> Value {
    json!({
        "type": "view_submission",
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "user": user(user_id),
        "api_app_id": APP_ID,
        "token": "Shh_its_a_seekrit",
        "trigger_id": TRIGGER_ID,
        "view": {
            "id": "V1", "team_id": TEAM_ID, "type": "modal",
            "callback_id": "greenlight_deny_reason",
            "private_metadata": action_id_value,
            "title": {"type": "plain_text", "text": "Deny", "emoji": true},
            "submit": {"type": "plain_text", "text": "Deny", "emoji": true},
            "close": {"type": "plain_text", "text": "Cancel", "emoji": true},
            "blocks": [{
                "type": "input", "block_id": "reason",
                "label": {"type": "plain_text", "text": "Reason", "emoji": true},
                "element": {
                    "type": "plain_text_input", "action_id": "reason_input", "multiline": true,
                },
            }],
            "state": {"values": {"reason": {
                "reason_input": {"type": "plain_text_input", "value": reason},
            }}},
            "hash": "1700000003.abcdef12",
            "clear_on_close": false, "notify_on_close": false,
            "root_view_id": "V1", "previous_view_id": null, "external_id": "",
            "app_id": APP_ID, "app_installed_team_id": TEAM_ID, "bot_id": BOT_ID,
        },
        "response_urls": [],
        "enterprise": null,
        "is_enterprise_install": false,
    })
}

/// The form body of `/greenlight {text}`, fields in the order Slack sends them.
pub fn slash_command_body(user_id: &str, text: &str, response_url: &str) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("token", "Shh_its_a_seekrit"),
            ("team_id", TEAM_ID),
            ("team_domain", TEAM_DOMAIN),
            ("channel_id", CHANNEL_ID),
            ("channel_name", "approvals"),
            ("user_id", user_id),
            ("user_name", &user_id.to_lowercase()),
            ("command", "/greenlight"),
            ("text", text),
            ("api_app_id", APP_ID),
            ("is_enterprise_install", "false"),
            ("response_url", response_url),
            ("trigger_id", TRIGGER_ID),
        ])
        .finish()
        .into_bytes()
}

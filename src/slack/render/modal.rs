//! The `views.open` modal asking an approver why they deny.

use super::*;

/// The `views.open` modal asking for a deny reason.
pub fn deny_reason_modal(action: &Action) -> Value {
    json!({
        "type": "modal",
        "callback_id": DENY_REASON_CALLBACK_ID,
        "private_metadata": action.id.as_str(),
        "title": {"type": "plain_text", "text": "Deny request"},
        "submit": {"type": "plain_text", "text": "Deny"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            section(format!("{} {}", outcome_emoji(Status::Denied), summary(action))),
            {
                "type": "input",
                "block_id": DENY_REASON_BLOCK_ID,
                "label": {"type": "plain_text", "text": "Why are you denying it?"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": DENY_REASON_INPUT_ID,
                    "multiline": true,
                    "max_length": DENY_REASON_MAX,
                },
            },
        ],
    })
}

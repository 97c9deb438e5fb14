//! The policy parser on arbitrary text: it answers a policy or an error, never a panic,
//! and a policy it accepts can be evaluated and explained.
#![no_main]

use greenlight::policy::{MatchInput, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(policy) = Policy::parse(text) else {
        return;
    };
    let context = serde_json::json!({"env": "prod", "rows": 1200});
    let input = MatchInput {
        action: "db.drop_table",
        resource: "postgres://prod/users",
        client: "payments-api",
        context: context.as_object().unwrap(),
    };
    let _ = policy.evaluate(&input);
    let _ = policy.explain(&input);
});

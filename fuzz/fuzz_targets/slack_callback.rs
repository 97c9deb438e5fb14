//! What `/slack/interactions` and `/slack/commands` run on a request: Slack's signature
//! check on the raw body, then the form and payload decoding. Never a panic, and a body
//! signed with the signing secret verifies whatever it contains.
#![no_main]

use greenlight::slack::verify::verify_at;
use greenlight::slack::{Interaction, SlashCommand};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";

fuzz_target!(|input: (&str, &str, &[u8], i64)| {
    let (timestamp, signature, body, now) = input;
    let _ = verify_at(SECRET, timestamp, signature, body, now);
    let _ = Interaction::from_form(body);
    let _ = serde_json::from_slice::<Interaction>(body);
    let _ = SlashCommand::from_form(body);

    // A body signed as Slack signs it verifies, at the time it was signed.
    use hmac_sign::sign;
    let ts = now.clamp(0, 1 << 40);
    let good = sign(SECRET, ts, body);
    assert!(verify_at(SECRET, &ts.to_string(), &good, body, ts).is_ok());
});

/// Slack's scheme, written out here so the target does not trust the code under test.
mod hmac_sign {
    pub fn sign(secret: &[u8], ts: i64, body: &[u8]) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("v0:{ts}:").as_bytes());
        mac.update(body);
        format!("v0={}", hex::encode(mac.finalize().into_bytes()))
    }
}

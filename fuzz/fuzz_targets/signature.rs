//! The client request signature verifier on arbitrary headers and
//! content: it never panics, and whatever it is given, a signature made with the secret
//! verifies and one made with another secret does not.
#![no_main]

use greenlight::signing::{self, Secret};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER: &str = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fuzz_target!(|input: (&str, &str, &str, &[u8], i64, &str, &str)| {
    let (msg_id, timestamp, signatures, body, now, method, path) = input;
    let secret = Secret::parse(SECRET).unwrap();
    let content = signing::signed_content(body, method, path);
    // Arbitrary header values: any answer but a panic.
    let _ = signing::verify(
        std::slice::from_ref(&secret),
        msg_id,
        timestamp,
        signatures,
        &content,
        now,
    );
    let _ = Secret::parse(signatures);

    // Round trip at a valid time: the right secret verifies, another one does not, and a
    // signature over other content does not either.
    let ts = now.clamp(0, 1 << 40);
    let signature = secret.sign(msg_id, ts, &content);
    let ts_text = ts.to_string();
    let secrets = std::slice::from_ref(&secret);
    assert_eq!(
        signing::verify(secrets, msg_id, &ts_text, &signature, &content, ts),
        Ok(())
    );
    let listed = format!("{signatures} {signature}");
    assert_eq!(
        signing::verify(secrets, msg_id, &ts_text, &listed, &content, ts),
        Ok(()),
        "one valid signature in a list verifies"
    );
    let other = Secret::parse(OTHER).unwrap();
    assert!(signing::verify(&[other], msg_id, &ts_text, &signature, &content, ts).is_err());
    let mut tampered = content.to_vec();
    tampered.push(b'x');
    assert!(signing::verify(secrets, msg_id, &ts_text, &signature, &tampered, ts).is_err());
});

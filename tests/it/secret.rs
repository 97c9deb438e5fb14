//! `greenlight secret derive`: the key receivers verify callbacks and escalation webhooks
//! with, read from the environment or standard input, never from an argument.

use greenlight::signing::{KeyPurpose, Secret, derive_whsec};
use std::io::Write;
use std::process::{Command, Output, Stdio};

/// `greenlight` with no settings from the environment this test runs in.
fn bare() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_greenlight"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("GREENLIGHT_") {
            cmd.env_remove(k);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

fn run(mut cmd: Command, args: &[&str]) -> (i32, String, String) {
    let out: Output = cmd.args(args).output().expect("the greenlight binary runs");
    (
        out.status.code().expect("exited"),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const DERIVE_CALLBACK: [&str; 4] = ["secret", "derive", "--purpose", "callback"];

#[test]
fn prints_the_callback_key_from_the_client_secret_variable() {
    let (_, secret) = Secret::generate();
    let mut cmd = bare();
    cmd.env("GREENLIGHT_CLIENT_SECRET", &secret);
    let (code, stdout, stderr) = run(cmd, &DERIVE_CALLBACK);
    assert_eq!(code, 0, "{stderr}");
    let key = derive_whsec(&secret, KeyPurpose::Callback).unwrap();
    assert_eq!(stdout, key);
    assert_ne!(key, secret);
    assert!(Secret::parse(&key).is_ok(), "a whsec_ key");
}

#[test]
fn prints_the_escalation_key_from_a_named_variable() {
    let (_, secret) = Secret::generate();
    let mut cmd = bare();
    cmd.env("NOTIFY", &secret);
    let args = [
        "secret",
        "derive",
        "--purpose",
        "escalation",
        "--env",
        "NOTIFY",
    ];
    let (code, stdout, stderr) = run(cmd, &args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        derive_whsec(&secret, KeyPurpose::EscalationWebhook).unwrap()
    );
}

#[test]
fn reads_the_secret_from_standard_input() {
    let (_, secret) = Secret::generate();
    let mut cmd = bare();
    cmd.args(DERIVE_CALLBACK)
        .arg("--stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{secret}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        derive_whsec(&secret, KeyPurpose::Callback).unwrap()
    );
}

#[test]
fn no_secret_a_bad_one_or_one_as_an_argument_are_usage_errors() {
    let (code, stdout, stderr) = run(bare(), &DERIVE_CALLBACK);
    assert_eq!(code, 2);
    assert!(stderr.contains("GREENLIGHT_CLIENT_SECRET"), "{stderr}");
    assert!(stdout.is_empty());

    let (_, secret) = Secret::generate();
    let mut args = DERIVE_CALLBACK.to_vec();
    args.push(&secret);
    let (code, stdout, _) = run(bare(), &args);
    assert_eq!(code, 2, "a secret is never taken as an argument");
    assert!(!stdout.contains("whsec_"));

    let mut cmd = bare();
    cmd.env("GREENLIGHT_CLIENT_SECRET", "not-a-secret");
    let (code, _, stderr) = run(cmd, &DERIVE_CALLBACK);
    assert_eq!(code, 2);
    assert!(stderr.contains("whsec_"), "{stderr}");

    let mut cmd = bare();
    cmd.env("GREENLIGHT_CLIENT_SECRET", format!("{secret} {secret}"));
    let (code, _, stderr) = run(cmd, &DERIVE_CALLBACK);
    assert_eq!(code, 2);
    assert!(stderr.contains("exactly one"), "{stderr}");
}

//! `greenlight secret derive`: the `whsec_` key that verifies what the server sends for a
//! purpose (decision callbacks, escalation webhooks), derived from the secret the receiver
//! already holds. The secret is read from an environment variable or standard input, never
//! from an argument (arguments show up in `ps` and shell history).

use super::exit;
use crate::signing::{self, KeyPurpose};
use clap::{Args, Subcommand, ValueEnum};
use std::io::Read;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum SecretCommand {
    /// Print the `whsec_` key that verifies callbacks (from a client's secret) or escalation
    /// webhooks (from GREENLIGHT_NOTIFY_SECRET), for a Standard Webhooks library.
    Derive(DeriveArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Purpose {
    /// Decision callbacks: derive from the creating client's secret.
    Callback,
    /// Escalation webhooks: derive from GREENLIGHT_NOTIFY_SECRET.
    Escalation,
}

#[derive(Args)]
pub struct DeriveArgs {
    /// What the key is to verify.
    #[arg(long, value_enum)]
    purpose: Purpose,
    /// The environment variable holding the secret.
    #[arg(
        long,
        default_value = "GREENLIGHT_CLIENT_SECRET",
        conflicts_with = "stdin"
    )]
    env: String,
    /// Read the secret from standard input instead.
    #[arg(long)]
    stdin: bool,
}

impl SecretCommand {
    pub fn run(self) -> ExitCode {
        match self {
            SecretCommand::Derive(args) => args.run(),
        }
    }
}

impl DeriveArgs {
    fn run(self) -> ExitCode {
        let (source, secret) = if self.stdin {
            let mut text = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut text) {
                eprintln!("error: cannot read the secret from standard input: {e}");
                return ExitCode::from(exit::ERROR);
            }
            ("standard input".to_owned(), text)
        } else {
            match std::env::var(&self.env) {
                Ok(text) => (self.env.clone(), text),
                Err(_) => {
                    eprintln!(
                        "error: {} is not set (or use --stdin, or --env NAME)",
                        self.env
                    );
                    return ExitCode::from(exit::USAGE);
                }
            }
        };
        let purpose = match self.purpose {
            Purpose::Callback => KeyPurpose::Callback,
            Purpose::Escalation => KeyPurpose::EscalationWebhook,
        };
        let secrets: Vec<&str> = secret.split_ascii_whitespace().collect();
        let [one] = secrets[..] else {
            eprintln!(
                "error: {source} must hold exactly one `whsec_` secret (during a rotation, derive each on its own)"
            );
            return ExitCode::from(exit::USAGE);
        };
        match signing::derive_whsec(one, purpose) {
            Ok(key) => {
                println!("{key}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: the secret in {source} {e}");
                ExitCode::from(exit::USAGE)
            }
        }
    }
}

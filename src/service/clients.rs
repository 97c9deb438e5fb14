//! The clients a server answers: the policy with every client's secrets resolved, loaded
//! at start and again on reload, and swapped in whole.

use crate::config::Settings;
use crate::policy::{ClientSpec, Policy};
use crate::signing::Secret;
use anyhow::bail;
use std::collections::HashMap;
use std::sync::Arc;

/// A client as the server knows it: its policy entry and its secrets (several during a
/// rotation: the variable may hold space-separated `whsec_` values).
#[derive(Debug)]
pub struct Client {
    pub spec: ClientSpec,
    pub secrets: Vec<Secret>,
}

impl Client {
    pub fn id(&self) -> &str {
        &self.spec.id
    }
}

/// The policy with the clients resolved from it, swapped whole on reload.
pub struct Loaded {
    pub policy: Policy,
    pub clients: HashMap<String, Arc<Client>>,
}

/// Reads the policy and resolves every client's secrets. A missing or malformed secret
/// fails the start with the variable's name (never its value).
pub fn load(settings: &Settings) -> anyhow::Result<Loaded> {
    let (policy, builtin) = match &settings.policy {
        Some(path) => (Policy::load(path)?, false),
        None => (
            Policy::builtin(settings.slack_default_channel.as_deref()),
            true,
        ),
    };
    let mut clients = HashMap::new();
    for spec in &policy.clients {
        let Some(raw) = settings.secret(&spec.secret_env) else {
            // A server whose only client cannot sign would answer every call
            // "unknown client": say what is missing now instead.
            if builtin {
                bail!(
                    "{} is not set: the built-in policy (GREENLIGHT_POLICY is unset) has one client, `{}`, whose secret it is (e.g. {}=whsec_$(head -c 32 /dev/urandom | base64))",
                    spec.secret_env,
                    spec.id,
                    spec.secret_env
                );
            }
            bail!(
                "client `{}`: environment variable {} (its secret) is not set",
                spec.id,
                spec.secret_env
            );
        };
        let secrets = raw
            .split_ascii_whitespace()
            .map(Secret::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("{}: secret {e}", spec.secret_env))?;
        clients.insert(
            spec.id.clone(),
            Arc::new(Client {
                spec: spec.clone(),
                secrets,
            }),
        );
    }
    Ok(Loaded { policy, clients })
}

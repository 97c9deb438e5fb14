//! `greenlight serve`, the real binary, as an OS process of its own: for tests of several
//! processes sharing one Redis deployment. Killed on drop.

use super::{Api, Backend, CLIENTS, SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, free_port};
use greenlight::signing::Secret;
use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// What every process of one deployment shares: policy, client secrets, grant key, prefix.
pub struct Deployment {
    pub backend: Backend,
    pub prefix: String,
    pub secrets: HashMap<String, String>,
    pub slack_api_base: Option<String>,
    grant_key: String,
    dir: tempfile::TempDir,
}

impl Deployment {
    pub fn new(backend: Backend, policy: &str, slack_api_base: Option<String>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("policy.toml"), policy).unwrap();
        let grant_key = greenlight::grants::generate_signing_key().unwrap();
        Self {
            backend,
            prefix: format!("test{}", ulid::Ulid::new()),
            secrets: CLIENTS
                .iter()
                .map(|c| (c.to_string(), Secret::generate().1))
                .collect(),
            slack_api_base,
            grant_key: secrecy::ExposeSecret::expose_secret(&grant_key).to_owned(),
            dir,
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("RUST_LOG".into(), "warn".into()),
            ("GREENLIGHT_REDIS_PREFIX".into(), self.prefix.clone()),
            (
                "GREENLIGHT_POLICY".into(),
                self.dir.path().join("policy.toml").display().to_string(),
            ),
            (
                "GREENLIGHT_GRANT_SIGNING_KEY".into(),
                self.grant_key.clone(),
            ),
        ];
        match &self.backend {
            Backend::Memory => {}
            Backend::Redis(r) => env.push(("REDIS_URL".into(), r.url())),
            Backend::Cluster(c) => env.push(("GREENLIGHT_REDIS_CLUSTER".into(), c.seeds())),
            Backend::Sentinel(s) => env.push(("REDIS_URL".into(), s.url())),
        }
        if let Some(base) = &self.slack_api_base {
            env.push(("SLACK_API_BASE".into(), base.clone()));
            env.push(("SLACK_BOT_TOKEN".into(), SLACK_BOT_TOKEN.into()));
            env.push(("SLACK_SIGNING_SECRET".into(), SLACK_SIGNING_SECRET.into()));
            env.push(("SLACK_DEFAULT_CHANNEL".into(), "#approvals".into()));
        }
        for (client, secret) in &self.secrets {
            env.push((
                format!("TEST_{}_SECRET", client.to_uppercase()),
                secret.clone(),
            ));
        }
        env
    }

    /// Starts one more process of this deployment and waits until it is ready.
    pub async fn start(&self) -> ServeProcess {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_greenlight"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GREENLIGHT_LISTEN", format!("127.0.0.1:{port}"))
            .envs(self.env())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the greenlight binary starts");
        let api = Api {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            secrets: self.secrets.clone(),
        };
        for _ in 0..400 {
            if let Ok(r) = api.http.get(format!("{}/readyz", api.base)).send().await
                && r.status() == 200
            {
                return ServeProcess { api, child };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("greenlight serve did not become ready");
    }
}

pub struct ServeProcess {
    pub api: Api,
    child: Child,
}

impl ServeProcess {
    /// Kills it with SIGKILL (no graceful answer to anyone) and waits until it is gone.
    pub async fn sigkill(&mut self) {
        self.child.start_kill().expect("the process is running");
        let _ = self.child.wait().await;
    }
}

impl std::ops::Deref for ServeProcess {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

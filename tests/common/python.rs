//! Python's official `standardwebhooks` package, run as a subprocess: the ecosystem's own
//! verifier for what Greenlight signs. Needs `pip install standardwebhooks`.

use serde_json::Value;
use std::time::Duration;

/// Verifies `$CONTENT` against the headers in `$HEADERS` with `$SECRET`; exits non-zero
/// (with `WebhookVerificationError`) when it does not verify.
pub const VERIFY: &str = r#"
import json, os
from standardwebhooks.webhooks import Webhook

Webhook(os.environ["SECRET"]).verify(
    os.environ["CONTENT"], json.loads(os.environ["HEADERS"]), json_parse=False
)
print("verified")
"#;

pub struct Python {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `python3 -c script` with `env`, failing the test (not skipping it) when Python or
/// the `standardwebhooks` module is missing.
pub async fn python(script: &str, env: &[(&str, &str)]) -> Python {
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg("-c").arg(script).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = match tokio::time::timeout(Duration::from_secs(30), cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!(
            "cannot run python3 ({e}); these tests need Python 3 with \
             `pip install standardwebhooks`"
        ),
        Err(_) => panic!("python3 did not finish within 30 s"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if stderr.contains("ModuleNotFoundError") {
        panic!("the Python package is missing: run `pip install standardwebhooks`\n{stderr}");
    }
    Python {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    }
}

/// Whether the Python library accepts `content` with these headers.
pub async fn python_verifies(secret: &str, content: &str, headers: &[(&str, String)]) -> Python {
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(v.as_str())))
        .collect();
    let headers = Value::Object(headers).to_string();
    python(
        VERIFY,
        &[
            ("SECRET", secret),
            ("CONTENT", content),
            ("HEADERS", &headers),
        ],
    )
    .await
}

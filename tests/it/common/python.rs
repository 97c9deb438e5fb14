//! Python's official `standardwebhooks` package and PyJWT, run as subprocesses: the
//! ecosystem's own verifiers for what Greenlight signs. Needs `pip install standardwebhooks
//! "pyjwt[crypto]"`.

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
    python_needing("standardwebhooks", script, env).await
}

/// [`python`] for a script that needs the pip requirement `package`, named when it is missing.
pub async fn python_needing(package: &str, script: &str, env: &[(&str, &str)]) -> Python {
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg("-c").arg(script).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = match tokio::time::timeout(Duration::from_secs(30), cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!(
            "cannot run python3 ({e}); these tests need Python 3 with \
             `pip install \"{package}\"`"
        ),
        Err(_) => panic!("python3 did not finish within 30 s"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if stderr.contains("ModuleNotFoundError") {
        panic!("the Python package is missing: run `pip install \"{package}\"`\n{stderr}");
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

/// Decodes `$TOKEN` with PyJWT, offline, with the key of the JWKS in `$JWKS` whose `kid` is
/// the token's; prints the claims as JSON, or exits non-zero (`InvalidSignatureError`, ...).
pub const PYJWT_DECODE: &str = r#"
import json, os
import cryptography  # PyJWT needs it for EdDSA
import jwt

token = os.environ["TOKEN"]
kid = jwt.get_unverified_header(token)["kid"]
jwks = jwt.PyJWKSet.from_json(os.environ["JWKS"])
claims = jwt.decode(
    token,
    key=jwks[kid],
    algorithms=["EdDSA"],
    audience=os.environ["AUDIENCE"],
    issuer=os.environ["ISSUER"],
)
print(json.dumps(claims))
"#;

/// Whether PyJWT (`pip install "pyjwt[crypto]"`) accepts a grant against this JWKS.
pub async fn pyjwt_decodes(jwks: &Value, token: &str, audience: &str, issuer: &str) -> Python {
    python_needing(
        "pyjwt[crypto]",
        PYJWT_DECODE,
        &[
            ("JWKS", &jwks.to_string()),
            ("TOKEN", token),
            ("AUDIENCE", audience),
            ("ISSUER", issuer),
        ],
    )
    .await
}

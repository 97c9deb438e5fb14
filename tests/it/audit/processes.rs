//! Two server processes, one Redis, many writers at once: one chain; retention on Redis;
//! a policy reload recorded.

use super::*;

struct Server {
    child: tokio::process::Child,
    base: String,
}

async fn serve(
    redis: &RedisServer,
    prefix: &str,
    policy: &str,
    secrets: &[(&str, String)],
) -> Server {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env("GREENLIGHT_LISTEN", &listen)
        .env("REDIS_URL", redis.url())
        .env("GREENLIGHT_REDIS_PREFIX", prefix)
        .env("GREENLIGHT_POLICY", policy)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for (client, secret) in secrets {
        cmd.env(format!("TEST_{}_SECRET", client.to_uppercase()), secret);
    }
    let child = cmd.spawn().unwrap();
    let base = format!("http://{listen}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            return Server { child, base };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_redis_write_one_chain() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let secrets: Vec<(&str, Secret, String)> = crate::common::CLIENTS
        .into_iter()
        .map(|c| {
            let (secret, text) = Secret::generate();
            (c, secret, text)
        })
        .collect();
    let env: Vec<(&str, String)> = secrets.iter().map(|(c, _, t)| (*c, t.clone())).collect();
    let policy = policy.to_str().unwrap();
    let servers = [
        serve(&redis, "twoproc", policy, &env).await,
        serve(&redis, "twoproc", policy, &env).await,
    ];
    let client = |server: &Server, name: &str| {
        let secret = secrets.iter().find(|(c, ..)| *c == name).unwrap().1.clone();
        Client::new(&server.base, name, secret)
    };

    const N: usize = 120;
    let work: Vec<_> = (0..N)
        .map(|i| {
            let here = &servers[i % 2];
            let there = &servers[(i + 1) % 2];
            let app = client(here, "app");
            let admin = client(there, "admin");
            async move {
                let auto = i % 2 == 0;
                let action = if auto { "read.logs" } else { "deploy.prod" };
                let request: ActionRequest =
                    serde_json::from_value(request(action, &format!("svc/{i}"))).unwrap();
                let created = app.request(&request).await.unwrap();
                if !auto {
                    // Decided on the other process.
                    let decided = admin
                        .decide(&created.id, Outcome::Approved, "ops", None)
                        .await
                        .unwrap();
                    assert_eq!(decided.status, Status::Approved);
                }
            }
        })
        .collect();
    futures::future::join_all(work).await;

    // Auto-approved: requested, auto_decided, approved; the others: requested, approved.
    let expected = (N / 2 * 3 + N / 2 * 2) as u64;
    let mut heads = Vec::new();
    for server in &servers {
        let trail = fetch_and_verify(&client(server, "auditor"))
            .await
            .unwrap()
            .unwrap_or_else(|b| panic!("{}", b.describe("position")));
        assert_eq!(trail.entries, expected);
        assert_eq!(trail.first_prev.as_deref(), Some(GENESIS));
        heads.push(trail.head);
    }
    assert_eq!(heads[0], heads[1]);
    let stored: Option<String> = redis::cmd("GET")
        .arg("twoproc:audit:head")
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(stored.as_deref(), Some(heads[0].as_str()));
}

/// Retention on Redis: `MAXLEN ~` keeps at least the newest N, and what is kept verifies
/// from its oldest entry on.
#[tokio::test]
async fn trimmed_trail_still_verifies_from_its_oldest_entry() {
    use greenlight::audit::{Audit, AuditEvent, EventKind};
    use greenlight::store::{Deployment, RedisStore, RedisStoreConfig, Store};
    let redis = RedisServer::start();
    let store: std::sync::Arc<dyn Store> = RedisStore::start(
        RedisStoreConfig {
            deployment: Deployment::Single { url: redis.url() },
            prefix: "trim".into(),
            tls_ca: None,
        },
        greenlight::waiters::Waiters::new(),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap();
    let audit = Audit::new(store.clone(), 100);
    for i in 0..1000 {
        audit
            .record(AuditEvent::new(EventKind::Reminded).detail("i", i))
            .await;
    }
    let mut verifier = greenlight::audit::Verifier::new();
    let mut after = None;
    let mut first = None;
    loop {
        let page = audit.page(after.as_deref(), 1000, None).await.unwrap();
        for e in &page.entries {
            first.get_or_insert_with(|| e.get().to_owned());
            verifier.push_line(e.get()).unwrap();
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let trail = verifier.finish();
    assert!(
        (100..1000).contains(&trail.entries),
        "kept {}",
        trail.entries
    );
    assert_ne!(trail.first_prev.as_deref(), Some(GENESIS));
    let first: Entry = serde_json::from_str(&first.unwrap()).unwrap();
    assert_eq!(first.details["i"], 1000 - trail.entries);
    assert_eq!(store.audit_head().await.unwrap(), Some(trail.head));
}

#[tokio::test]
async fn a_policy_reload_is_recorded() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let secrets: Vec<(&str, Secret, String)> = crate::common::CLIENTS
        .into_iter()
        .map(|c| {
            let (secret, text) = Secret::generate();
            (c, secret, text)
        })
        .collect();
    let env: Vec<(&str, String)> = secrets.iter().map(|(c, _, t)| (*c, t.clone())).collect();
    let server = serve(&redis, "reload", policy.to_str().unwrap(), &env).await;
    let pid = server.child.id().unwrap().to_string();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(hup.success());
    let auditor = secrets.iter().find(|(c, ..)| *c == "auditor").unwrap();
    let client = Client::new(&server.base, "auditor", auditor.1.clone());
    let deadline = tokio::time::Instant::now() + WAIT;
    let entry = loop {
        let page = client.audit(None, 10, None).await.unwrap();
        if let Some(e) = page.entries.first() {
            break serde_json::from_str::<Entry>(e.get()).unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "no policy_reloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(entry.event, "policy_reloaded");
    assert_eq!(entry.actor.as_deref(), Some("sighup"));
    assert_eq!(entry.details["rules"], 5);
    assert_eq!(entry.details["clients"], 4);
    assert_eq!(entry.details["file"], policy.to_str().unwrap());
}

//! A real PostgreSQL for the tests, one per run of the test binary: `initdb` into a
//! temporary directory with trust authentication, `postgres` on a free loopback port.
//! Each test makes a database of its own ([`PostgresServer::database`]).
//!
//! The server outlives no run: it is started by a shell that waits on our stdin and
//! stops it when the test binary exits and the pipe closes, however the binary ends.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

pub struct PostgresServer {
    pub port: u16,
    _dir: tempfile::TempDir,
    _child: Child,
}

/// `carol`'s password; she alone logs in with SCRAM.
pub const CAROL_PASSWORD: &str = "correct horse battery staple";

static SERVER: OnceLock<PostgresServer> = OnceLock::new();

/// The directory of PostgreSQL's server binaries (`initdb`, `postgres`): on `PATH`, or
/// Debian's `/usr/lib/postgresql/*/bin`, the newest version first.
fn bin_dir() -> PathBuf {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() {
                return dir;
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL must be installed (apt-get install postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .pop()
        .expect("no initdb under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
}

/// PostgreSQL refuses to run as root: as root, it runs as the `postgres` user.
fn as_server_user(program: &Path, dir: &Path) -> Command {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Command::new(program);
    }
    let status = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(dir)
        .status()
        .expect("chown");
    assert!(status.success(), "chown of the PostgreSQL test directory");
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--"]).arg(program);
    cmd
}

impl PostgresServer {
    pub fn get() -> &'static PostgresServer {
        SERVER.get_or_init(Self::start)
    }

    fn start() -> Self {
        let bin = bin_dir();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let init = as_server_user(&bin.join("initdb"), dir.path())
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("initdb runs");
        assert!(
            init.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        // Every role logs in without a password but `carol`, who proves hers with SCRAM:
        // the proxy passes the exchange through and never sees the password.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhost all carol 127.0.0.1/32 scram-sha-256\nhost all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        let port = super::free_port();
        let script = r#"
"$0" -D "$1" -p "$2" -k "$1" -c listen_addresses=127.0.0.1 -c fsync=off \
    -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 \
    </dev/null >"$1/log" 2>&1 &
pid=$!
read _ignored
kill -INT "$pid"
wait "$pid"
"#;
        let child = as_server_user(Path::new("sh"), dir.path())
            .arg("-c")
            .arg(script)
            .arg(bin.join("postgres"))
            .arg(&data)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres starts");
        let server = Self {
            port,
            _dir: dir,
            _child: child,
        };
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(data.join("log")).unwrap_or_default();
        panic!("postgres on port {port} did not start: {log}");
    }

    /// A connection string for `user` to `dbname`, directly to the server.
    pub fn url(&self, user: &str, dbname: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} dbname={dbname}",
            self.port
        )
    }

    /// A fresh database of its own for one test, with the login roles `alice` and `bob`
    /// (who may do anything in it), and `carol` with the password [`CAROL_PASSWORD`].
    pub async fn database(&self) -> String {
        let name = format!("t{}", ulid::Ulid::new().to_string().to_lowercase());
        let admin = connect(&self.url("postgres", "postgres")).await;
        // Roles are cluster-wide: made once, by whichever test comes first.
        for role in ["alice", "bob"] {
            let _ = admin
                .batch_execute(&format!("CREATE ROLE {role} LOGIN SUPERUSER"))
                .await;
        }
        let _ = admin
            .batch_execute(&format!(
                "SET password_encryption = 'scram-sha-256'; CREATE ROLE carol LOGIN SUPERUSER PASSWORD '{CAROL_PASSWORD}'"
            ))
            .await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        name
    }
}

/// A `tokio-postgres` client whose connection is driven in the background.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(connection);
    client
}

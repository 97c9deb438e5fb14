//! Redis's own distributed deployments, started by the test on loopback ports from the
//! same `redis-server` binary: a Cluster of masters, and a master with a replica watched
//! by Sentinel. Everything stops on drop.

use super::{RedisServer, free_port};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A Redis Cluster of `n` masters (no replicas), all 16384 slots assigned.
pub struct RedisCluster {
    pub nodes: Vec<Arc<RedisServer>>,
}

impl RedisCluster {
    pub fn start(n: usize) -> Arc<Self> {
        let nodes: Vec<_> = (0..n)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli must be installed (it comes with redis-server)");
        assert!(status.success(), "redis-cli --cluster create failed");
        let cluster = Arc::new(Self { nodes });
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cluster.nodes.iter().all(|n| {
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query(&mut n.conn())
                .unwrap_or_default();
            info.contains("cluster_state:ok")
        }) {
            assert!(Instant::now() < deadline, "the cluster never became ok");
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// `GREENLIGHT_REDIS_CLUSTER`.
    pub fn seeds(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Keys held by each master.
    pub fn key_counts(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| redis::cmd("DBSIZE").query(&mut n.conn()).unwrap())
            .collect()
    }

    /// A cluster connection (RESP3) whose shard-channel messages arrive on `pushes`.
    pub async fn subscriber(
        &self,
    ) -> (
        redis::cluster_async::ClusterConnection,
        tokio::sync::mpsc::UnboundedReceiver<redis::PushInfo>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}/", n.port))
            .collect();
        let client = redis::cluster::ClusterClientBuilder::new(urls)
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(tx)
            .build()
            .unwrap();
        (client.get_async_connection().await.unwrap(), rx)
    }
}

/// A master, one replica, and one Sentinel (quorum 1) watching them as `mymaster`.
pub struct RedisSentinel {
    pub master: Arc<RedisServer>,
    pub replica: Arc<RedisServer>,
    pub port: u16,
    dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
}

pub const SENTINEL_MASTER: &str = "mymaster";

impl RedisSentinel {
    pub fn start() -> Arc<Self> {
        let master = RedisServer::start();
        let replica =
            RedisServer::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master} 1\n\
                 sentinel down-after-milliseconds {SENTINEL_MASTER} 2000\n\
                 sentinel failover-timeout {SENTINEL_MASTER} 10000\n",
                dir = dir.path().display(),
                master = master.port,
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        let sentinel = Arc::new(Self {
            master,
            replica,
            port,
            dir,
            child: Mutex::new(Some(child)),
        });
        // Ready once the sentinel knows the master and has found its replica.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let replicas: redis::RedisResult<Vec<redis::Value>> =
                sentinel.conn().and_then(|mut c| {
                    redis::cmd("SENTINEL")
                        .arg("REPLICAS")
                        .arg(SENTINEL_MASTER)
                        .query(&mut c)
                });
            if matches!(&replicas, Ok(r) if !r.is_empty()) && sentinel.replica_in_sync() {
                return sentinel;
            }
            assert!(
                Instant::now() < deadline,
                "sentinel never saw the replica: {replicas:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn conn(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{}", self.port))?.get_connection()
    }

    fn replica_in_sync(&self) -> bool {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut self.replica.conn())
            .unwrap_or_default();
        info.contains("master_link_status:up")
    }

    /// `REDIS_URL` for Greenlight.
    pub fn url(&self) -> String {
        format!("redis+sentinel://127.0.0.1:{}/{SENTINEL_MASTER}", self.port)
    }

    /// The port of the server Sentinel names as master now.
    pub fn master_port(&self) -> u16 {
        let (_, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(SENTINEL_MASTER)
            .query(&mut self.conn().unwrap())
            .unwrap();
        port
    }

    /// `SENTINEL FAILOVER`, then waits until the replica is the master and says so itself,
    /// and the old master has been turned into its replica.
    pub fn fail_over(&self) {
        let before = self.master_port();
        let _: String = redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(SENTINEL_MASTER)
            .query(&mut self.conn().unwrap())
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = self.master_port();
            if now != before {
                let (new, old) = if now == self.replica.port {
                    (&self.replica, &self.master)
                } else {
                    (&self.master, &self.replica)
                };
                if role(new) == "master" && role(old) == "slave" {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "the failover did not complete");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn role(server: &RedisServer) -> String {
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut server.conn()).unwrap();
    match role.first() {
        Some(redis::Value::BulkString(r)) => String::from_utf8_lossy(r).into_owned(),
        _ => String::new(),
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = &self.dir;
    }
}

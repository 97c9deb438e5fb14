//! Which Redis deployment the settings name: a single server (`redis://`, `rediss://`),
//! Sentinel (`redis+sentinel://`), or Cluster (`GREENLIGHT_REDIS_CLUSTER`). Parsed once at
//! start, with errors that name the variable and never echo a URL (it may hold a password).

use anyhow::{Context, bail};
use percent_encoding::percent_decode_str;
use std::fmt;
use url::Url;

pub const SENTINEL_DEFAULT_PORT: u16 = 26379;

pub enum Deployment {
    /// One server, reached at this URL (any form redis-rs accepts).
    Single { url: String },
    /// `redis+sentinel://[user:password@]host[:port][,host[:port]...]/MASTER[/DB]`: the
    /// credentials and database are the master's; sentinels are asked without credentials.
    Sentinel {
        sentinels: Vec<(String, u16)>,
        master: String,
        db: i64,
        credentials: Credentials,
    },
    /// `GREENLIGHT_REDIS_CLUSTER=host:port,host:port`: seed nodes, with the credentials of
    /// `REDIS_URL` when it is set too.
    Cluster {
        nodes: Vec<(String, u16)>,
        credentials: Credentials,
    },
}

#[derive(Clone, Default)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl Deployment {
    /// `None` when neither is set: the embedded in-memory store.
    pub fn from_settings(url: Option<&str>, cluster: Option<&str>) -> anyhow::Result<Option<Self>> {
        Ok(match (url, cluster) {
            (url, Some(nodes)) => Some(Self::Cluster {
                nodes: parse_nodes(nodes, None)
                    .context("GREENLIGHT_REDIS_CLUSTER is not a list of host:port")?,
                credentials: match url {
                    Some(url) => credentials(url).context("REDIS_URL is not a valid Redis URL")?,
                    None => Credentials::default(),
                },
            }),
            (Some(url), None) if url.starts_with("redis+sentinel://") => {
                Some(parse_sentinel(url).context(
                    "REDIS_URL is not a valid Sentinel URL \
                     (redis+sentinel://[user:password@]host:port[,host:port]/MASTER[/DB])",
                )?)
            }
            (Some(url), None) if url.starts_with("redis://") || url.starts_with("rediss://") => {
                Some(Self::Single {
                    url: url.to_owned(),
                })
            }
            // The value is not echoed: it may hold a password.
            (Some(_), None) => anyhow::bail!(
                "REDIS_URL: expected redis://HOST:PORT, rediss://HOST:PORT (TLS) or redis+sentinel://HOST:PORT/MASTER"
            ),
            (None, None) => None,
        })
    }

    /// Where it is, for messages: `host:port` (or the list of them), never a password.
    pub fn address(&self) -> String {
        let list = |nodes: &[(String, u16)]| {
            nodes
                .iter()
                .map(|(host, port)| host_port(host, *port))
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Self::Single { url } => match Url::parse(url) {
                Ok(u) => host_port(u.host_str().unwrap_or("?"), u.port().unwrap_or(6379)),
                // redis-rs refuses it too, with a message naming REDIS_URL.
                Err(_) => "an unreadable REDIS_URL".into(),
            },
            Self::Sentinel {
                sentinels, master, ..
            } => format!("master `{master}` of sentinels {}", list(sentinels)),
            Self::Cluster { nodes, .. } => list(nodes),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Single { .. } => "a single Redis server".into(),
            Self::Sentinel {
                sentinels, master, ..
            } => format!(
                "Redis Sentinel (master `{master}`, {} sentinels)",
                sentinels.len()
            ),
            Self::Cluster { nodes, .. } => {
                format!("Redis Cluster ({} seed nodes)", nodes.len())
            }
        }
    }
}

/// `host:port`, with brackets around an IPv6 host (`Url::host_str` keeps them already).
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn parse_sentinel(url: &str) -> anyhow::Result<Deployment> {
    let rest = url
        .strip_prefix("redis+sentinel://")
        .context("not redis+sentinel://")?;
    let (hosts_and_path, credentials) = match rest.rsplit_once('@') {
        Some((userinfo, rest)) => (rest, userinfo_credentials(userinfo)?),
        None => (rest, Credentials::default()),
    };
    let (hosts, path) = hosts_and_path
        .split_once('/')
        .unwrap_or((hosts_and_path, ""));
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    let master = segments
        .next()
        .map(|m| percent_decode_str(m).decode_utf8_lossy().into_owned())
        .context("the master name is missing")?;
    let db = match segments.next() {
        Some(db) => db.parse().context("the database is not a number")?,
        None => 0,
    };
    if segments.next().is_some() {
        bail!("unexpected path after the database");
    }
    Ok(Deployment::Sentinel {
        sentinels: parse_nodes(hosts, Some(SENTINEL_DEFAULT_PORT))?,
        master,
        db,
        credentials,
    })
}

/// `host[:port],host[:port]`; a missing port takes `default_port` (an error without one).
fn parse_nodes(list: &str, default_port: Option<u16>) -> anyhow::Result<Vec<(String, u16)>> {
    let nodes = list
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|node| {
            let url = Url::parse(&format!("redis://{node}")).context("not host:port")?;
            let host = url
                .host_str()
                .filter(|h| !h.is_empty())
                .context("no host")?;
            if !matches!(url.path(), "" | "/")
                || url.query().is_some()
                || !url.username().is_empty()
            {
                bail!("not host:port");
            }
            let port = url.port().or(default_port).context("no port")?;
            // Keep IPv6 literals bracketed only in URLs; redis-rs wants the bare address.
            Ok((host.trim_matches(['[', ']']).to_owned(), port))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if nodes.is_empty() {
        bail!("no hosts");
    }
    Ok(nodes)
}

fn userinfo_credentials(userinfo: &str) -> anyhow::Result<Credentials> {
    let url = Url::parse(&format!("redis://{userinfo}@localhost")).context("bad credentials")?;
    Ok(url_credentials(&url))
}

fn credentials(url: &str) -> anyhow::Result<Credentials> {
    Ok(url_credentials(&Url::parse(url)?))
}

fn url_credentials(url: &Url) -> Credentials {
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    Credentials {
        username: Some(url.username()).filter(|u| !u.is_empty()).map(decode),
        password: url.password().map(decode),
    }
}

#[cfg(test)]
#[path = "deployment_tests.rs"]
mod tests;

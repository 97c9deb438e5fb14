//! The load generator's HTTP: one bare HTTP/1 connection per simulated client (hyper, no
//! pool), so the generator's own cost stays small and identical for every target.

use bytes::Bytes;
use greenlight::signing::{self, Secret};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use tokio::net::TcpSocket;

pub type Conn = SendRequest<Full<Bytes>>;

/// Opens one connection, from `source` when given (more loopback addresses, more ports).
pub async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<Conn> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// A client request signed in the Standard Webhooks scheme, as a real client signs it.
pub struct Signer {
    pub client_id: String,
    pub secret: Secret,
}

impl Signer {
    pub fn request(&self, method: &str, path: &str, body: Bytes) -> hyper::Request<Full<Bytes>> {
        let now = chrono::Utc::now().timestamp();
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1");
        for (name, value) in
            signing::headers(&self.client_id, &self.secret, &body, method, path, now)
        {
            req = req.header(name, value);
        }
        if !body.is_empty() {
            req = req.header("content-type", "application/json");
        }
        req.body(Full::new(body)).expect("a valid request")
    }
}

/// Sends `req` and reads the whole answer.
pub async fn send(
    conn: &mut Conn,
    req: hyper::Request<Full<Bytes>>,
) -> anyhow::Result<(u16, Bytes)> {
    conn.ready().await?;
    let resp = conn.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// A plain request (Slack callbacks, health checks, metrics).
pub fn plain(
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Bytes,
) -> hyper::Request<Full<Bytes>> {
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1");
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req.body(Full::new(body)).expect("a valid request")
}

/// One GET on a fresh connection: for the odd metrics scrape or readiness probe.
pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, Bytes)> {
    let mut conn = connect(addr, None).await?;
    send(&mut conn, plain("GET", path, &[], Bytes::new())).await
}

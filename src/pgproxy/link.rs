//! The upstream → client half of a session: every backend message streams through
//! untouched (a header, then its body copied in chunks: constant memory however large a
//! row or a `COPY OUT`), and the proxy's own messages (notices, refusals) are put between
//! two messages, never inside one.
//!
//! Each `ReadyForQuery` the upstream will send is owed for one `Query`, `Sync` or
//! `FunctionCall` forwarded; the proxy queues, per owed `ReadyForQuery`, whether to put a
//! refusal before it. A refused message is never forwarded: a lone `Sync` goes instead,
//! so the upstream itself closes the exchange and says what state the session is in.

use super::wire::{self, Header, WireError};
use std::collections::VecDeque;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Mutex, oneshot};

/// The client's write half, shared by the two directions.
pub struct Link {
    client: Mutex<BufWriter<OwnedWriteHalf>>,
    owed: std::sync::Mutex<VecDeque<AtReady>>,
    /// The upstream's `BackendKeyData` (process id and secret key), as a `CancelRequest`
    /// for this session carries it.
    cancel_key: std::sync::Mutex<Vec<u8>>,
}

/// The largest `BackendKeyData` body: a process id and a key of at most 256 bytes.
const MAX_KEY_DATA: usize = 4 + 256;

/// What to do when the upstream's next `ReadyForQuery` arrives.
#[derive(Default)]
pub struct AtReady {
    /// An `ErrorResponse` (or the proxy's own `CommandComplete`) to send first.
    pub error: Option<Vec<u8>>,
    /// Sent instead of `error` when the upstream says the transaction block has failed.
    pub if_failed: Option<Vec<u8>>,
    /// The exchange failed: inside a transaction block the client is told `E` (failed).
    pub failed: bool,
    /// Told the status the client was given.
    pub done: Option<oneshot::Sender<u8>>,
}

impl Link {
    pub fn new(client: OwnedWriteHalf) -> Self {
        Self {
            client: Mutex::new(BufWriter::with_capacity(64 * 1024, client)),
            owed: std::sync::Mutex::default(),
            cancel_key: std::sync::Mutex::default(),
        }
    }

    pub fn cancel_key(&self) -> Vec<u8> {
        self.cancel_key.lock().expect("not poisoned").clone()
    }

    /// One more `ReadyForQuery` owed by the upstream.
    pub fn owe(&self, at_ready: AtReady) {
        self.owed.lock().expect("not poisoned").push_back(at_ready);
    }

    /// Sends the proxy's own message(s) now, between two upstream messages.
    pub async fn send(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut client = self.client.lock().await;
        client.write_all(bytes).await?;
        client.flush().await
    }

    /// Streams the upstream's messages to the client until either side closes.
    pub async fn pump(&self, upstream: OwnedReadHalf) -> Result<(), WireError> {
        let mut upstream = BufReader::with_capacity(64 * 1024, upstream);
        loop {
            let Some(header) = wire::read_header(&mut upstream, false).await? else {
                return Ok(());
            };
            let mut client = self.client.lock().await;
            if header.tag == b'Z' {
                if header.body_len != 1 {
                    return Err(WireError::Malformed("a ReadyForQuery of the wrong length"));
                }
                let status = upstream.read_u8().await?;
                let at_ready = self
                    .owed
                    .lock()
                    .expect("not poisoned")
                    .pop_front()
                    .unwrap_or_default();
                let first = match &at_ready.if_failed {
                    Some(instead) if status == b'E' => Some(instead),
                    _ => at_ready.error.as_ref(),
                };
                if let Some(first) = first {
                    client.write_all(first).await?;
                }
                let status = if at_ready.failed && status != b'I' {
                    b'E'
                } else {
                    status
                };
                client.write_all(&wire::ready(status)).await?;
                if let Some(done) = at_ready.done {
                    let _ = done.send(status);
                }
            } else if header.tag == b'K' && header.body_len <= MAX_KEY_DATA {
                let mut key = vec![0; header.body_len];
                upstream.read_exact(&mut key).await?;
                client.write_all(&header.bytes()).await?;
                client.write_all(&key).await?;
                *self.cancel_key.lock().expect("not poisoned") = key;
            } else {
                copy_message(header, &mut upstream, &mut *client).await?;
            }
            // Batched while more is already read, flushed when the upstream pauses.
            if upstream.buffer().is_empty() {
                client.flush().await?;
            }
        }
    }
}

/// Copies one message, header and body, without holding its body whole.
pub async fn copy_message<R, W>(header: Header, from: &mut R, to: &mut W) -> Result<(), WireError>
where
    R: tokio::io::AsyncBufRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    to.write_all(&header.bytes()).await?;
    let len = header.body_len as u64;
    let copied = tokio::io::copy_buf(&mut from.take(len), to).await?;
    if copied != len {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    Ok(())
}

//! One client connection: the startup phase, then the client → upstream half, where
//! every message is framed and the SQL of `Query` and `Parse` is classified. A message a
//! rule holds is kept whole until Greenlight decides; nothing after it is read meanwhile,
//! so a pipeline waits behind it. The other half is [`Link::pump`].

use super::Shared;
use super::approval::{self, Held, Refusal};
use super::batch::{Batch, Matched};
use super::config::StatementRule;
use super::link::{AtReady, Link, copy_message};
use super::window::{self, GrantSetting};
use super::wire::{self, Header, Startup, WireError};
use crate::domain::Requester;
use crate::sql::{Classification, Dialect, Kind, SqlError, Statement};
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;

/// SQLSTATE `protocol_violation`.
const PROTOCOL_VIOLATION: &str = "08P01";
/// SQLSTATE `feature_not_supported`.
pub(super) const FEATURE_NOT_SUPPORTED: &str = "0A000";
/// SQLSTATE `in_failed_sql_transaction`.
const IN_FAILED_TRANSACTION: &str = "25P02";

pub async fn run(shared: &Shared, client: TcpStream) -> anyhow::Result<()> {
    let _ = client.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let mut client_read = BufReader::with_capacity(64 * 1024, client_read);
    let link = Link::new(client_write);
    let (startup, user, database) = loop {
        match wire::read_startup(&mut client_read).await {
            Ok(Startup::Encryption) => link.send(b"N").await?,
            Ok(Startup::Cancel(bytes)) => {
                // A statement held for this key stops waiting (Ctrl+C in psql).
                shared.waits.cancel(&bytes[8..]);
                // The key names the upstream backend, whose BackendKeyData the client got
                // through us: the upstream checks it.
                let mut upstream = connect(shared).await?;
                upstream.write_all(&bytes).await?;
                return Ok(());
            }
            Ok(Startup::Start {
                bytes,
                user,
                database,
            }) => break (bytes, user, database),
            Err(WireError::Malformed(why)) => {
                link.send(&wire::fatal(PROTOCOL_VIOLATION, why)).await?;
                return Ok(());
            }
            Err(WireError::Io(e)) => return Err(e.into()),
        }
    };
    let upstream = match connect(shared).await {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(error = %e, "cannot reach the upstream database");
            let message = "greenlight pg-proxy cannot reach the database";
            link.send(&wire::fatal("08006", message)).await?;
            return Ok(());
        }
    };
    let (upstream_read, upstream_write) = upstream.into_split();
    let mut upstream_write = BufWriter::with_capacity(64 * 1024, upstream_write);
    upstream_write.write_all(&startup).await?;
    upstream_write.flush().await?;
    // The startup ends with the upstream's first ReadyForQuery.
    link.owe(AtReady::default());
    let requester = shared
        .config
        .requesters
        .get(&user)
        .cloned()
        .unwrap_or_else(|| Requester {
            id: user.clone(),
            ..Requester::default()
        });
    let mut session = Session {
        shared,
        link: &link,
        client: client_read,
        upstream: upstream_write,
        user,
        database,
        requester,
        batch: Batch::default(),
        prepared: HashMap::new(),
        discarding: false,
        pending_error: None,
        failed_transaction: false,
        grant: None,
    };
    // Either half ending ends the session: the other is dropped with its socket.
    tokio::select! {
        r = session.pump() => match r {
            Ok(()) => Ok(()),
            Err(WireError::Malformed(why)) => {
                tracing::info!(why, "a malformed message from a client; closing");
                link.send(&wire::fatal(PROTOCOL_VIOLATION, why)).await?;
                Ok(())
            }
            Err(WireError::Io(e)) => Err(e.into()),
        },
        r = link.pump(upstream_read) => r.map_err(Into::into),
    }
}

async fn connect(shared: &Shared) -> std::io::Result<TcpStream> {
    let connect = TcpStream::connect(&shared.upstream);
    let stream = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

pub(super) struct Session<'a> {
    pub(super) shared: &'a Shared,
    pub(super) link: &'a Link,
    pub(super) client: BufReader<OwnedReadHalf>,
    pub(super) upstream: BufWriter<OwnedWriteHalf>,
    user: String,
    database: String,
    requester: Requester,
    /// The extended-protocol messages kept since a held `Parse` or `Bind`, up to `Sync`.
    pub(super) batch: Batch<'a>,
    /// Prepared statements (by name) whose SQL a rule holds: each execution is held.
    pub(super) prepared: HashMap<String, Matched<'a>>,
    /// A held batch ended by `Flush` was refused: the rest up to `Sync` is dropped, as
    /// PostgreSQL drops it after an error.
    pub(super) discarding: bool,
    /// The refusal of a held `Execute`, told at the `Sync` (or `Flush`) that ends it.
    pub(super) pending_error: Option<Vec<u8>>,
    /// A statement was refused inside a transaction block: as in PostgreSQL, nothing runs
    /// until the block ends.
    pub(super) failed_transaction: bool,
    /// The access window's grant the session offers (`SET greenlight.grant`).
    pub(super) grant: Option<String>,
}

impl Session<'_> {
    async fn pump(&mut self) -> Result<(), WireError> {
        loop {
            let Some(header) = wire::read_header(&mut self.client, true).await? else {
                return Ok(());
            };
            let held_batch = self.batch.is_held();
            match header.tag {
                b'X' => {
                    self.forward(header).await?;
                    self.upstream.flush().await?;
                    return Ok(());
                }
                b'S' | b'H' => self.end_batch(header).await?,
                // After an error the server drops everything up to Sync; so does the proxy.
                _ if self.discarding => self.skip(header).await?,
                b'B' | b'D' | b'E' | b'C' | b'P' if self.failed_transaction => {
                    self.skip(header).await?;
                    self.discarding = true;
                }
                b'Q' if held_batch => {
                    return Err(WireError::Malformed("a Query inside an unfinished batch"));
                }
                b'Q' => {
                    let body = self.read_inspected(header).await?;
                    self.query(header, body).await?;
                }
                b'P' => {
                    let body = self.read_inspected(header).await?;
                    self.parse(header, body).await?;
                }
                b'B' => {
                    let body = self.read_inspected(header).await?;
                    self.bind(header, body).await?;
                }
                b'D' | b'E' | b'C' if held_batch => {
                    let body = self.read_inspected(header).await?;
                    self.keep(header, &body).await?;
                }
                b'F' => {
                    // The fast-path function call runs a function by its OID, with no SQL
                    // to read: refused, fail closed.
                    self.skip(header).await?;
                    let error = wire::error(
                        "0A000",
                        "greenlight pg-proxy does not pass the fast-path function call",
                    );
                    self.refuse_with_sync(Some(error)).await?;
                }
                _ if held_batch => {
                    return Err(WireError::Malformed("a message out of place in a batch"));
                }
                _ => self.forward(header).await?,
            }
            // Batched while the client has more ready, flushed when it pauses.
            if self.client.buffer().is_empty() {
                self.upstream.flush().await?;
            }
        }
    }

    /// Reads a body the proxy must see whole, within the inspection limit.
    pub(super) async fn read_inspected(&mut self, header: Header) -> Result<Vec<u8>, WireError> {
        if header.body_len > self.shared.config.limits.max_inspected_bytes {
            return Err(WireError::Malformed(
                "a message larger than greenlight pg-proxy inspects (proxy.max_inspected_bytes)",
            ));
        }
        let mut body = vec![0; header.body_len];
        self.client.read_exact(&mut body).await?;
        Ok(body)
    }

    /// Streams one message to the upstream as it is.
    pub(super) async fn forward(&mut self, header: Header) -> Result<(), WireError> {
        copy_message(header, &mut self.client, &mut self.upstream).await
    }

    pub(super) async fn skip(&mut self, header: Header) -> Result<(), WireError> {
        copy_message(header, &mut self.client, &mut tokio::io::sink()).await
    }

    pub(super) async fn send_upstream(
        &mut self,
        header: Header,
        body: &[u8],
    ) -> Result<(), WireError> {
        self.upstream.write_all(&header.bytes()).await?;
        self.upstream.write_all(body).await?;
        Ok(())
    }

    async fn query(&mut self, header: Header, body: Vec<u8>) -> Result<(), WireError> {
        let sql = wire::query_sql(&body)?.to_owned();
        let classified = classify(&sql);
        if self.failed_transaction {
            return self.in_failed_transaction(&classified, &sql).await;
        }
        match window::grant_setting(&sql, classified.as_ref()) {
            GrantSetting::Untouched => {}
            GrantSetting::ResetsAll => self.grant = None,
            GrantSetting::Set(token) => return self.set_grant(Some(token), "SET").await,
            GrantSetting::Reset => return self.set_grant(None, "RESET").await,
            GrantSetting::Refused(why) => {
                let error = wire::error(FEATURE_NOT_SUPPORTED, why);
                return self.refuse_with_sync(Some(error)).await;
            }
        }
        let Some(rule) = classified
            .as_ref()
            .and_then(|c| self.shared.config.rule_for(c))
        else {
            if self.shared.config.audit_all {
                self.passed(&sql);
            }
            self.send_upstream(header, &body).await?;
            self.link.owe(AtReady::default());
            return Ok(());
        };
        let classified = classified.expect("a rule matched it");
        let mut bytes = header.bytes().to_vec();
        bytes.extend(&body);
        match self.hold(rule, sql, &classified.statements, &bytes).await? {
            Ok(()) => {
                self.upstream.write_all(&bytes).await?;
                self.link.owe(AtReady::default());
                Ok(())
            }
            Err(refusal) => {
                let error = wire::error(refusal.code, &refusal.message);
                self.refuse_with_sync(Some(error)).await
            }
        }
    }

    /// Answers a `SET`/`RESET` of `greenlight.grant` here, never forwarding it: a lone
    /// `Sync` goes upstream, so that the answer carries the session's transaction status.
    /// Inside a failed transaction block it is refused (`25P02`) and changes nothing, as
    /// PostgreSQL refuses any `SET` there.
    async fn set_grant(&mut self, grant: Option<String>, tag: &str) -> Result<(), WireError> {
        let (done, status) = oneshot::channel();
        self.link.owe(AtReady {
            error: Some(wire::command_complete(tag)),
            if_failed: Some(in_failed_transaction_error()),
            failed: false,
            done: Some(done),
        });
        self.upstream.write_all(&wire::SYNC).await?;
        self.upstream.flush().await?;
        if let Ok(status) = status.await
            && status != b'E'
        {
            tracing::info!(user = %self.user, offered = grant.is_some(), "greenlight.grant {tag}");
            self.grant = grant;
        }
        Ok(())
    }

    /// With `[audit] statements = "all"`: a statement that passed, in the proxy's log.
    pub(super) fn passed(&self, sql: &str) {
        tracing::info!(target: "greenlight::pgproxy::audit", user = %self.user,
            database = %self.database, sql, "statement passed");
    }

    /// After a refusal inside a transaction block: only ending the block runs, and it rolls
    /// back (PostgreSQL answers `COMMIT` of a failed block with `ROLLBACK` too).
    async fn in_failed_transaction(
        &mut self,
        classified: &Option<Classification>,
        sql: &str,
    ) -> Result<(), WireError> {
        let first_word = sql
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .trim_end_matches(';')
            .to_ascii_lowercase();
        let ends_block =
            classified.as_ref().is_some_and(|c| {
                c.statements
                    .iter()
                    .all(|s| s.kind.as_str() == "transaction")
            }) && matches!(first_word.as_str(), "commit" | "end" | "rollback" | "abort");
        if ends_block {
            self.upstream.write_all(&wire::query("ROLLBACK")).await?;
            self.link.owe(AtReady::default());
            self.failed_transaction = false;
            return Ok(());
        }
        self.refuse_with_sync(Some(in_failed_transaction_error()))
            .await
    }

    /// Answers `error` then `ReadyForQuery`: a lone `Sync` goes upstream instead of the
    /// refused message, and the error is put before the upstream's answer to it. Waits
    /// for it, so the next message is read knowing whether a transaction block failed.
    pub(super) async fn refuse_with_sync(
        &mut self,
        error: Option<Vec<u8>>,
    ) -> Result<(), WireError> {
        let (done, status) = oneshot::channel();
        self.link.owe(AtReady {
            error,
            failed: true,
            done: Some(done),
            ..AtReady::default()
        });
        self.upstream.write_all(&wire::SYNC).await?;
        self.upstream.flush().await?;
        if let Ok(status) = status.await {
            self.failed_transaction = status == b'E';
        }
        Ok(())
    }

    /// Holds `bytes` until Greenlight decides: `Ok(Ok)` to forward them, `Ok(Err)` to
    /// refuse, `Err` when the client went away meanwhile (the action is cancelled).
    pub(super) async fn hold(
        &mut self,
        rule: &StatementRule,
        sql: String,
        statements: &[Statement],
        bytes: &[u8],
    ) -> Result<Result<(), Refusal>, WireError> {
        let classified = Classification {
            statements: statements.to_vec(),
        };
        let held = Held {
            rule,
            sql,
            kind: classified.kind().to_string(),
            tables: classified.tables_joined(),
            user: &self.user,
            database: &self.database,
            requester: self.requester.clone(),
            bytes,
        };
        // A window's grant the session offers lets it through with no new approval, when
        // Greenlight counts one use of it for this very action, resource and requester.
        if let Some(token) = &self.grant
            && let Some(pass) = self.shared.holder.window_pass(token, &held.request()).await
        {
            tracing::info!(rule = %rule.name, user = %self.user, what = %held.describe(),
                window = %pass.claims().aid, uses = pass.uses(), "passed on an access window");
            return Ok(Ok(()));
        }
        let Ok(_permit) = self.shared.held.try_acquire() else {
            return Ok(Err(Refusal {
                code: "53300",
                message: "too many statements are waiting for approval here; try again later"
                    .into(),
            }));
        };
        tracing::info!(rule = %rule.name, user = %self.user, what = %held.describe(), "holding a statement for approval");
        let client = &self.shared.client;
        let action = match approval::ask(client, &held).await {
            Ok(action) => action,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if action.is_pending() {
            let channel = action
                .policy
                .channel
                .as_deref()
                .map(|c| format!(" in {c}"))
                .unwrap_or_default();
            let notice = wire::notice(&format!(
                "waiting for approval of {}: {}{channel}",
                held.describe(),
                action.id
            ));
            self.link.send(&notice).await?;
        }
        let id = action.id.clone();
        let hold = self.shared.config.limits.hold_timeout;
        let decided = approval::decide(client, &held, action, hold);
        let gone = client_gone(&mut self.client);
        let cancelled = self.shared.waits.register(self.link.cancel_key());
        tokio::select! {
            outcome = decided => Ok(outcome.map(|_| ())),
            () = cancelled.token.cancelled() => {
                tracing::info!(action_id = %id, "a cancel request while held; cancelling");
                if let Err(e) = client.cancel(&id, Some("cancelled by the requester")).await {
                    tracing::warn!(action_id = %id, error = %e, "cannot cancel the action");
                }
                Ok(Err(Refusal {
                    code: approval::CANCELED,
                    message: format!("canceling statement due to user request; the approval {id} was cancelled"),
                }))
            }
            () = gone => {
                tracing::info!(action_id = %id, "the client left while held; cancelling");
                if let Err(e) = client.cancel(&id, Some("the client disconnected")).await {
                    tracing::warn!(action_id = %id, error = %e, "cannot cancel the action");
                }
                Err(std::io::Error::from(std::io::ErrorKind::ConnectionAborted).into())
            }
        }
    }
}

pub(super) fn in_failed_transaction_error() -> Vec<u8> {
    wire::error(
        IN_FAILED_TRANSACTION,
        "current transaction is aborted, commands ignored until end of transaction block",
    )
}

/// Resolves when the client closes its side while a message is held. Bytes it sent
/// meanwhile (a pipeline) wait behind the held message, unread.
async fn client_gone(client: &mut BufReader<OwnedReadHalf>) {
    if !client.buffer().is_empty() {
        return std::future::pending().await;
    }
    let mut one = [0u8; 1];
    match client.get_mut().peek(&mut one).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// The classification of a text; `None` for a text that holds no statement (only
/// comments, or empty), which runs nothing. A text that does not parse is one statement
/// of kind `unknown`: every rule's `sql` selects it.
pub(super) fn classify(sql: &str) -> Option<Classification> {
    match crate::sql::classify(sql, Dialect::Postgres) {
        Ok(c) => Some(c),
        Err(SqlError::Empty) => None,
        Err(e) => {
            tracing::debug!(error = %e, "unclassifiable SQL, kind unknown");
            Some(Classification {
                statements: vec![Statement {
                    kind: Kind::unknown(),
                    ddl: true,
                    tables: Default::default(),
                }],
            })
        }
    }
}

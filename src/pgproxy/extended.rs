//! The extended query protocol (`Parse`/`Bind`/`Describe`/`Execute`/`Sync`) on the client
//! → upstream half. A `Parse` whose SQL a rule holds, or a `Bind` of a prepared statement
//! whose SQL a rule holds, starts keeping the batch; at its `Execute`, what was kept is
//! held whole, and what is kept at `Sync` (or `Flush`) only prepares or describes, and
//! passes (preparing runs nothing). So every execution of a held statement is approved,
//! however often a prepared statement is reused, and nothing of it reaches the database
//! first.

use super::batch::{Batch, Matched};
use super::link::AtReady;
use super::session::{FEATURE_NOT_SUPPORTED, Session, classify};
use super::window::{self, GrantSetting};
use super::wire::{self, Header, WireError};
use tokio::io::AsyncWriteExt;

impl<'a> Session<'a> {
    pub(super) async fn parse(&mut self, header: Header, body: Vec<u8>) -> Result<(), WireError> {
        let (name, sql) = wire::parse_message(&body)?;
        let (name, sql) = (name.to_owned(), sql.to_owned());
        let classified = classify(&sql);
        match window::grant_setting(&sql, classified.as_ref()) {
            GrantSetting::Untouched => {}
            GrantSetting::ResetsAll => self.grant = None,
            // The grant is set with the simple protocol only: never forwarded, refused
            // like an error in the batch (the rest up to Sync is dropped).
            GrantSetting::Set(_) | GrantSetting::Reset | GrantSetting::Refused(_) => {
                self.discarding = true;
                self.pending_error = Some(wire::error(
                    FEATURE_NOT_SUPPORTED,
                    "greenlight.grant is set with a simple query (SET greenlight.grant = '…'), \
                     not a prepared statement",
                ));
                return Ok(());
            }
        }
        let audit = self.shared.config.audit_all.then(|| sql.clone());
        let matched = classified.and_then(|c| {
            let rule = self.shared.config.rule_for(&c)?;
            Some(Matched {
                rule,
                sql,
                statements: c.statements,
            })
        });
        if !self.batch.is_held() && matched.is_none() {
            if let Some(sql) = audit {
                self.passed(&sql);
            }
            self.prepared.remove(&name);
            return self.send_upstream(header, &body).await;
        }
        if let Some(m) = &matched {
            self.batch.hold(m);
        }
        self.batch.parsed.push((name, matched));
        self.keep(header, &body).await
    }

    pub(super) async fn bind(&mut self, header: Header, body: Vec<u8>) -> Result<(), WireError> {
        let (statement, params) = wire::bind_message(&body)?;
        // A statement parsed in this batch is the one bound; else one prepared before.
        let parsed_here = self
            .batch
            .parsed
            .iter()
            .rev()
            .find(|(name, _)| name == statement)
            .map(|(_, m)| m.clone());
        let matched = match parsed_here {
            Some(m) => m,
            None => self.prepared.get(statement).cloned(),
        };
        if let Some(m) = &matched {
            self.batch.hold(m);
        }
        if self.batch.is_held() {
            // Approvers see the values the statement runs with (the digest binds them).
            self.batch.show_parameters(&params);
            self.keep(header, &body).await
        } else {
            self.send_upstream(header, &body).await
        }
    }

    /// Keeps a message of a held batch, within the inspection limit; an `Execute` is
    /// decided at once, with what was kept before it.
    pub(super) async fn keep(&mut self, header: Header, body: &[u8]) -> Result<(), WireError> {
        let limit = self.shared.config.limits.max_inspected_bytes;
        if self.batch.bytes.len() + 5 + body.len() > limit {
            return Err(WireError::Malformed(
                "a held batch larger than greenlight pg-proxy keeps (proxy.max_inspected_bytes)",
            ));
        }
        self.batch.bytes.extend(header.bytes());
        self.batch.bytes.extend(body);
        if header.tag == b'E' {
            self.execute().await?;
        }
        Ok(())
    }

    /// Holds the kept messages, which end in an `Execute`. Decided here rather than at
    /// `Sync`: a client may wait for the answer to an `Execute` without sending more
    /// (`COPY … FROM STDIN` waits for the server's `CopyInResponse`).
    async fn execute(&mut self) -> Result<(), WireError> {
        let held = self.batch.held.take().expect("a kept batch is held");
        let bytes = std::mem::take(&mut self.batch.bytes);
        let parsed = std::mem::take(&mut self.batch.parsed);
        let copies = held.statements.iter().any(|s| s.kind.as_str() == "copy");
        match self
            .hold(held.rule, held.sql, &held.statements, &bytes)
            .await?
        {
            Ok(()) => {
                self.upstream.write_all(&bytes).await?;
                self.upstream.flush().await?;
                self.record(parsed);
                Ok(())
            }
            Err(refusal) => {
                // The rest up to Sync is dropped, as the server drops it after an error.
                self.discarding = true;
                let error = wire::error(refusal.code, &refusal.message);
                if copies {
                    // A COPY's client waits for the server before it sends more: it is
                    // told now.
                    self.link.send(&error).await?;
                } else {
                    // Told in its place, before the ReadyForQuery that answers the Sync.
                    self.pending_error = Some(error);
                }
                Ok(())
            }
        }
    }

    /// Statements parsed in forwarded bytes: the server now has them by these names.
    fn record(&mut self, parsed: Vec<(String, Option<Matched<'a>>)>) {
        for (name, matched) in parsed {
            match matched {
                Some(m) => self.prepared.insert(name, m),
                None => self.prepared.remove(&name),
            };
        }
    }

    /// `Sync` or `Flush`: what is still kept executes nothing (preparing, describing)
    /// and passes.
    pub(super) async fn end_batch(&mut self, header: Header) -> Result<(), WireError> {
        if header.body_len != 0 {
            return Err(WireError::Malformed("a Sync or Flush with a body"));
        }
        let sync = header.tag == b'S';
        if self.discarding {
            if sync {
                self.discarding = false;
                self.batch = Batch::default();
                let error = self.pending_error.take().or_else(|| {
                    self.failed_transaction
                        .then(super::session::in_failed_transaction_error)
                });
                return self.refuse_with_sync(error).await;
            }
            if let Some(error) = self.pending_error.take() {
                // Flush: the client waits for what it sent so far.
                self.link.send(&error).await?;
            }
            return Ok(());
        }
        let bytes = std::mem::take(&mut self.batch.bytes);
        let parsed = std::mem::take(&mut self.batch.parsed);
        if sync {
            self.batch = Batch::default();
        }
        self.upstream.write_all(&bytes).await?;
        self.upstream.write_all(&header.bytes()).await?;
        if sync {
            self.link.owe(AtReady::default());
        }
        self.record(parsed);
        Ok(())
    }
}

//! The extended query protocol (`Parse`/`Bind`/`Describe`/`Execute`/`Sync`) on the client
//! → upstream half. A `Parse` whose SQL a rule holds, or a `Bind` of a prepared statement
//! whose SQL a rule holds, starts keeping the batch; at `Sync` (or `Flush`), a kept batch
//! that executes something is held whole, and one that only prepares or describes passes
//! (preparing runs nothing). So every execution of a held statement is approved, however
//! often a prepared statement is reused, and nothing of it reaches the database first.

use super::batch::{Batch, Matched};
use super::link::AtReady;
use super::session::{Session, classify};
use super::wire::{self, Header, WireError};
use tokio::io::AsyncWriteExt;

impl<'a> Session<'a> {
    pub(super) async fn parse(&mut self, header: Header, body: Vec<u8>) -> Result<(), WireError> {
        let (name, sql) = wire::parse_message(&body)?;
        let (name, sql) = (name.to_owned(), sql.to_owned());
        let matched = classify(&sql).and_then(|c| {
            let rule = self.shared.config.rule_for(&c)?;
            Some(Matched {
                rule,
                sql,
                statements: c.statements,
            })
        });
        if !self.batch.is_held() && matched.is_none() {
            self.prepared.remove(&name);
            return self.send_upstream(header, &body).await;
        }
        if let Some(m) = &matched {
            self.batch.hold(m);
        }
        self.batch.parsed.push((name, matched));
        self.keep(header, &body)
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
            self.keep(header, &body)
        } else {
            self.send_upstream(header, &body).await
        }
    }

    /// Keeps a message of a held batch, within the inspection limit.
    pub(super) fn keep(&mut self, header: Header, body: &[u8]) -> Result<(), WireError> {
        let limit = self.shared.config.limits.max_inspected_bytes;
        if self.batch.bytes.len() + 5 + body.len() > limit {
            return Err(WireError::Malformed(
                "a held batch larger than greenlight pg-proxy keeps (proxy.max_inspected_bytes)",
            ));
        }
        if header.tag == b'E' {
            self.batch.executes = true;
        }
        self.batch.bytes.extend(header.bytes());
        self.batch.bytes.extend(body);
        Ok(())
    }

    /// `Sync` or `Flush`: a kept batch that executes is held now, its end in the bytes
    /// approved.
    pub(super) async fn end_batch(&mut self, header: Header) -> Result<(), WireError> {
        if header.body_len != 0 {
            return Err(WireError::Malformed("a Sync or Flush with a body"));
        }
        let sync = header.tag == b'S';
        if self.discarding {
            if sync {
                self.discarding = false;
                self.batch = Batch::default();
                let error = self
                    .failed_transaction
                    .then(super::session::in_failed_transaction_error);
                return self.refuse_with_sync(error).await;
            }
            return Ok(());
        }
        let Some(held) = self.batch.held.clone() else {
            self.upstream.write_all(&header.bytes()).await?;
            if sync {
                self.link.owe(AtReady::default());
            }
            return Ok(());
        };
        let mut bytes = std::mem::take(&mut self.batch.bytes);
        bytes.extend(header.bytes());
        let parsed = std::mem::take(&mut self.batch.parsed);
        let executes = std::mem::take(&mut self.batch.executes);
        if sync {
            self.batch = Batch::default();
        }
        if executes {
            let verdict = self
                .hold(held.rule, held.sql, &held.statements, &bytes)
                .await?;
            if let Err(refusal) = verdict {
                let error = wire::error(refusal.code, &refusal.message);
                self.batch = Batch::default();
                if sync {
                    return self.refuse_with_sync(Some(error)).await;
                }
                // The client waits for an answer now; the rest up to its Sync is
                // dropped, as the server drops it after an error.
                self.link.send(&error).await?;
                self.discarding = true;
                return Ok(());
            }
        }
        self.upstream.write_all(&bytes).await?;
        if sync {
            self.link.owe(AtReady::default());
        }
        for (name, matched) in parsed {
            match matched {
                Some(m) => self.prepared.insert(name, m),
                None => self.prepared.remove(&name),
            };
        }
        Ok(())
    }
}

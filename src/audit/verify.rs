//! Checking a run of audit entries: each entry's hash matches its content, and each
//! entry's `prev` is the hash of the one before. The first entry's `prev` is trusted: it
//! is [`GENESIS`] for a trail never trimmed, otherwise the hash of an entry trimmed away
//! (retention) or left out of the export (`--since`).

use super::entry::{Entry, GENESIS};
use std::fmt;
use std::io::BufRead;

/// What is wrong with an entry.
#[derive(Clone, Debug, PartialEq)]
pub enum Problem {
    /// Not an audit entry (bad JSON, a missing or unknown member).
    Unparsable(String),
    /// Its content is not what its hash was computed from: it was changed.
    HashMismatch { recorded: String, computed: String },
    /// It does not follow the entry before it: something was removed, inserted or
    /// reordered between them.
    PrevMismatch { prev: String, expected: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Unparsable(e) => write!(f, "unparsable entry: {e}"),
            Problem::HashMismatch { recorded, computed } => write!(
                f,
                "hash mismatch: the entry was changed after it was written \
                 (its hash is {recorded}, its content hashes to {computed})"
            ),
            Problem::PrevMismatch { prev, expected } => write!(
                f,
                "prev mismatch: it does not follow the entry before it (its prev is {prev}, \
                 the previous entry's hash is {expected}): an entry is missing, added or \
                 out of order here (an export made with --action-id always has such gaps \
                 and cannot be verified)"
            ),
        }
    }
}

/// Where the chain breaks: the entry's position (from 1: the line of an export) and id.
#[derive(Clone, Debug, PartialEq)]
pub struct Broken {
    pub position: u64,
    pub id: Option<String>,
    pub problem: Problem,
}

impl Broken {
    /// `broken at {unit} N (entry ID): reason`, `unit` being `line` or `position`.
    pub fn describe(&self, unit: &str) -> String {
        format!(
            "broken at {unit} {} (entry {}): {}",
            self.position,
            self.id.as_deref().unwrap_or("?"),
            self.problem
        )
    }
}

/// A run of entries that checks out.
#[derive(Clone, Debug, PartialEq)]
pub struct Verified {
    pub entries: u64,
    /// The last entry's hash ([`GENESIS`] when there were none).
    pub head: String,
    /// The first entry's `prev`, trusted: [`GENESIS`] when the run starts the trail.
    pub first_prev: Option<String>,
}

/// Checks entries one at a time, so an export of any size runs in constant memory.
#[derive(Debug, Default)]
pub struct Verifier {
    entries: u64,
    head: Option<String>,
    first_prev: Option<String>,
}

impl Verifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next entry, given as one line of JSON.
    pub fn push_line(&mut self, line: &str) -> Result<(), Broken> {
        let entry: Entry = serde_json::from_str(line).map_err(|e| Broken {
            position: self.entries + 1,
            id: id_of(line),
            problem: Problem::Unparsable(e.to_string()),
        })?;
        self.push(&entry)
    }

    /// Checks the next entry.
    pub fn push(&mut self, entry: &Entry) -> Result<(), Broken> {
        let broken = |problem| Broken {
            position: self.entries + 1,
            id: entry.id.clone(),
            problem,
        };
        let computed = entry.compute_hash();
        if computed != entry.hash {
            return Err(broken(Problem::HashMismatch {
                recorded: entry.hash.clone(),
                computed,
            }));
        }
        match &self.head {
            Some(expected) if *expected != entry.prev => {
                return Err(broken(Problem::PrevMismatch {
                    prev: entry.prev.clone(),
                    expected: expected.clone(),
                }));
            }
            Some(_) => {}
            None => self.first_prev = Some(entry.prev.clone()),
        }
        self.entries += 1;
        self.head = Some(entry.hash.clone());
        Ok(())
    }

    pub fn finish(self) -> Verified {
        Verified {
            entries: self.entries,
            head: self.head.unwrap_or_else(|| GENESIS.to_owned()),
            first_prev: self.first_prev,
        }
    }
}

/// Checks an export, one entry per line (a final newline is fine; an empty line is not).
/// The outer error is a failure to read.
pub fn verify_lines(reader: impl BufRead) -> std::io::Result<Result<Verified, Broken>> {
    let mut verifier = Verifier::new();
    for line in reader.lines() {
        if let Err(broken) = verifier.push_line(&line?) {
            return Ok(Err(broken));
        }
    }
    Ok(Ok(verifier.finish()))
}

/// The `id` of an entry that does not parse as one, if it has a readable id.
fn id_of(line: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()?
        .get("id")?
        .as_str()
        .map(str::to_owned)
}

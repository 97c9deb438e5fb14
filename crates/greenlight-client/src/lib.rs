//! What a service that gates actions on Greenlight needs, without the server: request
//! signing ([`signing`]), the action types of the HTTP API ([`domain`]), the error body
//! every part of Greenlight answers with ([`error`]), an HTTP [`client`] that takes a
//! decision as an approval only when its grant verifies, and the
//! [`RequireApproval`](middleware::RequireApproval) tower layer.
//!
//! Waiting on Redis pub/sub instead of long-polling needs the `redis` feature.

mod claims;
pub mod client;
pub mod domain;
pub mod error;
pub mod middleware;
pub mod retry;
pub mod signing;

pub use claims::Claims;
pub use client::{Client, ClientError};
pub use error::{ErrorBody, ErrorCode};

/// The README's examples, compiled as doctests so that they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

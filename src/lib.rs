//! Greenlight: just-in-time approval of dangerous actions.
//!
//! A client signs a pending-action request; the policy decides at once or asks people;
//! the decision is stored once, published on Redis and handed to whoever waits.

pub mod app;
pub mod audit;
pub mod cli;
pub mod config;
pub mod domain;
pub mod grants;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod outbound;
pub mod pgproxy;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod service;
pub mod slack;
pub mod sql;
pub mod store;
pub mod telemetry;
pub mod waiters;
pub mod workers;

// What a service that only gates needs lives in the `greenlight-client` crate; these keep
// its parts at the paths they had in this crate.
pub use greenlight_client::{client, error, middleware, retry, signing};

//! The integration tests, one binary: each module tests one part of Greenlight against a
//! real server (and its own `redis-server` where the backend is Redis), set up through
//! `common`. One binary links once, where a binary per file linked the whole server and
//! `common` thirty times.
//!
//! `tests/metrics.rs` stays a binary of its own: the metrics recorder is global to the
//! process, so every server in this binary would add to the numbers it checks.

#[macro_use]
mod common;

mod access;
mod access_uses;
mod audit;
mod auth;
mod callbacks;
mod cli;
mod client;
mod deadlines;
mod deployments;
mod escalation;
mod expiry;
mod fake_slack;
mod faults;
mod gate;
mod grants;
mod interop;
mod lifecycle;
mod logs;
mod manifests;
mod middleware;
mod notify;
mod oncall;
mod openapi;
mod pg_proxy;
mod proxy;
mod quickstart;
mod reload;
mod secret;
mod serve;
mod shutdown;
mod slack;
mod slack_access;
mod slack_workspace;
mod startup;
mod validation;
mod waiting;

//! The `greenlight` binary as a person or a script runs it: the real
//! executable against a real server, judged by its exit code and what it prints.

//! Split by command: `request`, `access` (windows), the commands on an existing action
//! (`status`), `policy`, mistakes on the command line (`usage`) and what `--help` says
//! (`help`).

mod access;
mod help;
mod policy;
mod request;
mod status;
mod usage;

use crate::common::cli::{bare, greenlight};
use crate::common::{Backend, POLICY, TestApp, spawn_app};
use serde_json::Value;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// The longest any single CLI run may take in these tests.
const RUN_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }
}

async fn run(mut cmd: Command, args: &[&str]) -> Run {
    cmd.args(args);
    let started = Instant::now();
    let out = tokio::time::timeout(RUN_LIMIT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("greenlight {args:?} still running after {RUN_LIMIT:?}"))
        .expect("the greenlight binary runs");
    Run {
        code: out
            .status
            .code()
            .unwrap_or_else(|| panic!("greenlight {args:?} killed by a signal")),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

/// Runs the binary without a tokio runtime, for commands that need no server.
fn run_sync(args: &[&str]) -> Run {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(bare(), args))
}

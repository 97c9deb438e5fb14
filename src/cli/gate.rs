//! `greenlight gate ... -- CMD ARGS...`: ask, wait, and run the command only once
//! approved, with the grant in its environment. For pipelines and scripts, so every
//! outcome is an exit code and Ctrl-C while waiting withdraws the request.

use super::commands::{describe, exit_code, fail};
use super::progress::Progress;
use super::{GateArgs, exit};
use crate::client::Client;
use crate::domain::{Action, ActionId, ActionRequest, Status};
use std::process::ExitCode;
use std::time::Duration;
use tokio::time::Instant;

/// The command's environment variable holding the grant token.
pub const GRANT_ENV: &str = "GREENLIGHT_GRANT";
/// The command's environment variable holding the action id.
pub const ACTION_ID_ENV: &str = "GREENLIGHT_ACTION_ID";

/// How often the progress line is refreshed with the votes so far (terminal only).
const REFRESH: Duration = Duration::from_secs(5);

pub async fn run(args: GateArgs) -> ExitCode {
    let client = match Client::from_env() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    // Registered before anything is requested: from here on Ctrl-C (and the SIGTERM a CI
    // runner sends when a job is cancelled) is ours to handle, never a silent death that
    // leaves a request pending in front of the approvers.
    let mut stop = match Interrupt::new() {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot handle signals: {e}")),
    };
    let request = args.fields.into_request();
    let action = match submit(&client, &request, &mut stop).await {
        Ok(a) => a,
        Err(code) => return code,
    };
    match approval(&client, &action, args.timeout, "gate", &mut stop).await {
        Ok(approved) => execute(&approved, &args.command, stop).await,
        Err(code) => code,
    }
}

/// Sends the request; `Err` is the exit to take (a failure, or 12 when interrupted before
/// the server answered).
pub(super) async fn submit(
    client: &Client,
    request: &ActionRequest,
    stop: &mut Interrupt,
) -> Result<Action, ExitCode> {
    tokio::select! {
        r = client.request(request) => r.map_err(fail),
        _ = stop.received() => Err(ExitCode::from(exit::CANCELLED)),
    }
}

/// Waits until `action` is approved (with a grant that verifies), keeping a progress line
/// on a terminal. Anything else is `Err`, the exit to take: 10 denied, 11 expired, 12
/// cancelled, 1 an error; and the request is withdrawn when interrupted (12) or when no
/// decision came within `timeout` (13), since nobody will use a later approval. `who`
/// names the command in the reason of the withdrawal.
pub(super) async fn approval(
    client: &Client,
    action: &Action,
    timeout: Duration,
    who: &str,
    stop: &mut Interrupt,
) -> Result<Action, ExitCode> {
    let decided = tokio::select! {
        r = wait(client, action, timeout) => r?,
        _ = stop.received() => {
            Progress::stderr().done();
            let reason = format!("interrupted while waiting ({who})");
            return Err(withdraw(client, &action.id, &reason).await);
        }
    };
    match decided.status {
        Status::Approved => Ok(decided),
        Status::Pending => {
            eprintln!(
                "greenlight: no decision within {}; withdrawing the request",
                humantime::format_duration(timeout)
            );
            // Nobody is waiting now: an approval given later would be a lie.
            let _ = client
                .cancel(&decided.id, Some(&format!("{who} timed out")))
                .await;
            Err(ExitCode::from(exit::PENDING))
        }
        other => {
            eprintln!("greenlight: not approved: {}", describe(&decided));
            Err(ExitCode::from(exit_code(other)))
        }
    }
}

/// Waits for the decision of `action`, keeping a progress line on a terminal. `Err` is
/// the exit to take (a failure, or an approval whose grant does not verify).
async fn wait(client: &Client, action: &Action, timeout: Duration) -> Result<Action, ExitCode> {
    if !action.is_pending() {
        // Decided by policy at once; an approval still has to verify.
        if action.status == Status::Approved
            && let Err(e) = client.verify_grant(action).await
        {
            return Err(fail(e));
        }
        return Ok(action.clone());
    }
    let progress = Progress::stderr();
    let gave_up_at =
        chrono::Utc::now() + chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
    eprintln!(
        "greenlight: {} requested {} on {}; waiting up to {}",
        action.id,
        action.action,
        action.resource,
        humantime::format_duration(super::commands::wait_bound(
            timeout,
            action,
            chrono::Utc::now()
        ))
    );
    let deadline = Instant::now() + timeout;
    let mut current = action.clone();
    loop {
        progress.show(&current, gave_up_at);
        // On a terminal, wait in short stretches to refresh the votes; elsewhere in one go.
        let left = deadline.saturating_duration_since(Instant::now());
        let stretch = if progress.is_live() {
            left.min(REFRESH)
        } else {
            left
        };
        match client.wait(&current.id, stretch).await {
            Ok(a) if a.is_pending() && Instant::now() < deadline => current = a,
            Ok(a) => {
                progress.done();
                return Ok(a);
            }
            Err(e) => {
                progress.done();
                return Err(fail(e));
            }
        }
    }
}

/// Runs the approved command with the grant, and exits as it did.
async fn execute(action: &Action, command: &[std::ffi::OsString], stop: Interrupt) -> ExitCode {
    let grant = action
        .decision
        .as_ref()
        .and_then(|d| d.grant.as_ref())
        .expect("a verified approval has a grant");
    eprintln!("greenlight: approved: {}", describe(action));
    let (program, args) = command.split_first().expect("clap requires a command");
    let child = tokio::process::Command::new(program)
        .args(args)
        .env(GRANT_ENV, &grant.token)
        .env(ACTION_ID_ENV, action.id.as_str())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot run {}: {e}", program.to_string_lossy())),
    };
    // Ctrl-C reaches the command itself (the terminal signals the whole process group);
    // a SIGTERM sent to gate alone (a CI runner cancelling the job) is passed on. Either
    // way gate stays to pass on the command's exit code.
    let mut stop = stop;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            signal = stop.received() => {
                if signal == Signal::Terminate && let Some(pid) = child.id() {
                    forward_terminate(pid);
                }
            }
        }
    };
    match status {
        Ok(status) => ExitCode::from(passed_through(status)),
        Err(e) => fail(format!("waiting for {}: {e}", program.to_string_lossy())),
    }
}

/// The command's exit code, or 128 + the signal that killed it, as shells report it.
fn passed_through(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.saturating_add(signal as u8),
        (None, None) => exit::ERROR,
    }
}

/// Cancels the request after an interrupt, and exits 12 (cancelled) when that worked.
async fn withdraw(client: &Client, id: &ActionId, reason: &str) -> ExitCode {
    match client.cancel(id, Some(reason)).await {
        Ok(_) => {
            eprintln!("greenlight: interrupted; request {id} cancelled");
            ExitCode::from(exit::CANCELLED)
        }
        // Decided in the meantime: the approval is still not used.
        Err(e) => fail(format!(
            "interrupted; cancelling {id} failed ({e}); the approval was not used"
        )),
    }
}

/// Sends SIGTERM to the command.
fn forward_terminate(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) has no memory effects; `pid` is our child, not yet reaped (we are
    // still waiting for it), so it cannot name another process.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signal {
    Interrupt,
    Terminate,
}

/// SIGINT or SIGTERM, whichever comes first.
pub(super) struct Interrupt {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Interrupt {
    pub(super) fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    async fn received(&mut self) -> Signal {
        tokio::select! {
            _ = self.int.recv() => Signal::Interrupt,
            _ = self.term.recv() => Signal::Terminate,
        }
    }
}

//! Background work of a server process: the timer loop ([`scheduler`]), what a timer
//! does ([`run`], [`callbacks`], [`escalation`]), and what they share.

pub mod callbacks;
pub mod escalation;
pub mod run;
pub mod scheduler;

use chrono::{DateTime, Utc};
use std::time::Duration;

/// How a timer's work ended, and so what becomes of the timer.
#[derive(Debug, PartialEq)]
pub enum Fired {
    /// Done: remove it.
    Done,
    /// An effect that reflected this revision of the action: remove it unless the action
    /// changed meanwhile.
    Reflected(u64),
    /// Run it again then (a retry, or the next reminder).
    At(DateTime<Utc>),
    /// Failed: leave it to its lease, so it runs again shortly.
    Leave,
}

/// How long a claimed timer stays invisible to other replicas: a timer whose run was cut
/// short (a crash, a run past [`RUN_TIMEOUT`], or a shutdown past its timeout) runs again
/// once this has passed.
pub const LEASE: Duration = Duration::from_secs(30);
/// The longest one timer's run may take before it is abandoned to its lease. Half the
/// lease, so the claim, the run and settling the timer fit well inside it; and above the
/// 10 s an HTTP attempt (a callback, a webhook, one Slack call) may take, so a slow
/// receiver still ends in that attempt's own retry schedule.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(15);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_ends_well_inside_its_lease() {
        assert!(RUN_TIMEOUT * 2 <= LEASE);
    }
}

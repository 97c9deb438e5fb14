//! The one retry policy of Greenlight: capped exponential backoff (with jitter where many
//! callers may retry at once), and the loop around an attempt that may name its own wait
//! (`Retry-After`). Every loop that tries again uses it: the client's long-poll here, and
//! in the server outbound HTTP (Slack, PagerDuty, webhooks), the Redis subscriber and
//! failover reads, the scheduler, the audit writer and Slack's start-up check.

use std::future::Future;
use std::time::Duration;

/// Capped exponential backoff: `initial` after the first failure, doubling after each
/// further one, at most `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// "Equal jitter": each delay is a random point in the upper half of its value, so
    /// concurrent retries spread out but never come too soon.
    pub jitter: bool,
}

impl Backoff {
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            jitter: false,
        }
    }

    pub const fn with_jitter(self) -> Self {
        Self {
            jitter: true,
            ..self
        }
    }

    /// The delay after `failures` failures in a row (from 1): `initial * 2^(failures-1)`,
    /// capped at `max`, then jittered if asked.
    pub fn delay(&self, failures: u32) -> Duration {
        let exp = 1u32 << failures.saturating_sub(1).min(16);
        let full = self.initial.saturating_mul(exp).min(self.max);
        if !self.jitter {
            return full;
        }
        let half = full / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    /// The delays of a loop that retries until it succeeds.
    pub fn delays(&self) -> Delays {
        Delays {
            backoff: *self,
            failures: 0,
        }
    }
}

/// The delays of one run of failures: [`Delays::next_delay`] after each failure,
/// [`Delays::reset`] after a success.
#[derive(Clone, Debug)]
pub struct Delays {
    backoff: Backoff,
    failures: u32,
}

impl Delays {
    /// One more failure: the delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.backoff.delay(self.failures)
    }

    /// The delay the next failure will get (for a log line written before it).
    pub fn peek(&self) -> Duration {
        self.backoff.delay(self.failures.saturating_add(1))
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// What one attempt came to.
pub enum Attempt<T, E> {
    /// Finished: a success, or a failure no retry would change.
    Done(Result<T, E>),
    /// Failed for a passing reason: worth another attempt, after `wait` when the other side
    /// named one (`Retry-After`), else after the backoff's delay. `error` is the answer
    /// when no attempt is left.
    Again { error: E, wait: Option<Duration> },
}

/// Runs `attempt` (given its number, from 1) until it is done or `attempts` (at least one)
/// were made, sleeping between attempts. `what` names the call in the debug line logged
/// before each retry; errors are not logged here (they may echo a secret).
pub async fn retry<T, E, F, Fut>(
    what: &str,
    attempts: u32,
    backoff: Backoff,
    mut attempt: F,
) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Attempt<T, E>>,
{
    let attempts = attempts.max(1);
    let mut n = 0;
    loop {
        n += 1;
        match attempt(n).await {
            Attempt::Done(result) => return result,
            Attempt::Again { error, .. } if n >= attempts => return Err(error),
            Attempt::Again { wait, .. } => {
                let wait = wait.unwrap_or_else(|| backoff.delay(n));
                tracing::debug!(
                    what,
                    attempt = n,
                    wait_ms = wait.as_millis() as u64,
                    "retrying"
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jittered_delays_double_and_are_capped() {
        let backoff =
            Backoff::new(Duration::from_millis(500), Duration::from_secs(8)).with_jitter();
        for (failures, full) in [
            (1, 500),
            (2, 1000),
            (3, 2000),
            (4, 4000),
            (5, 8000),
            (9, 8000),
        ] {
            let d = backoff.delay(failures);
            let full = Duration::from_millis(full);
            assert!(d >= full / 2 && d <= full, "failure {failures}: {d:?}");
        }
    }

    #[test]
    fn delays_double_until_reset() {
        let mut delays = Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).delays();
        let ms = |d: Duration| d.as_millis();
        assert_eq!(ms(delays.peek()), 100);
        let seen: Vec<_> = (0..6).map(|_| ms(delays.next_delay())).collect();
        assert_eq!(seen, [100, 200, 400, 800, 1000, 1000]);
        delays.reset();
        assert_eq!(ms(delays.next_delay()), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_honours_a_named_wait_and_stops_after_the_attempts() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let started = tokio::time::Instant::now();
        let mut calls = 0;
        let result: Result<(), u32> = retry("test", 3, backoff, |n| {
            calls += 1;
            let wait = (n == 1).then_some(Duration::from_secs(5));
            async move { Attempt::Again { error: n, wait } }
        })
        .await;
        assert_eq!(result, Err(3));
        assert_eq!(calls, 3);
        // 5 s asked for, then the backoff's second delay (2 s).
        assert_eq!(started.elapsed(), Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_ends_at_a_final_answer() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let result: Result<u32, &str> = retry("test", 5, backoff, |n| async move {
            if n < 2 {
                Attempt::Again {
                    error: "again",
                    wait: None,
                }
            } else {
                Attempt::Done(Ok(n))
            }
        })
        .await;
        assert_eq!(result, Ok(2));
    }
}

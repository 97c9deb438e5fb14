//! Pieces every outbound HTTP client here shares (Slack, PagerDuty, webhooks): reading
//! `Retry-After`, exponential backoff with jitter, and error text that never shows a URL.

use reqwest::header::{HeaderMap, RETRY_AFTER};
use std::time::Duration;

/// `Retry-After` as seconds or an HTTP date (a date in the past means "now"), at most a day.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let ms = (at.timestamp_millis() - chrono::Utc::now().timestamp_millis()).clamp(0, 86_400_000);
    Some(Duration::from_millis(ms as u64))
}

/// `base * 2^(attempt-1)`, capped at `max`, then "equal jitter": a random point in its
/// upper half, so concurrent retries spread out but never come too soon.
pub fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = 1u32 << attempt.saturating_sub(1).min(16);
    let full = base.saturating_mul(exp).min(max);
    let half = full / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// The error and its causes, without the URL (webhook and `response_url`s carry tokens).
pub fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let (base, max) = (Duration::from_millis(500), Duration::from_secs(8));
        for (attempt, full) in [
            (1, 500),
            (2, 1000),
            (3, 2000),
            (4, 4000),
            (5, 8000),
            (9, 8000),
        ] {
            let d = backoff(base, max, attempt);
            let full = Duration::from_millis(full);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let parse = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
            retry_after(&h)
        };
        assert_eq!(parse("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse("-1"), None);
        assert_eq!(parse("soon"), None);
        assert_eq!(parse("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let d = parse(&later).unwrap();
        assert!(
            d > Duration::from_secs(28) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }
}

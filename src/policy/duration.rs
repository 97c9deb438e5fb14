//! Human durations in the policy file ("90s", "10m", "2h", "7d").

use std::time::Duration;

/// Parses a positive duration; the error text completes "field `ttl`: ...".
pub(crate) fn parse(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| {
        format!("invalid duration {s:?} ({e}); use e.g. \"90s\", \"10m\", \"2h\", \"7d\"")
    })?;
    if d.is_zero() {
        return Err(format!("duration {s:?} must be greater than zero"));
    }
    Ok(d)
}

/// Renders a duration the way a user would write it in the policy file.
pub(crate) fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_units_used_in_policy_files() {
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse("7d").unwrap(), Duration::from_secs(7 * 86400));
        assert_eq!(parse("1h 30m").unwrap(), Duration::from_secs(5400));
    }

    #[test]
    fn rejects_zero_and_garbage() {
        assert!(parse("0s").unwrap_err().contains("greater than zero"));
        assert!(
            parse("soon")
                .unwrap_err()
                .contains("invalid duration \"soon\"")
        );
        assert!(
            parse("10").is_err(),
            "a bare number has no unit and is ambiguous"
        );
        assert!(parse("").is_err());
    }

    #[test]
    fn formats_back_to_policy_syntax() {
        assert_eq!(format(Duration::from_secs(600)), "10m");
        assert_eq!(format(Duration::from_secs(90)), "1m 30s");
    }
}

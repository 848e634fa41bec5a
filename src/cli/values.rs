//! The checked argument values: signal names and durations. A bad value is
//! a usage error (exit 2) from clap, before any connection is attempted.

use std::time::Duration;

use nix::sys::signal::Signal;

/// Signal argument of `kelpie signal`: a name with or without `SIG`, in
/// any case, or a number. Real-time signals (`RTMIN+1`) are not accepted:
/// nix's `Signal` has no value for them.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    crate::signals::parse(text).ok_or_else(|| {
        format!("unknown signal {text:?}; use a name or number such as TERM, SIGTERM, term, HUP, USR1 or 15")
    })
}

/// `--timeout` values: humantime durations (`30s`, `2m`, `1h30m`, `500ms`).
/// Zero is refused: it could only ever time out.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    // humantime's own messages suggest spellings (`30sec`) that differ
    // from the ones the docs use; one message with examples is clearer.
    let duration = humantime::parse_duration(text.trim()).map_err(|_| {
        format!(
            "invalid duration {text:?}: expected a number with a unit, such as 30s, 2m or 500ms"
        )
    })?;
    if duration.is_zero() {
        return Err(format!(
            "invalid duration {text:?}: must be more than zero, such as 30s, 2m or 500ms"
        ));
    }
    Ok(duration)
}

/// `kelpie top --interval`: a duration of at least a second, so a view
/// left open costs the supervisor at most one usage scan a second.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration < Duration::from_secs(1) {
        return Err(format!(
            "invalid interval {text:?}: must be at least 1s (the view refreshes at most once a second)"
        ));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_accept_every_spelling() {
        for text in ["TERM", "SIGTERM", "sigterm", "term", "15"] {
            assert_eq!(parse_signal(text), Ok(Signal::SIGTERM), "{text}");
        }
        assert_eq!(parse_signal("HUP"), Ok(Signal::SIGHUP));
    }

    #[test]
    fn signals_reject_what_is_not_one() {
        for text in ["0", "KILLX", "", "RTMIN+1", "99"] {
            let err = parse_signal(text).expect_err(text);
            assert!(err.contains("SIGTERM") && err.contains("15"), "{err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn intervals_are_at_least_a_second() {
        assert_eq!(parse_interval("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_interval("2m"), Ok(Duration::from_secs(120)));
        let err = parse_interval("500ms").expect_err("below a second");
        assert!(err.contains("at least 1s"), "{err}");
        assert!(parse_interval("soon").is_err());
    }

    #[test]
    fn durations_are_humantime() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        for text in ["30", "soon", "0s", "-1s"] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
    }
}

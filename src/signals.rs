//! Signal names as users write them: `TERM`, `SIGTERM`, `term` and `15` all
//! mean the same signal.

use nix::sys::signal::Signal;

/// Parses a signal name or number. Returns `None` for anything that is not a
/// real signal on this platform.
pub fn parse(text: &str) -> Option<Signal> {
    let trimmed = text.trim();
    if let Ok(number) = trimmed.parse::<i32>() {
        return Signal::try_from(number).ok();
    }
    let upper = trimmed.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<Signal>().ok()
}

/// The short name (`TERM`) used in logs and in `kelpie config` output.
pub fn short_name(signal: Signal) -> &'static str {
    let full = signal.as_str();
    full.strip_prefix("SIG").unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_spelling() {
        for text in ["TERM", "SIGTERM", "term", "sigterm", "15", " TERM "] {
            assert_eq!(parse(text), Some(Signal::SIGTERM), "{text}");
        }
        assert_eq!(parse("USR1"), Some(Signal::SIGUSR1));
        assert_eq!(parse("9"), Some(Signal::SIGKILL));
    }

    #[test]
    fn rejects_non_signals() {
        for text in ["", "TERMINATE", "SIG", "0", "99", "-1", "TERM2"] {
            assert_eq!(parse(text), None, "{text}");
        }
    }

    #[test]
    fn short_names_drop_the_prefix() {
        assert_eq!(short_name(Signal::SIGTERM), "TERM");
        assert_eq!(short_name(Signal::SIGUSR2), "USR2");
    }
}

//! What `kelpie logs` prints: each line as the program wrote it, and the
//! notice for lines skipped while following.

use crate::control::protocol::LogEvent;

/// One line of `kelpie logs`: the program's line as it wrote it, prefixed
/// with `web:1 | ` only when the program has several instances (so the
/// output of a single-instance program can be piped on untouched). `None`
/// for a `Skipped` event: the caller prints `skipped_notice` on stderr.
pub fn log_line(event: &LogEvent, program: &str, multi_instance: bool) -> Option<String> {
    match event {
        LogEvent::Line { instance, line, .. } if multi_instance => {
            Some(format!("{program}:{instance} | {line}"))
        }
        LogEvent::Line { line, .. } => Some(line.clone()),
        LogEvent::Skipped { .. } => None,
    }
}

/// The stderr notice for a `Skipped` event of `kelpie logs -f`.
pub fn skipped_notice(skipped: u64) -> String {
    let lines = if skipped == 1 { "line" } else { "lines" };
    format!("kelpie: {skipped} {lines} skipped: the program wrote faster than they could be shown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_prefixed_only_for_several_instances() {
        let line = LogEvent::Line {
            instance: 1,
            stream: "stderr".to_string(),
            line: "listening on :8080".to_string(),
        };
        assert_eq!(
            log_line(&line, "web", true).as_deref(),
            Some("web:1 | listening on :8080")
        );
        assert_eq!(
            log_line(&line, "web", false).as_deref(),
            Some("listening on :8080")
        );
        assert_eq!(
            log_line(&LogEvent::Skipped { skipped: 3 }, "web", true),
            None
        );
        assert_eq!(
            skipped_notice(3),
            "kelpie: 3 lines skipped: the program wrote faster than they could be shown"
        );
        assert!(skipped_notice(1).starts_with("kelpie: 1 line skipped"));
    }
}

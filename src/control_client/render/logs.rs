//! What `kelpie logs` prints: each line as the program wrote it (with the
//! prefixes asked for), the restart marks, and the stderr notices for
//! lines skipped while following and for a program a reload removed.

use crate::control::protocol::{log_event, LogEvent};

/// How `kelpie logs` shows each line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStyle {
    /// `web:1 | ` before each line: several instances or programs are
    /// shown, or `--prefix`. Off, a program's output can be piped on
    /// untouched.
    pub prefix: bool,
    /// The time kelpie read the line first (`--timestamps`).
    pub timestamps: bool,
}

/// The stdout line for one event: a program's line, or the mark where a
/// new process of an instance took over. `None` for the events whose
/// notice goes to stderr (`skipped_notice`, `removed_notice`).
pub fn log_line(event: &LogEvent, style: LogStyle) -> Option<String> {
    let (time, text) = match event {
        LogEvent::Line {
            program,
            instance,
            time,
            line,
            ..
        } => {
            let text = if style.prefix {
                format!("{program}:{instance} | {line}")
            } else {
                line.clone()
            };
            (time, text)
        }
        LogEvent::Event {
            event,
            program,
            instance: Some(instance),
            time,
            pid,
            previous_pid,
        } if event == log_event::RESTARTED => {
            let pids = match (previous_pid, pid) {
                (Some(old), Some(new)) => format!(" (pid {old} → {new})"),
                _ => String::new(),
            };
            (
                time,
                format!("--- {program}:{instance} restarted{pids} ---"),
            )
        }
        LogEvent::Event { .. } | LogEvent::Skipped { .. } => return None,
    };
    Some(match time {
        Some(time) if style.timestamps => format!("{time} {text}"),
        _ => text,
    })
}

/// The stderr notice for a `Skipped` event of `kelpie logs -f`.
pub fn skipped_notice(skipped: u64) -> String {
    let lines = if skipped == 1 { "line" } else { "lines" };
    format!("kelpie: {skipped} {lines} skipped: the program wrote faster than they could be shown")
}

/// The stderr notice for a program that a reload removed while it was
/// followed.
pub fn removed_notice(program: &str) -> String {
    format!("kelpie: {program} was removed by a reload; no more lines from it")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(program: &str, instance: u32, text: &str) -> LogEvent {
        LogEvent::Line {
            program: program.to_string(),
            instance,
            stream: "stderr".to_string(),
            time: Some("2026-01-02T03:04:05.678Z".to_string()),
            line: text.to_string(),
        }
    }

    #[test]
    fn log_lines_are_prefixed_only_when_asked() {
        let line = line("web", 1, "listening on :8080");
        let prefixed = LogStyle {
            prefix: true,
            timestamps: false,
        };
        assert_eq!(
            log_line(&line, prefixed).as_deref(),
            Some("web:1 | listening on :8080")
        );
        assert_eq!(
            log_line(&line, LogStyle::default()).as_deref(),
            Some("listening on :8080")
        );
        assert_eq!(
            log_line(
                &LogEvent::Skipped {
                    skipped: 3,
                    program: None
                },
                prefixed
            ),
            None
        );
        assert_eq!(
            skipped_notice(3),
            "kelpie: 3 lines skipped: the program wrote faster than they could be shown"
        );
        assert!(skipped_notice(1).starts_with("kelpie: 1 line skipped"));
    }

    #[test]
    fn timestamps_come_first_and_restarts_are_marked() {
        let both = LogStyle {
            prefix: true,
            timestamps: true,
        };
        assert_eq!(
            log_line(&line("web", 0, "hi"), both).as_deref(),
            Some("2026-01-02T03:04:05.678Z web:0 | hi")
        );
        let restarted = LogEvent::Event {
            event: "restarted".to_string(),
            program: "web".to_string(),
            instance: Some(0),
            time: Some("2026-01-02T03:04:05.678Z".to_string()),
            pid: Some(456),
            previous_pid: Some(123),
        };
        assert_eq!(
            log_line(&restarted, LogStyle::default()).as_deref(),
            Some("--- web:0 restarted (pid 123 → 456) ---")
        );
        assert_eq!(
            log_line(&restarted, both).as_deref(),
            Some("2026-01-02T03:04:05.678Z --- web:0 restarted (pid 123 → 456) ---")
        );
        let removed = LogEvent::Event {
            event: "removed".to_string(),
            program: "web".to_string(),
            instance: None,
            time: None,
            pid: None,
            previous_pid: None,
        };
        assert_eq!(log_line(&removed, both), None);
        assert_eq!(
            removed_notice("web"),
            "kelpie: web was removed by a reload; no more lines from it"
        );
    }
}

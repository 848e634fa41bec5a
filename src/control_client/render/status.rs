//! The `kelpie status` table: one row per program or instance, aligned
//! columns, the STATE cell colored for a human at a terminal.

use std::ffi::OsStr;
use std::io::IsTerminal;

use crate::control::protocol::{InstanceInfo, LastExit, ProgramInfo, ProgramsReply};

const HEADER: [&str; 7] = [
    "NAME", "STATE", "PID", "UPTIME", "RESTARTS", "READY", "INFO",
];
/// Between columns: two spaces keep columns apart even when a cell is as
/// wide as its column, and `awk '{print $2}'` still works.
const GAP: &str = "  ";
const STATE_COLUMN: usize = 1;

const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// The `kelpie status` table: a header, then one row per program — or one
/// per instance (`web:0`, `web:1`) for programs with several instances —
/// then `supervisor is shutting down` when it is. Every line ends with a
/// newline; the last column is not padded, so no line has trailing blanks.
/// With `color`, only the STATE cell is wrapped in ANSI codes; widths are
/// computed on the plain text so columns line up either way.
pub fn status_table(reply: &ProgramsReply, color: bool) -> String {
    status_table_of(reply, color, |_| true)
}

/// `status_table` with only the rows whose NAME `keep` accepts (`kelpie
/// status web:1`); the columns fit the rows shown.
pub fn status_table_of(reply: &ProgramsReply, color: bool, keep: impl Fn(&str) -> bool) -> String {
    let mut rows: Vec<[String; 7]> = vec![HEADER.map(String::from)];
    for program in &reply.programs {
        if program.instances.len() > 1 {
            rows.extend(program.instances.iter().map(|i| instance_row(program, i)));
        } else {
            rows.push(program_row(program));
        }
    }
    let mut first = true;
    rows.retain(|row| std::mem::take(&mut first) || keep(&row[0]));
    let mut widths = [0usize; 7];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    for (n, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column > 0 {
                line.push_str(GAP);
            }
            let last = column == row.len() - 1;
            let padding = if last { 0 } else { widths[column] - cell.len() };
            match state_color(cell).filter(|_| color && n > 0 && column == STATE_COLUMN) {
                Some(code) => line.push_str(&format!("{code}{cell}{RESET}")),
                None => line.push_str(cell),
            }
            line.push_str(&" ".repeat(padding));
        }
        // An empty INFO would otherwise leave the gap dangling.
        out.push_str(line.trim_end_matches(' '));
        out.push('\n');
    }
    if reply.shutting_down {
        out.push_str("supervisor is shutting down\n");
    }
    out
}

fn program_row(program: &ProgramInfo) -> [String; 7] {
    // A single-instance program: its one instance has the process details.
    let instance = program.instances.first();
    let info = info(
        program
            .reason
            .as_deref()
            .or(instance.and_then(|i| i.reason.as_deref())),
        instance.and_then(|i| i.last_exit.as_ref()),
        instance.and_then(|i| i.backoff_seconds),
        program.stopped_by_user,
        instance.and_then(|i| i.status_text.as_deref()),
    );
    [
        program.name.clone(),
        program.state.clone(),
        pid(instance.and_then(|i| i.pid)),
        uptime(instance.and_then(|i| i.uptime_seconds)),
        program.restarts.to_string(),
        ready(&program.state, program.ready),
        info,
    ]
}

fn instance_row(program: &ProgramInfo, instance: &InstanceInfo) -> [String; 7] {
    // Only the instance's own reason: the program's reason names one
    // instance ("web:1 is not ready") and would mislead on the others.
    let info = info(
        instance.reason.as_deref(),
        instance.last_exit.as_ref(),
        instance.backoff_seconds,
        program.stopped_by_user,
        instance.status_text.as_deref(),
    );
    [
        instance.name.clone(),
        instance.state.clone(),
        pid(instance.pid),
        uptime(instance.uptime_seconds),
        instance.restarts.to_string(),
        ready(&instance.state, instance.ready),
        info,
    ]
}

fn pid(pid: Option<i32>) -> String {
    pid.map_or_else(|| "-".to_string(), |p| p.to_string())
}

fn uptime(seconds: Option<u64>) -> String {
    seconds.map_or_else(|| "-".to_string(), format_uptime)
}

/// `-` for `stopped`: nothing runs and nothing is expected to, so "not
/// ready" would read like a problem.
fn ready(state: &str, ready: bool) -> String {
    match (state, ready) {
        ("stopped", _) => "-",
        (_, true) => "yes",
        (_, false) => "no",
    }
    .to_string()
}

/// `<reason or last exit>[, restart in 1.6s][ (stopped by user)][ "status"]`.
fn info(
    reason: Option<&str>,
    last_exit: Option<&LastExit>,
    backoff_seconds: Option<f64>,
    stopped_by_user: bool,
    status_text: Option<&str>,
) -> String {
    let mut parts: Vec<String> = Vec::new();
    let main = reason
        .filter(|r| !r.is_empty())
        .or(last_exit.map(|e| e.text.as_str()).filter(|t| !t.is_empty()));
    let mut first = main.unwrap_or_default().to_string();
    if let Some(delay) = backoff_seconds {
        if !first.is_empty() {
            first.push_str(", ");
        }
        first.push_str(&format!("restart in {}", format_delay(delay)));
    }
    if !first.is_empty() {
        parts.push(first);
    }
    if stopped_by_user {
        parts.push("(stopped by user)".to_string());
    }
    if let Some(text) = status_text.filter(|t| !t.is_empty()) {
        parts.push(format!("{text:?}"));
    }
    parts.join(" ")
}

/// Backoff delays are fractions of a second up to minutes: one decimal is
/// enough, and whole minutes read better as uptime-style text.
fn format_delay(seconds: f64) -> String {
    if seconds.is_finite() && seconds >= 60.0 {
        format_uptime(seconds.round() as u64)
    } else {
        format!("{:.1}s", seconds.max(0.0))
    }
}

/// Compact, two units at most: `45s`, `3m12s`, `2h05m`, `3d04h`.
pub fn format_uptime(seconds: u64) -> String {
    const MINUTE: u64 = 60;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    match seconds {
        s if s < MINUTE => format!("{s}s"),
        s if s < HOUR => format!("{}m{:02}s", s / MINUTE, s % MINUTE),
        s if s < DAY => format!("{}h{:02}m", s / HOUR, s % HOUR / MINUTE),
        s => format!("{}d{:02}h", s / DAY, s % DAY / HOUR),
    }
}

fn state_color(state: &str) -> Option<&'static str> {
    match state {
        "running" => Some(GREEN),
        "starting" | "stopping" | "backoff" => Some(YELLOW),
        "failed" => Some(RED),
        "exited" | "stopped" => Some(DIM),
        _ => None,
    }
}

/// Whether to color the status table: only for a human at a terminal, and
/// never when `NO_COLOR` is set (https://no-color.org) or `TERM=dumb`.
pub fn use_color(json: bool) -> bool {
    color_wanted(
        json,
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("TERM").as_deref(),
    )
}

/// `use_color` with its inputs passed in, so the rules are testable.
pub fn color_wanted(
    json: bool,
    stdout_is_tty: bool,
    no_color: Option<&OsStr>,
    term: Option<&OsStr>,
) -> bool {
    !json
        && stdout_is_tty
        && no_color.is_none_or(|v| v.is_empty())
        && term != Some(OsStr::new("dumb"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(name: &str, index: u32, state: &str) -> InstanceInfo {
        InstanceInfo {
            name: name.to_string(),
            index,
            slot: index,
            state: state.to_string(),
            pid: None,
            ready: false,
            uptime_seconds: None,
            started_at: None,
            restarts: 0,
            last_exit: None,
            reason: None,
            backoff_seconds: None,
            status_text: None,
            stopped_by_user: false,
        }
    }

    fn running(name: &str, index: u32, pid: i32, uptime: u64) -> InstanceInfo {
        InstanceInfo {
            pid: Some(pid),
            ready: true,
            uptime_seconds: Some(uptime),
            ..instance(name, index, "running")
        }
    }

    fn program(name: &str, state: &str, instances: Vec<InstanceInfo>) -> ProgramInfo {
        ProgramInfo {
            name: name.to_string(),
            state: state.to_string(),
            ready: instances.iter().all(|i| i.ready),
            required: true,
            kind: "service".to_string(),
            restarts: instances.iter().map(|i| i.restarts).sum(),
            reason: None,
            stopped_by_user: false,
            enabled: true,
            instances,
        }
    }

    fn exit(code: i32) -> LastExit {
        LastExit {
            code: Some(code),
            signal: None,
            kind: if code == 0 { "success" } else { "failure" }.to_string(),
            text: format!("exit code {code}"),
        }
    }

    fn fixture() -> ProgramsReply {
        let mut web1 = running("web:1", 1, 4243, 192);
        web1.restarts = 2;
        web1.last_exit = Some(exit(1));
        let mut worker = instance("worker:0", 0, "stopped");
        worker.last_exit = Some(exit(0));
        let mut worker = program("worker", "stopped", vec![worker]);
        worker.stopped_by_user = true;
        let mut crashy = instance("crashy:0", 0, "backoff");
        crashy.restarts = 3;
        crashy.last_exit = Some(LastExit {
            code: None,
            signal: Some("KILL".to_string()),
            kind: "signal".to_string(),
            text: "signal KILL".to_string(),
        });
        crashy.backoff_seconds = Some(1.6);
        let mut db = running("db:0", 0, 4100, 7500);
        db.status_text = Some("accepting connections".to_string());
        ProgramsReply {
            shutting_down: false,
            programs: vec![
                program("db", "running", vec![db]),
                program("web", "running", vec![running("web:0", 0, 4242, 45), web1]),
                worker,
                program("crashy", "backoff", vec![crashy]),
            ],
        }
    }

    #[test]
    fn the_status_table_has_a_row_per_program_or_instance() {
        let expected = "\
NAME    STATE    PID   UPTIME  RESTARTS  READY  INFO
db      running  4100  2h05m   0         yes    \"accepting connections\"
web:0   running  4242  45s     0         yes
web:1   running  4243  3m12s   2         yes    exit code 1
worker  stopped  -     -       0         -      exit code 0 (stopped by user)
crashy  backoff  -     -       3         no     signal KILL, restart in 1.6s
";
        assert_eq!(status_table(&fixture(), false), expected);
    }

    #[test]
    fn a_program_reason_wins_over_its_last_exit() {
        let mut failed = instance("api:0", 0, "failed");
        failed.last_exit = Some(exit(1));
        let mut api = program("api", "failed", vec![failed]);
        api.reason = Some("restarted 10 times within 60s".to_string());
        let reply = ProgramsReply {
            shutting_down: true,
            programs: vec![api],
        };
        assert_eq!(
            status_table(&reply, false),
            "NAME  STATE   PID  UPTIME  RESTARTS  READY  INFO\n\
             api   failed  -    -       0         no     restarted 10 times within 60s\n\
             supervisor is shutting down\n"
        );
    }

    #[test]
    fn columns_widen_for_long_names() {
        let reply = ProgramsReply {
            shutting_down: false,
            programs: vec![
                program(
                    "a-rather-long-program-name",
                    "running",
                    vec![running("a-rather-long-program-name:0", 0, 1, 1)],
                ),
                program("x", "running", vec![running("x:0", 0, 1234567, 86400)]),
            ],
        };
        let table = status_table(&reply, false);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        // Every column starts at the same offset on every line.
        for header in ["STATE", "PID", "UPTIME", "RESTARTS", "READY"] {
            let at = lines[0].find(header).expect(header);
            for line in &lines[1..] {
                assert_eq!(&line[at - 2..at], "  ", "{header} in {line:?}");
                assert_ne!(&line[at..=at], " ", "{header} in {line:?}");
            }
        }
        assert!(lines[2].starts_with("x                           running  1234567  1d00h"));
    }

    #[test]
    fn no_color_means_no_escape_codes() {
        assert!(!status_table(&fixture(), false).contains('\x1b'));
    }

    #[test]
    fn color_wraps_only_the_state_and_keeps_alignment() {
        let plain = status_table(&fixture(), false);
        let colored = status_table(&fixture(), true);
        assert_ne!(plain, colored);
        let stripped = colored
            .replace(GREEN, "")
            .replace(YELLOW, "")
            .replace(RED, "")
            .replace(DIM, "")
            .replace(RESET, "");
        assert_eq!(stripped, plain);
        let lines: Vec<&str> = colored.lines().collect();
        assert!(!lines[0].contains('\x1b'), "header is plain");
        assert!(lines[1].starts_with("db      \x1b[32mrunning\x1b[0m  4100  "));
        assert!(lines[4].contains("\x1b[2mstopped\x1b[0m  -"));
        assert!(lines[5].contains("\x1b[33mbackoff\x1b[0m"));
        for line in &lines[1..] {
            // One colored cell per row, nothing else.
            assert_eq!(line.matches('\x1b').count(), 2, "{line:?}");
        }
    }

    #[test]
    fn failed_is_red() {
        let reply = ProgramsReply {
            shutting_down: false,
            programs: vec![program(
                "api",
                "failed",
                vec![instance("api:0", 0, "failed")],
            )],
        };
        assert!(status_table(&reply, true).contains("\x1b[31mfailed\x1b[0m"));
    }

    #[test]
    fn uptime_is_compact() {
        let cases = [
            (0, "0s"),
            (45, "45s"),
            (59, "59s"),
            (60, "1m00s"),
            (192, "3m12s"),
            (3599, "59m59s"),
            (3600, "1h00m"),
            (7500, "2h05m"),
            (86399, "23h59m"),
            (86400, "1d00h"),
            (273600, "3d04h"),
        ];
        for (seconds, text) in cases {
            assert_eq!(format_uptime(seconds), text, "{seconds}");
        }
    }

    #[test]
    fn backoff_delays_read_naturally() {
        assert_eq!(format_delay(0.1), "0.1s");
        assert_eq!(format_delay(29.96), "30.0s");
        assert_eq!(format_delay(90.0), "1m30s");
        assert_eq!(format_delay(f64::NAN), "0.0s");
        assert_eq!(format_delay(-1.0), "0.0s");
    }

    #[test]
    fn color_rules() {
        let tty = |no_color: Option<&str>, term: Option<&str>| {
            color_wanted(false, true, no_color.map(OsStr::new), term.map(OsStr::new))
        };
        assert!(tty(None, Some("xterm-256color")));
        assert!(tty(None, None));
        assert!(tty(Some(""), Some("xterm")));
        assert!(!tty(Some("1"), Some("xterm")));
        assert!(!tty(None, Some("dumb")));
        assert!(!color_wanted(false, false, None, Some(OsStr::new("xterm"))));
        assert!(!color_wanted(true, true, None, Some(OsStr::new("xterm"))));
    }
}

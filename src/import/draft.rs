//! What an importer produces: a kelpie config still in pieces, one field
//! per key of `[program.NAME]`, plus everything that could not be carried
//! over. `emit` turns it into TOML; no importer writes TOML itself, so the
//! output of every format has the same shape and the same stable order.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::limits::RlimitResource;

/// Where something was read: a file and a 1-based line (0: the whole file).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
}

impl Origin {
    pub fn new(file: impl Into<PathBuf>, line: usize) -> Self {
        Self {
            file: file.into(),
            line,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}", self.file.display(), self.line)
        }
    }
}

/// A key of the source that has no kelpie equivalent. It is listed in the
/// report, commented at its program's table, and fails `--strict`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub origin: Origin,
    /// The program it belonged to (its kelpie name), or `None` for a key
    /// of the file as a whole (a supervisord `[eventlistener:x]`, say).
    pub program: Option<String>,
    /// The key as the source spells it (`stdout_events_enabled`,
    /// `StartCalendarInterval`).
    pub key: String,
    pub why: String,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.origin, self.key, self.why)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Service,
    Oneshot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    Always,
    OnFailure,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Started,
    Ready,
    Completed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// `None`: kelpie's default (2.0). `Some(1.0)` is a fixed delay.
    pub multiplier: Option<f64>,
    /// `None`: kelpie's default (±20 %).
    pub jitter: Option<f64>,
}

impl Backoff {
    /// The same delay before every restart, never shorter: what launchd's
    /// `ThrottleInterval`, pm2's `restart_delay` and process-compose's
    /// `backoff_seconds` promise (kelpie's default jitter could make it
    /// up to a fifth shorter).
    pub fn fixed(delay: Duration) -> Self {
        Self {
            initial: delay,
            max: delay,
            multiplier: Some(1.0),
            jitter: Some(0.0),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeTarget {
    /// `http://HOST:PORT/PATH`
    Http(String),
    /// `HOST:PORT`
    Tcp(String),
    Exec(Vec<String>),
    /// A regex matched against the program's output (readiness only).
    Log(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub target: ProbeTarget,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub initial_delay: Option<Duration>,
    pub failure_threshold: Option<u32>,
    pub success_threshold: Option<u32>,
}

impl Probe {
    pub fn new(target: ProbeTarget) -> Self {
        Self {
            target,
            interval: None,
            timeout: None,
            initial_delay: None,
            failure_threshold: None,
            success_threshold: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Log {
    Inherit,
    Discard,
    /// stdout and stderr both go to `file` (kelpie keeps one log per
    /// program); `max_size` in bytes.
    File {
        file: String,
        max_size: Option<u64>,
        keep: Option<u32>,
    },
}

/// One `[program.NAME]` to be. `None` (or empty) leaves a key out, so
/// kelpie's default applies; an importer sets only what the source says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Program {
    /// A valid kelpie name (see `program_name`).
    pub name: String,
    /// Where the program was defined, for the comment above its table.
    pub origin: Option<Origin>,
    pub command: Vec<String>,
    pub directory: Option<String>,
    /// Literal values: `emit` escapes `${` so kelpie does not expand them.
    pub environment: BTreeMap<String, String>,
    /// Values already in kelpie's template syntax, written as they are:
    /// `${KELPIE_INSTANCE}` is the instance index and a literal `${` is
    /// `$${` (supervisord's `%(process_num)s`). A key here is not also in
    /// `environment`.
    pub instance_environment: BTreeMap<String, String>,
    pub env_file: Option<String>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub umask: Option<u32>,
    /// `rlimits`: each value is set as both the soft and the hard limit
    /// (`limits::UNLIMITED` for `"unlimited"`).
    pub rlimits: BTreeMap<RlimitResource, u64>,
    /// `memory_restart`, bytes; `memory_restart_after` is left to kelpie's
    /// default (30s).
    pub memory_restart: Option<u64>,
    pub instances: Option<u32>,
    pub autostart: Option<bool>,
    pub kind: Option<Kind>,
    pub restart: Option<Restart>,
    pub success_codes: Option<Vec<u8>>,
    pub start_seconds: Option<Duration>,
    pub start_timeout: Option<Duration>,
    pub backoff: Option<Backoff>,
    pub max_restarts: Option<u32>,
    pub restart_window: Option<Duration>,
    /// `on_failure = "shutdown"`: kelpie stops when this program fails.
    pub shutdown_on_failure: bool,
    /// A signal name without `SIG` (`"TERM"`).
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<Duration>,
    pub depends_on: Vec<(String, Condition)>,
    pub readiness: Option<Probe>,
    pub liveness: Option<Probe>,
    pub log: Option<Log>,
    /// Comments written above the program's keys: how a key was
    /// translated where the meaning differs (`startretries` counts start
    /// attempts, `max_restarts` restarts in a window). Not failures.
    pub notes: Vec<String>,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Service => "service",
            Kind::Oneshot => "oneshot",
        }
    }
}

impl Restart {
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::Always => "always",
            Restart::OnFailure => "on-failure",
            Restart::Never => "never",
        }
    }
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Started => "started",
            Condition::Ready => "ready",
            Condition::Completed => "completed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub origin: Option<Origin>,
    pub programs: Vec<String>,
}

/// `[supervisor]` keys an importer may set (most have no source
/// equivalent; kelpie's defaults apply).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Supervisor {
    pub shutdown_timeout: Option<Duration>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Draft {
    pub supervisor: Supervisor,
    /// In the order the source starts them (supervisord `priority`, file
    /// order otherwise): kelpie starts ties of its dependency order in
    /// file order, so the order is part of the translation.
    pub programs: Vec<Program>,
    pub groups: Vec<Group>,
    pub dropped: Vec<Dropped>,
}

impl Draft {
    pub fn drop_key(
        &mut self,
        origin: Origin,
        program: Option<&str>,
        key: impl Into<String>,
        why: impl Into<String>,
    ) {
        self.dropped.push(Dropped {
            origin,
            program: program.map(str::to_string),
            key: key.into(),
            why: why.into(),
        });
    }
}

/// Longest program or group name kelpie accepts.
pub const MAX_NAME_LEN: usize = 64;

/// `name` made into a valid kelpie program or group name: 1–64 of
/// `A-Z a-z 0-9 _ . -`, starting with a letter, digit or `_`. Anything
/// else becomes `-` (`my app` → `my-app`, `@scope/app` → `_scope-app`).
/// Returns `None` when nothing usable is left.
pub fn program_name(name: &str) -> Option<String> {
    let mut out: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if let Some(first) = out.chars().next() {
        if !(first.is_ascii_alphanumeric() || first == '_') {
            out.replace_range(0..1, "_");
        }
    }
    out.truncate(MAX_NAME_LEN);
    if out.chars().all(|c| matches!(c, '-' | '_' | '.')) {
        return None;
    }
    Some(out)
}

/// Makes every program name unique by suffixing `-2`, `-3`, … to later
/// duplicates (two launchd labels that sanitise alike, say), with a note
/// on each renamed program.
pub fn dedupe_names(programs: &mut [Program]) {
    let mut seen = std::collections::BTreeSet::new();
    for program in programs.iter_mut() {
        if seen.insert(program.name.clone()) {
            continue;
        }
        let original = program.name.clone();
        let mut n = 2;
        let renamed = loop {
            let suffix = format!("-{n}");
            let mut base = original.clone();
            base.truncate(MAX_NAME_LEN - suffix.len());
            let candidate = format!("{base}{suffix}");
            if !seen.contains(&candidate) {
                break candidate;
            }
            n += 1;
        };
        program.notes.push(format!(
            "renamed from {original:?}: another program already has that name"
        ));
        program.name = renamed.clone();
        seen.insert(renamed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_valid() {
        let cases = [
            ("web", Some("web")),
            ("com.example.web", Some("com.example.web")),
            ("my app", Some("my-app")),
            ("@scope/app", Some("_scope-app")),
            (".hidden", Some("_hidden")),
            ("  ", None),
            ("---", None),
            ("web:0", Some("web-0")),
        ];
        for (input, want) in cases {
            assert_eq!(program_name(input).as_deref(), want, "{input:?}");
        }
        let long = "x".repeat(100);
        assert_eq!(program_name(&long).map(|n| n.len()), Some(MAX_NAME_LEN));
    }

    #[test]
    fn duplicate_names_get_a_suffix_and_a_note() {
        let mut programs: Vec<Program> = ["a", "a", "a-2", "a"]
            .iter()
            .map(|n| Program {
                name: n.to_string(),
                ..Program::default()
            })
            .collect();
        dedupe_names(&mut programs);
        let names: Vec<&str> = programs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "a-2", "a-2-2", "a-3"]);
        assert!(programs[0].notes.is_empty());
        assert_eq!(programs[1].notes.len(), 1);
    }
}

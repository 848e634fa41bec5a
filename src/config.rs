//! `supervisor.toml`: parsing, validation and the typed configuration.
//!
//! The document is parsed once into toml's spanned tree. Every key is then
//! decoded on its own with serde, so one bad value never hides the next one:
//! `kelpie check` reports every problem in a single run, each with
//! `file:line:col` and the dotted key (`program.web.restart`). Semantic checks
//! (unknown dependencies, cycles, groups) run on whatever decoded cleanly.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use crate::backoff::BackoffConfig;
use crate::logging::LogFormat;
use crate::restart_policy::{ProgramKind, RestartPolicy};
use crate::signals;

/// Config files larger than this are refused before parsing: a supervisor
/// config is a few KiB, and a runaway file must not exhaust memory.
const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;
const MAX_INSTANCES: u32 = 10_000;
const MAX_NAME_LEN: usize = 64;

// ---------------------------------------------------------------------------
// Typed configuration

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub supervisor: SupervisorConfig,
    /// Programs in dependency order: every program comes after the programs it
    /// depends on; ties keep file order.
    pub programs: Vec<Arc<ProgramConfig>>,
    pub groups: Vec<GroupConfig>,
}

impl Config {
    pub fn instance_count(&self) -> usize {
        self.programs.iter().map(|p| p.instances as usize).sum()
    }

    pub fn program(&self, name: &str) -> Option<&Arc<ProgramConfig>> {
        self.programs.iter().find(|p| p.name == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartBudget {
    pub max: u32,
    pub per: Duration,
}

#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// `None` when `http_listen = "off"`.
    pub http_listen: Option<String>,
    pub control_socket: PathBuf,
    pub socket_mode: u32,
    pub shutdown_timeout: Duration,
    pub drain_delay: Duration,
    pub restart_budget: Option<RestartBudget>,
    pub log_format: LogFormat,
    pub log_level: String,
    pub forward_signals: Vec<Signal>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    KeepRunning,
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DependencyCondition {
    Started,
    Ready,
    Completed,
}

impl DependencyCondition {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Ready => "ready",
            Self::Completed => "completed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeKind {
    Http(String),
    Tcp(String),
    Exec(Vec<String>),
    Notify,
    Log(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeConfig {
    pub kind: ProbeKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub initial_delay: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogMode {
    Inherit,
    File {
        path: PathBuf,
        max_size: u64,
        keep: u32,
    },
    Discard,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone)]
pub struct ProgramConfig {
    pub name: String,
    pub command: Vec<String>,
    pub directory: Option<PathBuf>,
    /// `env_file` merged with `environment` (which wins). Values are never
    /// logged.
    pub environment: BTreeMap<String, String>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub umask: Option<u32>,
    pub instances: u32,
    pub autostart: bool,
    pub kind: ProgramKind,
    pub restart: RestartPolicy,
    pub success_codes: Vec<i32>,
    pub start_seconds: Duration,
    pub start_timeout: Duration,
    pub backoff: BackoffConfig,
    pub max_restarts: u32,
    pub restart_window: Duration,
    pub on_failure: OnFailure,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    pub depends_on: Vec<(String, DependencyCondition)>,
    pub required: bool,
    pub readiness: Option<ProbeConfig>,
    pub liveness: Option<ProbeConfig>,
    pub log: LogMode,
}

impl ProgramConfig {
    pub fn instance_name(&self, index: u32) -> String {
        format!("{}:{}", self.name, index)
    }

    pub fn is_success(&self, code: i32) -> bool {
        self.success_codes.contains(&code)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupStrategy {
    OneForOne,
    OneForAll,
    RestForOne,
}

#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub name: String,
    pub programs: Vec<String>,
    pub strategy: GroupStrategy,
    pub max_restarts: Option<u32>,
    pub restart_window: Duration,
    pub on_failure: OnFailure,
}

// ---------------------------------------------------------------------------
// Diagnostics

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in a config file, printed as
/// `file:line:col: [warning: ]key: message`. `line == 0` means the problem is
/// with the file as a whole (it cannot be read), printed as `file: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_one_line(f, &self.file.display().to_string())?;
        if self.line == 0 {
            write!(f, ": ")?;
        } else {
            write!(f, ":{}:{}: ", self.line, self.column)?;
        }
        if self.severity == Severity::Warning {
            write!(f, "warning: ")?;
        }
        if !self.key.is_empty() {
            write_one_line(f, &self.key)?;
            write!(f, ": ")?;
        }
        write_one_line(f, &self.message)
    }
}

/// Diagnostics quote what the user wrote, and a TOML string may hold a
/// newline or a terminal escape: one diagnostic must stay one line (scripts
/// and log collectors split on newlines) and must not drive the terminal.
fn write_one_line(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    for c in text.chars() {
        match c {
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                write!(f, "\\u{{{:x}}}", u32::from(c))?
            }
            c => fmt::Write::write_char(f, c)?,
        }
    }
    Ok(())
}

/// When the config is validated: `check` only warns about things that are
/// fatal at `run` (a missing binary stays a warning in both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Check,
    Run,
}

/// Environment the validation depends on, passed in so tests are hermetic.
#[derive(Debug, Clone)]
pub struct Host {
    pub is_root: bool,
    pub path_var: Option<String>,
    pub runtime_dir: Option<PathBuf>,
}

impl Host {
    pub fn current() -> Self {
        Self {
            is_root: nix::unistd::geteuid().is_root(),
            path_var: std::env::var("PATH").ok(),
            runtime_dir: std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
        }
    }
}

struct Diags<'a> {
    file: &'a Path,
    source: &'a str,
    list: Vec<Diagnostic>,
}

impl Diags<'_> {
    fn push(&mut self, severity: Severity, span: &Range<usize>, key: &str, message: String) {
        let (line, column) = line_col(self.source, span.start);
        self.list.push(Diagnostic {
            severity,
            file: self.file.to_path_buf(),
            line,
            column,
            key: key.to_string(),
            message,
        });
    }

    fn error(&mut self, span: &Range<usize>, key: &str, message: impl Into<String>) {
        self.push(Severity::Error, span, key, message.into());
    }

    fn warn(&mut self, span: &Range<usize>, key: &str, message: impl Into<String>) {
        self.push(Severity::Warning, span, key, message.into());
    }

    fn has_errors(&self) -> bool {
        self.list.iter().any(|d| d.severity == Severity::Error)
    }
}

/// The source text of a span, for quoting a value back in a message.
fn source_text<'s>(source: &'s str, span: &Range<usize>) -> &'s str {
    source.get(span.clone()).unwrap_or("").trim()
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

// ---------------------------------------------------------------------------
// Entry points

/// The outcome of validating one file: the config when there are no errors,
/// and every diagnostic (errors and warnings) sorted by position.
pub struct Validation {
    pub config: Option<Config>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Validation {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }
}

/// `-c FILE`, else `$KELPIE_CONFIG`, else `./supervisor.toml`, else
/// `/etc/kelpie/supervisor.toml`.
pub fn find_config(explicit: Option<&Path>) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_path_buf();
    }
    if let Some(path) = std::env::var_os("KELPIE_CONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let local = PathBuf::from("supervisor.toml");
    if local.exists() {
        return local;
    }
    let system = PathBuf::from("/etc/kelpie/supervisor.toml");
    if system.exists() {
        return system;
    }
    local
}

/// Reads and validates a config file. I/O problems become a single
/// diagnostic without a position (`file: message`).
pub fn load(path: &Path, mode: Mode, host: &Host) -> Validation {
    let fail = |message: String| Validation {
        config: None,
        diagnostics: vec![Diagnostic {
            severity: Severity::Error,
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            key: String::new(),
            message,
        }],
    };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) => return fail(format!("cannot read config file: {}", io_reason(&err))),
    };
    if bytes.len() > MAX_CONFIG_BYTES {
        return fail(format!(
            "config file is {} bytes; the limit is {MAX_CONFIG_BYTES}",
            bytes.len()
        ));
    }
    let source = match String::from_utf8(bytes) {
        Ok(source) => source,
        Err(err) => {
            let offset = err.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(err.as_bytes()).into_owned();
            let (line, column) = line_col(&text, offset);
            return Validation {
                config: None,
                diagnostics: vec![Diagnostic {
                    severity: Severity::Error,
                    file: path.to_path_buf(),
                    line,
                    column,
                    key: String::new(),
                    message: "config file is not valid UTF-8".into(),
                }],
            };
        }
    };
    validate(&source, path, mode, host)
}

/// `io::Error` without the `(os error 2)` suffix users do not need.
pub fn io_reason(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Validates config text. `path` is used for messages and to resolve
/// relative paths (`env_file`, `directory`, log files) against the config's
/// directory.
pub fn validate(source: &str, path: &Path, mode: Mode, host: &Host) -> Validation {
    let mut diags = Diags {
        file: path,
        source,
        list: Vec::new(),
    };
    let config = parse_document(source, path, mode, host, &mut diags);
    let mut diagnostics = diags.list;
    diagnostics.sort_by(|a, b| {
        (a.line, a.column, a.severity, &a.message).cmp(&(b.line, b.column, b.severity, &b.message))
    });
    diagnostics.dedup();
    let has_errors = diagnostics.iter().any(|d| d.severity == Severity::Error);
    Validation {
        config: if has_errors { None } else { config },
        diagnostics,
    }
}

type Table<'i> = DeTable<'i>;
type Value<'i> = Spanned<DeValue<'i>>;

fn parse_document(
    source: &str,
    path: &Path,
    mode: Mode,
    host: &Host,
    diags: &mut Diags<'_>,
) -> Option<Config> {
    let root = match DeTable::parse(source) {
        Ok(root) => root,
        Err(err) => {
            let span = err.span().unwrap_or(0..0);
            diags.error(&span, "", syntax_message(source, &err, &span));
            return None;
        }
    };
    // Absolute, so a path in the file means the same to `run`, to a later
    // reload and to a control command started from another directory.
    let base_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let base_dir = std::path::absolute(&base_dir).unwrap_or(base_dir);
    let root_span = root.span();
    let root = root.into_inner();

    check_keys(&root, "", &["supervisor", "program", "group"], diags);

    let supervisor = match table_at(&root, "supervisor", "supervisor", diags) {
        Some(t) => parse_supervisor(t, &base_dir, host, diags),
        None => parse_supervisor(&Table::new(), &base_dir, host, diags),
    };

    let mut programs: Vec<(Range<usize>, ProgramConfig)> = Vec::new();
    let mut declared: Vec<(Range<usize>, Declared)> = Vec::new();
    if let Some(all) = table_at(&root, "program", "program", diags) {
        for (key, value) in all {
            let name = key.get_ref().to_string();
            let key_path = table_key("program", &name);
            check_name(&name, &key.span(), &key_path, "program", diags);
            let Some(table) = expect_table(value, &key_path, diags) else {
                continue;
            };
            declared.push((key.span(), Declared::read(&name, table)));
            if let Some(program) =
                parse_program(&name, table, &key.span(), &base_dir, mode, host, diags)
            {
                programs.push((key.span(), program));
            }
        }
    }
    let no_programs = match root.get("program") {
        None => true,
        Some(value) => value.get_ref().as_table().is_some_and(|t| t.is_empty()),
    };
    if no_programs {
        diags.error(
            &(root_span.start..root_span.start),
            "program",
            "no programs defined; add at least one [program.NAME] table",
        );
    }
    programs.sort_by_key(|(span, _)| span.start);
    declared.sort_by_key(|(span, _)| span.start);
    let declared: Vec<Declared> = declared.into_iter().map(|(_, d)| d).collect();

    let mut groups = Vec::new();
    let mut group_members = Vec::new();
    if let Some(all) = table_at(&root, "group", "group", diags) {
        for (key, value) in all {
            let name = key.get_ref().to_string();
            let key_path = table_key("group", &name);
            check_name(&name, &key.span(), &key_path, "group", diags);
            if let Some(table) = expect_table(value, &key_path, diags) {
                group_members.push((key.span(), name.clone(), group_programs(table)));
                if let Some(group) = parse_group(&name, table, &key.span(), diags) {
                    groups.push((key.span(), group));
                }
            }
        }
    }
    groups.sort_by_key(|(span, _)| span.start);
    group_members.sort_by_key(|(span, _, _)| span.start);
    let group_members: Vec<GroupMembers> = group_members
        .into_iter()
        .map(|(_, name, members)| (name, members))
        .collect();

    check_cross_references(&declared, &group_members, diags);
    if let Some(settings) = &supervisor {
        stop_headroom_warnings(settings, &programs, diags);
    }
    let order = dependency_order(&declared, diags)?;

    if diags.has_errors() {
        return None;
    }
    let mut by_name: HashMap<String, ProgramConfig> = programs
        .into_iter()
        .map(|(_, p)| (p.name.clone(), p))
        .collect();
    let programs = order
        .into_iter()
        .filter_map(|name| by_name.remove(&name))
        .map(Arc::new)
        .collect();
    Some(Config {
        path: path.to_path_buf(),
        supervisor: supervisor?,
        programs,
        groups: groups.into_iter().map(|(_, g)| g).collect(),
    })
}

/// A program whose own stop cannot finish inside the shutdown bound is
/// legal but risky (SPEC §7 startup warnings).
fn stop_headroom_warnings(
    settings: &SupervisorConfig,
    programs: &[(Range<usize>, ProgramConfig)],
    diags: &mut Diags<'_>,
) {
    for (span, program) in programs {
        if program.stop_timeout >= settings.shutdown_timeout {
            diags.warn(
                span,
                &format!("{}.stop_timeout", table_key("program", &program.name)),
                format!(
                    "stop_timeout ({}) leaves no headroom inside shutdown_timeout ({}); a slow stop will be cut short by SIGKILL",
                    humantime::format_duration(program.stop_timeout),
                    humantime::format_duration(settings.shutdown_timeout)
                ),
            );
        }
    }
}

/// `program.web`, or `program."a/b"` when the name is not a bare TOML key,
/// so the dotted path in a message is unambiguous.
fn table_key(section: &str, name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        format!("{section}.{name}")
    } else {
        format!("{section}.{name:?}")
    }
}

/// The parser's message, made specific for duplicates: toml only says
/// "duplicate key", so name the key, and for a repeated `[table]` header the
/// line where it was first defined.
fn syntax_message(source: &str, err: &toml::de::Error, span: &Range<usize>) -> String {
    let message = err.message().trim();
    if message != "duplicate key" {
        return format!("TOML syntax: {message}");
    }
    let key = source.get(span.clone()).unwrap_or("").trim();
    let line_start = source
        .get(..span.start)
        .and_then(|before| before.rfind('\n'))
        .map_or(0, |i| i + 1);
    let line = source
        .get(line_start..)
        .and_then(|rest| rest.lines().next())
        .unwrap_or("");
    let Some(header) = table_header(line) else {
        return format!("TOML syntax: duplicate key `{key}`");
    };
    let first = source
        .get(..line_start)
        .unwrap_or("")
        .lines()
        .position(|l| table_header(l).as_deref() == Some(header.as_str()));
    match first {
        Some(index) => format!(
            "TOML syntax: table [{header}] is defined twice (first on line {})",
            index + 1
        ),
        None => format!("TOML syntax: table [{header}] is defined twice"),
    }
}

/// `program.web` for a line `[program.web]  # comment` (whitespace removed).
fn table_header(line: &str) -> Option<String> {
    let rest = line.trim_start().strip_prefix('[')?;
    if rest.starts_with('[') {
        return None;
    }
    let end = rest.find(']')?;
    Some(rest[..end].split_whitespace().collect())
}

// ---------------------------------------------------------------------------
// Generic decoding helpers

fn table_at<'a, 'i>(
    parent: &'a Table<'i>,
    key: &str,
    key_path: &str,
    diags: &mut Diags<'_>,
) -> Option<&'a Table<'i>> {
    parent
        .get(key)
        .and_then(|value| expect_table(value, key_path, diags))
}

fn expect_table<'a, 'i>(
    value: &'a Value<'i>,
    key_path: &str,
    diags: &mut Diags<'_>,
) -> Option<&'a Table<'i>> {
    match value.get_ref() {
        DeValue::Table(table) => Some(table),
        other => {
            diags.error(
                &value.span(),
                key_path,
                format!("expected a table, found {}", other.type_str()),
            );
            None
        }
    }
}

/// Reports every key of `table` that is not in `known`, with a hint when a
/// known key is close.
fn check_keys(table: &Table<'_>, path: &str, known: &[&str], diags: &mut Diags<'_>) {
    for key in table.keys() {
        let name: &str = key.get_ref();
        if known.contains(&name) {
            continue;
        }
        let full = join(path, name);
        let message = match did_you_mean(name, known) {
            Some(hint) => format!("unknown key (did you mean `{hint}`?)"),
            None => format!("unknown key; expected one of: {}", known.join(", ")),
        };
        diags.error(&key.span(), &full, message);
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Decodes one key with serde; a type error is reported at the value.
fn get<T: DeserializeOwned>(
    table: &Table<'_>,
    path: &str,
    key: &str,
    diags: &mut Diags<'_>,
) -> Option<Spanned<T>> {
    let value = table.get(key)?;
    let span = value.span();
    match T::deserialize(ValueDeserializer::from(value.clone())) {
        Ok(decoded) => Some(Spanned::new(span, decoded)),
        Err(err) => {
            let at = err.span().unwrap_or_else(|| span.clone());
            diags.error(&at, &join(path, key), tidy_serde_message(err.message()));
            None
        }
    }
}

/// serde's "invalid type: integer `5`, expected a string" becomes
/// "expected a string, found integer `5`", with TOML's words for types
/// instead of Rust's (`i64`, `f64`, sequence, map).
fn tidy_serde_message(message: &str) -> String {
    let message = message.trim();
    let message = message.strip_prefix("invalid type: ").unwrap_or(message);
    let message = match message.rsplit_once(", expected ") {
        Some((found, expected)) => format!("expected {expected}, found {found}"),
        None => message.to_string(),
    };
    message
        .replace("expected i64", "expected an integer")
        .replace("expected i128", "expected an integer")
        .replace("expected f64", "expected a number")
        .replace(" as i128", "")
        .replace("integer number overflowed", "integer is too large")
        .replace("floating point", "float")
        .replace("a sequence", "an array")
        .replace("found sequence", "found array")
        .replace("a map", "a table")
        .replace("found map", "found table")
}

fn get_duration(
    table: &Table<'_>,
    path: &str,
    key: &str,
    default: Duration,
    diags: &mut Diags<'_>,
) -> Option<Duration> {
    if let Some(value) = table.get(key) {
        if let DeValue::Integer(_) | DeValue::Float(_) = value.get_ref() {
            let raw = source_text(diags.source, &value.span());
            diags.error(
                &value.span(),
                &join(path, key),
                format!(
                    "expected a duration string with a unit, e.g. \"{raw}s\", found number {raw}"
                ),
            );
            return None;
        }
    }
    let Some(text) = get::<String>(table, path, key, diags) else {
        return if table.contains_key(key) {
            None
        } else {
            Some(default)
        };
    };
    match parse_duration(text.get_ref()) {
        Ok(d) => Some(d),
        Err(why) => {
            diags.error(&text.span(), &join(path, key), why);
            None
        }
    }
}

/// Durations are humantime strings with a unit (`"250ms"`, `"10s"`, `"1m 30s"`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty duration; write e.g. \"10s\" or \"250ms\"".into());
    }
    if trimmed.starts_with('-') {
        return Err(format!("invalid duration \"{text}\": must not be negative"));
    }
    if trimmed.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!(
            "invalid duration \"{text}\": a unit is required, e.g. \"{trimmed}s\""
        ));
    }
    let parsed = humantime::parse_duration(trimmed).map_err(|err| match err {
        humantime::DurationError::NumberOverflow if trimmed.contains('.') => format!(
            "invalid duration \"{text}\": out of range (at most 10 years, in steps of at least 1ns)"
        ),
        humantime::DurationError::NumberOverflow => {
            format!("invalid duration \"{text}\": longer than 10 years")
        }
        humantime::DurationError::UnknownUnit { unit, .. } => format!(
            "invalid duration \"{text}\": unknown unit \"{unit}\"; use ms, s, m, h or d, e.g. \"10s\""
        ),
        other => format!("invalid duration \"{text}\": {other}"),
    })?;
    // Bounded so that every deadline computed from it fits a monotonic
    // instant without overflow.
    if parsed > Duration::from_secs(10 * 365 * 24 * 3600) {
        return Err(format!("invalid duration \"{text}\": longer than 10 years"));
    }
    Ok(parsed)
}

/// Sizes like `"10MB"`, `"512KiB"`, `"1048576"` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    if unit.starts_with('.') {
        return Err(format!(
            "invalid size \"{text}\": a whole number is required, e.g. \"512KiB\""
        ));
    }
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("invalid size \"{text}\": expected e.g. \"10MB\""))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "invalid size \"{text}\": unknown unit \"{}\"; use B, KB, MB, GB, KiB, MiB or GiB",
                unit.trim()
            ))
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("invalid size \"{text}\": too large"))
}

/// Decodes a string key that must be one of `choices`.
fn get_choice<T: Copy>(
    table: &Table<'_>,
    path: &str,
    key: &str,
    choices: &[(&str, T)],
    default: T,
    diags: &mut Diags<'_>,
) -> Option<T> {
    let Some(text) = get::<String>(table, path, key, diags) else {
        return if table.contains_key(key) {
            None
        } else {
            Some(default)
        };
    };
    if let Some((_, value)) = choices.iter().find(|(name, _)| *name == text.get_ref()) {
        return Some(*value);
    }
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    let hint = did_you_mean(text.get_ref(), &names)
        .map(|h| format!(" (did you mean \"{h}\"?)"))
        .unwrap_or_default();
    diags.error(
        &text.span(),
        &join(path, key),
        format!(
            "invalid value \"{}\"{hint}; expected one of: {}",
            text.get_ref(),
            names.join(", ")
        ),
    );
    None
}

fn get_signal(
    table: &Table<'_>,
    path: &str,
    key: &str,
    default: Signal,
    diags: &mut Diags<'_>,
) -> Option<Signal> {
    let Some(text) = get::<String>(table, path, key, diags) else {
        return if table.contains_key(key) {
            None
        } else {
            Some(default)
        };
    };
    let parsed = signals::parse(text.get_ref());
    match parsed {
        Some(Signal::SIGKILL | Signal::SIGSTOP) => {
            diags.error(
                &text.span(),
                &join(path, key),
                format!(
                    "signal \"{}\" cannot be caught; use e.g. \"TERM\"",
                    text.get_ref()
                ),
            );
            None
        }
        Some(signal) => Some(signal),
        None => {
            diags.error(
                &text.span(),
                &join(path, key),
                format!(
                    "unknown signal \"{}\"; write e.g. \"TERM\" or \"SIGTERM\"",
                    text.get_ref()
                ),
            );
            None
        }
    }
}

fn get_u32(
    table: &Table<'_>,
    path: &str,
    key: &str,
    range: std::ops::RangeInclusive<u32>,
    default: u32,
    diags: &mut Diags<'_>,
) -> Option<u32> {
    let Some(n) = get::<i128>(table, path, key, diags) else {
        return if table.contains_key(key) {
            None
        } else {
            Some(default)
        };
    };
    match u32::try_from(*n.get_ref()) {
        Ok(v) if range.contains(&v) => Some(v),
        _ => {
            diags.error(
                &n.span(),
                &join(path, key),
                format!(
                    "{} is out of range; expected {} to {}",
                    n.get_ref(),
                    range.start(),
                    range.end()
                ),
            );
            None
        }
    }
}

fn get_bool(
    table: &Table<'_>,
    path: &str,
    key: &str,
    default: bool,
    diags: &mut Diags<'_>,
) -> Option<bool> {
    match get::<bool>(table, path, key, diags) {
        Some(v) => Some(*v.get_ref()),
        None if table.contains_key(key) => None,
        None => Some(default),
    }
}

fn check_name(name: &str, span: &Range<usize>, key_path: &str, what: &str, diags: &mut Diags<'_>) {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !valid_chars || !first_ok {
        diags.error(
            span,
            key_path,
            format!(
                "invalid {what} name {name:?}: use 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 _ . -, starting with a letter, digit or _"
            ),
        );
    }
}

/// The closest candidate within a small edit distance, for "did you mean".
fn did_you_mean<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (input.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (edit_distance(input, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: Levenshtein plus transposition of
/// two adjacent characters (`pre` → `per` is one typo, not two).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

// ---------------------------------------------------------------------------
// [supervisor]

const SUPERVISOR_KEYS: &[&str] = &[
    "http_listen",
    "control_socket",
    "socket_mode",
    "shutdown_timeout",
    "drain_delay",
    "restart_budget",
    "log_format",
    "log_level",
    "forward_signals",
];

/// `supervisor.control_socket` of a file that may be invalid otherwise,
/// resolved like `validate` resolves it.
pub fn control_socket_of(path: &Path) -> Option<PathBuf> {
    let source = std::fs::read_to_string(path).ok()?;
    let table: toml::Table = toml::from_str(&source).ok()?;
    let socket = table.get("supervisor")?.get("control_socket")?.as_str()?;
    if socket.is_empty() {
        return None;
    }
    let base_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base_dir = std::path::absolute(base_dir).unwrap_or_else(|_| base_dir.to_path_buf());
    Some(base_dir.join(socket))
}

/// Where the control socket is when the config does not say.
pub fn default_control_socket(host: &Host) -> PathBuf {
    if let Some(dir) = &host.runtime_dir {
        dir.join("kelpie.sock")
    } else if host.is_root {
        PathBuf::from("/run/kelpie.sock")
    } else {
        PathBuf::from("kelpie.sock")
    }
}

fn parse_supervisor(
    t: &Table<'_>,
    base_dir: &Path,
    host: &Host,
    diags: &mut Diags<'_>,
) -> Option<SupervisorConfig> {
    let p = "supervisor";
    check_keys(t, p, SUPERVISOR_KEYS, diags);

    let http_listen = match get::<String>(t, p, "http_listen", diags) {
        None if t.contains_key("http_listen") => None,
        None => Some(Some("127.0.0.1:9100".to_string())),
        Some(text) if text.get_ref() == "off" => Some(None),
        Some(text) => match text.get_ref().parse::<std::net::SocketAddr>() {
            Ok(addr) => {
                if !addr.ip().is_loopback() {
                    diags.warn(
                        &text.span(),
                        "supervisor.http_listen",
                        format!("{addr} is not a loopback address; /health, /ready and /metrics will be reachable from the network"),
                    );
                }
                Some(Some(text.get_ref().clone()))
            }
            Err(_) => {
                diags.error(
                    &text.span(),
                    "supervisor.http_listen",
                    format!("invalid address \"{}\"; expected IP:PORT (e.g. \"127.0.0.1:9100\") or \"off\"", text.get_ref()),
                );
                None
            }
        },
    };

    let control_socket = match get::<String>(t, p, "control_socket", diags) {
        Some(text) if text.get_ref().is_empty() => {
            diags.error(
                &text.span(),
                "supervisor.control_socket",
                "must not be empty",
            );
            None
        }
        // Relative to the config file, like every path in it, so `run` and
        // the control commands agree whatever their working directories.
        Some(text) => Some(base_dir.join(text.get_ref())),
        None if t.contains_key("control_socket") => None,
        None => Some(default_control_socket(host)),
    };

    let socket_mode = match get::<String>(t, p, "socket_mode", diags) {
        Some(text) => match u32::from_str_radix(text.get_ref(), 8) {
            Ok(mode) if mode <= 0o777 => {
                if mode & !0o660 != 0 {
                    diags.warn(
                        &text.span(),
                        "supervisor.socket_mode",
                        format!("mode {:04o} is wider than 0660; only kelpie's uid and root are ever served, so the extra bits only let others probe the socket", mode),
                    );
                }
                Some(mode)
            }
            _ => {
                diags.error(
                    &text.span(),
                    "supervisor.socket_mode",
                    format!(
                        "invalid mode \"{}\"; expected octal such as \"0600\"",
                        text.get_ref()
                    ),
                );
                None
            }
        },
        None if t.contains_key("socket_mode") => None,
        None => Some(0o600),
    };

    let shutdown_timeout = get_duration(t, p, "shutdown_timeout", Duration::from_secs(30), diags);
    let drain_delay = get_duration(t, p, "drain_delay", Duration::ZERO, diags);

    let restart_budget = match t.get("restart_budget") {
        None => Some(None),
        Some(value) => expect_table(value, "supervisor.restart_budget", diags).and_then(|b| {
            let bp = "supervisor.restart_budget";
            check_keys(b, bp, &["max", "per"], diags);
            let max = get_u32(b, bp, "max", 1..=u32::MAX, 0, diags);
            let per = get_duration(b, bp, "per", Duration::ZERO, diags);
            for key in ["max", "per"] {
                if !b.contains_key(key) {
                    diags.error(&value.span(), bp, format!("missing key `{key}`"));
                }
            }
            if let Some(per) = per {
                if per.is_zero() && b.contains_key("per") {
                    diags.error(
                        &value.span(),
                        "supervisor.restart_budget.per",
                        "must be longer than 0s",
                    );
                }
            }
            match (max, per) {
                (Some(max), Some(per)) if !per.is_zero() && max > 0 => {
                    Some(Some(RestartBudget { max, per }))
                }
                _ => None,
            }
        }),
    };

    let log_format = get_choice(
        t,
        p,
        "log_format",
        &[
            ("auto", LogFormat::Auto),
            ("text", LogFormat::Text),
            ("json", LogFormat::Json),
        ],
        LogFormat::Auto,
        diags,
    );

    let log_level = match get::<String>(t, p, "log_level", diags) {
        Some(text) => match crate::logging::parse_filter(text.get_ref()) {
            Ok(_) => Some(text.get_ref().clone()),
            Err(err) => {
                diags.error(&text.span(), "supervisor.log_level", err);
                None
            }
        },
        None if t.contains_key("log_level") => None,
        None => Some("info".to_string()),
    };

    let mut forward_signals = Some(Vec::new());
    if let Some(list) = get::<Vec<Spanned<String>>>(t, p, "forward_signals", diags) {
        for item in list.into_inner() {
            match signals::parse(item.get_ref()) {
                Some(
                    sync @ (Signal::SIGSEGV
                    | Signal::SIGBUS
                    | Signal::SIGFPE
                    | Signal::SIGILL
                    | Signal::SIGTRAP
                    | Signal::SIGSYS
                    | Signal::SIGABRT),
                ) => {
                    // A fault of kelpie's own thread, never a request.
                    diags.error(
                        &item.span(),
                        "supervisor.forward_signals",
                        format!(
                            "{} is a synchronous fault signal and is never forwarded",
                            signals::short_name(sync)
                        ),
                    );
                    forward_signals = None;
                }
                Some(Signal::SIGKILL | Signal::SIGSTOP | Signal::SIGCHLD) | None => {
                    diags.error(
                        &item.span(),
                        "supervisor.forward_signals",
                        format!(
                            "\"{}\" cannot be forwarded; use signal names like \"USR1\"",
                            item.get_ref()
                        ),
                    );
                    forward_signals = None;
                }
                Some(signal) => {
                    if let Some(list) = forward_signals.as_mut() {
                        list.push(signal);
                    }
                }
            }
        }
    } else if t.contains_key("forward_signals") {
        forward_signals = None;
    }

    Some(SupervisorConfig {
        http_listen: http_listen?,
        control_socket: control_socket?,
        socket_mode: socket_mode?,
        shutdown_timeout: shutdown_timeout?,
        drain_delay: drain_delay?,
        restart_budget: restart_budget?,
        log_format: log_format?,
        log_level: log_level?,
        forward_signals: forward_signals?,
    })
}

// ---------------------------------------------------------------------------
// [program.NAME]

const PROGRAM_KEYS: &[&str] = &[
    "command",
    "directory",
    "environment",
    "env_file",
    "user",
    "group",
    "umask",
    "instances",
    "autostart",
    "type",
    "restart",
    "success_codes",
    "start_seconds",
    "start_timeout",
    "backoff",
    "max_restarts",
    "restart_window",
    "on_failure",
    "stop_signal",
    "stop_timeout",
    "depends_on",
    "required",
    "readiness",
    "liveness",
    "log",
];

/// `command` is an array (exec'd as is) or a string (split shell-style,
/// without a shell).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawCommand {
    Line(String),
    Argv(Vec<String>),
}

fn parse_program(
    name: &str,
    t: &Table<'_>,
    header: &Range<usize>,
    base_dir: &Path,
    mode: Mode,
    host: &Host,
    diags: &mut Diags<'_>,
) -> Option<ProgramConfig> {
    let p = table_key("program", name);
    let p = p.as_str();
    check_keys(t, p, PROGRAM_KEYS, diags);

    let command = match t.get("command") {
        None => {
            diags.error(header, p, "missing key `command`");
            None
        }
        Some(value) => {
            let span = value.span();
            match RawCommand::deserialize(ValueDeserializer::from(value.clone())) {
                Err(_) => {
                    let bad = match value.get_ref() {
                        DeValue::Array(items) => {
                            items.iter().find(|i| i.get_ref().as_str().is_none())
                        }
                        _ => None,
                    };
                    match bad {
                        Some(item) => diags.error(
                            &item.span(),
                            &join(p, "command"),
                            format!(
                                "every argument must be a string, found {}",
                                item.get_ref().type_str()
                            ),
                        ),
                        None => diags.error(
                            &span,
                            &join(p, "command"),
                            format!(
                                "expected an array of strings or a string, found {}",
                                value.get_ref().type_str()
                            ),
                        ),
                    }
                    None
                }
                Ok(RawCommand::Argv(argv)) => Some((argv, span)),
                Ok(RawCommand::Line(line)) => match shell_words::split(&line) {
                    Ok(argv) => Some((argv, span)),
                    Err(_) => {
                        diags.error(
                            &span,
                            &join(p, "command"),
                            "unbalanced quotes in command string",
                        );
                        None
                    }
                },
            }
        }
    };
    let command = command.and_then(|(argv, span)| {
        if argv.is_empty() || argv[0].is_empty() {
            diags.error(&span, &join(p, "command"), "command is empty");
            None
        } else {
            Some((argv, span))
        }
    });

    let directory = match get::<String>(t, p, "directory", diags) {
        Some(dir) => {
            let resolved = base_dir.join(dir.get_ref());
            if !resolved.is_dir() {
                let message = format!("directory \"{}\" does not exist", resolved.display());
                match mode {
                    Mode::Run => diags.error(&dir.span(), &join(p, "directory"), message),
                    Mode::Check => diags.warn(&dir.span(), &join(p, "directory"), message),
                }
            }
            Some(Some(resolved))
        }
        None if t.contains_key("directory") => None,
        None => Some(None),
    };

    let mut environment = BTreeMap::new();
    let mut env_ok = true;
    if let Some(file) = get::<String>(t, p, "env_file", diags) {
        let resolved = base_dir.join(file.get_ref());
        match std::fs::read_to_string(&resolved) {
            Ok(text) => match parse_env_file(&text) {
                Ok(vars) => environment.extend(vars),
                Err((line, why)) => {
                    diags.error(
                        &file.span(),
                        &join(p, "env_file"),
                        format!("{}:{line}: {why}", resolved.display()),
                    );
                    env_ok = false;
                }
            },
            Err(err) => {
                diags.error(
                    &file.span(),
                    &join(p, "env_file"),
                    format!(
                        "cannot read \"{}\": {}",
                        resolved.display(),
                        io_reason(&err)
                    ),
                );
                env_ok = false;
            }
        }
    } else if t.contains_key("env_file") {
        env_ok = false;
    }
    if let Some(vars) = get::<BTreeMap<String, String>>(t, p, "environment", diags) {
        for (key, value) in vars.into_inner() {
            if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
                diags.error(
                    &t.get("environment").map(|v| v.span()).unwrap_or(0..0),
                    &join(p, "environment"),
                    format!("invalid environment variable name {key:?}"),
                );
                env_ok = false;
            }
            environment.insert(key, value);
        }
    } else if t.contains_key("environment") {
        env_ok = false;
    }

    let user = get::<String>(t, p, "user", diags);
    let group = get::<String>(t, p, "group", diags);
    if let Some(user) = &user {
        if !host.is_root {
            // Fatal only when `run` would have to switch users; at check
            // time the config may be meant for a root supervisor.
            let message = format!(
                "switching to user \"{}\" needs root; kelpie is not running as root",
                user.get_ref()
            );
            match mode {
                Mode::Run => diags.error(&user.span(), &join(p, "user"), message),
                Mode::Check => diags.warn(&user.span(), &join(p, "user"), message),
            }
        }
        if (mode == Mode::Check || host.is_root) && resolve_user(user.get_ref()).is_none() {
            diags.error(
                &user.span(),
                &join(p, "user"),
                format!("unknown user \"{}\"", user.get_ref()),
            );
        }
    }
    if let Some(group) = &group {
        if user.is_none() && !host.is_root {
            let message = format!(
                "switching to group \"{}\" needs root; kelpie is not running as root",
                group.get_ref()
            );
            match mode {
                Mode::Run => diags.error(&group.span(), &join(p, "group"), message),
                Mode::Check => diags.warn(&group.span(), &join(p, "group"), message),
            }
        }
        if (mode == Mode::Check || host.is_root) && resolve_group(group.get_ref()).is_none() {
            diags.error(
                &group.span(),
                &join(p, "group"),
                format!("unknown group \"{}\"", group.get_ref()),
            );
        }
    }

    let umask = match get::<String>(t, p, "umask", diags) {
        Some(text) => match u32::from_str_radix(text.get_ref(), 8) {
            Ok(mask) if mask <= 0o777 => Some(Some(mask)),
            _ => {
                diags.error(
                    &text.span(),
                    &join(p, "umask"),
                    format!(
                        "invalid umask \"{}\"; expected octal such as \"022\"",
                        text.get_ref()
                    ),
                );
                None
            }
        },
        None if t.contains_key("umask") => None,
        None => Some(None),
    };

    let instances = get_u32(t, p, "instances", 1..=MAX_INSTANCES, 1, diags);
    let autostart = get_bool(t, p, "autostart", true, diags);
    let kind = get_choice(
        t,
        p,
        "type",
        &[
            ("service", ProgramKind::Service),
            ("oneshot", ProgramKind::Oneshot),
        ],
        ProgramKind::Service,
        diags,
    );
    let default_restart = match kind {
        Some(ProgramKind::Oneshot) => RestartPolicy::OnFailure,
        _ => RestartPolicy::Always,
    };
    let restart = get_choice(
        t,
        p,
        "restart",
        &[
            ("always", RestartPolicy::Always),
            ("on-failure", RestartPolicy::OnFailure),
            ("never", RestartPolicy::Never),
        ],
        default_restart,
        diags,
    );
    if let (Some(ProgramKind::Oneshot), Some(RestartPolicy::Always)) = (kind, restart) {
        let span = t.get("restart").map(|v| v.span()).unwrap_or(0..0);
        diags.error(
            &span,
            &join(p, "restart"),
            "\"always\" would rerun a oneshot forever; use \"on-failure\" or \"never\"",
        );
    }

    let success_codes = match get::<Vec<Spanned<i128>>>(t, p, "success_codes", diags) {
        Some(codes) => {
            let mut out = Vec::new();
            let mut ok = true;
            for code in codes.get_ref() {
                match u8::try_from(*code.get_ref()) {
                    Ok(c) => out.push(i32::from(c)),
                    Err(_) => {
                        diags.error(
                            &code.span(),
                            &join(p, "success_codes"),
                            format!("exit code {} is out of range 0 to 255", code.get_ref()),
                        );
                        ok = false;
                    }
                }
            }
            if out.is_empty() && ok {
                diags.error(
                    &codes.span(),
                    &join(p, "success_codes"),
                    "must list at least one exit code",
                );
                ok = false;
            }
            ok.then_some(out)
        }
        None if t.contains_key("success_codes") => None,
        None => Some(vec![0]),
    };

    let start_seconds = get_duration(t, p, "start_seconds", Duration::from_secs(1), diags);
    let start_timeout = get_duration(t, p, "start_timeout", Duration::from_secs(60), diags);
    let backoff = parse_backoff(t, p, diags);
    let max_restarts = get_u32(t, p, "max_restarts", 0..=u32::MAX, 10, diags);
    let restart_window = get_duration(t, p, "restart_window", Duration::from_secs(60), diags);
    if let Some(window) = restart_window {
        if window.is_zero() {
            let span = t.get("restart_window").map(|v| v.span()).unwrap_or(0..0);
            diags.error(&span, &join(p, "restart_window"), "must be longer than 0s");
        }
    }
    let on_failure = parse_on_failure(t, p, diags);
    let stop_signal = get_signal(t, p, "stop_signal", Signal::SIGTERM, diags);
    let stop_timeout = get_duration(t, p, "stop_timeout", Duration::from_secs(10), diags);
    let depends_on = parse_depends_on(t, p, diags);
    let required = get_bool(t, p, "required", true, diags);
    let readiness = parse_probe_block(t, p, "readiness", Duration::from_secs(2), diags);
    let liveness = parse_probe_block(t, p, "liveness", Duration::from_secs(10), diags);
    let log = parse_log(t, p, base_dir, diags);
    if let (Some(Some(probe)), Some(LogMode::Discard)) = (&readiness, &log) {
        if matches!(probe.kind, ProbeKind::Log(_)) {
            let span = t.get("log").map(|v| v.span()).unwrap_or(0..0);
            diags.error(
                &span,
                &join(p, "log"),
                "mode = \"discard\" drops the output the readiness log probe must read",
            );
        }
    }

    if let (Some((argv, span)), Some(dir)) = (&command, &directory) {
        let path_var = environment
            .get("PATH")
            .cloned()
            .or_else(|| host.path_var.clone());
        if let Err(why) = find_executable(&argv[0], dir.as_deref(), path_var.as_deref()) {
            // A missing binary is only fatal when the program is started, so
            // the others still run; at check time it is worth a warning.
            diags.warn(span, &join(p, "command"), why);
        }
    }

    Some(ProgramConfig {
        name: name.to_string(),
        command: command?.0,
        directory: directory?,
        environment: if env_ok { environment } else { return None },
        user: user.map(Spanned::into_inner),
        group: group.map(Spanned::into_inner),
        umask: umask?,
        instances: instances?,
        autostart: autostart?,
        kind: kind?,
        restart: restart?,
        success_codes: success_codes?,
        start_seconds: start_seconds?,
        start_timeout: start_timeout?,
        backoff: backoff?,
        max_restarts: max_restarts?,
        restart_window: restart_window.filter(|w| !w.is_zero())?,
        on_failure: on_failure?,
        stop_signal: stop_signal?,
        stop_timeout: stop_timeout?,
        depends_on: depends_on?,
        required: required?,
        readiness: readiness?,
        liveness: liveness?,
        log: log?,
    })
}

fn parse_on_failure(t: &Table<'_>, p: &str, diags: &mut Diags<'_>) -> Option<OnFailure> {
    get_choice(
        t,
        p,
        "on_failure",
        &[
            ("keep-running", OnFailure::KeepRunning),
            ("shutdown", OnFailure::Shutdown),
        ],
        OnFailure::KeepRunning,
        diags,
    )
}

fn parse_backoff(t: &Table<'_>, p: &str, diags: &mut Diags<'_>) -> Option<BackoffConfig> {
    let defaults = BackoffConfig::default();
    let Some(value) = t.get("backoff") else {
        return Some(defaults);
    };
    let bp = join(p, "backoff");
    let b = expect_table(value, &bp, diags)?;
    check_keys(b, &bp, &["initial", "max", "multiplier", "jitter"], diags);
    let initial = get_duration(b, &bp, "initial", defaults.initial, diags);
    let max = get_duration(b, &bp, "max", defaults.max, diags);
    let multiplier = get::<f64>(b, &bp, "multiplier", diags)
        .map(|m| {
            let v = *m.get_ref();
            if v.is_finite() && (1.0..=100.0).contains(&v) {
                Some(v)
            } else {
                diags.error(
                    &m.span(),
                    &join(&bp, "multiplier"),
                    format!("{v} is out of range; expected 1.0 to 100.0"),
                );
                None
            }
        })
        .unwrap_or(if b.contains_key("multiplier") {
            None
        } else {
            Some(defaults.multiplier)
        });
    let jitter = get::<f64>(b, &bp, "jitter", diags)
        .map(|j| {
            let v = *j.get_ref();
            if v.is_finite() && (0.0..=1.0).contains(&v) {
                Some(v)
            } else {
                diags.error(
                    &j.span(),
                    &join(&bp, "jitter"),
                    format!("{v} is out of range; expected 0.0 to 1.0"),
                );
                None
            }
        })
        .unwrap_or(if b.contains_key("jitter") {
            None
        } else {
            Some(defaults.jitter)
        });
    if let (Some(initial), Some(max)) = (initial, max) {
        if max < initial {
            let span = b
                .get("max")
                .map(|v| v.span())
                .unwrap_or_else(|| value.span());
            diags.error(
                &span,
                &join(&bp, "max"),
                format!(
                    "max ({}) is shorter than initial ({})",
                    humantime::format_duration(max),
                    humantime::format_duration(initial)
                ),
            );
            return None;
        }
    }
    Some(BackoffConfig {
        initial: initial?,
        max: max?,
        multiplier: multiplier?,
        jitter: jitter?,
    })
}

/// `depends_on` as `["db"]` (meaning "ready") or `{ db = "ready" }`.
fn parse_depends_on(
    t: &Table<'_>,
    p: &str,
    diags: &mut Diags<'_>,
) -> Option<Vec<(String, DependencyCondition)>> {
    let Some(value) = t.get("depends_on") else {
        return Some(Vec::new());
    };
    let key = join(p, "depends_on");
    let mut out = Vec::new();
    let mut ok = true;
    match value.get_ref() {
        DeValue::Array(items) => {
            for item in items {
                match item.get_ref().as_str() {
                    Some(name) => out.push((name.to_string(), DependencyCondition::Ready)),
                    None => {
                        diags.error(
                            &item.span(),
                            &key,
                            format!(
                                "expected a program name, found {}",
                                item.get_ref().type_str()
                            ),
                        );
                        ok = false;
                    }
                }
            }
        }
        DeValue::Table(map) => {
            for (name, cond) in map {
                let parsed = match cond.get_ref().as_str() {
                    Some("started") => Some(DependencyCondition::Started),
                    Some("ready") => Some(DependencyCondition::Ready),
                    Some("completed") => Some(DependencyCondition::Completed),
                    _ => None,
                };
                match parsed {
                    Some(c) => out.push((name.get_ref().to_string(), c)),
                    None => {
                        let message = match cond.get_ref().as_str() {
                            Some(text) => {
                                let hint = did_you_mean(text, &["started", "ready", "completed"])
                                    .map(|h| format!(" (did you mean \"{h}\"?)"))
                                    .unwrap_or_default();
                                format!("invalid condition \"{text}\"{hint}; expected one of: started, ready, completed")
                            }
                            None => format!(
                                "expected a condition (started, ready or completed), found {}",
                                cond.get_ref().type_str()
                            ),
                        };
                        diags.error(&cond.span(), &join(&key, name.get_ref()), message);
                        ok = false;
                    }
                }
            }
        }
        other => {
            diags.error(
                &value.span(),
                &key,
                format!(
                    "expected an array of program names or a table of conditions, found {}",
                    other.type_str()
                ),
            );
            ok = false;
        }
    }
    ok.then_some(out)
}

const PROBE_KINDS: &[&str] = &["http", "tcp", "exec", "notify", "log"];

fn parse_probe_block(
    t: &Table<'_>,
    p: &str,
    block: &str,
    default_interval: Duration,
    diags: &mut Diags<'_>,
) -> Option<Option<ProbeConfig>> {
    let Some(value) = t.get(block) else {
        return Some(None);
    };
    let bp = join(p, block);
    let b = expect_table(value, &bp, diags)?;
    let mut known: Vec<&str> = PROBE_KINDS.to_vec();
    known.extend([
        "interval",
        "timeout",
        "failure_threshold",
        "success_threshold",
        "initial_delay",
    ]);
    check_keys(b, &bp, &known, diags);
    let present: Vec<&str> = PROBE_KINDS
        .iter()
        .copied()
        .filter(|k| b.contains_key(*k))
        .collect();
    if present.len() != 1 {
        let message = if present.is_empty() {
            "needs exactly one probe kind: http, tcp, exec, notify or log".to_string()
        } else {
            format!(
                "more than one probe kind ({}); choose exactly one",
                present.join(", ")
            )
        };
        diags.error(&value.span(), &bp, message);
        return None;
    }
    let kind = match present[0] {
        "http" => get::<String>(b, &bp, "http", diags).and_then(|url| {
            if url.get_ref().starts_with("http://") && url.get_ref().len() > "http://".len() {
                Some(ProbeKind::Http(url.into_inner()))
            } else {
                diags.error(
                    &url.span(),
                    &join(&bp, "http"),
                    format!(
                        "invalid URL \"{}\"; expected http://HOST:PORT/PATH",
                        url.get_ref()
                    ),
                );
                None
            }
        }),
        "tcp" => get::<String>(b, &bp, "tcp", diags).and_then(|addr| {
            match addr.get_ref().rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Some(ProbeKind::Tcp(addr.into_inner()))
                }
                _ => {
                    diags.error(
                        &addr.span(),
                        &join(&bp, "tcp"),
                        format!("invalid address \"{}\"; expected HOST:PORT", addr.get_ref()),
                    );
                    None
                }
            }
        }),
        "exec" => get::<Vec<String>>(b, &bp, "exec", diags).and_then(|argv| {
            if argv.get_ref().first().is_some_and(|a| !a.is_empty()) {
                Some(ProbeKind::Exec(argv.into_inner()))
            } else {
                diags.error(&argv.span(), &join(&bp, "exec"), "command is empty");
                None
            }
        }),
        kind @ ("notify" | "log") if block == "liveness" => {
            let span = b
                .get(kind)
                .map(|v| v.span())
                .unwrap_or_else(|| value.span());
            diags.error(
                &span,
                &join(&bp, kind),
                format!("a {kind} probe only tells when a program is ready; liveness needs http, tcp or exec"),
            );
            None
        }
        "notify" => get::<bool>(b, &bp, "notify", diags).and_then(|on| {
            if *on.get_ref() {
                Some(ProbeKind::Notify)
            } else {
                diags.error(
                    &on.span(),
                    &join(&bp, "notify"),
                    "notify = false is not a probe; remove the block instead",
                );
                None
            }
        }),
        _ => get::<String>(b, &bp, "log", diags).and_then(|pattern| {
            if pattern.get_ref().is_empty() {
                diags.error(&pattern.span(), &join(&bp, "log"), "pattern is empty");
                return None;
            }
            match regex_lite::Regex::new(pattern.get_ref()) {
                Ok(_) => Some(ProbeKind::Log(pattern.into_inner())),
                Err(err) => {
                    let why = err.to_string();
                    let first = why.lines().last().unwrap_or("invalid pattern").trim();
                    diags.error(
                        &pattern.span(),
                        &join(&bp, "log"),
                        format!("invalid regular expression: {first}"),
                    );
                    None
                }
            }
        }),
    };
    let interval = get_duration(b, &bp, "interval", default_interval, diags);
    let timeout = get_duration(b, &bp, "timeout", Duration::from_secs(1), diags);
    let failure_threshold = get_u32(b, &bp, "failure_threshold", 1..=1000, 3, diags);
    let success_threshold = get_u32(b, &bp, "success_threshold", 1..=1000, 1, diags);
    let initial_delay = get_duration(b, &bp, "initial_delay", Duration::ZERO, diags);
    for (key, d) in [("interval", interval), ("timeout", timeout)] {
        if d.is_some_and(|d| d.is_zero()) {
            let span = b.get(key).map(|v| v.span()).unwrap_or_else(|| value.span());
            diags.error(&span, &join(&bp, key), "must be longer than 0s");
            return None;
        }
    }
    Some(Some(ProbeConfig {
        kind: kind?,
        interval: interval?,
        timeout: timeout?,
        failure_threshold: failure_threshold?,
        success_threshold: success_threshold?,
        initial_delay: initial_delay?,
    }))
}

fn parse_log(t: &Table<'_>, p: &str, base_dir: &Path, diags: &mut Diags<'_>) -> Option<LogMode> {
    let Some(value) = t.get("log") else {
        return Some(LogMode::Inherit);
    };
    let bp = join(p, "log");
    let b = expect_table(value, &bp, diags)?;
    check_keys(b, &bp, &["mode", "file", "max_size", "keep"], diags);
    #[derive(Clone, Copy, PartialEq)]
    enum M {
        Inherit,
        File,
        Discard,
    }
    let mode = get_choice(
        b,
        &bp,
        "mode",
        &[
            ("inherit", M::Inherit),
            ("file", M::File),
            ("discard", M::Discard),
        ],
        M::Inherit,
        diags,
    )?;
    let file = get::<String>(b, &bp, "file", diags);
    let max_size = match get::<String>(b, &bp, "max_size", diags) {
        Some(text) => match parse_size(text.get_ref()) {
            Ok(size) if size >= 1024 => Some(size),
            Ok(_) => {
                diags.error(
                    &text.span(),
                    &join(&bp, "max_size"),
                    "must be at least 1KiB",
                );
                None
            }
            Err(why) => {
                diags.error(&text.span(), &join(&bp, "max_size"), why);
                None
            }
        },
        None if b.contains_key("max_size") => None,
        None => Some(10_000_000),
    };
    let keep = get_u32(b, &bp, "keep", 0..=1000, 5, diags);
    match mode {
        M::Inherit | M::Discard => {
            for key in ["file", "max_size", "keep"] {
                if let Some(v) = b.get(key) {
                    diags.error(
                        &v.span(),
                        &join(&bp, key),
                        "only applies with mode = \"file\"",
                    );
                }
            }
            Some(if mode == M::Inherit {
                LogMode::Inherit
            } else {
                LogMode::Discard
            })
        }
        M::File => {
            let Some(file) = file else {
                if !b.contains_key("file") {
                    diags.error(&value.span(), &bp, "mode = \"file\" needs `file`");
                }
                return None;
            };
            if file.get_ref().is_empty() {
                diags.error(&file.span(), &join(&bp, "file"), "must not be empty");
                return None;
            }
            Some(LogMode::File {
                path: base_dir.join(file.get_ref()),
                max_size: max_size?,
                keep: keep?,
            })
        }
    }
}

// ---------------------------------------------------------------------------
// [group.NAME]

fn parse_group(
    name: &str,
    t: &Table<'_>,
    header: &Range<usize>,
    diags: &mut Diags<'_>,
) -> Option<GroupConfig> {
    let p = table_key("group", name);
    let p = p.as_str();
    check_keys(
        t,
        p,
        &[
            "programs",
            "strategy",
            "max_restarts",
            "restart_window",
            "on_failure",
        ],
        diags,
    );
    let programs = match get::<Vec<String>>(t, p, "programs", diags) {
        Some(list) if list.get_ref().is_empty() => {
            diags.error(
                &list.span(),
                &join(p, "programs"),
                "must list at least one program",
            );
            None
        }
        Some(list) => Some(list.into_inner()),
        None => {
            if !t.contains_key("programs") {
                diags.error(header, p, "missing key `programs`");
            }
            None
        }
    };
    let strategy = get_choice(
        t,
        p,
        "strategy",
        &[
            ("one_for_one", GroupStrategy::OneForOne),
            ("one_for_all", GroupStrategy::OneForAll),
            ("rest_for_one", GroupStrategy::RestForOne),
        ],
        GroupStrategy::OneForOne,
        diags,
    );
    let max_restarts = match get_u32(t, p, "max_restarts", 0..=u32::MAX, 0, diags) {
        Some(v) if t.contains_key("max_restarts") => Some(Some(v)),
        Some(_) => Some(None),
        None => None,
    };
    let restart_window = get_duration(t, p, "restart_window", Duration::from_secs(60), diags);
    if restart_window.is_some_and(|w| w.is_zero()) {
        let span = t.get("restart_window").map(|v| v.span()).unwrap_or(0..0);
        diags.error(&span, &join(p, "restart_window"), "must be longer than 0s");
    }
    let restart_window = restart_window.filter(|w| !w.is_zero());
    let on_failure = parse_on_failure(t, p, diags);
    Some(GroupConfig {
        name: name.to_string(),
        programs: programs?,
        strategy: strategy?,
        max_restarts: max_restarts?,
        restart_window: restart_window?,
        on_failure: on_failure?,
    })
}

// ---------------------------------------------------------------------------
// Cross-references: dependencies and groups

/// What the cross-reference checks need from a program, read straight from
/// its table: a bad value elsewhere in the program must not hide an unknown
/// dependency or a cycle (every error is reported in one run).
struct Declared {
    name: String,
    /// `None` when `type` is invalid (reported elsewhere).
    kind: Option<ProgramKind>,
    /// Each well-formed dependency, spanned at its name.
    depends_on: Vec<(Spanned<String>, DependencyCondition)>,
}

impl Declared {
    fn read(name: &str, t: &Table<'_>) -> Self {
        let kind = match t.get("type").map(|v| v.get_ref().as_str()) {
            None | Some(Some("service")) => Some(ProgramKind::Service),
            Some(Some("oneshot")) => Some(ProgramKind::Oneshot),
            Some(_) => None,
        };
        let mut depends_on = Vec::new();
        match t.get("depends_on").map(|v| v.get_ref()) {
            Some(DeValue::Array(items)) => {
                for item in items {
                    if let Some(dep) = item.get_ref().as_str() {
                        depends_on.push((
                            Spanned::new(item.span(), dep.to_string()),
                            DependencyCondition::Ready,
                        ));
                    }
                }
            }
            Some(DeValue::Table(map)) => {
                for (dep, cond) in map {
                    let cond = match cond.get_ref().as_str() {
                        Some("started") => DependencyCondition::Started,
                        Some("ready") => DependencyCondition::Ready,
                        Some("completed") => DependencyCondition::Completed,
                        _ => continue,
                    };
                    depends_on.push((Spanned::new(dep.span(), dep.get_ref().to_string()), cond));
                }
            }
            _ => {}
        }
        depends_on.sort_by_key(|(dep, _)| dep.span().start);
        Self {
            name: name.to_string(),
            kind,
            depends_on,
        }
    }
}

/// A group's name and the string items of its `programs`, spanned.
type GroupMembers = (String, Vec<Spanned<String>>);

/// The string items of a group's `programs`, spanned; type errors are
/// reported by `parse_group`.
fn group_programs(t: &Table<'_>) -> Vec<Spanned<String>> {
    match t.get("programs").map(|v| v.get_ref()) {
        Some(DeValue::Array(items)) => items
            .iter()
            .filter_map(|item| {
                item.get_ref()
                    .as_str()
                    .map(|name| Spanned::new(item.span(), name.to_string()))
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn check_cross_references(programs: &[Declared], groups: &[GroupMembers], diags: &mut Diags<'_>) {
    let by_name: HashMap<&str, &Declared> = programs.iter().map(|p| (p.name.as_str(), p)).collect();
    let names: Vec<&str> = programs.iter().map(|p| p.name.as_str()).collect();
    let unknown = |name: &str| {
        let hint = did_you_mean(name, &names)
            .map(|h| format!(" (did you mean \"{h}\"?)"))
            .unwrap_or_default();
        format!("unknown program \"{name}\"{hint}")
    };
    for program in programs {
        let key = join(&table_key("program", &program.name), "depends_on");
        let mut seen = BTreeSet::new();
        for (dep, condition) in &program.depends_on {
            let span = dep.span();
            let dep = dep.get_ref();
            if !seen.insert(dep.as_str()) {
                diags.error(&span, &key, format!("\"{dep}\" is listed twice"));
                continue;
            }
            if dep == &program.name {
                diags.error(&span, &key, format!("dependency cycle: {dep} -> {dep}"));
                continue;
            }
            match by_name.get(dep.as_str()) {
                Some(target) => {
                    if *condition == DependencyCondition::Completed
                        && target.kind == Some(ProgramKind::Service)
                    {
                        diags.error(
                            &span,
                            &key,
                            format!("\"{dep}\" is a service and never completes; \"completed\" needs type = \"oneshot\""),
                        );
                    }
                }
                None => diags.error(&span, &key, unknown(dep)),
            }
        }
    }
    let mut owner: HashMap<&str, &str> = HashMap::new();
    for (group, members) in groups {
        let key = join(&table_key("group", group), "programs");
        for member in members {
            let span = member.span();
            let name = member.get_ref().as_str();
            if !by_name.contains_key(name) {
                diags.error(&span, &key, unknown(name));
            }
            if let Some(previous) = owner.insert(name, group) {
                if previous == group {
                    diags.error(&span, &key, format!("\"{name}\" is listed twice"));
                } else {
                    diags.error(
                        &span,
                        &key,
                        format!("program \"{name}\" is already in group \"{previous}\"; a program belongs to at most one group"),
                    );
                }
            }
        }
    }
}

/// Topological order (dependencies first, file order between independent
/// programs). Every cycle is reported with its path, at the first program's
/// `depends_on` entry naming the next one.
fn dependency_order(programs: &[Declared], diags: &mut Diags<'_>) -> Option<Vec<String>> {
    let index: HashMap<&str, usize> = programs
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), i))
        .collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    struct Walk<'a> {
        programs: &'a [Declared],
        index: HashMap<&'a str, usize>,
        marks: Vec<Mark>,
        stack: Vec<usize>,
        order: Vec<String>,
        cycles: Vec<Vec<usize>>,
    }
    impl Walk<'_> {
        fn visit(&mut self, i: usize) {
            match self.marks[i] {
                Mark::Done => return,
                Mark::Active => {
                    let start = self.stack.iter().position(|&s| s == i).unwrap_or(0);
                    let mut cycle = self.stack[start..].to_vec();
                    cycle.push(i);
                    self.cycles.push(cycle);
                    return;
                }
                Mark::New => {}
            }
            self.marks[i] = Mark::Active;
            self.stack.push(i);
            let programs = self.programs;
            for (dep, _) in &programs[i].depends_on {
                if dep.get_ref() == &programs[i].name {
                    continue; // reported as a self-cycle already
                }
                if let Some(&j) = self.index.get(dep.get_ref().as_str()) {
                    self.visit(j);
                }
            }
            self.stack.pop();
            self.marks[i] = Mark::Done;
            self.order.push(programs[i].name.clone());
        }
    }
    let mut walk = Walk {
        programs,
        index,
        marks: vec![Mark::New; programs.len()],
        stack: Vec::new(),
        order: Vec::with_capacity(programs.len()),
        cycles: Vec::new(),
    };
    for i in 0..programs.len() {
        walk.visit(i);
    }
    for cycle in &walk.cycles {
        let names: Vec<&str> = cycle.iter().map(|&c| programs[c].name.as_str()).collect();
        let first = &programs[cycle[0]];
        let next = names.get(1).copied().unwrap_or(first.name.as_str());
        let span = first
            .depends_on
            .iter()
            .find(|(dep, _)| dep.get_ref() == next)
            .map(|(dep, _)| dep.span())
            .unwrap_or(0..0);
        diags.error(
            &span,
            &join(&table_key("program", &first.name), "depends_on"),
            format!("dependency cycle: {}", names.join(" -> ")),
        );
    }
    walk.cycles.is_empty().then_some(walk.order)
}

// ---------------------------------------------------------------------------
// Environment files, users, executables

/// `KEY=VALUE` lines; blank lines and `#` comments are skipped, an optional
/// `export ` prefix and one pair of surrounding quotes are removed.
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut vars = Vec::new();
    for (number, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, value)) = line.split_once('=') else {
            return Err((number + 1, "expected KEY=VALUE".into()));
        };
        let key = key.trim();
        let valid_key = !key.is_empty()
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !key.starts_with(|c: char| c.is_ascii_digit());
        if !valid_key {
            return Err((number + 1, format!("invalid variable name {key:?}")));
        }
        let value = value.trim();
        if value.contains('\0') {
            return Err((number + 1, format!("value of {key} contains a NUL byte")));
        }
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        vars.push((key.to_string(), unquoted.to_string()));
    }
    Ok(vars)
}

pub fn resolve_user(name: &str) -> Option<nix::unistd::User> {
    match name.parse::<u32>() {
        Ok(uid) => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten(),
        Err(_) => nix::unistd::User::from_name(name).ok().flatten(),
    }
}

pub fn resolve_group(name: &str) -> Option<nix::unistd::Group> {
    match name.parse::<u32>() {
        Ok(gid) => nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
            .ok()
            .flatten(),
        Err(_) => nix::unistd::Group::from_name(name).ok().flatten(),
    }
}

/// Where `exec` would find `program`, mirroring execvp: a name with a slash is
/// a path (relative to the working directory), anything else is searched in
/// PATH.
pub fn find_executable(
    program: &str,
    directory: Option<&Path>,
    path_var: Option<&str>,
) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let check = |candidate: &Path| -> Result<(), String> {
        let meta = std::fs::metadata(candidate)
            .map_err(|e| format!("\"{}\": {}", candidate.display(), io_reason(&e)))?;
        if meta.is_dir() {
            return Err(format!("\"{}\" is a directory", candidate.display()));
        }
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(format!("\"{}\" is not executable", candidate.display()));
        }
        Ok(())
    };
    if program.contains('/') {
        let candidate = match directory {
            Some(dir) if !program.starts_with('/') => dir.join(program),
            _ => PathBuf::from(program),
        };
        return check(&candidate).map(|()| candidate);
    }
    let search = path_var.unwrap_or("/usr/local/bin:/usr/bin:/bin");
    for dir in search.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(program);
        if check(&candidate).is_ok() {
            return Ok(candidate);
        }
    }
    Err(format!("command \"{program}\" not found in PATH"))
}

pub mod print;

#[cfg(test)]
mod tests;

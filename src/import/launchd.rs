//! launchd property lists (`~/Library/LaunchAgents/*.plist`,
//! `/Library/LaunchDaemons/*.plist`): one job per file, one program per
//! job, in the order the files are given. XML and binary plists are read
//! by the `plist` crate; `key_lines` finds each XML key's line for
//! messages (a binary plist has no lines: its messages name the file).
//!
//! launchd's model differs from kelpie's in ways the translation has to
//! spell out: a job is not restarted unless `KeepAlive` says so, not
//! started at load unless `RunAtLoad` (or `KeepAlive`) says so, and many
//! jobs are started by triggers (calendar, sockets, paths) kelpie does not
//! have. Each such difference becomes a note or a dropped key at the
//! program.

mod bounds;
mod key_lines;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plist::Value;

use self::key_lines::{KeyLines, Refused};
use super::draft::{self, program_name, Backoff, Draft, Log, Origin, Program, Restart};
use super::source::{line_of, read_bytes};
use super::{Context, ImportError};

/// kelpie's longest duration (docs/configuration.md).
const MAX_SECONDS: u64 = 10 * 365 * 24 * 3600;

/// launchd runs a job in `/` unless `WorkingDirectory` says otherwise.
const LAUNCHD_CWD: &str = "/";

pub fn import(files: &[PathBuf], cx: &Context) -> Result<Draft, ImportError> {
    let mut jobs: Vec<Job> = Vec::new();
    let mut labels: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in files {
        let (value, lines) = read_plist(file, cx)?;
        let plist = Plist { file, lines };
        let job = plist.job(&value)?;
        if let Some(first) = labels.get(&job.label) {
            return Err(ImportError::data(
                job.label_origin,
                format!(
                    "Label {:?} is also the Label of {}: launchd loads only one job per label",
                    job.label,
                    first.display()
                ),
            ));
        }
        labels.insert(job.label.clone(), file.clone());
        jobs.push(job);
    }
    // Names are settled here, not by `import::read`, so each dropped key
    // is filed under the program it came from even when two labels
    // sanitise alike.
    let mut programs: Vec<Program> = jobs
        .iter_mut()
        .map(|j| std::mem::take(&mut j.program))
        .collect();
    draft::dedupe_names(&mut programs);
    let mut draft = Draft::default();
    for (program, mut job) in programs.into_iter().zip(jobs) {
        // In file order: the log keys are decided after the loop.
        job.lost.sort_by_key(|lost| lost.origin.line);
        for lost in job.lost {
            draft.drop_key(lost.origin, Some(&program.name), lost.key, lost.why);
        }
        draft.programs.push(program);
    }
    Ok(draft)
}

/// The file's top-level value, and where its XML keys are.
fn read_plist(file: &Path, cx: &Context) -> Result<(Value, KeyLines), ImportError> {
    parse_plist(file, &read_bytes(file, cx)?)
}

/// `bytes`, the content of `file`, as a plist value and its key lines.
fn parse_plist(file: &Path, bytes: &[u8]) -> Result<(Value, KeyLines), ImportError> {
    if bytes.starts_with(b"bplist") {
        bounds::check_binary(bytes)
            .map_err(|too| ImportError::data(Origin::new(file, 0), too.message))?;
        let value = Value::from_reader(Cursor::new(bytes)).map_err(|err| {
            ImportError::data(
                Origin::new(file, 0),
                format!("not a valid binary property list: {}", describe(&err).0),
            )
        })?;
        return Ok((value, KeyLines::default()));
    }
    let text = std::str::from_utf8(bytes).map_err(|err| {
        let line = line_of(bytes, err.valid_up_to());
        ImportError::data(
            Origin::new(file, line),
            "not valid UTF-8 text (an XML property list is UTF-8; a binary one starts with \"bplist\")",
        )
    })?;
    let head = text.trim_start_matches('\u{feff}').trim_start();
    if !head.starts_with('<') {
        let hint = if head.starts_with('{') || head.starts_with('(') {
            " (an old-style ASCII plist? `plutil -convert xml1 FILE` turns it into XML)"
        } else {
            ""
        };
        return Err(ImportError::data(
            Origin::new(file, 1),
            format!("not a property list: expected XML (<?xml …><plist>) or a binary plist{hint}"),
        ));
    }
    // Nesting too deep is refused before the crate builds (and drops) it;
    // a repeated key only once the file is known to parse.
    let scanned = match key_lines::scan(text) {
        Err(deep @ Refused::TooDeep { .. }) => return Err(refusal(file, deep)),
        scanned => scanned,
    };
    let value = Value::from_reader_xml(bytes).map_err(|err| {
        let (why, offset) = describe(&err);
        let missing = scanned.as_ref().ok().and_then(KeyLines::missing_value);
        let (line, why) = match (offset, missing) {
            (Some(offset), _) => (line_of(bytes, offset), why),
            (None, Some((key, line))) => (line, format!("key {key:?} has no value")),
            (None, None) => (0, why),
        };
        ImportError::data(
            Origin::new(file, line),
            format!("not a valid XML property list: {why}"),
        )
    })?;
    let lines = scanned.map_err(|refused| refusal(file, refused))?;
    Ok((value, lines))
}

fn refusal(file: &Path, refused: Refused) -> ImportError {
    match refused {
        Refused::Duplicate { path, line, first } => ImportError::data(
            Origin::new(file, line),
            format!(
                "key {:?} is given twice in one dictionary (first at line {first})",
                path.join("."),
            ),
        ),
        Refused::TooDeep { line } => ImportError::data(
            Origin::new(file, line),
            format!("nested more than {} levels deep", bounds::MAX_DEPTH),
        ),
    }
}

/// A `plist` error in words, and the byte offset it names. The crate
/// exposes its error kinds and the offset only through its message
/// (`Kind (offset N)`, `Kind { expected: A, found: B }`), so they are read
/// from there; a message without an offset gives no line, and a kind not
/// known here is spelled out from its name.
fn describe(err: &plist::Error) -> (String, Option<usize>) {
    // The bytes are in memory, so a read error is a read past their end:
    // a table or an object that says it is longer than the file.
    if err.as_io().is_some() {
        return ("the file ends before the property list does".into(), None);
    }
    let text = err.to_string();
    let (kind, offset) = match text.rsplit_once(" (offset ") {
        Some((kind, rest)) => (
            kind.to_string(),
            rest.strip_suffix(')').and_then(|n| n.parse().ok()),
        ),
        None => (text.clone(), None),
    };
    let (name, fields) = match kind.split_once(" { ") {
        Some((name, fields)) => (name, fields.trim_end_matches(" }")),
        None => (kind.as_str(), ""),
    };
    let field = |key: &str| {
        fields
            .split(", ")
            .find_map(|f| f.strip_prefix(key)?.strip_prefix(": "))
            .map(event_words)
    };
    let words = match name {
        "UnexpectedEventType" => match (field("expected"), field("found")) {
            (Some(expected), Some(found)) => format!("expected {expected}, found {found}"),
            _ => "unexpected element".to_string(),
        },
        "UnexpectedEndOfEventStream" | "UnexpectedEof" => {
            "the file ends before the property list does".to_string()
        }
        "InvalidXmlSyntax" => "invalid XML".to_string(),
        "UnclosedXmlElement" => "an element is not closed".to_string(),
        "UnknownXmlElement" => "an element a property list does not have".to_string(),
        "UnexpectedXmlOpeningTag" => "an element where none belongs".to_string(),
        "UnexpectedXmlCharactersExpectedElement" => "text where an element belongs".to_string(),
        "InvalidIntegerString" => "<integer> holds something that is not an integer".to_string(),
        "InvalidRealString" => "<real> holds something that is not a number".to_string(),
        "InvalidDateString" => "<date> holds something that is not a date".to_string(),
        "InvalidDataString" => "<data> holds something that is not base64".to_string(),
        "InvalidMagic" => "it does not start as one".to_string(),
        other => camel_words(other),
    };
    (words, offset)
}

/// A `plist` event kind in words.
fn event_words(event: &str) -> String {
    match event {
        "ValueOrStartCollection" => "a value".into(),
        "DictionaryKeyOrEndCollection" => "a <key> or </dict>".into(),
        "EndCollection" => "the end of a <dict> or <array>".into(),
        "StartDictionary" => "<dict>".into(),
        "StartArray" => "<array>".into(),
        other => format!("{} value", camel_words(other)),
    }
}

/// `UnexpectedXmlOpeningTag` → "unexpected xml opening tag".
fn camel_words(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_uppercase() && !out.is_empty() {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// One plist file: its name as given, and its key lines.
struct Plist<'a> {
    file: &'a Path,
    lines: KeyLines,
}

/// A job read from one plist, before names are made unique.
struct Job {
    label: String,
    label_origin: Origin,
    program: Program,
    lost: Vec<Lost>,
}

/// A key not carried over, filed once the program's name is final.
struct Lost {
    origin: Origin,
    key: String,
    why: String,
}

/// What `KeepAlive` (or the older `OnDemand`) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeepAlive {
    Always,
    Never,
    /// The dictionary form: `SuccessfulExit` and `Crashed`, as given.
    When {
        successful_exit: Option<bool>,
        crashed: Option<bool>,
    },
}

/// How a job ends, for `KeepAlive`'s conditions.
const EXIT_ZERO: u8 = 1;
const EXIT_NONZERO: u8 = 2;
const CRASH: u8 = 4;
const ANY_END: u8 = EXIT_ZERO | EXIT_NONZERO | CRASH;

/// Keys launchd acts on that kelpie has no equivalent for, and why. A
/// boolean key set to launchd's default (`false`) changes nothing and is
/// not reported (see `changes_nothing`).
const NOT_CARRIED: &[(&str, &str)] = &[
    ("StartCalendarInterval", "kelpie has no calendar timers; run the job from cron or a systemd timer"),
    ("StartInterval", "kelpie has no interval timers; run the job from cron or a systemd timer"),
    ("WatchPaths", "kelpie does not start programs when a path changes"),
    ("QueueDirectories", "kelpie does not start programs when a directory fills"),
    ("StartOnMount", "kelpie does not start programs when a file system is mounted"),
    ("Sockets", "kelpie has no socket activation: the program has to open its own listening sockets"),
    ("MachServices", "kelpie has no Mach services (macOS IPC)"),
    ("LaunchEvents", "kelpie has no XPC launch events"),
    ("inetdCompatibility", "kelpie has no socket activation, inetd-style or otherwise"),
    ("LaunchOnlyOnce", "kelpie starts the program at every `kelpie run`"),
    ("Nice", "kelpie sets no scheduling priority; run the command under `nice -n N`"),
    ("ProcessType", "macOS resource classes (Background, Adaptive, …) have no kelpie equivalent"),
    ("LowPriorityIO", "kelpie sets no I/O priority; run the command under `ionice` (Linux)"),
    ("LowPriorityBackgroundIO", "kelpie sets no I/O priority; run the command under `ionice` (Linux)"),
    ("SoftResourceLimits", "kelpie sets no resource limits; set them in a wrapper (`prlimit`, or `ulimit` in `sh -c`)"),
    ("HardResourceLimits", "kelpie sets no resource limits; set them in a wrapper (`prlimit`, or `ulimit` in `sh -c`)"),
    ("LimitLoadToSessionType", "kelpie has no login sessions: the program runs whenever kelpie runs"),
    ("LimitLoadToHosts", "kelpie loads every program of its config on every host"),
    ("LimitLoadFromHosts", "kelpie loads every program of its config on every host"),
    ("LimitLoadToHardware", "kelpie loads every program of its config on any hardware"),
    ("LimitLoadFromHardware", "kelpie loads every program of its config on any hardware"),
    ("AbandonProcessGroup", "kelpie stops a program's whole process group; it cannot leave the rest of the group running"),
    ("EnableGlobbing", "kelpie runs the arguments as given; for glob expansion run the command under `/bin/sh -c`"),
    ("EnableTransactions", "XPC transactions (exit when idle) are macOS-only"),
    ("EnablePressuredExit", "exit under memory pressure is macOS-only"),
    ("TimeOut", "launchd only hands this idle timeout to the job when it checks in; kelpie has no check-in"),
    ("RootDirectory", "kelpie does not chroot programs"),
    ("StandardInPath", "kelpie's programs read stdin from /dev/null"),
    ("SessionCreate", "macOS security sessions have no kelpie equivalent"),
    ("Debug", "launchd's own debug logging for the job has no kelpie equivalent"),
    ("WaitForDebugger", "kelpie cannot hold a program for a debugger at exec"),
    ("LegacyTimers", "macOS timer coalescing has no kelpie equivalent"),
    ("POSIXSpawnType", "macOS spawn types have no kelpie equivalent"),
    ("MaterializeDatalessFiles", "macOS dataless (cloud) files have no kelpie equivalent"),
    ("JetsamProperties", "the memory-pressure killer's settings are Apple-internal"),
    ("BundleProgram", "launchd finds this inside an app bundle; kelpie runs Program or ProgramArguments"),
];

/// Keys that describe the job and change nothing launchd does, or that
/// launchd itself ignores today: read past, not reported.
const INFORMATIONAL: &[&str] = &[
    "ServiceDescription",
    "AssociatedBundleIdentifiers",
    "ServiceIPC",
    "HopefullyExitsFirst",
    "HopefullyExitsLast",
];

/// A key set to the value launchd uses when it is absent.
fn changes_nothing(key: &str, value: &Value) -> bool {
    match key {
        "Nice" => value.as_signed_integer() == Some(0),
        "LaunchOnlyOnce"
        | "StartOnMount"
        | "LowPriorityIO"
        | "LowPriorityBackgroundIO"
        | "AbandonProcessGroup"
        | "EnableGlobbing"
        | "EnableTransactions"
        | "EnablePressuredExit"
        | "SessionCreate"
        | "Debug"
        | "WaitForDebugger"
        | "LegacyTimers" => value.as_boolean() == Some(false),
        _ => false,
    }
}

/// What kind of value a plist value is, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Array(_) => "an array",
        Value::Dictionary(_) => "a dictionary",
        Value::Boolean(_) => "a boolean",
        Value::Data(_) => "data",
        Value::Date(_) => "a date",
        Value::Real(_) => "a real number",
        Value::Integer(_) => "an integer",
        Value::String(_) => "a string",
        Value::Uid(_) => "a UID",
        _ => "an unknown kind of value",
    }
}

impl Plist<'_> {
    fn at(&self, path: &[&str]) -> Origin {
        Origin::new(self.file, self.lines.line(path))
    }

    fn error(&self, path: &[&str], message: impl Into<String>) -> ImportError {
        let line = match self.lines.line(path) {
            0 => self.lines.root(),
            line => line,
        };
        ImportError::data(Origin::new(self.file, line), message)
    }

    fn string<'v>(&self, path: &[&str], value: &'v Value) -> Result<&'v str, ImportError> {
        let name = path.join(".");
        match value {
            Value::String(s) if s.contains('\0') => {
                Err(self.error(path, format!("{name} contains a NUL character")))
            }
            Value::String(s) => Ok(s),
            other => Err(self.error(
                path,
                format!("{name} must be a string, found {}", kind(other)),
            )),
        }
    }

    /// A string that names a path or a program: empty is an error.
    fn nonempty(&self, path: &[&str], value: &Value) -> Result<String, ImportError> {
        let s = self.string(path, value)?;
        if s.is_empty() {
            return Err(self.error(path, format!("{} is empty", path.join("."))));
        }
        Ok(s.to_string())
    }

    fn boolean(&self, path: &[&str], value: &Value) -> Result<bool, ImportError> {
        value.as_boolean().ok_or_else(|| {
            self.error(
                path,
                format!(
                    "{} must be a boolean, found {}",
                    path.join("."),
                    kind(value)
                ),
            )
        })
    }

    fn seconds(&self, key: &str, value: &Value) -> Result<u64, ImportError> {
        let Value::Integer(n) = value else {
            return Err(self.error(
                &[key],
                format!("{key} must be an integer (seconds), found {}", kind(value)),
            ));
        };
        match n.as_signed() {
            Some(n) if n < 0 => {
                Err(self.error(&[key], format!("{key} must not be negative, found {n}")))
            }
            Some(n) if n as u64 <= MAX_SECONDS => Ok(n as u64),
            _ => Err(self.error(
                &[key],
                format!("{key} {n} is longer than kelpie's longest duration (10 years)"),
            )),
        }
    }

    fn job(&self, value: &Value) -> Result<Job, ImportError> {
        let Some(top) = value.as_dictionary() else {
            return Err(ImportError::data(
                Origin::new(self.file, self.lines.root()),
                format!(
                    "the top of a launchd plist must be a dictionary, found {}",
                    kind(value)
                ),
            ));
        };
        let Some(label_value) = top.get("Label") else {
            return Err(ImportError::data(
                Origin::new(self.file, self.lines.root()),
                "no Label: launchd needs one to name the job",
            ));
        };
        let label = self.nonempty(&["Label"], label_value)?;
        let Some(name) = program_name(&label) else {
            return Err(self.error(
                &["Label"],
                format!("Label {label:?} has nothing kelpie can use as a program name"),
            ));
        };
        let mut t = Translation {
            p: self,
            program: Program {
                name: name.clone(),
                origin: Some(Origin::new(self.file, self.lines.root())),
                command: self.command(top)?,
                ..Program::default()
            },
            lost: Vec::new(),
            keep_alive: None,
            on_demand: None,
            run_at_load: None,
            disabled: false,
            stdout: None,
            stderr: None,
        };
        if name != label {
            t.note(format!(
                "Label {label:?} is not a kelpie name: the program is {name:?}"
            ));
        }
        if let (Some(program), Some(Value::Array(args))) =
            (top.get("Program"), top.get("ProgramArguments"))
        {
            if let (Some(program), Some(Value::String(argv0))) = (program.as_string(), args.first())
            {
                if program != argv0 {
                    t.note(format!(
                        "launchd runs Program {program:?} with argv[0] {argv0:?}; kelpie passes the program's path as argv[0]"
                    ));
                }
            }
        }
        for (key, value) in top.iter() {
            t.key(key, value)?;
        }
        t.finish();
        Ok(Job {
            label,
            label_origin: self.at(&["Label"]),
            program: t.program,
            lost: t.lost,
        })
    }

    /// `Program` and `ProgramArguments` as kelpie's argv: launchd execs
    /// `Program` (or, without it, `ProgramArguments[0]`) with
    /// `ProgramArguments` as its argv, so argv[0] may differ from the
    /// executable; kelpie's argv[0] is the executable.
    fn command(&self, top: &plist::Dictionary) -> Result<Vec<String>, ImportError> {
        let program = top
            .get("Program")
            .map(|v| self.nonempty(&["Program"], v))
            .transpose()?;
        let args = match top.get("ProgramArguments") {
            None => None,
            Some(Value::Array(items)) => {
                let mut args = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(_) => {
                            args.push(self.string(&["ProgramArguments"], item)?.to_string())
                        }
                        other => {
                            return Err(self.error(
                                &["ProgramArguments"],
                                format!(
                                    "ProgramArguments item {} must be a string, found {}",
                                    i + 1,
                                    kind(other)
                                ),
                            ))
                        }
                    }
                }
                Some(args)
            }
            Some(other) => {
                return Err(self.error(
                    &["ProgramArguments"],
                    format!(
                        "ProgramArguments must be an array of strings, found {}",
                        kind(other)
                    ),
                ))
            }
        };
        match (program, args) {
            (Some(program), None) => Ok(vec![program]),
            (Some(program), Some(args)) => {
                let mut argv = vec![program];
                argv.extend(args.into_iter().skip(1));
                Ok(argv)
            }
            (None, Some(args)) => match args.first() {
                Some(first) if !first.is_empty() => Ok(args),
                Some(_) => Err(self.error(
                    &["ProgramArguments"],
                    "ProgramArguments starts with an empty string and there is no Program",
                )),
                None => Err(self.error(
                    &["ProgramArguments"],
                    "ProgramArguments is empty and there is no Program",
                )),
            },
            (None, None) => {
                let hint = if top.contains_key("BundleProgram") {
                    " (BundleProgram is resolved by launchd inside an app bundle; give the executable's path as Program)"
                } else {
                    ""
                };
                Err(ImportError::data(
                    Origin::new(self.file, self.lines.root()),
                    format!("neither Program nor ProgramArguments: nothing to run{hint}"),
                ))
            }
        }
    }
}

/// One job's keys on their way to a program.
struct Translation<'p, 'a> {
    p: &'p Plist<'a>,
    program: Program,
    lost: Vec<Lost>,
    keep_alive: Option<KeepAlive>,
    on_demand: Option<bool>,
    run_at_load: Option<bool>,
    disabled: bool,
    stdout: Option<String>,
    stderr: Option<String>,
}

impl Translation<'_, '_> {
    fn note(&mut self, note: impl Into<String>) {
        self.program.notes.push(note.into());
    }

    fn lose(&mut self, path: &[&str], why: impl Into<String>) {
        self.lost.push(Lost {
            origin: self.p.at(path),
            key: path.join("."),
            why: why.into(),
        });
    }

    fn key(&mut self, key: &str, value: &Value) -> Result<(), ImportError> {
        let p = self.p;
        match key {
            // Read in `job` and `command`.
            "Label" | "Program" | "ProgramArguments" => {}
            "EnvironmentVariables" => {
                let Value::Dictionary(vars) = value else {
                    return Err(p.error(
                        &[key],
                        format!(
                            "EnvironmentVariables must be a dictionary of strings, found {}",
                            kind(value)
                        ),
                    ));
                };
                for (name, v) in vars.iter() {
                    let path = [key, name.as_str()];
                    if name.is_empty() || name.contains(['=', '\0']) {
                        return Err(
                            p.error(&path, format!("invalid environment variable name {name:?}"))
                        );
                    }
                    let v = p.string(&path, v)?;
                    self.program.environment.insert(name.clone(), v.to_string());
                }
            }
            "WorkingDirectory" => {
                let dir = p.nonempty(&[key], value)?;
                self.program.directory = Some(self.absolute(&dir, LAUNCHD_CWD, key));
            }
            "UserName" => self.program.user = Some(p.nonempty(&[key], value)?),
            "GroupName" => self.program.group = Some(p.nonempty(&[key], value)?),
            "InitGroups" => {
                // kelpie gives a program its user's supplementary groups,
                // which is launchd's default (true).
                if !p.boolean(&[key], value)? {
                    self.lose(&[key], "kelpie always gives the program its user's supplementary groups (getgrouplist)");
                }
            }
            "Umask" => {
                let Value::Integer(n) = value else {
                    return Err(p.error(
                        &[key],
                        format!(
                            "Umask must be an integer (the mask in decimal, 18 for 022), found {}",
                            kind(value)
                        ),
                    ));
                };
                match n.as_unsigned() {
                    Some(mask) if mask <= 0o777 => self.program.umask = Some(mask as u32),
                    _ => {
                        return Err(p.error(
                            &[key],
                            format!(
                                "Umask {n} is not a umask: expected 0 to 511 (octal 000 to 777)"
                            ),
                        ))
                    }
                }
            }
            "KeepAlive" => self.keep_alive = Some(self.keep_alive(value)?),
            "OnDemand" => self.on_demand = Some(p.boolean(&[key], value)?),
            "RunAtLoad" => self.run_at_load = Some(p.boolean(&[key], value)?),
            "Disabled" => self.disabled = p.boolean(&[key], value)?,
            "ThrottleInterval" => {
                let n = p.seconds(key, value)?;
                let every = Duration::from_secs(n);
                self.program.backoff = Some(Backoff::fixed(every));
                self.note(format!(
                    "ThrottleInterval = {n}: launchd starts the job at most once every {n}s; kelpie waits {n}s after each exit (a fixed backoff)"
                ));
            }
            "ExitTimeOut" => match p.seconds(key, value)? {
                0 => self.lose(
                    &[key],
                    "0 means launchd never sends SIGKILL; kelpie always does after stop_timeout",
                ),
                n => self.program.stop_timeout = Some(Duration::from_secs(n)),
            },
            "StandardOutPath" => self.stdout = Some(p.nonempty(&[key], value)?),
            "StandardErrorPath" => self.stderr = Some(p.nonempty(&[key], value)?),
            _ if INFORMATIONAL.contains(&key) => {}
            _ => {
                if let Some((_, why)) = NOT_CARRIED.iter().find(|(k, _)| *k == key) {
                    if !changes_nothing(key, value) {
                        self.lose(&[key], *why);
                    }
                } else {
                    self.lose(&[key], "not a launchd.plist(5) key kelpie knows");
                }
            }
        }
        Ok(())
    }

    fn keep_alive(&mut self, value: &Value) -> Result<KeepAlive, ImportError> {
        let p = self.p;
        let conditions = match value {
            Value::Boolean(true) => return Ok(KeepAlive::Always),
            Value::Boolean(false) => return Ok(KeepAlive::Never),
            Value::Dictionary(conditions) => conditions,
            other => {
                return Err(p.error(
                    &["KeepAlive"],
                    format!(
                        "KeepAlive must be a boolean or a dictionary, found {}",
                        kind(other)
                    ),
                ))
            }
        };
        let mut successful_exit = None;
        let mut crashed = None;
        for (sub, v) in conditions.iter() {
            let path = ["KeepAlive", sub.as_str()];
            match sub.as_str() {
                "SuccessfulExit" => successful_exit = Some(p.boolean(&path, v)?),
                "Crashed" => crashed = Some(p.boolean(&path, v)?),
                "NetworkState" => self.lose(&path, "kelpie has no network conditions (and launchd no longer acts on this one)"),
                "PathState" => self.lose(&path, "kelpie keeps a program alive by how it exited, not by whether a path exists"),
                "OtherJobEnabled" => self.lose(&path, "kelpie has no condition on another program; depends_on orders starts, it does not keep alive"),
                "AfterInitialDemand" => self.lose(&path, "kelpie has no demand to wait for: a program starts with kelpie or by `kelpie start`"),
                _ => self.lose(&path, "not a KeepAlive condition kelpie knows"),
            }
        }
        Ok(KeepAlive::When {
            successful_exit,
            crashed,
        })
    }

    /// `path` made absolute against `base`, with a note when it was not.
    fn absolute(&mut self, path: &str, base: &str, key: &str) -> String {
        if path.starts_with('/') {
            return path.to_string();
        }
        let joined = Path::new(base).join(path).display().to_string();
        self.note(format!(
            "{key} {path:?} is relative: launchd resolves it against {base}, so it is {joined:?}"
        ));
        joined
    }

    /// The decisions that need every key: restart, autostart and the log.
    fn finish(&mut self) {
        let keep_alive = match (self.keep_alive, self.on_demand) {
            (Some(keep_alive), on_demand) => {
                if on_demand.is_some() {
                    self.note("OnDemand is ignored: KeepAlive is also set and decides");
                }
                keep_alive
            }
            (None, Some(on_demand)) => {
                self.note(format!(
                    "OnDemand = {on_demand} is the pre-10.5 spelling of KeepAlive = {}",
                    !on_demand
                ));
                if on_demand {
                    KeepAlive::Never
                } else {
                    KeepAlive::Always
                }
            }
            (None, None) => KeepAlive::Never,
        };
        let run_at_load = self.run_at_load == Some(true);
        let starts_at_load = match keep_alive {
            KeepAlive::Always => {
                self.program.restart = Some(Restart::Always);
                true
            }
            KeepAlive::Never => {
                self.program.restart = Some(Restart::Never);
                self.note("launchd does not restart this job when it exits (KeepAlive is false or absent, and launchd's default is false): restart = \"never\"");
                run_at_load
            }
            KeepAlive::When {
                successful_exit,
                crashed,
            } => {
                self.restart_when(successful_exit, crashed);
                // launchd: SuccessfulExit implies RunAtLoad, since the job
                // has to run once to have an exit status.
                run_at_load || successful_exit.is_some()
            }
        };
        if self.disabled {
            self.program.autostart = Some(false);
            self.note("Disabled = true: launchctl does not load this job (unless `launchctl load -w`): autostart = false; `kelpie start` starts it");
        } else if !starts_at_load {
            self.program.autostart = Some(false);
            self.note("launchd starts this job only on demand (no RunAtLoad, and KeepAlive does not start it): autostart = false; `kelpie start` starts it");
        }
        self.finish_log();
    }

    /// `KeepAlive`'s `SuccessfulExit` and `Crashed` as a restart policy.
    /// launchd restarts when any condition holds; kelpie's policies cover
    /// three sets of endings: none, failures (non-zero exit or crash), all.
    fn restart_when(&mut self, successful_exit: Option<bool>, crashed: Option<bool>) {
        let wants = |successful: Option<bool>, crashed: Option<bool>| {
            let mut ends = 0;
            match successful {
                Some(true) => ends |= EXIT_ZERO,
                Some(false) => ends |= EXIT_NONZERO | CRASH,
                None => {}
            }
            match crashed {
                Some(true) => ends |= CRASH,
                Some(false) => ends |= EXIT_ZERO | EXIT_NONZERO,
                None => {}
            }
            ends
        };
        let mut ends = wants(successful_exit, crashed);
        if ends & EXIT_ZERO != 0 && ends != ANY_END {
            // Restarting after a clean exit but not after every ending:
            // kelpie has no such policy. The conditions asking for it are
            // reported; the rest still count.
            if successful_exit == Some(true) {
                self.lose(&["KeepAlive", "SuccessfulExit"], "true restarts the job only after it exits 0; kelpie restarts always, on failure or never, not only after success");
            }
            if crashed == Some(false) {
                self.lose(&["KeepAlive", "Crashed"], "false restarts the job after any ending but a crash; kelpie cannot leave crashes out");
            }
            ends = wants(successful_exit.filter(|s| !s), crashed.filter(|c| *c));
        }
        self.program.restart = Some(match ends {
            0 => {
                self.note("KeepAlive gives no condition kelpie can act on: restart = \"never\"");
                Restart::Never
            }
            CRASH => {
                self.note("KeepAlive.Crashed = true: launchd restarts the job only after a crash (a signal such as SIGSEGV); kelpie's on-failure also restarts it after a non-zero exit");
                Restart::OnFailure
            }
            ANY_END => Restart::Always,
            _ => Restart::OnFailure,
        });
    }

    /// launchd can send stdout and stderr to two files; kelpie keeps one
    /// log per program, with both streams.
    fn finish_log(&mut self) {
        let base = self
            .program
            .directory
            .clone()
            .unwrap_or_else(|| LAUNCHD_CWD.to_string());
        let stdout = self
            .stdout
            .take()
            .map(|path| self.absolute(&path, &base, "StandardOutPath"));
        let stderr = self
            .stderr
            .take()
            .map(|path| self.absolute(&path, &base, "StandardErrorPath"));
        let file = match (stdout, stderr) {
            (None, None) => return,
            (Some(out), Some(err)) => {
                if out != err {
                    self.lose(&["StandardErrorPath"], format!("kelpie keeps one log per program: stderr goes to StandardOutPath's file, {out}"));
                }
                out
            }
            (Some(out), None) => {
                self.note("without StandardErrorPath launchd discards stderr; kelpie writes it to StandardOutPath's file too");
                out
            }
            (None, Some(err)) => {
                self.note("without StandardOutPath launchd discards stdout; kelpie writes it to StandardErrorPath's file too");
                err
            }
        };
        self.program.log = Some(Log::File {
            file,
            max_size: None,
            keep: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::draft::Dropped;

    const HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n<plist version=\"1.0\">\n<dict>\n";
    const TAIL: &str = "</dict>\n</plist>\n";

    /// A job plist: `body` goes inside the top `<dict>`, from line 5.
    fn plist(body: &str) -> String {
        format!("{HEAD}{body}{TAIL}")
    }

    fn import_texts(files: &[(&str, &[u8])]) -> Result<Draft, ImportError> {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        for (name, bytes) in files {
            std::fs::write(dir.path().join(name), bytes).unwrap_or_else(|e| panic!("write: {e}"));
        }
        let cx = Context {
            env: Default::default(),
            cwd: dir.path().to_path_buf(),
        };
        let names: Vec<PathBuf> = files.iter().map(|(n, _)| PathBuf::from(n)).collect();
        import(&names, &cx)
    }

    fn import_one(body: &str) -> Draft {
        let text = plist(body);
        import_texts(&[("job.plist", text.as_bytes())]).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn dropped(draft: &Draft) -> Vec<String> {
        draft.dropped.iter().map(Dropped::to_string).collect()
    }

    const AGENT: &str = "<key>Label</key><string>com.example.agent</string>\n<key>ProgramArguments</key><array><string>/bin/sleep</string><string>1000</string></array>\n";

    #[test]
    fn a_simple_agent_is_one_program() {
        let draft = import_one(&format!("{AGENT}<key>RunAtLoad</key><true/>\n"));
        assert_eq!(draft.programs.len(), 1);
        let p = &draft.programs[0];
        assert_eq!(p.name, "com.example.agent");
        assert_eq!(p.origin, Some(Origin::new("job.plist", 4)));
        assert_eq!(p.command, ["/bin/sleep", "1000"]);
        assert_eq!(p.restart, Some(Restart::Never));
        assert_eq!(p.autostart, None);
        assert!(
            p.notes
                .iter()
                .any(|n| n.contains("does not restart this job")),
            "{:?}",
            p.notes
        );
        assert!(draft.dropped.is_empty(), "{:?}", dropped(&draft));
    }

    #[test]
    fn keep_alive_and_run_at_load_become_restart_and_autostart() {
        let t = "<true/>";
        let f = "<false/>";
        let cases: Vec<(String, Restart, Option<bool>, Vec<&str>)> = vec![
            (String::new(), Restart::Never, Some(false), vec![]),
            (format!("<key>RunAtLoad</key>{t}"), Restart::Never, None, vec![]),
            (format!("<key>KeepAlive</key>{t}"), Restart::Always, None, vec![]),
            (format!("<key>KeepAlive</key>{t}<key>RunAtLoad</key>{f}"), Restart::Always, None, vec![]),
            (format!("<key>KeepAlive</key>{f}<key>RunAtLoad</key>{t}"), Restart::Never, None, vec![]),
            ("<key>KeepAlive</key><dict/>".to_string(), Restart::Never, Some(false), vec![]),
            // SuccessfulExit implies RunAtLoad.
            (format!("<key>KeepAlive</key><dict><key>SuccessfulExit</key>{f}</dict>"), Restart::OnFailure, None, vec![]),
            (format!("<key>KeepAlive</key><dict><key>SuccessfulExit</key>{t}</dict>"), Restart::Never, None, vec!["KeepAlive.SuccessfulExit"]),
            (format!("<key>KeepAlive</key><dict><key>Crashed</key>{t}</dict>"), Restart::OnFailure, Some(false), vec![]),
            (format!("<key>KeepAlive</key><dict><key>Crashed</key>{t}</dict><key>RunAtLoad</key>{t}"), Restart::OnFailure, None, vec![]),
            (format!("<key>KeepAlive</key><dict><key>Crashed</key>{f}</dict>"), Restart::Never, Some(false), vec!["KeepAlive.Crashed"]),
            (format!("<key>KeepAlive</key><dict><key>SuccessfulExit</key>{f}<key>Crashed</key>{f}</dict>"), Restart::Always, None, vec![]),
            (format!("<key>KeepAlive</key><dict><key>SuccessfulExit</key>{f}<key>Crashed</key>{t}</dict>"), Restart::OnFailure, None, vec![]),
            (format!("<key>KeepAlive</key><dict><key>SuccessfulExit</key>{t}<key>Crashed</key>{t}</dict>"), Restart::OnFailure, None, vec!["KeepAlive.SuccessfulExit"]),
            (format!("<key>KeepAlive</key><dict><key>SuccessfulExit</key>{t}<key>Crashed</key>{f}</dict>"), Restart::Never, None, vec!["KeepAlive.SuccessfulExit", "KeepAlive.Crashed"]),
            (
                format!("<key>KeepAlive</key><dict><key>NetworkState</key>{t}<key>PathState</key><dict><key>/tmp/go</key>{t}</dict><key>OtherJobEnabled</key><dict/><key>AfterInitialDemand</key>{t}<key>Sometimes</key>{t}</dict>"),
                Restart::Never,
                Some(false),
                vec!["KeepAlive.NetworkState", "KeepAlive.PathState", "KeepAlive.OtherJobEnabled", "KeepAlive.AfterInitialDemand", "KeepAlive.Sometimes"],
            ),
            (format!("<key>OnDemand</key>{f}"), Restart::Always, None, vec![]),
            (format!("<key>OnDemand</key>{t}<key>RunAtLoad</key>{t}"), Restart::Never, None, vec![]),
            (format!("<key>OnDemand</key>{f}<key>KeepAlive</key>{f}"), Restart::Never, Some(false), vec![]),
            (format!("<key>KeepAlive</key>{t}<key>Disabled</key>{t}"), Restart::Always, Some(false), vec![]),
            (format!("<key>RunAtLoad</key>{t}<key>Disabled</key>{f}"), Restart::Never, None, vec![]),
        ];
        for (body, restart, autostart, lost) in cases {
            let draft = import_one(&format!("{AGENT}{body}\n"));
            let p = &draft.programs[0];
            assert_eq!(p.restart, Some(restart), "{body}");
            assert_eq!(p.autostart, autostart, "{body}");
            let keys: Vec<&str> = draft.dropped.iter().map(|d| d.key.as_str()).collect();
            assert_eq!(keys, lost, "{body}");
            assert!(
                draft.dropped.iter().all(
                    |d| d.origin.line == 7 && d.program.as_deref() == Some("com.example.agent")
                ),
                "{body}: {:?}",
                dropped(&draft)
            );
        }
    }

    #[test]
    fn program_and_program_arguments_become_argv() {
        let cases: [(&str, &[&str], bool); 5] = [
            ("<key>ProgramArguments</key><array><string>node</string><string>app.js</string></array>", &["node", "app.js"], false),
            ("<key>Program</key><string>/usr/local/bin/web</string>", &["/usr/local/bin/web"], false),
            ("<key>Program</key><string>/bin/web</string><key>ProgramArguments</key><array><string>/bin/web</string><string>-v</string></array>", &["/bin/web", "-v"], false),
            ("<key>Program</key><string>/bin/web</string><key>ProgramArguments</key><array><string>web-worker</string><string>-v</string></array>", &["/bin/web", "-v"], true),
            ("<key>Program</key><string>/bin/web</string><key>ProgramArguments</key><array/>", &["/bin/web"], false),
        ];
        for (body, argv, noted) in cases {
            let draft = import_one(&format!("<key>Label</key><string>a</string>\n{body}\n"));
            let p = &draft.programs[0];
            assert_eq!(p.command, argv, "{body}");
            let note = p.notes.iter().any(|n| n.contains("argv[0] \"web-worker\""));
            assert_eq!(note, noted, "{body}: {:?}", p.notes);
        }
    }

    #[test]
    fn settings_map_to_their_keys() {
        let draft = import_one(&format!(
            "{AGENT}<key>KeepAlive</key><true/>
<key>EnvironmentVariables</key>
<dict>
    <key>PATH</key><string>/usr/local/bin:/usr/bin:/bin</string>
    <key>TEMPLATE</key><string>${{HOME}}/x</string>
</dict>
<key>WorkingDirectory</key><string>/srv/app</string>
<key>UserName</key><string>daemon</string>
<key>GroupName</key><string>daemon</string>
<key>InitGroups</key><true/>
<key>Umask</key><integer>18</integer>
<key>ThrottleInterval</key><integer>5</integer>
<key>ExitTimeOut</key><integer>30</integer>
<key>ServiceDescription</key><string>The example agent</string>
"
        ));
        assert!(draft.dropped.is_empty(), "{:?}", dropped(&draft));
        let p = &draft.programs[0];
        let env: Vec<(&str, &str)> = p
            .environment
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            env,
            [
                ("PATH", "/usr/local/bin:/usr/bin:/bin"),
                ("TEMPLATE", "${HOME}/x")
            ]
        );
        assert_eq!(p.directory.as_deref(), Some("/srv/app"));
        assert_eq!(p.user.as_deref(), Some("daemon"));
        assert_eq!(p.group.as_deref(), Some("daemon"));
        assert_eq!(p.umask, Some(0o22));
        assert_eq!(p.backoff, Some(Backoff::fixed(Duration::from_secs(5))));
        assert_eq!(p.stop_timeout, Some(Duration::from_secs(30)));
        assert_eq!(p.restart, Some(Restart::Always));
        assert_eq!(p.log, None);
    }

    #[test]
    fn zero_exit_timeout_and_init_groups_false_are_dropped() {
        let draft = import_one(&format!(
            "{AGENT}<key>ExitTimeOut</key><integer>0</integer>\n<key>InitGroups</key><false/>\n"
        ));
        assert_eq!(
            dropped(&draft),
            [
                "job.plist:7: ExitTimeOut: 0 means launchd never sends SIGKILL; kelpie always does after stop_timeout",
                "job.plist:8: InitGroups: kelpie always gives the program its user's supplementary groups (getgrouplist)",
            ]
        );
        assert_eq!(draft.programs[0].stop_timeout, None);
    }

    #[test]
    fn standard_out_and_error_become_one_log_file() {
        let out = "<key>StandardOutPath</key><string>/var/log/a.log</string>";
        let err_same = "<key>StandardErrorPath</key><string>/var/log/a.log</string>";
        let err_other = "<key>StandardErrorPath</key><string>/var/log/a.err</string>";
        let cases: Vec<(String, Option<&str>, Vec<&str>)> = vec![
            (String::new(), None, vec![]),
            (format!("{out}{err_same}"), Some("/var/log/a.log"), vec![]),
            (format!("{out}\n{err_other}"), Some("/var/log/a.log"), vec!["StandardErrorPath"]),
            (out.to_string(), Some("/var/log/a.log"), vec![]),
            (err_other.to_string(), Some("/var/log/a.err"), vec![]),
            (
                "<key>WorkingDirectory</key><string>/srv/app</string><key>StandardOutPath</key><string>logs/out.log</string>".to_string(),
                Some("/srv/app/logs/out.log"),
                vec![],
            ),
            (
                "<key>StandardOutPath</key><string>tmp/out.log</string>".to_string(),
                Some("/tmp/out.log"),
                vec![],
            ),
        ];
        for (body, file, lost) in cases {
            let draft = import_one(&format!("{AGENT}{body}\n"));
            let p = &draft.programs[0];
            let got = match &p.log {
                None => None,
                Some(Log::File {
                    file,
                    max_size: None,
                    keep: None,
                }) => Some(file.as_str()),
                Some(other) => panic!("{body}: {other:?}"),
            };
            assert_eq!(got, file, "{body}");
            let keys: Vec<&str> = draft.dropped.iter().map(|d| d.key.as_str()).collect();
            assert_eq!(keys, lost, "{body}");
        }
        let draft = import_one(&format!("{AGENT}{out}\n{err_other}\n"));
        assert_eq!(
            dropped(&draft),
            ["job.plist:8: StandardErrorPath: kelpie keeps one log per program: stderr goes to StandardOutPath's file, /var/log/a.log"]
        );
        let draft = import_one(&format!(
            "{AGENT}<key>WorkingDirectory</key><string>srv</string>\n"
        ));
        assert_eq!(draft.programs[0].directory.as_deref(), Some("/srv"));
    }

    #[test]
    fn keys_without_an_equivalent_are_dropped_with_their_line() {
        let draft = import_one(&format!(
            "{AGENT}<key>StartCalendarInterval</key>
<dict>
    <key>Hour</key><integer>3</integer>
    <key>Minute</key><integer>15</integer>
</dict>
<key>Nice</key><integer>5</integer>
<key>LowPriorityIO</key><false/>
<key>AbandonProcessGroup</key><true/>
<key>Nice2</key><integer>0</integer>
<key>HopefullyExitsLast</key><true/>
"
        ));
        assert_eq!(
            dropped(&draft),
            [
                "job.plist:7: StartCalendarInterval: kelpie has no calendar timers; run the job from cron or a systemd timer",
                "job.plist:12: Nice: kelpie sets no scheduling priority; run the command under `nice -n N`",
                "job.plist:14: AbandonProcessGroup: kelpie stops a program's whole process group; it cannot leave the rest of the group running",
                "job.plist:15: Nice2: not a launchd.plist(5) key kelpie knows",
            ]
        );
        let draft = import_one(&format!("{AGENT}<key>Nice</key><integer>0</integer>\n"));
        assert!(draft.dropped.is_empty(), "{:?}", dropped(&draft));
    }

    #[test]
    fn bad_input_is_one_line_at_its_line() {
        let job = |body: &str| plist(&format!("{AGENT}{body}\n"));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"hello\n".to_vec(), "job.plist:1: not a property list: expected XML (<?xml …><plist>) or a binary plist"),
            (b"{ Label = x; }\n".to_vec(), "job.plist:1: not a property list: expected XML (<?xml …><plist>) or a binary plist (an old-style ASCII plist? `plutil -convert xml1 FILE` turns it into XML)"),
            (b"<plist>\n<dict>\n<key>A</key><string>x</dict>\n</plist>\n".to_vec(), "job.plist:3: not a valid XML property list: invalid XML"),
            (b"<plist>\n<dict>\n<key>A</key>\n<integer>ten</integer>\n</dict></plist>\n".to_vec(), "job.plist:4: not a valid XML property list: <integer> holds something that is not an integer"),
            (b"<plist>\n<dict>\n<key>A</key>\n</dict></plist>\n".to_vec(), "job.plist:3: not a valid XML property list: key \"A\" has no value"),
            (b"<html></html>\n".to_vec(), "job.plist:1: not a valid XML property list: an element a property list does not have"),
            (b"<plist>\n<array><string>x</string></array>\n</plist>\n".to_vec(), "job.plist:2: the top of a launchd plist must be a dictionary, found an array"),
            (plist("<key>Program</key><string>/bin/true</string>\n").into_bytes(), "job.plist:4: no Label: launchd needs one to name the job"),
            (plist("<key>Label</key><integer>1</integer>\n").into_bytes(), "job.plist:5: Label must be a string, found an integer"),
            (plist("<key>Label</key><string></string>\n").into_bytes(), "job.plist:5: Label is empty"),
            (plist("<key>Label</key><string>...</string><key>Program</key><string>/bin/true</string>\n").into_bytes(), "job.plist:5: Label \"...\" has nothing kelpie can use as a program name"),
            (plist("<key>Label</key><string>a</string>\n").into_bytes(), "job.plist:4: neither Program nor ProgramArguments: nothing to run"),
            (plist("<key>Label</key><string>a</string>\n<key>BundleProgram</key><string>Contents/MacOS/a</string>\n").into_bytes(), "job.plist:4: neither Program nor ProgramArguments: nothing to run (BundleProgram is resolved by launchd inside an app bundle; give the executable's path as Program)"),
            (plist("<key>Label</key><string>a</string>\n<key>ProgramArguments</key><string>/bin/true</string>\n").into_bytes(), "job.plist:6: ProgramArguments must be an array of strings, found a string"),
            (plist("<key>Label</key><string>a</string>\n<key>ProgramArguments</key><array><string>/bin/sleep</string><integer>1</integer></array>\n").into_bytes(), "job.plist:6: ProgramArguments item 2 must be a string, found an integer"),
            (plist("<key>Label</key><string>a</string>\n<key>ProgramArguments</key><array/>\n").into_bytes(), "job.plist:6: ProgramArguments is empty and there is no Program"),
            (plist("<key>Label</key><string>a</string>\n<key>Program</key><true/>\n").into_bytes(), "job.plist:6: Program must be a string, found a boolean"),
            (job("<key>KeepAlive</key><string>yes</string>").into_bytes(), "job.plist:7: KeepAlive must be a boolean or a dictionary, found a string"),
            (job("<key>KeepAlive</key>\n<dict><key>SuccessfulExit</key><integer>0</integer></dict>").into_bytes(), "job.plist:8: KeepAlive.SuccessfulExit must be a boolean, found an integer"),
            (job("<key>RunAtLoad</key><string>true</string>").into_bytes(), "job.plist:7: RunAtLoad must be a boolean, found a string"),
            (job("<key>EnvironmentVariables</key><array/>").into_bytes(), "job.plist:7: EnvironmentVariables must be a dictionary of strings, found an array"),
            (job("<key>EnvironmentVariables</key><dict>\n<key>PORT</key><integer>80</integer></dict>").into_bytes(), "job.plist:8: EnvironmentVariables.PORT must be a string, found an integer"),
            (job("<key>EnvironmentVariables</key><dict>\n<key>A=B</key><string>x</string></dict>").into_bytes(), "job.plist:8: invalid environment variable name \"A=B\""),
            (job("<key>Umask</key><integer>600</integer>").into_bytes(), "job.plist:7: Umask 600 is not a umask: expected 0 to 511 (octal 000 to 777)"),
            (job("<key>Umask</key><string>022</string>").into_bytes(), "job.plist:7: Umask must be an integer (the mask in decimal, 18 for 022), found a string"),
            (job("<key>ThrottleInterval</key><integer>-1</integer>").into_bytes(), "job.plist:7: ThrottleInterval must not be negative, found -1"),
            (job("<key>ExitTimeOut</key><real>1.5</real>").into_bytes(), "job.plist:7: ExitTimeOut must be an integer (seconds), found a real number"),
            (job("<key>ExitTimeOut</key><integer>999999999999</integer>").into_bytes(), "job.plist:7: ExitTimeOut 999999999999 is longer than kelpie's longest duration (10 years)"),
            (job("<key>WorkingDirectory</key><string></string>").into_bytes(), "job.plist:7: WorkingDirectory is empty"),
            (job("<key>RunAtLoad</key><true/>\n<key>RunAtLoad</key><false/>").into_bytes(), "job.plist:8: key \"RunAtLoad\" is given twice in one dictionary (first at line 7)"),
            (job(&format!("<key>Deep</key>\n{}{}", "<array>".repeat(200), "</array>".repeat(200))).into_bytes(), "job.plist:8: nested more than 64 levels deep"),
            (b"<plist>\n<dict>\n<key>Label</key><string>caf\xe9</string>\n".to_vec(), "job.plist:3: not valid UTF-8 text (an XML property list is UTF-8; a binary one starts with \"bplist\")"),
        ];
        for (bytes, want) in cases {
            let err = import_texts(&[("job.plist", &bytes)])
                .err()
                .unwrap_or_else(|| panic!("accepted {}", String::from_utf8_lossy(&bytes)));
            assert_eq!(err.to_string(), want, "{}", String::from_utf8_lossy(&bytes));
            assert_eq!(err.code, super::super::EXIT_DATAERR);
        }
        let err = import_texts(&[("job.plist", b"bplist00 not really")])
            .err()
            .unwrap_or_else(|| panic!("accepted a broken binary plist"));
        assert_eq!(
            err.to_string(),
            "job.plist: not a valid binary property list: the file ends before the property list does"
        );
    }

    #[test]
    fn any_cut_of_a_plist_is_an_error_or_a_job_never_a_panic() {
        let xml = plist(&format!(
            "{AGENT}<key>KeepAlive</key><dict><key>Crashed</key><true/></dict>\n<!-- a <key>comment</key> -->\n<key>EnvironmentVariables</key><dict><key>A&amp;B</key><string><![CDATA[x<y]]></string></dict>\n"
        ));
        let value = Value::from_reader_xml(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let mut binary = Vec::new();
        value
            .to_writer_binary(&mut binary)
            .unwrap_or_else(|e| panic!("{e}"));
        let file = Path::new("job.plist");
        for bytes in [xml.as_bytes(), binary.as_slice()] {
            for end in 0..=bytes.len() {
                let cut = &bytes[..end];
                if let Ok((value, lines)) = parse_plist(file, cut) {
                    let _ = Plist { file, lines }.job(&value);
                }
            }
            let whole = parse_plist(file, bytes).unwrap_or_else(|e| panic!("{e}"));
            assert!(Plist {
                file,
                lines: whole.1
            }
            .job(&whole.0)
            .is_ok());
        }
    }

    #[test]
    fn a_binary_plist_reads_like_its_xml() {
        let xml = plist(&format!(
            "{AGENT}<key>KeepAlive</key><dict><key>SuccessfulExit</key><false/></dict>\n<key>EnvironmentVariables</key><dict><key>A</key><string>1</string></dict>\n<key>StartInterval</key><integer>60</integer>\n"
        ));
        let value = Value::from_reader_xml(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let mut binary = Vec::new();
        value
            .to_writer_binary(&mut binary)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(binary.starts_with(b"bplist00"));
        let from_xml =
            import_texts(&[("job.plist", xml.as_bytes())]).unwrap_or_else(|e| panic!("{e}"));
        let from_binary = import_texts(&[("job.plist", &binary)]).unwrap_or_else(|e| panic!("{e}"));
        let (a, b) = (&from_xml.programs[0], &from_binary.programs[0]);
        assert_eq!(b.origin, Some(Origin::new("job.plist", 0)));
        assert_eq!(
            Program {
                origin: None,
                ..a.clone()
            },
            Program {
                origin: None,
                ..b.clone()
            }
        );
        assert_eq!(
            dropped(&from_binary),
            ["job.plist: StartInterval: kelpie has no interval timers; run the job from cron or a systemd timer"]
        );
        assert_eq!(from_xml.dropped[0].origin.line, 9);
    }

    #[test]
    fn many_files_are_programs_in_argument_order_with_unique_labels() {
        let a = plist("<key>Label</key><string>com.x app</string>\n<key>Program</key><string>/bin/a</string>\n");
        let b = plist("<key>Label</key><string>com.x-app</string>\n<key>Program</key><string>/bin/b</string>\n<key>Sockets</key><dict/>\n");
        let c = plist(
            "<key>Label</key><string>zeta</string>\n<key>Program</key><string>/bin/c</string>\n",
        );
        let draft = import_texts(&[
            ("z.plist", c.as_bytes()),
            ("a.plist", a.as_bytes()),
            ("b.plist", b.as_bytes()),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = draft.programs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["zeta", "com.x-app", "com.x-app-2"]);
        assert_eq!(draft.dropped.len(), 1);
        assert_eq!(draft.dropped[0].program.as_deref(), Some("com.x-app-2"));
        assert_eq!(draft.dropped[0].origin, Origin::new("b.plist", 7));
        assert!(draft.programs[1].notes[0].contains("\"com.x app\" is not a kelpie name"));

        let err = import_texts(&[("a.plist", c.as_bytes()), ("b.plist", c.as_bytes())])
            .err()
            .unwrap_or_else(|| panic!("accepted a label twice"));
        assert_eq!(
            err.to_string(),
            "b.plist:5: Label \"zeta\" is also the Label of a.plist: launchd loads only one job per label"
        );
    }
}

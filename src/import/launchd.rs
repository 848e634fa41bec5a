//! launchd property lists (`~/Library/LaunchAgents/*.plist`,
//! `/Library/LaunchDaemons/*.plist`): one job per file, one program per
//! job, in the order the files are given. XML and binary plists are read
//! by the `plist` crate (`read`), after `bounds` and `key_lines` have
//! checked their size; `key_lines` also finds each XML key's line for
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
mod read;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plist::Value;

use self::key_lines::KeyLines;
use self::read::read_plist;
use super::draft::{self, program_name, Backoff, Draft, Log, Origin, Program, Restart};
use super::{Context, ImportError};
use crate::limits::{RlimitResource, UNLIMITED};

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

/// The keys of `SoftResourceLimits` and `HardResourceLimits`
/// (launchd.plist(5)) and the rlimits they set, in the same units.
const RESOURCE_LIMITS: &[(&str, RlimitResource)] = &[
    ("Core", RlimitResource::Core),
    ("CPU", RlimitResource::Cpu),
    ("Data", RlimitResource::Data),
    ("FileSize", RlimitResource::Fsize),
    ("MemoryLock", RlimitResource::Memlock),
    ("NumberOfFiles", RlimitResource::Nofile),
    ("NumberOfProcesses", RlimitResource::Nproc),
    ("ResidentSetSize", RlimitResource::Rss),
    ("Stack", RlimitResource::Stack),
];

/// macOS's `RLIM_INFINITY` (2^63 - 1): a limit this large is no limit.
const MACOS_RLIM_INFINITY: u64 = i64::MAX as u64;

/// One resource's limits as the two dictionaries give them.
struct ResourceLimit {
    /// launchd's name for it (`NumberOfFiles`).
    key: &'static str,
    soft: Option<u64>,
    hard: Option<u64>,
}

/// A limit for messages: a number, or `unlimited`.
fn limit_text(amount: u64) -> String {
    if amount == UNLIMITED {
        "unlimited".into()
    } else {
        amount.to_string()
    }
}

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
            limits: BTreeMap::new(),
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
    /// `SoftResourceLimits` and `HardResourceLimits` together: kelpie's
    /// one value per rlimit is decided once both are read.
    limits: BTreeMap<RlimitResource, ResourceLimit>,
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
            "SoftResourceLimits" | "HardResourceLimits" => self.resource_limits(key, value)?,
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

    /// One of the two limit dictionaries, read into `limits`.
    fn resource_limits(&mut self, key: &str, value: &Value) -> Result<(), ImportError> {
        let p = self.p;
        let Value::Dictionary(limits) = value else {
            return Err(p.error(
                &[key],
                format!(
                    "{key} must be a dictionary of integers, found {}",
                    kind(value)
                ),
            ));
        };
        for (name, v) in limits.iter() {
            let path = [key, name.as_str()];
            let Some(&(launchd_name, resource)) = RESOURCE_LIMITS.iter().find(|(n, _)| n == name)
            else {
                self.lose(&path, "not a resource limit launchd.plist(5) names");
                continue;
            };
            let Value::Integer(n) = v else {
                return Err(p.error(
                    &path,
                    format!("{key}.{name} must be an integer, found {}", kind(v)),
                ));
            };
            let amount = match n.as_unsigned() {
                Some(n) if n >= MACOS_RLIM_INFINITY => UNLIMITED,
                Some(n) => n,
                None => {
                    return Err(p.error(
                        &path,
                        format!("{key}.{name} must not be negative, found {n}"),
                    ))
                }
            };
            let limit = self.limits.entry(resource).or_insert(ResourceLimit {
                key: launchd_name,
                soft: None,
                hard: None,
            });
            if key == "SoftResourceLimits" {
                limit.soft = Some(amount);
            } else {
                limit.hard = Some(amount);
            }
        }
        Ok(())
    }

    /// Each resource's soft and hard limit as kelpie's one value, which
    /// `setrlimit` sets as both. launchd changes only the limits it is
    /// given (the other stays as inherited); the translation never lowers
    /// a hard limit the job had, and says where it differs.
    fn finish_limits(&mut self) {
        for (resource, limit) in std::mem::take(&mut self.limits) {
            let (key, r) = (limit.key, resource.name());
            let soft_path = ["SoftResourceLimits", key];
            let set = match (limit.soft, limit.hard) {
                (Some(soft), Some(hard)) if soft == hard => Some(soft),
                (Some(soft), Some(hard)) if soft < hard => {
                    self.lose(&soft_path, format!(
                        "kelpie sets one value as both the soft and the hard limit: rlimits.{r} = {} keeps the hard limit, so the soft limit is {} rather than {}",
                        limit_text(hard), limit_text(hard), limit_text(soft)
                    ));
                    Some(hard)
                }
                (Some(soft), Some(hard)) => {
                    self.lose(&soft_path, format!(
                        "{} is above HardResourceLimits.{key} ({}): setrlimit refuses that, so launchd sets neither limit, and neither is carried over",
                        limit_text(soft), limit_text(hard)
                    ));
                    None
                }
                // An unlimited soft limit needs an unlimited hard one.
                (Some(UNLIMITED), None) => Some(UNLIMITED),
                (Some(soft), None) => {
                    self.lose(&soft_path, format!(
                        "kelpie sets one value as both the soft and the hard limit, so rlimits.{r} = {soft} would also lower the hard limit, which launchd leaves as inherited; add it by hand if {soft} suits as both"
                    ));
                    None
                }
                (None, Some(hard)) => {
                    self.note(format!(
                        "HardResourceLimits.{key} = {0} became rlimits.{r} = {0}, which sets the soft limit to {0} too; launchd left the soft limit as inherited",
                        limit_text(hard)
                    ));
                    Some(hard)
                }
                (None, None) => None,
            };
            if let Some(amount) = set {
                if resource == RlimitResource::Rss {
                    self.note("Linux does not enforce rlimits.rss (setrlimit(2)); memory_max or memory_restart bound a program's memory");
                }
                self.program.rlimits.insert(resource, amount);
            }
        }
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
        self.finish_limits();
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
mod tests;

//! One `[program:x]` section as one kelpie program: supervisord's keys,
//! their value grammars (booleans `true/false/yes/no/on/off/1/0`, whole
//! numbers, sizes `50MB` in 1024s, octal umasks, signal names or numbers)
//! and their expansions, in the order supervisord reads them, so each key
//! sees the names it would: `%(process_num)` only in `environment`,
//! `process_name`, `directory`, the log keys and `command`, and a
//! program's own environment as `%(ENV_X)s` only after `environment`.

use std::path::Path;
use std::time::Duration;

use super::expand::{expand, literal, render, Names, Seg, Value};
use super::ini::{Entry, Section};
use super::instances::{self, Numbering};
use super::logs::{self, Dest, Given, Stream};
use super::values::{bad, boolean, byte_size, count, integer, octal, seconds};
use super::words::{key_value_pairs, split_command};
use crate::import::draft::{Program, Restart};
use crate::import::{ImportError, Origin};

/// What every program shares: the environment `%(ENV_X)s` reads, the
/// `[supervisord]` keys programs inherit, and where relative paths start.
pub struct Setup<'a> {
    /// The environment of `kelpie import` plus `[supervisord] environment`.
    pub env: &'a std::collections::BTreeMap<String, String>,
    /// `[supervisord] environment`, given to every program.
    pub supervisord_env: &'a [(String, String)],
    /// Relative paths are taken from here, and `base_label` says why.
    pub base: &'a Path,
    pub base_label: &'a str,
    /// `[supervisord] directory` and `umask`, when supervisord applies
    /// them (it daemonizes): what programs without their own inherit.
    pub directory: Option<&'a str>,
    pub umask: Option<u32>,
    pub home: Option<&'a str>,
    pub host: &'a str,
}

/// A source key with no kelpie equivalent.
pub type Dropped = (Origin, String, String);

pub struct Translated {
    /// The name after `program:`.
    pub name: String,
    pub priority: i64,
    /// `None`: the section runs no process (`numprocs = 0`).
    pub program: Option<Program>,
    pub dropped: Vec<Dropped>,
}

/// The most instances kelpie runs of one program.
const MAX_INSTANCES: u32 = 10_000;

/// Keys that change nothing under kelpie at their default value, and why
/// they are not carried over otherwise.
const EVENT_KEYS: &[(&str, &str)] = &[
    ("stdout_events_enabled", "kelpie has no event notifications for program output (supervisord's event listeners)"),
    ("stderr_events_enabled", "kelpie has no event notifications for program output (supervisord's event listeners)"),
    ("stdout_syslog", "kelpie does not write program output to syslog; under systemd the inherited output goes to the journal"),
    ("stderr_syslog", "kelpie does not write program output to syslog; under systemd the inherited output goes to the journal"),
];
const CAPTURE_KEYS: &[&str] = &["stdout_capture_maxbytes", "stderr_capture_maxbytes"];

/// Every key this module reads.
const KNOWN: &[&str] = &[
    "command",
    "process_name",
    "numprocs",
    "numprocs_start",
    "priority",
    "autostart",
    "startsecs",
    "startretries",
    "autorestart",
    "exitcodes",
    "stopsignal",
    "stopwaitsecs",
    "stopasgroup",
    "killasgroup",
    "user",
    "redirect_stderr",
    "stdout_logfile",
    "stdout_logfile_maxbytes",
    "stdout_logfile_backups",
    "stderr_logfile",
    "stderr_logfile_maxbytes",
    "stderr_logfile_backups",
    "environment",
    "directory",
    "umask",
    "serverurl",
];

/// A section's entries with `[DEFAULT]`'s as fallbacks.
struct Keys<'a> {
    entries: Vec<&'a Entry>,
}

impl<'a> Keys<'a> {
    fn new(section: &'a Section, defaults: &'a [Entry]) -> Self {
        let mut entries: Vec<&Entry> = section.entries.iter().collect();
        for entry in defaults {
            if section.get(&entry.key).is_none() {
                entries.push(entry);
            }
        }
        Keys { entries }
    }

    fn get(&self, key: &str) -> Option<&'a Entry> {
        self.entries.iter().copied().find(|e| e.key == key)
    }
}

/// Expands a value with `names`, `%(here)s` being the entry's file's
/// directory.
fn segs(entry: &Entry, names: &mut Names) -> Result<Vec<Seg>, ImportError> {
    names.set("here", Value::Text(entry.here.display().to_string()));
    expand(&entry.value, names).map_err(|why| bad(entry, why))
}

/// A single value: one that names the process number is read for the
/// first process (`first`), as kelpie has one such value per program.
fn text(entry: &Entry, names: &mut Names, first: i64) -> Result<String, ImportError> {
    let segs = segs(entry, names)?;
    Ok(literal(&segs).unwrap_or_else(|| render(&segs, first)))
}

/// Makes a path that does not start at `/` start at `base`.
fn absolute(segs: Vec<Seg>, base: &Path) -> (Vec<Seg>, bool) {
    let relative = match segs.first() {
        Some(Seg::Lit(t)) => !t.starts_with('/'),
        Some(Seg::Num(_)) => true,
        None => false,
    };
    if !relative {
        return (segs, false);
    }
    let mut out = vec![Seg::Lit(format!("{}/", base.display()))];
    for seg in segs {
        match (out.last_mut(), seg) {
            (Some(Seg::Lit(last)), Seg::Lit(t)) => last.push_str(&t),
            (_, seg) => out.push(seg),
        }
    }
    (out, true)
}

/// Python's `os.path.expanduser` on a log path.
fn expand_user(path: &str, home: Option<&str>) -> String {
    if path == "~" || path.starts_with("~/") {
        if let Some(home) = home {
            return format!("{home}{}", &path[1..]);
        }
        return path.to_string();
    }
    if let Some(rest) = path.strip_prefix('~') {
        let (user, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if let Some(found) = crate::os_lookup::resolve_user(user) {
            return format!("{}{tail}", found.dir.display());
        }
    }
    path.to_string()
}

struct Reader<'a> {
    keys: Keys<'a>,
    names: Names,
    first_process: i64,
    dropped: Vec<Dropped>,
    notes: Vec<String>,
}

impl<'a> Reader<'a> {
    fn get(&self, key: &str) -> Option<&'a Entry> {
        self.keys.get(key)
    }

    fn text(&mut self, key: &str) -> Result<Option<(&'a Entry, String)>, ImportError> {
        match self.get(key) {
            Some(entry) => Ok(Some((
                entry,
                text(entry, &mut self.names, self.first_process)?,
            ))),
            None => Ok(None),
        }
    }

    fn boolean(&mut self, key: &str) -> Result<Option<bool>, ImportError> {
        match self.text(key)? {
            Some((entry, value)) => boolean(entry, &value).map(Some),
            None => Ok(None),
        }
    }

    fn integer(&mut self, key: &str) -> Result<Option<i64>, ImportError> {
        match self.text(key)? {
            Some((entry, value)) => integer(entry, &value).map(Some),
            None => Ok(None),
        }
    }

    fn seconds(&mut self, key: &str) -> Result<Option<Duration>, ImportError> {
        match self.text(key)? {
            Some((entry, value)) => seconds(entry, &value).map(Some),
            None => Ok(None),
        }
    }

    fn drop(&mut self, entry: &Entry, why: impl Into<String>) {
        self.dropped
            .push((entry.origin.clone(), entry.key.clone(), why.into()));
    }
}

pub fn translate(
    section: &Section,
    defaults: &[Entry],
    group: Option<&str>,
    setup: &Setup<'_>,
) -> Result<Translated, ImportError> {
    let name = section
        .name
        .split_once(':')
        .map(|(_, n)| n.trim())
        .unwrap_or_default()
        .to_string();
    let header = || Origin::new(&section.origin.file, section.origin.line);
    if name.is_empty() || name.contains([' ', ':', '/']) {
        return Err(ImportError::data(
            header(),
            format!(
                "[{}]: invalid program name {name:?} (supervisord refuses an empty name or one with a space, : or /)",
                section.name
            ),
        ));
    }
    let mut names = Names::default();
    for (var, value) in setup.env {
        names.set(&format!("ENV_{var}"), Value::Text(value.clone()));
    }
    names.set("program_name", Value::Text(name.clone()));
    names.set(
        "group_name",
        Value::Text(group.unwrap_or(&name).to_string()),
    );
    names.set("host_node_name", Value::Text(setup.host.to_string()));
    let mut r = Reader {
        keys: Keys::new(section, defaults),
        names,
        first_process: 0,
        dropped: Vec::new(),
        notes: Vec::new(),
    };
    let mut program = Program {
        origin: Some(section.origin.clone()),
        ..Program::default()
    };

    let priority = r.integer("priority")?.unwrap_or(999);
    program.autostart = r.boolean("autostart")?;
    let autorestart = match r.text("autorestart")? {
        Some((entry, value)) => Some(match value.trim().to_ascii_lowercase().as_str() {
            "unexpected" => Restart::OnFailure,
            _ => {
                if boolean(entry, &value).map_err(|_| {
                    bad(entry, format!("{value:?} is not true, false or unexpected"))
                })? {
                    Restart::Always
                } else {
                    Restart::Never
                }
            }
        }),
        // supervisord's default is `unexpected`, and kelpie's is
        // `always`: left out, a program that exits 0 (or with another code
        // of `exitcodes`) would be restarted forever where supervisord let
        // it stay EXITED.
        None => Some(Restart::OnFailure),
    };
    program.restart = autorestart;
    program.start_seconds = r.seconds("startsecs")?;
    if let Some((entry, value)) = r.text("startretries")? {
        let n = count(entry, &value)?;
        let n = u32::try_from(n).map_err(|_| bad(entry, format!("{n} is too large")))?;
        program.max_restarts = Some(n);
        r.notes.push(format!(
            "startretries = {n} became max_restarts = {n}: supervisord gives up after {n} failed starts in a row (a run shorter than startsecs) and never limits restarts after longer runs; kelpie fails the program after {n} restarts of any kind within restart_window (60s)"
        ));
    }
    if let Some((entry, value)) = r.text("stopsignal")? {
        let signal = crate::signals::parse(&value)
            .ok_or_else(|| bad(entry, format!("{value:?} is not a signal")))?;
        let short = crate::signals::short_name(signal);
        if matches!(short, "KILL" | "STOP") {
            r.drop(
                entry,
                format!("kelpie refuses {short} as stop_signal (it cannot be handled); it sends TERM, then KILL after stop_timeout"),
            );
        } else {
            program.stop_signal = Some(short.to_string());
        }
    }
    program.stop_timeout = r.seconds("stopwaitsecs")?;
    let stopasgroup = r.boolean("stopasgroup")?;
    let killasgroup = r.boolean("killasgroup")?;
    if let (Some(true), Some(false), Some(entry)) = (stopasgroup, killasgroup, r.get("killasgroup"))
    {
        return Err(bad(
            entry,
            "supervisord refuses stopasgroup = true with killasgroup = false",
        ));
    }
    let alone: Vec<&str> = [("stopasgroup", stopasgroup), ("killasgroup", killasgroup)]
        .into_iter()
        .filter(|(_, v)| *v == Some(false))
        .map(|(k, _)| k)
        .collect();
    if !alone.is_empty() {
        r.notes.push(format!(
            "{} = false: supervisord signals only the program's own process; kelpie signals its whole process group, so children get the stop signal (and SIGKILL) too",
            alone.join(" and ")
        ));
    }
    if let Some((entry, value)) = r.text("exitcodes")? {
        let mut codes: Vec<u8> = Vec::new();
        if !value.trim().is_empty() {
            for part in value.split(',') {
                let n = integer(entry, part)?;
                let code = u8::try_from(n)
                    .map_err(|_| bad(entry, format!("{n} is not an exit code (0–255)")))?;
                if !codes.contains(&code) {
                    codes.push(code);
                }
            }
        }
        if codes.is_empty() {
            if autorestart == Some(Restart::OnFailure) {
                program.restart = Some(Restart::Always);
                r.notes.push(
                    "exitcodes is empty: every exit is unexpected, so autorestart = unexpected restarts always".into(),
                );
            } else {
                r.notes.push(
                    "exitcodes is empty; kelpie needs at least one success code, so success_codes stays [0]".into(),
                );
            }
        } else {
            program.success_codes = Some(codes);
        }
    }
    let redirect_stderr = r.boolean("redirect_stderr")?.unwrap_or(false);
    let numprocs = match r.text("numprocs")? {
        Some((entry, value)) => {
            let n = count(entry, &value)?;
            if n > u64::from(MAX_INSTANCES) {
                return Err(bad(
                    entry,
                    format!("{n}: kelpie runs at most {MAX_INSTANCES} instances of a program"),
                ));
            }
            if n == 0 {
                r.drop(entry, "numprocs = 0: supervisord runs no process of this program, so there is nothing to carry over");
                return Ok(Translated {
                    name,
                    priority,
                    program: None,
                    dropped: r.dropped,
                });
            }
            n as u32
        }
        None => 1,
    };
    let start = r.integer("numprocs_start")?.unwrap_or(0);
    let numbering = Numbering {
        start,
        count: numprocs,
    };
    if numprocs > 1 {
        program.instances = Some(numprocs);
    }
    if let Some((entry, value)) = r.text("user")? {
        if value.trim().is_empty() {
            return Err(bad(entry, "is empty"));
        }
        program.user = Some(value.trim().to_string());
    }
    program.umask = match r.text("umask")? {
        Some((entry, value)) => Some(octal(entry, &value)?),
        None => setup.umask,
    };
    if let Some((entry, value)) = r.text("serverurl")? {
        if !value.trim().eq_ignore_ascii_case("auto") {
            r.drop(entry, "kelpie has no XML-RPC server, so SUPERVISOR_SERVER_URL is not set; its control socket is docs/control.md");
        }
    }
    for key in CAPTURE_KEYS {
        if let Some((entry, value)) = r.text(key)? {
            if byte_size(entry, &value)? != 0 {
                r.drop(entry, "kelpie has no process communication events (supervisord's capture mode for event listeners)");
            }
        }
    }
    for (key, why) in EVENT_KEYS {
        if let Some(true) = r.boolean(key)? {
            if let Some(entry) = r.get(key) {
                r.drop(entry, *why);
            }
        }
    }

    // From here on, values may name the process number.
    let process_num = if numprocs > 1 {
        Value::ProcessNum
    } else {
        Value::Int(start)
    };
    r.names.set("process_num", process_num);
    r.first_process = start;
    r.names.set("numprocs", Value::Int(i64::from(numprocs)));
    let process_name = match r.get("process_name") {
        Some(entry) => {
            if entry.value.contains([' ', ':', '/']) {
                return Err(bad(
                    entry,
                    format!(
                        "{:?}: supervisord refuses a space, : or / in a process name",
                        entry.value
                    ),
                ));
            }
            Some((entry, segs(entry, &mut r.names)?))
        }
        None => None,
    };
    let has_num = process_name
        .as_ref()
        .is_some_and(|(entry, _)| entry.value.contains("%(process_num)"));
    if numprocs > 1 && !has_num {
        let origin = process_name
            .as_ref()
            .map(|(e, _)| e.origin.clone())
            .or_else(|| r.get("numprocs").map(|e| e.origin.clone()))
            .unwrap_or_else(header);
        return Err(ImportError::data(
            origin,
            format!("numprocs = {numprocs} needs %(process_num) in process_name (supervisord refuses it otherwise)"),
        ));
    }

    let mut environment: Vec<(String, Vec<Seg>)> = setup
        .supervisord_env
        .iter()
        .map(|(k, v)| (k.clone(), vec![Seg::Lit(v.clone())]))
        .collect();
    if let Some(entry) = r.get("environment") {
        let value = segs(entry, &mut r.names)?;
        let pairs = key_value_pairs(&value).map_err(|why| bad(entry, why))?;
        for separator in &pairs.odd_separators {
            r.notes.push(format!(
                "environment: supervisord skips {separator:?} where a comma belongs (quote a value with a blank); read as supervisord reads it"
            ));
        }
        for pair in pairs.pairs {
            if pair.key.is_empty() || pair.key.contains(['=', '\0']) {
                return Err(bad(entry, format!("invalid variable name {:?}", pair.key)));
            }
            let value = match literal(&pair.value) {
                Some(text) => Value::Text(text),
                None => Value::Segs(pair.value.clone()),
            };
            r.names.set(&format!("ENV_{}", pair.key), value);
            match environment.iter_mut().find(|(k, _)| *k == pair.key) {
                Some(existing) => existing.1 = pair.value,
                None => environment.push((pair.key, pair.value)),
            }
        }
    }

    let mut directory = match r.get("directory") {
        Some(entry) => {
            let (dir, relative) = absolute(segs(entry, &mut r.names)?, setup.base);
            if relative {
                r.notes.push(format!(
                    "directory {:?} is relative: taken from {} ({})",
                    entry.value,
                    setup.base.display(),
                    setup.base_label
                ));
            }
            Some(dir)
        }
        None => setup.directory.map(|d| vec![Seg::Lit(d.to_string())]),
    };
    if directory.as_ref().is_some_and(|d| d.is_empty()) {
        directory = None;
    }

    let stdout = stream(&mut r, "stdout", numbering, setup)?;
    let stderr = stream(&mut r, "stderr", numbering, setup)?;
    let plan = logs::plan(&stdout, &stderr, redirect_stderr);
    program.log = plan.log;
    r.notes.extend(plan.notes);
    r.dropped.extend(plan.dropped);

    let Some(entry) = r.get("command") else {
        return Err(ImportError::data(
            header(),
            format!("[{}] has no command", section.name),
        ));
    };
    let mut argv = split_command(&segs(entry, &mut r.names)?).map_err(|why| bad(entry, why))?;
    let Some(first) = argv.first_mut() else {
        return Err(bad(entry, "is empty"));
    };
    let bare = literal(first).is_some_and(|t| !t.contains('/'));
    if directory.is_none() && !bare {
        let (path, relative) = absolute(std::mem::take(first), setup.base);
        *first = path;
        if relative {
            r.notes.push(format!(
                "the command's path is relative and no directory is set: taken from {} ({})",
                setup.base.display(),
                setup.base_label
            ));
        }
    }

    let out = instances::translate(&argv, directory.as_deref(), &environment, numbering);
    program.command = out.command;
    program.directory = out.directory;
    program.environment = out.environment;
    program.instance_environment = out.instance_environment;
    r.notes.extend(out.notes);
    if let Some(entry) = r.get("environment") {
        for (key, why) in out.unset {
            let origin = entry.origin.clone();
            r.dropped.push((origin, format!("environment {key}"), why));
        }
    }

    if let Some((entry, segs)) = &process_name {
        let kelpie = crate::import::draft::program_name(&name).unwrap_or_else(|| name.clone());
        let last = start + i64::from(numprocs) - 1;
        if numprocs > 1 {
            r.notes.push(format!(
                "process_name {:?}: supervisord's processes {} … {} are kelpie's instances {kelpie}:0 … {kelpie}:{} (KELPIE_INSTANCE 0 … {})",
                entry.value,
                render(segs, start),
                render(segs, last),
                numprocs - 1,
                numprocs - 1
            ));
        } else if render(segs, start) != name {
            r.notes.push(format!(
                "process_name {:?}: kelpie names the process after the program",
                render(segs, start)
            ));
        }
    }

    for entry in &r.keys.entries {
        let known = KNOWN.contains(&entry.key.as_str())
            || CAPTURE_KEYS.contains(&entry.key.as_str())
            || EVENT_KEYS.iter().any(|(k, _)| *k == entry.key);
        if !known {
            r.dropped.push((
                entry.origin.clone(),
                entry.key.clone(),
                "not a key of supervisord's [program:x] (supervisord ignores it)".into(),
            ));
        }
    }
    program.notes = r.notes;
    Ok(Translated {
        name,
        priority,
        program: Some(program),
        dropped: r.dropped,
    })
}

/// One stream's log keys.
fn stream(
    r: &mut Reader<'_>,
    which: &str,
    numbering: Numbering,
    setup: &Setup<'_>,
) -> Result<Stream, ImportError> {
    let mut out = Stream::auto();
    let key = format!("{which}_logfile");
    if let Some(entry) = r.get(&key) {
        let value = segs(entry, &mut r.names)?;
        let mut path = match literal(&value) {
            Some(text) => text,
            None => {
                let first = render(&value, numbering.start);
                let last = render(&value, numbering.start + i64::from(numbering.count) - 1);
                r.notes.push(format!(
                    "{key} gives each process its own file ({first:?} … {last:?}); kelpie writes one log per program, so all its instances write {first:?}"
                ));
                first
            }
        };
        if path.eq_ignore_ascii_case("syslog") {
            r.drop(
                entry,
                "kelpie does not write program output to syslog; under systemd the inherited output goes to the journal",
            );
            return Ok(out);
        }
        out.dest = Dest::parse(&path);
        if let Dest::File(_) = out.dest {
            path = expand_user(&path, setup.home);
            if !path.starts_with('/') {
                r.notes.push(format!(
                    "{key} {path:?} is relative: taken from {} ({})",
                    setup.base.display(),
                    setup.base_label
                ));
                path = format!("{}/{path}", setup.base.display());
            }
            out.dest = Dest::File(path.clone());
        }
        out.logfile = Some(Given {
            value: path,
            origin: entry.origin.clone(),
            key: key.clone(),
        });
    }
    let key = format!("{which}_logfile_maxbytes");
    if let Some((entry, value)) = r.text(&key)? {
        out.maxbytes = Some(Given {
            value: byte_size(entry, &value)?,
            origin: entry.origin.clone(),
            key,
        });
    }
    let key = format!("{which}_logfile_backups");
    if let Some((entry, value)) = r.text(&key)? {
        let n = count(entry, &value)?;
        out.backups = Some(Given {
            value: u32::try_from(n).unwrap_or(u32::MAX),
            origin: entry.origin.clone(),
            key,
        });
    }
    Ok(out)
}

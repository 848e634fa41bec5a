//! supervisord `.conf` files. The first file is the main one: its
//! `[include] files =` globs (relative to its directory) are read after
//! it, in sorted order, and further files on the command line after those,
//! all into one set of sections as supervisord merges them. Then:
//!
//! - `[program:x]` → `[program.x]` (`program`: the key mapping);
//! - `[group:x] programs = a,b` → `[group.x]` with those members (kelpie's
//!   default one_for_one strategy restarts only the program that exited,
//!   as supervisord does; its groups are for naming and control);
//! - `[supervisord]`: `environment` goes to every program, and
//!   `directory`/`umask` to those without their own when supervisord would
//!   daemonize; its other keys, the XML-RPC and supervisorctl sections,
//!   event listeners and FastCGI programs are reported, with why.
//!
//! Programs come out in supervisord's start order: by group priority and
//! name, then by program priority and name (its sort).
//!
//! Relative paths: supervisord takes them from its working directory,
//! which the files do not say. kelpie import takes them from
//! `[supervisord] directory` when supervisord changes there (it
//! daemonizes), else from the main file's directory (its `%(here)s`), and
//! says so at each program where that happened.
//!
//! - `ini`: the file syntax; `glob`: `[include]` patterns
//! - `expand`: `%(name)s`; `words`: `command` and `environment` lexing
//! - `program`: one `[program:x]`; `logs`: its two logs as one;
//!   `values`: booleans, numbers, sizes
//! - `instances`: `numprocs` and `%(process_num)` as kelpie instances

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::draft::{dedupe_names, program_name, Draft, Group};
use super::source::read_text;
use super::{Context, ImportError, Origin};

mod expand;
mod glob;
mod ini;
mod instances;
mod logs;
mod program;
#[cfg(test)]
mod tests;
mod values;
mod words;

use expand::{expand, literal, Names, Value};
use ini::{Entry, Ini, Section};

/// Keys of `[supervisord]` with no kelpie equivalent, and why.
const SUPERVISORD_KEYS: &[(&str, &str)] = &[
    ("logfile", "kelpie logs to its stderr (log_format, log_level); redirect it or let systemd's journal keep it"),
    ("logfile_maxbytes", "kelpie logs to its stderr and keeps no log file of its own to rotate"),
    ("logfile_backups", "kelpie logs to its stderr and keeps no log file of its own to rotate"),
    ("loglevel", "kelpie's levels differ; set [supervisor] log_level (error, warn, info, debug, trace)"),
    ("pidfile", "kelpie writes no pidfile; kelpie status and its control socket find it"),
    ("user", "supervisord drops to this user when it starts; run kelpie itself as that user (systemd User=), or set user per program as root"),
    ("silent", "kelpie always logs to its stderr"),
    ("minfds", "kelpie raises its soft RLIMIT_NOFILE to what its programs' pipes and sockets need and refuses a config that needs more than the hard limit: set LimitNOFILE= in its service unit, or ulimit -n; a program's rlimits.nofile is an exact limit, not a minimum"),
    ("minprocs", "kelpie does not raise its own RLIMIT_NPROC: set LimitNPROC= in its service unit, or ulimit -u; a program's rlimits.nproc is an exact limit, not a minimum"),
    ("nocleanup", "kelpie keeps no AUTO child log files to clean up"),
    ("childlogdir", "kelpie keeps no AUTO child log files; give a program log = { mode = \"file\" } instead"),
    ("strip_ansi", "kelpie writes program output as it comes"),
    ("identifier", "kelpie has no XML-RPC interface to identify"),
    ("profile_options", "kelpie has no profiler option"),
];

const CONTROL_WHY: &str = "kelpie has no XML-RPC server: its control socket ([supervisor] control_socket, docs/control.md) serves the kelpie CLI, and its HTTP endpoints (http_listen, docs/http.md) serve health and metrics";

pub fn import(files: &[PathBuf], cx: &Context) -> Result<Draft, ImportError> {
    let Some(main) = files.first() else {
        return Ok(Draft::default());
    };
    let mut draft = Draft::default();
    let mut ini = Ini::default();
    let main_dir = directory_of(&normalize(&cx.cwd.join(main)));
    ini.read(&read_text(main, cx)?, main, &main_dir)?;
    let mut read = vec![main.to_path_buf()];
    let host = host_node_name();

    // An [include] in any other file merges into the main one's section,
    // but supervisord reads the patterns once, from the main file.
    let mut nested = Vec::new();
    let mut last_seen = ini
        .section("include")
        .and_then(|s| s.get("files"))
        .map(|e| e.origin.clone());
    let mut note_nested = |ini: &Ini| {
        let files = ini.section("include").and_then(|s| s.get("files"));
        if let Some(files) = files.filter(|f| Some(&f.origin) != last_seen.as_ref()) {
            last_seen = Some(files.origin.clone());
            nested.push(files.origin.clone());
        }
    };
    if let Some(include) = ini.section("include").cloned() {
        let Some(entry) = include.get("files") else {
            return Err(ImportError::data(
                include.origin.clone(),
                "[include] has no files = setting",
            ));
        };
        let mut names = env_names(&cx.env);
        names.set("host_node_name", Value::Text(host.clone()));
        let patterns = text_of(entry, &mut names)?;
        let shown_dir = main.parent().map(Path::to_path_buf).unwrap_or_default();
        for pattern in patterns.split_whitespace() {
            let found = glob::glob(pattern, &shown_dir, &main_dir);
            if found.is_empty() {
                draft.supervisor.notes.push(format!(
                    "[include] files pattern {pattern:?} ({}) matches no file; supervisord starts without it too",
                    entry.origin
                ));
            }
            for (shown, actual) in found {
                if actual.is_dir() {
                    continue;
                }
                // `actual` is absolute; messages name the file as shown.
                let text = read_text(&actual, cx).map_err(|mut e| {
                    e.origin.file = shown.clone();
                    e
                })?;
                ini.read(&text, &shown, &directory_of(&normalize(&actual)))?;
                read.push(shown.clone());
                note_nested(&ini);
            }
        }
        for entry in &include.entries {
            if entry.key != "files" {
                draft.drop_key(
                    entry.origin.clone(),
                    None,
                    format!("[include] {}", entry.key),
                    "supervisord reads only files = in [include]",
                );
            }
        }
    }
    for extra in files.iter().skip(1) {
        let dir = directory_of(&normalize(&cx.cwd.join(extra)));
        ini.read(&read_text(extra, cx)?, extra, &dir)?;
        read.push(extra.clone());
        note_nested(&ini);
    }
    for origin in nested {
        draft.drop_key(
            origin,
            None,
            "[include] files",
            "supervisord reads [include] only in the main file, so this pattern is not read",
        );
    }
    let mut draft = translate(&ini, main, &main_dir, &host, cx, draft)?;
    // The report follows the files in the order they were read.
    let order = |file: &Path| read.iter().position(|f| f == file).unwrap_or(read.len());
    draft
        .dropped
        .sort_by_key(|d| (order(&d.origin.file), d.origin.line));
    Ok(draft)
}

/// The sections as a draft.
fn translate(
    ini: &Ini,
    main: &Path,
    main_dir: &Path,
    host: &str,
    cx: &Context,
    mut draft: Draft,
) -> Result<Draft, ImportError> {
    let mut env = cx
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect::<BTreeMap<_, _>>();
    let mut supervisord_env: Vec<(String, String)> = Vec::new();
    let mut base = main_dir.to_path_buf();
    let mut base_label = format!("the directory of {}, its %(here)s", main.display());
    let mut directory = None;
    let mut umask = None;
    if let Some(section) = ini.section("supervisord") {
        let mut names = env_names(&cx.env);
        names.set("host_node_name", Value::Text(host.to_string()));
        let nodaemon = match section.get("nodaemon") {
            Some(entry) => values::boolean(entry, &text_of(entry, &mut names)?)?,
            None => false,
        };
        for entry in &section.entries {
            match entry.key.as_str() {
                "environment" => {
                    let value = expand::expand(&entry.value, &{
                        let mut n = names.clone();
                        n.set("here", Value::Text(entry.here.display().to_string()));
                        n
                    })
                    .map_err(|why| values::bad(entry, why))?;
                    let pairs =
                        words::key_value_pairs(&value).map_err(|why| values::bad(entry, why))?;
                    for pair in pairs.pairs {
                        let value = literal(&pair.value).unwrap_or_default();
                        env.insert(pair.key.clone(), value.clone());
                        supervisord_env.push((pair.key, value));
                    }
                }
                "directory" if !nodaemon => {
                    let dir = text_of(entry, &mut names)?;
                    let dir = if dir.starts_with('/') {
                        dir
                    } else {
                        format!("{}/{dir}", main_dir.display())
                    };
                    draft.supervisor.notes.push(format!(
                        "[supervisord] directory = {dir:?} ({}) is the directory of every program that sets none: supervisord changes to it when it daemonizes",
                        entry.origin
                    ));
                    base = PathBuf::from(&dir);
                    base_label = "[supervisord] directory".into();
                    directory = Some(dir);
                }
                "umask" if !nodaemon => {
                    umask = Some(values::octal(entry, &text_of(entry, &mut names)?)?);
                    draft.supervisor.notes.push(format!(
                        "[supervisord] umask ({}) is the umask of every program that sets none: supervisord sets it when it daemonizes",
                        entry.origin
                    ));
                }
                // Without daemonizing supervisord applies neither.
                "directory" | "umask" => {}
                "nodaemon" => {
                    if !nodaemon {
                        draft.drop_key(
                            entry.origin.clone(),
                            None,
                            "[supervisord] nodaemon",
                            "kelpie does not daemonize: run it under systemd, launchd or a container runtime (docs/operations.md)",
                        );
                    }
                }
                key => {
                    let why = SUPERVISORD_KEYS
                        .iter()
                        .find(|(k, _)| *k == key)
                        .map(|(_, why)| *why)
                        .unwrap_or("not a key of [supervisord] (supervisord ignores it)");
                    draft.drop_key(
                        entry.origin.clone(),
                        None,
                        format!("[supervisord] {key}"),
                        why,
                    );
                }
            }
        }
    }
    let setup = program::Setup {
        env: &env,
        supervisord_env: &supervisord_env,
        base: &base,
        base_label: &base_label,
        directory: directory.as_deref(),
        umask,
        home: cx.env.get("HOME").map(String::as_str),
        host,
    };

    let memberships = groups(ini, &env, &mut draft)?;
    let mut translated = Vec::new();
    for section in &ini.sections {
        let (kind, _) = section.name.split_once(':').unwrap_or((&section.name, ""));
        match kind {
            "program" => {
                let member = section
                    .name
                    .split_once(':')
                    .map(|(_, n)| n.trim())
                    .and_then(|n| memberships.iter().find(|m| m.program == n));
                let group = member.map(|m| m.group.as_str());
                let t = program::translate(section, &ini.defaults, group, &setup)?;
                let key = match member {
                    Some(m) => (m.priority, m.group.clone(), t.priority, t.name.clone()),
                    None => (t.priority, t.name.clone(), t.priority, t.name.clone()),
                };
                translated.push((key, t));
            }
            _ if section.name == "supervisord" || section.name == "include" => {}
            "group" => {}
            "eventlistener" => drop_section(&mut draft, section, "kelpie has no event listeners (supervisord's event protocol on stdin/stdout); kelpie's own lifecycle events are in its log (docs/lifecycle.md)"),
            "fcgi-program" => drop_section(&mut draft, section, "kelpie does not open FastCGI sockets for programs; run the FastCGI server as a [program] that binds its own socket"),
            "unix_http_server" | "inet_http_server" | "rpcinterface" => drop_section(&mut draft, section, CONTROL_WHY),
            "supervisorctl" => drop_section(&mut draft, section, "the kelpie CLI finds kelpie's control socket itself (docs/cli.md#socket-lookup)"),
            "ctlplugin" => drop_section(&mut draft, section, "the kelpie CLI has no plugins"),
            _ => drop_section(&mut draft, section, "not a section supervisord reads (it ignores it)"),
        }
    }
    // Python's sort is stable, and supervisord sorts by (priority, name).
    translated.sort_by(|a, b| a.0.cmp(&b.0));
    let priorities_set = ini.sections.iter().any(|s| {
        (s.name.starts_with("program:") || s.name.starts_with("group:"))
            && s.get("priority").is_some()
    });

    let mut programs = Vec::new();
    let mut dropped = Vec::new();
    let mut sources = Vec::new();
    for (_, t) in translated {
        let Some(mut p) = t.program else {
            for (origin, key, why) in t.dropped {
                draft.drop_key(origin, None, key, why);
            }
            continue;
        };
        let origin = p.origin.clone().unwrap_or_else(|| Origin::new(main, 0));
        p.name = program_name(&t.name).ok_or_else(|| {
            ImportError::data(
                origin,
                format!("kelpie cannot name a program after {:?}", t.name),
            )
        })?;
        if p.name != t.name {
            p.notes.push(format!(
                "renamed from {:?}: kelpie names are letters, digits, _ . and - (at most 64)",
                t.name
            ));
        }
        sources.push(t.name);
        dropped.push(t.dropped);
        programs.push(p);
    }
    dedupe_names(&mut programs);
    for (p, list) in programs.iter().zip(dropped) {
        for (origin, key, why) in list {
            draft.drop_key(origin, Some(&p.name), key, why);
        }
    }
    let kelpie_name = |source: &str| {
        sources
            .iter()
            .position(|s| s == source)
            .map(|i| programs[i].name.clone())
    };
    let mut seen_groups = Vec::new();
    for m in &memberships {
        if seen_groups.contains(&m.group) {
            continue;
        }
        seen_groups.push(m.group.clone());
        let members: Vec<String> = memberships
            .iter()
            .filter(|x| x.group == m.group)
            .filter_map(|x| kelpie_name(&x.program))
            .collect();
        let Some(name) = program_name(&m.group) else {
            return Err(ImportError::data(
                m.origin.clone(),
                format!("kelpie cannot name a group after {:?}", m.group),
            ));
        };
        if members.is_empty() {
            draft.drop_key(
                m.origin.clone(),
                None,
                format!("[group:{}]", m.group),
                "none of its programs runs under kelpie, and a kelpie group needs members",
            );
            continue;
        }
        draft.groups.push(Group {
            name,
            origin: Some(m.origin.clone()),
            programs: members,
        });
    }
    if priorities_set {
        draft.supervisor.notes.push(
            "programs are listed in supervisord's start order (priority, then name); kelpie starts them in this order without waiting for one another, as supervisord does, but stops them all at once where supervisord stops one priority after another, in reverse: use depends_on where the order matters".to_string(),
        );
    }
    // stopwaitsecs beyond kelpie's whole-shutdown bound would be cut short.
    let longest = programs.iter().filter_map(|p| p.stop_timeout).max();
    if let Some(longest) = longest.filter(|d| d.as_secs() >= 30) {
        let timeout = longest + std::time::Duration::from_secs(5);
        draft.supervisor.shutdown_timeout = Some(timeout);
        draft.supervisor.notes.push(format!(
            "shutdown_timeout is {}s, past the longest stopwaitsecs ({}s), so kelpie's bound on a whole shutdown does not cut it short",
            timeout.as_secs(),
            longest.as_secs()
        ));
    }
    draft.programs = programs;
    Ok(draft)
}

/// A program's place in a `[group:x]`.
struct Membership {
    group: String,
    program: String,
    priority: i64,
    /// The group's header.
    origin: Origin,
}

fn groups(
    ini: &Ini,
    env: &BTreeMap<String, String>,
    draft: &mut Draft,
) -> Result<Vec<Membership>, ImportError> {
    let mut out: Vec<Membership> = Vec::new();
    for section in &ini.sections {
        let Some(name) = section.name.strip_prefix("group:") else {
            continue;
        };
        let name = name.trim();
        if name.is_empty() || name.contains([' ', ':', '/']) {
            return Err(ImportError::data(
                section.origin.clone(),
                format!("[{}]: invalid group name {name:?}", section.name),
            ));
        }
        let mut names = env_names(env);
        let Some(entry) = section.get("programs") else {
            return Err(ImportError::data(
                section.origin.clone(),
                format!("[{}] has no programs = setting", section.name),
            ));
        };
        let priority = match section.get("priority") {
            Some(p) => values::integer(p, &text_of(p, &mut names)?)?,
            None => 999,
        };
        let list = text_of(entry, &mut names)?;
        for member in list.split(',').map(str::trim) {
            if member.is_empty() && list.trim().is_empty() {
                continue;
            }
            let as_program = format!("program:{member}");
            let as_fcgi = format!("fcgi-program:{member}");
            if ini.section(&as_program).is_none() {
                if ini.section(&as_fcgi).is_some() {
                    draft.drop_key(
                        entry.origin.clone(),
                        None,
                        format!("[{}] programs {member}", section.name),
                        "it is an [fcgi-program], which is not carried over",
                    );
                    continue;
                }
                return Err(values::bad(
                    entry,
                    format!("[{}] names unknown program {member:?}", section.name),
                ));
            }
            if let Some(other) = out.iter().find(|m| m.program == member) {
                draft.drop_key(
                    entry.origin.clone(),
                    None,
                    format!("[{}] programs {member}", section.name),
                    format!(
                        "{member} is already in [group:{}]; a kelpie program belongs to one group at most",
                        other.group
                    ),
                );
                continue;
            }
            out.push(Membership {
                group: name.to_string(),
                program: member.to_string(),
                priority,
                origin: section.origin.clone(),
            });
        }
        for entry in &section.entries {
            if entry.key != "programs" && entry.key != "priority" {
                draft.drop_key(
                    entry.origin.clone(),
                    None,
                    format!("[{}] {}", section.name, entry.key),
                    "not a key of supervisord's [group:x] (supervisord ignores it)",
                );
            }
        }
    }
    Ok(out)
}

fn drop_section(draft: &mut Draft, section: &Section, why: &str) {
    draft.drop_key(
        section.origin.clone(),
        None,
        format!("[{}]", section.name),
        why,
    );
}

fn env_names<'a>(env: impl IntoIterator<Item = (&'a String, &'a String)>) -> Names {
    let mut names = Names::default();
    for (k, v) in env {
        names.set(&format!("ENV_{k}"), Value::Text(v.clone()));
    }
    names
}

/// A value expanded with `names` and the entry's `%(here)s`.
fn text_of(entry: &Entry, names: &mut Names) -> Result<String, ImportError> {
    names.set("here", Value::Text(entry.here.display().to_string()));
    let segs = expand(&entry.value, names).map_err(|why| values::bad(entry, why))?;
    Ok(literal(&segs).unwrap_or_default())
}

fn directory_of(path: &Path) -> PathBuf {
    path.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// `path` without `.` and `..` components, as Python's `abspath` gives it.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// `%(host_node_name)s`: the node name, as Python's `platform.node()`.
fn host_node_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for writes of its whole length, which is
    // the length passed; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

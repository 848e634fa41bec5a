//! Reading and validating one config file: the document is parsed once
//! into toml's spanned tree, each section is decoded key by key, then the
//! cross-references (dependencies, groups) are checked on whatever decoded
//! cleanly. The config is returned only when there is no error.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::de::DeTable;

use super::decode::{check_keys, check_name, expect_table, table_at, Table};
use super::diagnostics::{line_col, syntax_message, table_key, Diagnostic, Diags, Severity};
use super::group_section::parse_group;
use super::program_section::parse_program;
use super::references::{
    check_cross_references, dependency_order, group_programs, Declared, GroupMembers,
};
use super::supervisor_section::parse_supervisor;
use super::{open_files, Config, Host, Mode, ProgramConfig, SupervisorConfig};
use crate::os_lookup::io_reason;

/// Config files larger than this are refused before parsing: a supervisor
/// config is a few KiB, and a runaway file must not exhaust memory.
pub(super) const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;

/// The outcome of validating one file: the config when there are no errors,
/// and every diagnostic (errors and warnings) sorted by position.
pub struct Validation {
    pub config: Option<Config>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Validation {
    /// Every diagnostic on stderr, one line each.
    pub fn print_diagnostics(&self) {
        for diagnostic in &self.diagnostics {
            eprintln!("{diagnostic}");
        }
    }

    /// The file could not be read at all: its one diagnostic says everything.
    pub fn unreadable(&self) -> bool {
        self.errors().all(|d| d.line == 0)
    }

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

/// Validates config text. `path` is used for messages and to resolve
/// relative paths (`env_file`, `directory`, log files) against the config's
/// directory.
pub fn validate(source: &str, path: &Path, mode: Mode, host: &Host) -> Validation {
    let mut diags = Diags {
        file: path,
        source,
        list: Vec::new(),
        found_commands: Default::default(),
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
            if declared.iter().any(|d| d.name == name) {
                // `kelpie restart NAME` addresses a program or a group's
                // members: one name must not mean both.
                diags.error(
                    &key.span(),
                    &key_path,
                    format!(
                        "group name {name:?} is also the name of a program; `kelpie restart {name}` could not tell them apart: rename the group"
                    ),
                );
            }
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
    open_files_check(&programs, mode, host, diags);
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

/// Instances that need more descriptors than the hard `RLIMIT_NOFILE`
/// allows would not fail at once but half-way through the start, at the
/// first spawn or pipe that gets `EMFILE`: refused before anything starts
/// (and before a reload applies), a warning for `check`, whose shell may
/// not have the limits kelpie will run with. Points at the program whose
/// instances cross the limit.
fn open_files_check(
    programs: &[(Range<usize>, ProgramConfig)],
    mode: Mode,
    host: &Host,
    diags: &mut Diags<'_>,
) {
    let Some(limit) = host.open_files_limit else {
        return;
    };
    let needed = open_files::needed(programs.iter().map(|(_, p)| p));
    if needed <= limit {
        return;
    }
    let mut running = open_files::BASE;
    let Some((span, crossing)) = programs.iter().find(|(_, p)| {
        running += open_files::for_program(p);
        running > limit
    }) else {
        return;
    };
    let instances: u64 = programs.iter().map(|(_, p)| u64::from(p.instances)).sum();
    let message = format!(
        "the config's {instances} program instances need about {needed} open files in kelpie (2 pipes per instance, plus notify and probe sockets and log files), above the hard open-file limit (RLIMIT_NOFILE) of {limit}; raise it to at least {needed} (LimitNOFILE= in the service unit, `ulimit -n` where kelpie starts, `--ulimit nofile=` for docker)"
    );
    let key = table_key("program", &crossing.name);
    match mode {
        Mode::Run => diags.error(span, &key, message),
        Mode::Check => diags.warn(
            span,
            &key,
            format!("{message}, or `kelpie run` will refuse it"),
        ),
    }
}

/// A program whose own stop cannot finish inside the shutdown bound is
/// legal but risky: a warning (docs/configuration.md, `stop_timeout`).
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

//! A `[program.NAME]` table: command, environment, credentials, restart
//! and stop settings, dependencies. Probes and logs have their own modules.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::Deserialize;
use toml::de::{DeValue, ValueDeserializer};
use toml::Spanned;

use super::decode::{
    check_keys, expect_table, get, get_bool, get_choice, get_duration, get_signal, get_u32, join,
    Table,
};
use super::diagnostics::{did_you_mean, table_key, Diags};
use super::env_file::parse_env_file;
use super::limits_section::{parse_limits, LIMIT_KEYS};
use super::log_section::parse_log;
use super::probe_section::parse_probe_block;
use super::template::{self, escape};
use super::{
    DependencyCondition, Host, LogMode, Mode, OnFailure, ProbeKind, ProgramConfig, ReloadMode,
};
use crate::backoff::BackoffConfig;
use crate::os_lookup::{find_executable, io_reason, resolve_group, resolve_user};
use crate::restart_policy::{ProgramKind, RestartPolicy};

const MAX_INSTANCES: u32 = 10_000;

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
    "reload",
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

pub(super) fn parse_program(
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
    let known: Vec<&str> = PROGRAM_KEYS.iter().chain(LIMIT_KEYS).copied().collect();
    check_keys(t, p, &known, diags);

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
                // An env file's values are literal; kept as templates that
                // expand to themselves, beside `environment`'s.
                Ok(vars) => environment.extend(vars.into_iter().map(|(k, v)| (k, escape(&v)))),
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
            if let Err(why) = template::check(&value) {
                let span = t
                    .get("environment")
                    .and_then(|v| match v.get_ref() {
                        DeValue::Table(vars) => vars.get(key.as_str()).map(|v| v.span()),
                        _ => None,
                    })
                    .unwrap_or(0..0);
                diags.error(&span, &join(&join(p, "environment"), &key), why);
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
    let reload = get_choice(
        t,
        p,
        "reload",
        &[
            ("restart", ReloadMode::Restart),
            ("rolling", ReloadMode::Rolling),
        ],
        ReloadMode::Restart,
        diags,
    );
    let depends_on = parse_depends_on(t, p, diags);
    let required = get_bool(t, p, "required", true, diags);
    let readiness = parse_probe_block(t, p, "readiness", Duration::from_secs(2), instances, diags);
    let liveness = parse_probe_block(t, p, "liveness", Duration::from_secs(10), instances, diags);
    if let (Some(Some(probe)), Some(count)) = (&readiness, instances) {
        let rolling_reload = reload == Some(ReloadMode::Rolling);
        shared_probe_warning(t, p, probe, count, rolling_reload, diags);
    }
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
        let found = diags
            .found_commands
            .entry((argv[0].clone(), dir.clone(), path_var.clone()))
            .or_insert_with(|| {
                find_executable(&argv[0], dir.as_deref(), path_var.as_deref()).map(|_| ())
            })
            .clone();
        if let Err(why) = found {
            // A missing binary is only fatal when the program is started, so
            // the others still run; at check time it is worth a warning.
            diags.warn(span, &join(p, "command"), why);
        }
    }

    let limits = parse_limits(t, p, diags);

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
        reload: reload?,
        depends_on: depends_on?,
        required: required?,
        readiness: readiness?,
        liveness: liveness?,
        log: log?,
        limits: limits?,
    })
}

/// Instances probed at one address cannot be told apart: during a rolling
/// restart or a rolling reload another instance answers the replacement's
/// probe, and the replacement counts as ready before it serves. An address
/// per `${KELPIE_INSTANCE}` is not enough: the replacement has the index of
/// the instance it replaces; only `${KELPIE_SLOT}` differs between them.
fn shared_probe_warning(
    t: &Table<'_>,
    p: &str,
    probe: &super::ProbeConfig,
    instances: u32,
    rolling_reload: bool,
    diags: &mut Diags<'_>,
) {
    let (kind, target) = match &probe.kind {
        ProbeKind::Http(url) => ("http", url),
        ProbeKind::Tcp(address) => ("tcp", address),
        _ => return,
    };
    // One instance only meets its replacement when a reload rolls it (a
    // `restart --rolling` of it is asked for by hand and can be read about).
    if (instances < 2 && !rolling_reload) || template::mentions(target, "KELPIE_SLOT") {
        return;
    }
    let span = t
        .get("readiness")
        .and_then(|v| match v.get_ref() {
            DeValue::Table(block) => block.get(kind).map(|v| v.span()),
            _ => None,
        })
        .unwrap_or(0..0);
    let message = if instances < 2 {
        "with reload = \"rolling\" the replacement runs beside the old process, which answers the replacement's probe at this address; give the probe and `environment` an address with ${KELPIE_SLOT}, which differs between the two, or use a notify or log probe".to_string()
    } else if template::mentions(target, "KELPIE_INSTANCE") {
        "the probe address follows ${KELPIE_INSTANCE}, which a rolling replacement shares with the instance it replaces (during a rolling restart or rolling reload the old instance answers the replacement's probe); use ${KELPIE_SLOT} in `environment` and the probe instead, which differs between the two".to_string()
    } else {
        format!(
            "all {instances} instances are probed at one address, which cannot tell them apart (during a rolling restart or rolling reload another instance answers the replacement's probe); give each instance its own address with ${{KELPIE_SLOT}} in `environment` and the probe, or use a notify or log probe"
        )
    };
    diags.warn(&span, &join(&join(p, "readiness"), kind), message);
}

pub(super) fn parse_on_failure(t: &Table<'_>, p: &str, diags: &mut Diags<'_>) -> Option<OnFailure> {
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

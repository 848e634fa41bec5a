//! The `[supervisor]` table, and finding its control socket in a file that
//! may be invalid otherwise.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use toml::Spanned;

use super::decode::{
    check_keys, expect_table, get, get_bool, get_choice, get_duration, get_u32, Table,
};
use super::diagnostics::Diags;
use super::{CgroupRoot, ControlToken, Host, RestartBudget, SupervisorConfig};
use crate::logging::LogFormat;
use crate::signals;

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
    "dashboard",
    "control_token_file",
    "cgroup_root",
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

pub(super) fn parse_supervisor(
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

    let dashboard = get_bool(t, p, "dashboard", true, diags);
    let control_token = match get::<String>(t, p, "control_token_file", diags) {
        Some(file) => read_control_token(&file, base_dir, diags).map(Some),
        None if t.contains_key("control_token_file") => None,
        None => Some(None),
    };

    let cgroup_root = parse_cgroup_root(t, diags);

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
        dashboard: dashboard?,
        control_token: control_token?,
        cgroup_root: cgroup_root?,
    })
}

/// `cgroup_root = "auto"` (the default), `"off"`, or the absolute path of
/// a cgroup v2 directory for kelpie's program cgroups.
fn parse_cgroup_root(t: &Table<'_>, diags: &mut Diags<'_>) -> Option<CgroupRoot> {
    let key = "supervisor.cgroup_root";
    let Some(text) = get::<String>(t, "supervisor", "cgroup_root", diags) else {
        return (!t.contains_key("cgroup_root")).then_some(CgroupRoot::Auto);
    };
    match text.get_ref().as_str() {
        "auto" => Some(CgroupRoot::Auto),
        "off" => Some(CgroupRoot::Off),
        path if Path::new(path).is_absolute() => Some(CgroupRoot::Path(PathBuf::from(path))),
        path => {
            diags.error(
                &text.span(),
                key,
                format!("\"{path}\" is not an absolute path; expected \"auto\", \"off\" or a directory under the cgroup v2 mount such as \"/sys/fs/cgroup/kelpie\""),
            );
            None
        }
    }
}

/// Reads `control_token_file`: it must be a regular file only its owner
/// can read (the token grants every action of the dashboard), holding one
/// non-empty token; surrounding whitespace is trimmed.
fn read_control_token(
    file: &Spanned<String>,
    base_dir: &Path,
    diags: &mut Diags<'_>,
) -> Option<ControlToken> {
    use std::os::unix::fs::MetadataExt;
    let key = "supervisor.control_token_file";
    let path = base_dir.join(file.get_ref());
    let fail = |diags: &mut Diags<'_>, why: String| {
        diags.error(&file.span(), key, format!("\"{}\": {why}", path.display()));
        None
    };
    let metadata = match std::fs::metadata(&path) {
        Ok(metadata) => metadata,
        Err(err) => {
            return fail(
                diags,
                format!("cannot read it: {}", crate::os_lookup::io_reason(&err)),
            )
        }
    };
    if !metadata.is_file() {
        return fail(diags, "not a regular file".into());
    }
    let mode = metadata.mode() & 0o777;
    if mode & 0o077 != 0 {
        return fail(
            diags,
            format!("mode {mode:04o} gives group or other users access to the token; make it readable by its owner only (chmod 600)"),
        );
    }
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) => {
            return fail(
                diags,
                format!("cannot read it: {}", crate::os_lookup::io_reason(&err)),
            )
        }
    };
    let token = text.trim();
    if token.is_empty() {
        return fail(diags, "the file is empty; put the token in it".into());
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return fail(
            diags,
            "the token contains whitespace; use one word (e.g. `openssl rand -hex 32`)".into(),
        );
    }
    Some(ControlToken {
        path,
        token: token.to_string(),
    })
}

//! `kelpie config`: the effective config as TOML, every default filled in,
//! paths absolute and `env_file` merged into `environment`. The output is
//! accepted by `kelpie check` and reads back into the same `Config` (the
//! round-trip tests below hold it to that), so it can be diffed, reviewed
//! or used as the starting point of a new file.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use super::{
    Config, DependencyCondition, GroupStrategy, LogMode, OnFailure, ProbeConfig, ProbeKind,
    ProgramConfig, ReloadMode,
};
use crate::logging::LogFormat;
use crate::restart_policy::{ProgramKind, RestartPolicy};
use crate::signals::short_name;

/// A TOML string (quoted and escaped).
pub(crate) fn string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn path(p: &Path) -> String {
    string(&p.to_string_lossy())
}

pub(crate) fn duration(d: Duration) -> String {
    if d.is_zero() {
        return string("0s");
    }
    string(&humantime::format_duration(d).to_string())
}

pub(crate) fn strings(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| string(s)).collect();
    format!("[{}]", parts.join(", "))
}

/// A bare key when TOML allows one, else a quoted key.
pub(crate) fn key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        name.to_string()
    } else {
        string(name)
    }
}

/// An inline table: `{ a = 1, b = 2 }`, or `{}`.
pub(crate) fn inline(entries: &[String]) -> String {
    if entries.is_empty() {
        "{}".to_string()
    } else {
        format!("{{ {} }}", entries.join(", "))
    }
}

pub(crate) fn float(x: f64) -> String {
    // `2` must stay a float in TOML (`2.0`).
    let text = format!("{x}");
    if text.contains('.') || text.contains('e') {
        text
    } else {
        format!("{text}.0")
    }
}

/// The header line of `kelpie config` for a file read from disk: it says
/// where the text comes from, since the supervisor may run another version
/// of the file (until a reload) and `--running` shows that one.
pub fn disk_header(path: &Path) -> String {
    format!(
        "# kelpie config: {} as on disk, every default filled in \
         (not necessarily what is running; see `kelpie config --running`)",
        path.display()
    )
}

/// The config as TOML, starting at `[supervisor]`; callers put their
/// header line (which source it is) in front.
pub fn to_toml(config: &Config) -> String {
    let mut out = String::new();
    let s = &config.supervisor;
    let _ = writeln!(out, "[supervisor]");
    let _ = writeln!(
        out,
        "http_listen = {}",
        string(s.http_listen.as_deref().unwrap_or("off"))
    );
    let _ = writeln!(out, "control_socket = {}", path(&s.control_socket));
    let _ = writeln!(
        out,
        "socket_mode = {}",
        string(&format!("{:04o}", s.socket_mode))
    );
    let _ = writeln!(out, "shutdown_timeout = {}", duration(s.shutdown_timeout));
    let _ = writeln!(out, "drain_delay = {}", duration(s.drain_delay));
    if let Some(budget) = s.restart_budget {
        let _ = writeln!(
            out,
            "restart_budget = {{ max = {}, per = {} }}",
            budget.max,
            duration(budget.per)
        );
    }
    let format = match s.log_format {
        LogFormat::Auto => "auto",
        LogFormat::Text => "text",
        LogFormat::Json => "json",
    };
    let _ = writeln!(out, "log_format = {}", string(format));
    let _ = writeln!(out, "log_level = {}", string(&s.log_level));
    let forwarded: Vec<String> = s
        .forward_signals
        .iter()
        .map(|sig| short_name(*sig).to_string())
        .collect();
    let _ = writeln!(out, "forward_signals = {}", strings(&forwarded));
    let _ = writeln!(out, "dashboard = {}", s.dashboard);
    // The path only: the token never leaves kelpie.
    if let Some(token) = &s.control_token {
        let _ = writeln!(out, "control_token_file = {}", path(&token.path));
    }
    let cgroup_root = match &s.cgroup_root {
        crate::config::CgroupRoot::Auto => string("auto"),
        crate::config::CgroupRoot::Off => string("off"),
        crate::config::CgroupRoot::Path(root) => path(root),
    };
    let _ = writeln!(out, "cgroup_root = {cgroup_root}");

    for program in &config.programs {
        out.push('\n');
        write_program(&mut out, program);
    }
    for group in &config.groups {
        let _ = writeln!(out, "\n[group.{}]", key(&group.name));
        let _ = writeln!(out, "programs = {}", strings(&group.programs));
        let strategy = match group.strategy {
            GroupStrategy::OneForOne => "one_for_one",
            GroupStrategy::OneForAll => "one_for_all",
            GroupStrategy::RestForOne => "rest_for_one",
        };
        let _ = writeln!(out, "strategy = {}", string(strategy));
        if let Some(max) = group.max_restarts {
            let _ = writeln!(out, "max_restarts = {max}");
        }
        let _ = writeln!(out, "restart_window = {}", duration(group.restart_window));
        let _ = writeln!(out, "on_failure = {}", string(on_failure(group.on_failure)));
    }
    out
}

fn on_failure(value: OnFailure) -> &'static str {
    match value {
        OnFailure::KeepRunning => "keep-running",
        OnFailure::Shutdown => "shutdown",
    }
}

fn write_program(out: &mut String, p: &ProgramConfig) {
    let table = format!("program.{}", key(&p.name));
    let _ = writeln!(out, "[{table}]");
    let _ = writeln!(out, "command = {}", strings(&p.command));
    if let Some(dir) = &p.directory {
        let _ = writeln!(out, "directory = {}", path(dir));
    }
    let env: Vec<String> = p
        .environment
        .iter()
        .map(|(k, v)| format!("{} = {}", key(k), string(v)))
        .collect();
    let _ = writeln!(out, "environment = {}", inline(&env));
    if let Some(user) = &p.user {
        let _ = writeln!(out, "user = {}", string(user));
    }
    if let Some(group) = &p.group {
        let _ = writeln!(out, "group = {}", string(group));
    }
    if let Some(umask) = p.umask {
        let _ = writeln!(out, "umask = {}", string(&format!("{umask:03o}")));
    }
    if !p.limits.rlimits.is_empty() {
        let limits: Vec<String> = p
            .limits
            .rlimits
            .iter()
            .map(|limit| match limit.soft {
                crate::limits::UNLIMITED => format!("{} = \"unlimited\"", limit.resource.name()),
                amount => format!("{} = {amount}", limit.resource.name()),
            })
            .collect();
        let _ = writeln!(out, "rlimits = {{ {} }}", limits.join(", "));
    }
    write_limits(out, &p.limits);
    let _ = writeln!(out, "instances = {}", p.instances);
    let _ = writeln!(out, "autostart = {}", p.autostart);
    let kind = match p.kind {
        ProgramKind::Service => "service",
        ProgramKind::Oneshot => "oneshot",
    };
    let _ = writeln!(out, "type = {}", string(kind));
    let restart = match p.restart {
        RestartPolicy::Always => "always",
        RestartPolicy::OnFailure => "on-failure",
        RestartPolicy::Never => "never",
    };
    let _ = writeln!(out, "restart = {}", string(restart));
    let codes: Vec<String> = p.success_codes.iter().map(i32::to_string).collect();
    let _ = writeln!(out, "success_codes = [{}]", codes.join(", "));
    let _ = writeln!(out, "start_seconds = {}", duration(p.start_seconds));
    let _ = writeln!(out, "start_timeout = {}", duration(p.start_timeout));
    let b = &p.backoff;
    let _ = writeln!(
        out,
        "backoff = {{ initial = {}, max = {}, multiplier = {}, jitter = {} }}",
        duration(b.initial),
        duration(b.max),
        float(b.multiplier),
        float(b.jitter)
    );
    let _ = writeln!(out, "max_restarts = {}", p.max_restarts);
    let _ = writeln!(out, "restart_window = {}", duration(p.restart_window));
    let _ = writeln!(out, "on_failure = {}", string(on_failure(p.on_failure)));
    let _ = writeln!(out, "stop_signal = {}", string(short_name(p.stop_signal)));
    let _ = writeln!(out, "stop_timeout = {}", duration(p.stop_timeout));
    let reload = match p.reload {
        ReloadMode::Restart => "restart",
        ReloadMode::Rolling => "rolling",
    };
    let _ = writeln!(out, "reload = {}", string(reload));
    let deps: Vec<String> = p
        .depends_on
        .iter()
        .map(|(name, condition)| {
            let condition = match condition {
                DependencyCondition::Started => "started",
                DependencyCondition::Ready => "ready",
                DependencyCondition::Completed => "completed",
            };
            format!("{} = {}", key(name), string(condition))
        })
        .collect();
    let _ = writeln!(out, "depends_on = {}", inline(&deps));
    let _ = writeln!(out, "required = {}", p.required);
    for (block, probe) in [("readiness", &p.readiness), ("liveness", &p.liveness)] {
        if let Some(probe) = probe {
            let _ = writeln!(out, "\n[{table}.{block}]");
            write_probe(out, probe);
        }
    }
    let _ = writeln!(out, "\n[{table}.log]");
    match &p.log {
        LogMode::Inherit => {
            let _ = writeln!(out, "mode = \"inherit\"");
        }
        LogMode::Discard => {
            let _ = writeln!(out, "mode = \"discard\"");
        }
        LogMode::File {
            path: file,
            max_size,
            keep,
        } => {
            let _ = writeln!(out, "mode = \"file\"");
            let _ = writeln!(out, "file = {}", path(file));
            let _ = writeln!(out, "max_size = {}", string(&max_size.to_string()));
            let _ = writeln!(out, "keep = {keep}");
        }
    }
}

fn write_limits(out: &mut String, limits: &crate::limits::Limits) {
    let cgroup = &limits.cgroup;
    let sizes = [
        ("memory_max", cgroup.memory_max),
        ("memory_high", cgroup.memory_high),
    ];
    for (key, bytes) in sizes {
        if let Some(bytes) = bytes {
            let _ = writeln!(out, "{key} = {}", string(&bytes.to_string()));
        }
    }
    if let Some(quota) = cgroup.cpu_max {
        let _ = writeln!(
            out,
            "cpu_max = {}",
            string(&crate::limits::cpu_percent(quota))
        );
    }
    if let Some(pids) = cgroup.pids_max {
        let _ = writeln!(out, "pids_max = {pids}");
    }
    if let Some(weight) = cgroup.io_weight {
        let _ = writeln!(out, "io_weight = {weight}");
    }
    if let Some(restart) = &limits.memory_restart {
        let _ = writeln!(
            out,
            "memory_restart = {}",
            string(&restart.threshold.to_string())
        );
        let _ = writeln!(out, "memory_restart_after = {}", duration(restart.after));
    }
}

fn write_probe(out: &mut String, probe: &ProbeConfig) {
    let kind = match &probe.kind {
        ProbeKind::Http(url) => format!("http = {}", string(url)),
        ProbeKind::Tcp(addr) => format!("tcp = {}", string(addr)),
        ProbeKind::Exec(argv) => format!("exec = {}", strings(argv)),
        ProbeKind::Notify => "notify = true".to_string(),
        ProbeKind::Log(pattern) => format!("log = {}", string(pattern)),
    };
    let _ = writeln!(out, "{kind}");
    let _ = writeln!(out, "interval = {}", duration(probe.interval));
    let _ = writeln!(out, "timeout = {}", duration(probe.timeout));
    let _ = writeln!(out, "failure_threshold = {}", probe.failure_threshold);
    let _ = writeln!(out, "success_threshold = {}", probe.success_threshold);
    let _ = writeln!(out, "initial_delay = {}", duration(probe.initial_delay));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{validate, Host, Mode};

    fn load(source: &str) -> Config {
        let validation = validate(
            source,
            Path::new("/etc/kelpie/supervisor.toml"),
            Mode::Check,
            &Host::current(),
        );
        let errors: Vec<String> = validation.errors().map(|d| d.to_string()).collect();
        assert!(errors.is_empty(), "{errors:#?}\n--- source ---\n{source}");
        validation.config.unwrap_or_else(|| panic!("no config"))
    }

    /// Printing and reading back gives the same config, and printing that
    /// again gives the same text.
    fn round_trip(source: &str) {
        let first = load(source);
        let printed = to_toml(&first);
        let second = load(&printed);
        assert_eq!(first.programs.len(), second.programs.len(), "{printed}");
        for (a, b) in first.programs.iter().zip(&second.programs) {
            assert_eq!(a.name, b.name);
            let keys = crate::reload::changed_keys(a, b);
            assert!(keys.is_empty(), "{} differs in {keys:?}\n{printed}", a.name);
        }
        let (live, later) =
            crate::reload::supervisor_changes(&first.supervisor, &second.supervisor);
        assert!(
            live.is_empty() && later.is_empty(),
            "{live:?} {later:?}\n{printed}"
        );
        assert_eq!(
            first.supervisor.restart_budget,
            second.supervisor.restart_budget
        );
        assert_eq!(first.groups.len(), second.groups.len());
        for (a, b) in first.groups.iter().zip(&second.groups) {
            assert_eq!(
                (
                    &a.name,
                    &a.programs,
                    a.strategy,
                    a.max_restarts,
                    a.restart_window,
                    a.on_failure
                ),
                (
                    &b.name,
                    &b.programs,
                    b.strategy,
                    b.max_restarts,
                    b.restart_window,
                    b.on_failure
                )
            );
        }
        assert_eq!(printed, to_toml(&second), "printing is stable");
    }

    #[test]
    fn the_example_config_round_trips() {
        let example = include_str!("../../supervisor.toml.example");
        round_trip(example);
    }

    #[test]
    fn every_kind_of_value_round_trips() {
        round_trip(
            r#"
[supervisor]
http_listen = "off"
control_socket = "/tmp/k t.sock"
socket_mode = "0640"
shutdown_timeout = "1m 30s"
drain_delay = "250ms"
restart_budget = { max = 7, per = "10s" }
log_format = "json"
log_level = "debug,kelpie::http=warn"
forward_signals = ["USR2", "WINCH"]
cgroup_root = "/sys/fs/cgroup/kelpie test"

[program."odd.name"]
command = ["sh", "-c", "echo \"quoted\" 'single' \\ back"]
directory = "/tmp"
environment = { "A.B" = "x=y", EMPTY = "", UNI = "é\t" }
umask = "027"
rlimits = { nofile = 4096, core = 0, fsize = "unlimited" }
memory_max = "20MB"
memory_high = "16MiB"
cpu_max = "12.5%"
pids_max = 64
io_weight = 200
memory_restart = "300MB"
memory_restart_after = "1m"
instances = 3
autostart = false
type = "oneshot"
restart = "on-failure"
success_codes = [0, 2, 255]
start_seconds = "0s"
start_timeout = "2h"
backoff = { initial = "10ms", max = "1s", multiplier = 3.0, jitter = 0.5 }
max_restarts = 0
restart_window = "5s"
on_failure = "shutdown"
stop_signal = "INT"
stop_timeout = "100ms"
required = false

[program."odd.name".readiness]
exec = ["test", "-e", "/tmp/x"]
interval = "300ms"
failure_threshold = 5
success_threshold = 2
initial_delay = "1s"

[program."odd.name".liveness]
http = "http://127.0.0.1:1/health"

[program."odd.name".log]
mode = "file"
file = "/tmp/odd.log"
max_size = "10KiB"
keep = 2

[program.web]
command = ["sleep", "1"]
depends_on = { "odd.name" = "completed" }

[program.web.readiness]
log = "^listening on \\d+$"

[program.notified]
command = ["sleep", "1"]
depends_on = ["web"]

[program.notified.readiness]
notify = true

[program.notified.log]
mode = "discard"

[group.g]
programs = ["web", "notified"]
strategy = "rest_for_one"
max_restarts = 3
restart_window = "30s"
"#,
        );
    }
}

//! What a reload changes: the plan comparing the running config with a
//! newly validated one. Pure; the Supervisor applies it.
//!
//! A program is `unchanged` only when every key that affects how it is run
//! is equal; then its processes, pids and restart counters are left alone.
//! Any difference restarts it (a stop with its `stop_signal`, then a start
//! with the new config). `[supervisor]` keys are applied live where that is
//! safe and reported otherwise.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::config::{ProgramConfig, ReloadMode, SupervisorConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Start,
    Stop,
    Restart,
    /// Changed, with `reload = "rolling"`: its instances are replaced one
    /// at a time, each ready before the next.
    Roll,
    Unchanged,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Start => "start",
            Change::Stop => "stop",
            Change::Restart => "restart",
            Change::Roll => "roll",
            Change::Unchanged => "unchanged",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanItem {
    pub program: String,
    pub change: Change,
    /// For `Restart`: the keys that differ.
    pub keys: Vec<&'static str>,
}

/// One entry per program of either config: the new config's programs in
/// its (dependency) order, then the removed ones in their old order.
pub fn plan(old: &[Arc<ProgramConfig>], new: &[Arc<ProgramConfig>]) -> Vec<PlanItem> {
    // By name, not by a search per program: 10,000 programs made a search
    // each 50 million comparisons.
    let old_by_name: HashMap<&str, &Arc<ProgramConfig>> =
        old.iter().map(|o| (o.name.as_str(), o)).collect();
    let new_names: HashSet<&str> = new.iter().map(|n| n.name.as_str()).collect();
    let mut items: Vec<PlanItem> = new
        .iter()
        .map(|n| match old_by_name.get(n.name.as_str()) {
            None => PlanItem {
                program: n.name.clone(),
                change: Change::Start,
                keys: Vec::new(),
            },
            Some(o) => {
                let keys = changed_keys(o, n);
                let change = if keys.is_empty() {
                    Change::Unchanged
                } else if can_roll(n, &keys) {
                    Change::Roll
                } else {
                    Change::Restart
                };
                PlanItem {
                    program: n.name.clone(),
                    change,
                    keys,
                }
            }
        })
        .collect();
    items.extend(
        old.iter()
            .filter(|o| !new_names.contains(o.name.as_str()))
            .map(|o| PlanItem {
                program: o.name.clone(),
                change: Change::Stop,
                keys: Vec::new(),
            }),
    );
    items
}

/// Whether a change of `keys` can be rolled out instance by instance.
/// Not when the instance count changes (there is no one-to-one
/// replacement), nor `log` (the program's output and log files are shared
/// by all its instances), nor `depends_on` (the dependency graph changes
/// for every instance at once): those restart the program.
pub fn can_roll(new: &ProgramConfig, keys: &[&str]) -> bool {
    new.reload == ReloadMode::Rolling
        && !keys
            .iter()
            .any(|k| matches!(*k, "instances" | "log" | "depends_on"))
}

/// The config keys whose values differ, in config-file order.
pub fn changed_keys(a: &ProgramConfig, b: &ProgramConfig) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut check = |key: &'static str, differs: bool| {
        if differs {
            keys.push(key);
        }
    };
    check("command", a.command != b.command);
    check("directory", a.directory != b.directory);
    // env_file contents are merged into `environment` at load time, so an
    // edited env file shows up here too.
    check("environment", a.environment != b.environment);
    check("user", a.user != b.user);
    check("group", a.group != b.group);
    check("umask", a.umask != b.umask);
    check("instances", a.instances != b.instances);
    check("autostart", a.autostart != b.autostart);
    check("type", a.kind != b.kind);
    check("restart", a.restart != b.restart);
    check("success_codes", a.success_codes != b.success_codes);
    check("start_seconds", a.start_seconds != b.start_seconds);
    check("start_timeout", a.start_timeout != b.start_timeout);
    check("backoff", a.backoff != b.backoff);
    check("max_restarts", a.max_restarts != b.max_restarts);
    check("restart_window", a.restart_window != b.restart_window);
    check("on_failure", a.on_failure != b.on_failure);
    check("stop_signal", a.stop_signal != b.stop_signal);
    check("stop_timeout", a.stop_timeout != b.stop_timeout);
    // `reload` only says how the next change applies: taken over in place.
    check("depends_on", a.depends_on != b.depends_on);
    check("required", a.required != b.required);
    check("readiness", a.readiness != b.readiness);
    check("liveness", a.liveness != b.liveness);
    check("log", a.log != b.log);
    check("rlimits", a.limits.rlimits != b.limits.rlimits);
    let (x, y) = (&a.limits.cgroup, &b.limits.cgroup);
    check("memory_max", x.memory_max != y.memory_max);
    check("memory_high", x.memory_high != y.memory_high);
    check("cpu_max", x.cpu_max != y.cpu_max);
    check("pids_max", x.pids_max != y.pids_max);
    check("io_weight", x.io_weight != y.io_weight);
    check(
        "memory_restart",
        a.limits.memory_restart != b.limits.memory_restart,
    );
    keys
}

/// `[supervisor]` keys that differ: those applied live, and those that
/// keep their running value until kelpie restarts (with why).
pub fn supervisor_changes(
    old: &SupervisorConfig,
    new: &SupervisorConfig,
) -> (Vec<&'static str>, Vec<String>) {
    let mut live = Vec::new();
    let mut later = Vec::new();
    if old.shutdown_timeout != new.shutdown_timeout {
        live.push("shutdown_timeout");
    }
    if old.drain_delay != new.drain_delay {
        live.push("drain_delay");
    }
    if old.restart_budget != new.restart_budget {
        live.push("restart_budget");
    }
    let mut keep = |key: &str, differs: bool| {
        if differs {
            later.push(format!(
                "supervisor.{key} changed; the running value stays until kelpie restarts"
            ));
        }
    };
    keep("http_listen", old.http_listen != new.http_listen);
    keep("control_socket", old.control_socket != new.control_socket);
    keep("socket_mode", old.socket_mode != new.socket_mode);
    keep("log_format", old.log_format != new.log_format);
    keep("log_level", old.log_level != new.log_level);
    keep(
        "forward_signals",
        old.forward_signals != new.forward_signals,
    );
    keep("dashboard", old.dashboard != new.dashboard);
    keep("control_token_file", old.control_token != new.control_token);
    keep("cgroup_root", old.cgroup_root != new.cgroup_root);
    (live, later)
}

/// The `[supervisor]` section kelpie runs with after applying `new` over
/// `running`: the keys `supervisor_changes` calls live take the new value,
/// every other key keeps its running one until kelpie restarts.
pub fn applied_supervisor(running: &SupervisorConfig, new: &SupervisorConfig) -> SupervisorConfig {
    SupervisorConfig {
        shutdown_timeout: new.shutdown_timeout,
        drain_delay: new.drain_delay,
        restart_budget: new.restart_budget,
        ..running.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{validate, Host, Mode};
    use std::path::Path;

    fn programs(source: &str) -> (Vec<Arc<ProgramConfig>>, SupervisorConfig) {
        let validation = validate(
            source,
            Path::new("supervisor.toml"),
            Mode::Check,
            &Host::current(),
        );
        let config = validation
            .config
            .unwrap_or_else(|| panic!("invalid test config: {:?}", validation.diagnostics));
        (config.programs, config.supervisor)
    }

    #[test]
    fn classifies_every_program_of_both_configs() {
        let (old, _) = programs(
            "[program.db]\ncommand = \"sleep 100\"\n\
             [program.web]\ncommand = \"sleep 100\"\ndepends_on = [\"db\"]\n\
             [program.old]\ncommand = \"sleep 100\"\n",
        );
        let (new, _) = programs(
            "[program.db]\ncommand = \"sleep 100\"\n\
             [program.web]\ncommand = \"sleep 200\"\ndepends_on = [\"db\"]\nenvironment = { A = \"1\" }\n\
             [program.api]\ncommand = \"sleep 100\"\n",
        );
        let plan = plan(&old, &new);
        let summary: Vec<(&str, Change, Vec<&str>)> = plan
            .iter()
            .map(|i| (i.program.as_str(), i.change, i.keys.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("db", Change::Unchanged, vec![]),
                ("web", Change::Restart, vec!["command", "environment"]),
                ("api", Change::Start, vec![]),
                ("old", Change::Stop, vec![]),
            ]
        );
    }

    #[test]
    fn probe_log_and_policy_changes_restart() {
        let base = "[program.web]\ncommand = \"sleep 100\"\n";
        let (old, _) = programs(base);
        for (extra, key) in [
            ("stop_timeout = \"3s\"\n", "stop_timeout"),
            ("instances = 2\n", "instances"),
            (
                "[program.web.readiness]\ntcp = \"127.0.0.1:1\"\n",
                "readiness",
            ),
            ("[program.web.log]\nmode = \"discard\"\n", "log"),
        ] {
            let (new, _) = programs(&format!("{base}{extra}"));
            assert_eq!(changed_keys(&old[0], &new[0]), vec![key], "for {extra:?}");
        }
        let (same, _) = programs(base);
        assert!(changed_keys(&old[0], &same[0]).is_empty());
    }

    #[test]
    fn supervisor_keys_are_split_into_live_and_restart_only() {
        let (_, old) = programs("[program.a]\ncommand = \"true\"\n");
        let (_, new) = programs(
            "[supervisor]\nshutdown_timeout = \"5s\"\nhttp_listen = \"127.0.0.1:9999\"\n\
             [program.a]\ncommand = \"true\"\n",
        );
        let (live, later) = supervisor_changes(&old, &new);
        assert_eq!(live, vec!["shutdown_timeout"]);
        assert_eq!(later.len(), 1);
        assert!(
            later[0].starts_with("supervisor.http_listen changed"),
            "{later:?}"
        );
    }

    #[test]
    fn applying_takes_exactly_the_live_keys() {
        let (_, old) = programs("[program.a]\ncommand = \"true\"\n");
        let (_, new) = programs(
            "[supervisor]\nshutdown_timeout = \"5s\"\ndrain_delay = \"1s\"\n\
             restart_budget = { max = 3, per = \"10s\" }\n\
             http_listen = \"127.0.0.1:9999\"\nlog_level = \"debug\"\n\
             forward_signals = [\"USR2\"]\nsocket_mode = \"0640\"\n\
             control_socket = \"/tmp/other.sock\"\nlog_format = \"json\"\n\
             [program.a]\ncommand = \"true\"\n",
        );
        let applied = applied_supervisor(&old, &new);
        // Nothing live is left to apply, and nothing restart-only moved.
        let (live, _) = supervisor_changes(&applied, &new);
        assert!(live.is_empty(), "{live:?}");
        let (_, later) = supervisor_changes(&old, &applied);
        assert!(later.is_empty(), "{later:?}");
        assert_eq!(applied.shutdown_timeout, new.shutdown_timeout);
        assert_eq!(applied.http_listen, old.http_listen);
    }
}

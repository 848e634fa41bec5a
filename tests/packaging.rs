//! The files under `packaging/` are checked with the tools that consume them,
//! where those tools are installed, and against kelpie's own contract:
//!
//! - Prometheus rules: `promtool check rules` and `promtool test rules`
//!   (`packaging/prometheus/alerts_test.yml`), and every metric an alert
//!   uses is one of docs/metrics.md;
//! - Grafana dashboard: valid JSON, the `datasource` and `program`
//!   variables, every query uses only metrics of docs/metrics.md and parses as PromQL
//!   (`promtool check rules` on the queries turned into recording rules);
//! - systemd unit: `systemd-analyze verify` on a copy whose kelpie path is
//!   the binary under test (verify insists that `ExecStart=` exists), plus
//!   the settings kelpie relies on;
//! - launchd plist: parsed by Python's `plistlib` (what `plutil -lint`
//!   checks: well-formed XML, a plist DOCTYPE and root, valid value types);
//! - Docker, compose and Kubernetes files: the configs pass `kelpie check`,
//!   the grace periods exceed `drain_delay + shutdown_timeout`, probes and
//!   paths line up (YAML structure through PyYAML when it is installed).
//!
//! A missing tool skips that one check with a `SKIPPED: …` line.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// A bound on one external command; only reached when a tool hangs.
const HANG_LIMIT: Duration = Duration::from_secs(120);

/// The default `shutdown_timeout` (docs/configuration.md), for hosts whose config is not
/// shipped here.
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Every metric kelpie exports (besides `process_*`), as docs/metrics.md
/// lists them.
const METRICS: &[&str] = &[
    "kelpie_build_info",
    "kelpie_up",
    "kelpie_shutting_down",
    "kelpie_program_state",
    "kelpie_program_ready",
    "kelpie_program_enabled",
    "kelpie_program_instances_running",
    "kelpie_program_restarts_total",
    "kelpie_program_exits_total",
    "kelpie_program_last_exit_code",
    "kelpie_program_start_time_seconds",
    "kelpie_program_cpu_seconds_total",
    "kelpie_program_resident_memory_bytes",
    "kelpie_program_backoff_seconds",
    "kelpie_probe_duration_seconds",
    "kelpie_probe_failures_total",
    "kelpie_log_lines_total",
    "kelpie_restart_budget_available",
    "kelpie_restarts_delayed_total",
    "kelpie_http_requests_total",
];

/// The histograms among them: exposed as `_bucket`, `_sum` and `_count` series.
const HISTOGRAMS: &[&str] = &["kelpie_probe_duration_seconds"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether `program` is found in PATH.
fn have(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let path = dir.join(program);
            path.is_file()
                && std::fs::metadata(&path)
                    .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
                    .unwrap_or(false)
        })
    })
}

/// Runs `program args` (stdin from `/dev/null`) and waits for it, bounded
/// by `HANG_LIMIT`.
fn run(program: &str, args: &[&str]) -> Output {
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(root())
        .env_remove("KELPIE_CONFIG")
        .env_remove("KELPIE_SOCKET")
        .env_remove("KELPIE_LOG")
        .env_remove("KELPIE_LOG_FORMAT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // A test process has no reaper; waiting on its own child here is
        // what the reaper rule protects in the supervisor itself.
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(HANG_LIMIT) {
        Ok(output) => output.unwrap_or_else(|e| panic!("wait for {program}: {e}")),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("{program} {args:?} did not exit within {HANG_LIMIT:?}");
        }
    }
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    )
}

/// A duration as kelpie writes it: `"30s"`, `"1m 30s"`, `"250ms"`.
fn duration(value: &str) -> Duration {
    humantime::parse_duration(value).unwrap_or_else(|e| panic!("duration {value:?}: {e}"))
}

/// `drain_delay + shutdown_timeout` of a config (the documented defaults when absent):
/// the longest a graceful shutdown of kelpie may take before its final sweep.
fn shutdown_bound(config: &str) -> Duration {
    let table: toml::Table = toml::from_str(config).expect("config parses as TOML");
    let supervisor = table.get("supervisor").and_then(|s| s.as_table());
    let get = |key: &str, default: Duration| {
        supervisor
            .and_then(|s| s.get(key))
            .and_then(|v| v.as_str())
            .map_or(default, duration)
    };
    get("shutdown_timeout", DEFAULT_SHUTDOWN_TIMEOUT) + get("drain_delay", Duration::ZERO)
}

fn supervisor_key(config: &str, key: &str) -> Option<String> {
    let table: toml::Table = toml::from_str(config).expect("config parses as TOML");
    table
        .get("supervisor")?
        .get(key)?
        .as_str()
        .map(str::to_string)
}

/// Runs `kelpie check -c` on `config` (written to a temporary file named
/// `name`) and asserts it is valid.
fn assert_kelpie_check_ok(name: &str, config: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, config).unwrap();
    let out = run(
        env!("CARGO_BIN_EXE_kelpie"),
        &["check", "-c", path.to_str().unwrap()],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "kelpie check rejects the config {name}:\n{}",
        describe(&out)
    );
    assert!(
        text(&out.stdout).contains(": OK ("),
        "kelpie check {name}: {}",
        describe(&out)
    );
}

// ---------------------------------------------------------------------------
// PromQL: which metric names an expression uses

const PROMQL_WORDS: &[&str] = &[
    // aggregations
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    // binary and set operators, modifiers
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
];

/// Label lists follow these words in parentheses.
const LABEL_LIST_WORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names a PromQL expression (with Grafana variables) selects:
/// identifiers outside strings, label matchers, ranges and label lists that
/// are neither functions nor keywords.
fn metric_names(expr: &str) -> Vec<String> {
    // Drop string literals, `{…}` matchers and `[…]` ranges.
    let mut plain = String::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                let quote = c;
                while let Some(d) = chars.next() {
                    if d == '\\' && quote != '`' {
                        chars.next();
                    } else if d == quote {
                        break;
                    }
                }
                plain.push(' ');
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                for d in chars.by_ref() {
                    if d == close {
                        break;
                    }
                }
                plain.push(' ');
            }
            _ => plain.push(c),
        }
    }
    let bytes = plain.as_bytes();
    let is_start = |b: u8| b.is_ascii_alphabetic() || b == b'_' || b == b':';
    let is_part = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut names = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_digit() || b == b'$' {
            // A number or duration (`0.99`, `5m`, `1e3`) or a Grafana variable.
            while i < bytes.len() && (is_part(bytes[i]) || bytes[i] == b'.' || bytes[i] == b'$') {
                i += 1;
            }
            continue;
        }
        if !is_start(b) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_part(bytes[i]) {
            i += 1;
        }
        let word = &plain[start..i];
        let mut next = i;
        while next < bytes.len() && bytes[next].is_ascii_whitespace() {
            next += 1;
        }
        let call = next < bytes.len() && bytes[next] == b'(';
        if LABEL_LIST_WORDS.contains(&word) && call {
            // Skip the label list `(a, b)`.
            while next < bytes.len() && bytes[next] != b')' {
                next += 1;
            }
            i = next + 1;
            continue;
        }
        if call || PROMQL_WORDS.contains(&word) {
            continue; // a function, aggregation or keyword
        }
        names.push(word.to_string());
    }
    names
}

/// Whether `name` is a series kelpie exports (docs/metrics.md), or Prometheus's own
/// `up` for the target.
fn known_metric(name: &str) -> bool {
    if METRICS.contains(&name) || name == "up" || name.starts_with("process_") {
        return true;
    }
    HISTOGRAMS.iter().any(|h| {
        ["_bucket", "_sum", "_count"]
            .iter()
            .any(|suffix| name == format!("{h}{suffix}"))
    })
}

#[test]
fn metric_scanner_reads_promql() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.99, sum by (program, probe, le) (rate(kelpie_probe_duration_seconds_bucket{instance=~"$instance", program=~"$program"}[$__rate_interval])))"#
        ),
        ["kelpie_probe_duration_seconds_bucket"]
    );
    assert_eq!(
        metric_names(
            r#"(kelpie_program_ready{program!~""} == 0) and on (job, instance) (kelpie_shutting_down == 0) unless on (job, instance, program) (kelpie_program_state{state="failed"} == 1)"#
        ),
        [
            "kelpie_program_ready",
            "kelpie_shutting_down",
            "kelpie_program_state"
        ]
    );
    assert_eq!(
        metric_names("rate(kelpie_program_restarts_total[5m]) * 60 > 1e0"),
        ["kelpie_program_restarts_total"]
    );
    assert_eq!(
        metric_names("process_open_fds / process_max_fds > 0.8"),
        ["process_open_fds", "process_max_fds"]
    );
    assert!(known_metric("kelpie_probe_duration_seconds_bucket"));
    assert!(!known_metric("kelpie_program_restarts"));
    assert!(!known_metric("node_cpu_seconds_total"));
}

/// Every metric `metric_names` finds in `expr` must be known; returns them.
fn assert_spec_metrics(context: &str, expr: &str) -> Vec<String> {
    let names = metric_names(expr);
    assert!(!names.is_empty(), "{context}: no metric found in {expr:?}");
    for name in &names {
        assert!(
            known_metric(name),
            "{context}: {name:?} is not a metric of docs/metrics.md (expression {expr:?})"
        );
    }
    names
}

#[test]
fn every_metric_is_documented() {
    // docs/metrics.md documents the same set as the list above, so a renamed metric shows up here as well as in the dashboard.
    let doc = read("docs/metrics.md");
    for name in METRICS {
        assert!(
            doc.contains(&format!("| `{name}` |")),
            "docs/metrics.md has no row for {name}"
        );
    }
}

// ---------------------------------------------------------------------------
// Prometheus alert rules

/// The `expr:` values of a rules file: single-line or folded (`>-`) blocks.
fn rule_exprs(yaml: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut exprs = Vec::new();
    let mut alert = String::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if let Some(name) = trimmed.strip_prefix("- alert:") {
            alert = name.trim().to_string();
        }
        if let Some(value) = trimmed.strip_prefix("expr:") {
            let value = value.trim();
            let indent = line.len() - trimmed.len();
            if value.starts_with('>') || value.starts_with('|') {
                let mut block = Vec::new();
                while i + 1 < lines.len() {
                    let next = lines[i + 1];
                    let next_indent = next.len() - next.trim_start().len();
                    if !next.trim().is_empty() && next_indent <= indent {
                        break;
                    }
                    block.push(next.trim());
                    i += 1;
                }
                exprs.push((alert.clone(), block.join(" ")));
            } else {
                exprs.push((alert.clone(), value.to_string()));
            }
        }
        i += 1;
    }
    exprs
}

#[test]
fn alert_rules_pass_promtool() {
    if !have("promtool") {
        println!("SKIPPED: promtool not installed (apt-get install prometheus)");
        return;
    }
    let out = run(
        "promtool",
        &["check", "rules", "packaging/prometheus/alerts.yml"],
    );
    assert!(
        out.status.success(),
        "promtool check rules:\n{}",
        describe(&out)
    );
    assert!(
        text(&out.stdout).contains("SUCCESS"),
        "promtool check rules:\n{}",
        describe(&out)
    );
    // The rules fire when they should and stay quiet otherwise.
    let out = run(
        "promtool",
        &["test", "rules", "packaging/prometheus/alerts_test.yml"],
    );
    assert!(
        out.status.success(),
        "promtool test rules:\n{}",
        describe(&out)
    );
}

#[test]
fn alert_rules_use_spec_metrics_and_label_severity() {
    let yaml = read("packaging/prometheus/alerts.yml");
    let exprs = rule_exprs(&yaml);
    assert!(exprs.len() >= 8, "too few rules found: {exprs:?}");
    let mut used = BTreeSet::new();
    for (alert, expr) in &exprs {
        used.extend(assert_spec_metrics(&format!("alert {alert}"), expr));
    }
    for wanted in [
        "up",
        "kelpie_up",
        "kelpie_shutting_down",
        "kelpie_program_state",
        "kelpie_program_ready",
        "kelpie_program_restarts_total",
        "kelpie_restarts_delayed_total",
        "kelpie_restart_budget_available",
        "kelpie_probe_failures_total",
    ] {
        assert!(used.contains(wanted), "no alert uses {wanted}");
    }
    // Each rule has for:, a severity and both annotations.
    let rules: Vec<&str> = yaml.split("- alert:").skip(1).collect();
    assert_eq!(rules.len(), exprs.len());
    for rule in rules {
        let name = rule.lines().next().unwrap().trim();
        for key in ["for:", "severity:", "summary:", "description:", "runbook:"] {
            assert!(rule.contains(key), "alert {name} has no {key}");
        }
        assert!(
            rule.contains("severity: critical") || rule.contains("severity: warning"),
            "alert {name}: severity is neither critical nor warning"
        );
    }
    // The runbooks they point at exist.
    let ops = read("docs/operations.md");
    for anchor in yaml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook: docs/operations.md#"))
    {
        let heading = ops
            .lines()
            .filter(|l| l.starts_with('#'))
            .any(|l| github_anchor(l) == anchor);
        assert!(heading, "docs/operations.md has no heading for #{anchor}");
    }
}

/// GitHub's anchor for a Markdown heading line.
fn github_anchor(heading: &str) -> String {
    heading
        .trim_start_matches('#')
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Grafana dashboard

fn dashboard() -> Value {
    serde_json::from_str(&read("packaging/grafana/kelpie.json")).expect("kelpie.json is JSON")
}

/// Every non-row panel, nested ones included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            if panel["type"] == "row" {
                walk(&panel["panels"], out);
            } else {
                out.push(panel);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

#[test]
fn grafana_dashboard_uses_spec_metrics() {
    let dash = dashboard();
    let schema = dash["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    assert!(dash["title"].is_string() && dash["uid"].is_string());

    let vars = dash["templating"]["list"].as_array().expect("templating");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no template variable {name}"))
    };
    let datasource = var("datasource");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    let program = var("program");
    assert_eq!(program["type"], "query");
    assert_eq!(
        program["definition"],
        "label_values(kelpie_program_state, program)"
    );
    for v in vars.iter().filter(|v| v["type"] == "query") {
        let definition = v["definition"].as_str().unwrap();
        let inner = definition
            .strip_prefix("label_values(")
            .and_then(|s| s.split(',').next())
            .unwrap_or_else(|| panic!("variable query {definition:?}"));
        assert_spec_metrics(&format!("variable {}", v["name"]), inner);
    }

    let mut used = BTreeSet::new();
    let mut ids = BTreeSet::new();
    let panels = panels(&dash);
    assert!(panels.len() >= 12, "only {} panels", panels.len());
    for panel in &panels {
        let title = panel["title"].as_str().expect("panel title");
        assert!(
            ids.insert(panel["id"].as_u64().expect("panel id")),
            "duplicate panel id in {title}"
        );
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "panel {title} does not use the datasource variable"
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title} has no query");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            let expr = target["expr"].as_str().expect("target expr");
            used.extend(assert_spec_metrics(&format!("panel {title}"), expr));
        }
    }
    for wanted in [
        "kelpie_program_state",
        "kelpie_program_ready",
        "kelpie_program_restarts_total",
        "kelpie_program_exits_total",
        "kelpie_program_cpu_seconds_total",
        "kelpie_program_resident_memory_bytes",
        "kelpie_probe_duration_seconds_bucket",
        "kelpie_probe_failures_total",
        "kelpie_log_lines_total",
        "kelpie_restart_budget_available",
        "kelpie_restarts_delayed_total",
        "kelpie_http_requests_total",
    ] {
        assert!(used.contains(wanted), "no panel shows {wanted}");
    }
}

#[test]
fn grafana_queries_parse_as_promql() {
    if !have("promtool") {
        println!("SKIPPED: promtool not installed (apt-get install prometheus)");
        return;
    }
    // Each query becomes a recording rule, with Grafana's variables replaced
    // by what Grafana would send; `promtool check rules` parses them all.
    let dash = dashboard();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut count = 0;
    for panel in panels(&dash) {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$instance", ".*")
                .replace("$program", ".*");
            count += 1;
            rules.push_str(&format!(
                "      - record: kelpie_dashboard:query_{count}\n        expr: {}\n",
                serde_json::to_string(&expr).unwrap()
            ));
        }
    }
    let mut file = tempfile::Builder::new().suffix(".yml").tempfile().unwrap();
    file.write_all(rules.as_bytes()).unwrap();
    let out = run(
        "promtool",
        &["check", "rules", file.path().to_str().unwrap()],
    );
    assert!(
        out.status.success() && text(&out.stdout).contains(&format!("SUCCESS: {count} rules")),
        "dashboard queries:\n{rules}\n{}",
        describe(&out)
    );
}

// ---------------------------------------------------------------------------
// systemd

/// `Key=value` settings of a unit file, in order (comments skipped).
fn unit_settings(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter(|l| !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn unit_setting(unit: &str, key: &str) -> String {
    let values: Vec<String> = unit_settings(unit)
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values.len(), 1, "{key}= set {} times", values.len());
    values.into_iter().next().unwrap()
}

/// A systemd time span as used here: `45s`, `5min`, `1min 30s`.
fn systemd_span(value: &str) -> Duration {
    humantime::parse_duration(&value.replace("min", "m"))
        .unwrap_or_else(|e| panic!("time span {value:?}: {e}"))
}

#[test]
fn systemd_unit_settings() {
    let unit = read("packaging/systemd/kelpie.service");
    let config = read("packaging/systemd/supervisor.toml");
    assert_eq!(unit_setting(&unit, "Type"), "notify");
    assert_eq!(unit_setting(&unit, "NotifyAccess"), "main");
    assert_eq!(unit_setting(&unit, "KillMode"), "mixed");
    assert_eq!(unit_setting(&unit, "Restart"), "on-failure");
    assert_eq!(unit_setting(&unit, "RuntimeDirectory"), "kelpie");
    assert_eq!(
        unit_setting(&unit, "ExecStart"),
        "/usr/local/bin/kelpie run -c /etc/kelpie/supervisor.toml"
    );
    assert_eq!(
        unit_setting(&unit, "ExecReload"),
        "/usr/local/bin/kelpie reload -c /etc/kelpie/supervisor.toml"
    );
    // A refused reload (78) is a failed reload; an invalid config at start
    // is not worth restarting.
    assert_eq!(unit_setting(&unit, "RestartPreventExitStatus"), "78");
    // One program killed by the OOM killer must not stop the whole unit.
    assert_eq!(unit_setting(&unit, "OOMPolicy"), "continue");
    // kelpie's cgroup is kelpie's to manage (cgroup_root = "auto").
    assert_eq!(unit_setting(&unit, "Delegate"), "yes");
    assert!(!unit_setting(&unit, "LimitNOFILE").is_empty());

    // systemd must wait for the whole graceful shutdown: the shipped
    // config's and the default's.
    let stop = systemd_span(&unit_setting(&unit, "TimeoutStopSec"));
    for bound in [shutdown_bound(&config), DEFAULT_SHUTDOWN_TIMEOUT] {
        assert!(
            stop > bound + Duration::from_secs(5),
            "TimeoutStopSec {stop:?} leaves no margin over drain_delay + shutdown_timeout {bound:?}"
        );
    }
    let watchdog = systemd_span(&unit_setting(&unit, "WatchdogSec"));
    assert!(
        watchdog >= Duration::from_secs(2),
        "WatchdogSec {watchdog:?}"
    );

    // The shipped config puts the control socket into the RuntimeDirectory.
    let socket = supervisor_key(&config, "control_socket").expect("control_socket");
    assert_eq!(socket, "/run/kelpie/kelpie.sock");
}

#[test]
fn systemd_config_passes_kelpie_check() {
    assert_kelpie_check_ok(
        "supervisor.toml",
        &read("packaging/systemd/supervisor.toml"),
    );
}

#[test]
fn systemd_unit_verifies() {
    if !have("systemd-analyze") {
        println!("SKIPPED: systemd-analyze not installed");
        return;
    }
    // `verify` checks that ExecStart= and ExecReload= name executables, so the
    // copy points them at the binary under test instead of /usr/local/bin.
    let unit = read("packaging/systemd/kelpie.service")
        .replace("/usr/local/bin/kelpie", env!("CARGO_BIN_EXE_kelpie"));
    let dir = tempfile::tempdir().unwrap();
    let verify = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = run(
            "systemd-analyze",
            &["verify", "--man=no", path.to_str().unwrap()],
        );
        // Unknown keys and bad values are only printed (exit 0): any line
        // about the unit counts as a finding.
        let findings: Vec<String> = text_lines(&out)
            .into_iter()
            .filter(|l| l.contains(name))
            .collect();
        (out, findings)
    };

    // First make sure this systemd-analyze reports a broken unit at all.
    let broken = unit.replace("KillMode=mixed", "KillMode=mixed\nNoSuchSetting=1");
    let (out, findings) = verify("broken-kelpie.service", &broken);
    if findings.is_empty() {
        println!(
            "SKIPPED: systemd-analyze verify does not work here (it did not flag an unknown key):\n{}",
            describe(&out)
        );
        return;
    }

    let (out, findings) = verify("kelpie.service", &unit);
    assert!(
        out.status.success() && findings.is_empty(),
        "systemd-analyze verify kelpie.service:\n{}",
        describe(&out)
    );
}

fn text_lines(out: &Output) -> Vec<String> {
    text(&out.stdout)
        .lines()
        .chain(text(&out.stderr).lines())
        .map(str::to_string)
        .collect::<Vec<_>>()
}

// ---------------------------------------------------------------------------
// launchd

/// The plist as JSON, through Python's plistlib (the plutil -lint of Linux),
/// with its DOCTYPE and root element checked by the XML parser.
const PLIST_TO_JSON: &str = r#"
import json, plistlib, sys, xml.dom.minidom
path = sys.argv[1]
with open(path, "rb") as f:
    data = f.read()
doc = xml.dom.minidom.parseString(data)
assert doc.doctype is not None, "no DOCTYPE"
assert doc.doctype.name == "plist", doc.doctype.name
assert doc.doctype.publicId == "-//Apple//DTD PLIST 1.0//EN", doc.doctype.publicId
root = doc.documentElement
assert root.tagName == "plist" and root.getAttribute("version") == "1.0", root.tagName
value = plistlib.loads(data, fmt=plistlib.FMT_XML)
assert isinstance(value, dict), "the top level is not a dict"
json.dump(value, sys.stdout)
"#;

#[test]
fn launchd_plist_is_valid() {
    if !have("python3") {
        println!("SKIPPED: python3 not installed");
        return;
    }
    let path = root().join("packaging/launchd/dev.kelpie.supervisor.plist");
    let out = run("python3", &["-c", PLIST_TO_JSON, path.to_str().unwrap()]);
    assert!(out.status.success(), "plist:\n{}", describe(&out));
    let plist: Value = serde_json::from_slice(&out.stdout).expect("JSON from plistlib");

    assert_eq!(plist["Label"], "dev.kelpie.supervisor");
    let args: Vec<&str> = plist["ProgramArguments"]
        .as_array()
        .expect("ProgramArguments")
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args[1..],
        ["run", "-c", "/usr/local/etc/kelpie/supervisor.toml"]
    );
    assert!(args[0].ends_with("/kelpie"), "{args:?}");
    assert_eq!(plist["KeepAlive"]["SuccessfulExit"], false);
    assert_eq!(plist["RunAtLoad"], true);
    assert!(plist["StandardOutPath"].is_string());
    assert!(plist["StandardErrorPath"].is_string());
    assert!(plist["ProcessType"].is_string());
    let exit_timeout = plist["ExitTimeOut"].as_u64().expect("ExitTimeOut");
    assert!(
        Duration::from_secs(exit_timeout) > DEFAULT_SHUTDOWN_TIMEOUT + Duration::from_secs(5),
        "ExitTimeOut {exit_timeout} is not above shutdown_timeout"
    );
}

// ---------------------------------------------------------------------------
// Docker and compose

/// Dockerfile instructions with their continuation lines joined.
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        if trimmed.starts_with('#') {
            continue; // a comment inside a continued instruction
        }
        current.push_str(trimmed);
        let (word, rest) = current.split_once(' ').unwrap_or((&current, ""));
        out.push((word.to_uppercase(), rest.trim().to_string()));
        current.clear();
    }
    out
}

#[test]
fn dockerfile_runs_kelpie_as_pid_1() {
    let dockerfile = read("packaging/docker/Dockerfile");
    let instructions = dockerfile_instructions(&dockerfile);
    let all = |word: &str| -> Vec<&str> {
        instructions
            .iter()
            .filter(|(w, _)| w == word)
            .map(|(_, rest)| rest.as_str())
            .collect()
    };
    let froms = all("FROM");
    assert_eq!(froms.len(), 2, "multi-stage: {froms:?}");
    assert!(froms[0].starts_with("rust:1-bookworm AS "), "{froms:?}");
    assert_eq!(froms[1], "debian:bookworm-slim");
    assert!(
        all("RUN")
            .iter()
            .any(|r| r.contains("cargo build --release --locked")),
        "no `cargo build --release --locked`"
    );
    // Exec form: kelpie itself is PID 1, no shell in between.
    assert_eq!(all("ENTRYPOINT"), [r#"["/usr/local/bin/kelpie"]"#]);
    assert_eq!(
        all("CMD"),
        [r#"["run", "-c", "/etc/kelpie/supervisor.toml"]"#]
    );
    assert_eq!(all("STOPSIGNAL"), ["SIGTERM"]);
    assert_eq!(all("EXPOSE"), ["9100"]);
    let health = all("HEALTHCHECK");
    assert_eq!(health.len(), 1);
    assert!(
        health[0].ends_with(r#"CMD ["kelpie", "ready"]"#),
        "{health:?}"
    );
    let users = all("USER");
    assert!(
        users.last().is_some_and(|u| *u != "root" && *u != "0"),
        "the runtime stage runs as root: {users:?}"
    );
    // Every file copied from the build context exists (context = repo root).
    for copy in all("COPY") {
        if copy.starts_with("--from") {
            continue;
        }
        let parts: Vec<&str> = copy.split_whitespace().collect();
        for source in &parts[..parts.len() - 1] {
            assert!(
                root().join(source).exists(),
                "COPY {source}: not in the repository"
            );
        }
        // And the context filter lets it through.
        let ignore = read("packaging/docker/Dockerfile.dockerignore");
        for source in &parts[..parts.len() - 1] {
            let allowed = format!("!{}", source.trim_end_matches('/').trim_start_matches("./"));
            assert!(
                ignore.lines().any(|l| l.trim() == allowed),
                "Dockerfile.dockerignore does not let {source} through"
            );
        }
    }
}

#[test]
fn docker_config_passes_kelpie_check() {
    let config = read("packaging/docker/supervisor.toml");
    assert_eq!(
        supervisor_key(&config, "http_listen").as_deref(),
        Some("0.0.0.0:9100")
    );
    assert_kelpie_check_ok("supervisor.toml", &config);
}

/// The value of the first `key:` line in a YAML text (plain scalars only).
fn yaml_scalar<'a>(yaml: &'a str, key: &str) -> &'a str {
    yaml.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|l| l.trim_start().strip_prefix(&format!("{key}:")))
        .map(|v| v.split(" #").next().unwrap().trim().trim_matches('"'))
        .unwrap_or_else(|| panic!("no {key}:"))
}

#[test]
fn compose_waits_for_the_graceful_shutdown() {
    let compose = read("packaging/docker/compose.yaml");
    let config = read("packaging/docker/supervisor.toml");
    let grace = duration(yaml_scalar(&compose, "stop_grace_period"));
    let bound = shutdown_bound(&config);
    assert!(
        grace > bound + Duration::from_secs(5),
        "stop_grace_period {grace:?} is not above drain_delay + shutdown_timeout {bound:?}"
    );
    assert_eq!(yaml_scalar(&compose, "stop_signal"), "SIGTERM");
    assert!(compose.contains(r#"test: ["CMD", "kelpie", "ready"]"#));
    assert!(compose.contains("- ./supervisor.toml:/etc/kelpie/supervisor.toml:ro"));
    // The build section points at this repository's Dockerfile.
    let context = Path::new("packaging/docker").join(yaml_scalar(&compose, "context"));
    let dockerfile = root()
        .join(&context)
        .join(yaml_scalar(&compose, "dockerfile"));
    assert!(
        dockerfile.is_file(),
        "compose build: {} does not exist",
        dockerfile.display()
    );
}

// ---------------------------------------------------------------------------
// Kubernetes

/// The `supervisor.toml: |` block of the ConfigMap, de-indented.
fn configmap_config(yaml: &str) -> String {
    let lines: Vec<&str> = yaml.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == "supervisor.toml: |")
        .expect("a `supervisor.toml: |` block");
    let key_indent = lines[start].len() - lines[start].trim_start().len();
    let mut block = Vec::new();
    for line in &lines[start + 1..] {
        let indent = line.len() - line.trim_start().len();
        if !line.trim().is_empty() && indent <= key_indent {
            break;
        }
        block.push(*line);
    }
    let indent = block
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .expect("a non-empty block");
    block
        .iter()
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn kubernetes_config_passes_kelpie_check() {
    let config = configmap_config(&read("packaging/kubernetes/deployment.yaml"));
    assert_eq!(
        supervisor_key(&config, "http_listen").as_deref(),
        Some("0.0.0.0:9100")
    );
    assert_kelpie_check_ok("supervisor.toml", &config);
}

#[test]
fn kubernetes_grace_period_covers_the_shutdown() {
    let yaml = read("packaging/kubernetes/deployment.yaml");
    let grace: u64 = yaml_scalar(&yaml, "terminationGracePeriodSeconds")
        .parse()
        .expect("terminationGracePeriodSeconds is a number");
    let bound = shutdown_bound(&configmap_config(&yaml));
    assert!(
        Duration::from_secs(grace) > bound + Duration::from_secs(5),
        "terminationGracePeriodSeconds {grace} is not above drain_delay + shutdown_timeout {bound:?}"
    );
    assert!(
        !yaml
            .lines()
            .any(|l| !l.trim_start().starts_with('#') && l.contains("preStop:")),
        "kelpie drains itself; no preStop hook"
    );
}

/// Every document of a YAML file as JSON, through PyYAML; `None` when
/// PyYAML is not installed.
fn yaml_documents(relative: &str) -> Option<Vec<Value>> {
    const YAML_TO_JSON: &str = r#"
import json, sys
try:
    import yaml
except ImportError:
    print("NO_PYYAML")
    sys.exit(0)
with open(sys.argv[1]) as f:
    docs = [d for d in yaml.safe_load_all(f) if d is not None]
json.dump(docs, sys.stdout)
"#;
    if !have("python3") {
        println!("SKIPPED: python3 not installed; YAML structure of {relative} not checked");
        return None;
    }
    let path = root().join(relative);
    let out = run("python3", &["-c", YAML_TO_JSON, path.to_str().unwrap()]);
    assert!(out.status.success(), "{relative}:\n{}", describe(&out));
    if text(&out.stdout).trim() == "NO_PYYAML" {
        println!("SKIPPED: PyYAML not installed (python3-yaml); YAML structure of {relative} not checked");
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).expect("JSON from PyYAML"))
}

#[test]
fn kubernetes_manifest_structure() {
    let Some(docs) = yaml_documents("packaging/kubernetes/deployment.yaml") else {
        return;
    };
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ConfigMap", "Deployment"]);
    let configmap = &docs[0];
    let deployment = &docs[1];

    // The string extraction above read the same config PyYAML reads.
    let config = configmap["data"]["supervisor.toml"].as_str().unwrap();
    assert_eq!(
        config,
        configmap_config(&read("packaging/kubernetes/deployment.yaml"))
    );

    let spec = &deployment["spec"]["template"]["spec"];
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"],
        deployment["spec"]["template"]["metadata"]["labels"]
    );
    let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(Duration::from_secs(grace) > shutdown_bound(config));
    let container = &spec["containers"][0];
    let port = &container["ports"][0];
    assert_eq!(port["containerPort"], 9100);
    let probe_port = |probe: &str| {
        let p = &container[probe]["httpGet"]["port"];
        assert!(
            *p == port["name"] || *p == 9100,
            "{probe} port {p} is not kelpie's"
        );
        container[probe]["httpGet"]["path"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(probe_port("readinessProbe"), "/ready");
    assert_eq!(probe_port("livenessProbe"), "/health");
    assert!(container["lifecycle"]["preStop"].is_null());
    assert!(container["resources"]["requests"].is_object());

    // `kelpie run -c` reads the file the ConfigMap is mounted as.
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args, ["run", "-c", "/etc/kelpie/supervisor.toml"]);
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/etc/kelpie")
        .expect("the config volume is mounted at /etc/kelpie");
    let volume = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted config volume");
    assert_eq!(volume["configMap"]["name"], configmap["metadata"]["name"]);
}

#[test]
fn compose_structure() {
    let Some(docs) = yaml_documents("packaging/docker/compose.yaml") else {
        return;
    };
    assert_eq!(docs.len(), 1);
    let service = &docs[0]["services"]["kelpie"];
    assert_eq!(
        service["healthcheck"]["test"],
        serde_json::json!(["CMD", "kelpie", "ready"])
    );
    let grace = duration(service["stop_grace_period"].as_str().unwrap());
    assert!(grace > shutdown_bound(&read("packaging/docker/supervisor.toml")));
    assert!(service["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v == "./supervisor.toml:/etc/kelpie/supervisor.toml:ro"));
}

//! Whole files: every error in one run, defaults, order, `load`, and input that must never panic.

use super::*;
use crate::config::validate::MAX_CONFIG_BYTES;

// ---------------------------------------------------------------------------
// All errors in one run

#[test]
fn every_error_of_a_file_is_reported_in_one_run_sorted_by_line() {
    let source = "\
[supervisor]
shutdown_timeout = \"30\"

[program.web]
command = [\"sh\"]
restart = \"alwayz\"
depends_on = [\"dbb\"]

[program.db]
command = []
stop_signal = \"KILL\"
instances = 0

[program.job]
type = \"oneshot\"
command = \"sh\"
restart = \"always\"
[program.job.readiness]
http = \"http://127.0.0.1:1/\"
tcp = \"127.0.0.1:1\"

[group.g]
programs = [\"web\", \"nobody\"]
";
    let validation = run_with(source, Mode::Check, &root());
    assert!(validation.config.is_none());
    assert_eq!(
        printed(&validation),
        [
            "supervisor.toml:2:20: supervisor.shutdown_timeout: invalid duration \"30\": a unit is required, e.g. \"30s\"",
            "supervisor.toml:6:11: program.web.restart: invalid value \"alwayz\" (did you mean \"always\"?); expected one of: always, on-failure, never",
            "supervisor.toml:7:15: program.web.depends_on: unknown program \"dbb\" (did you mean \"db\"?)",
            "supervisor.toml:10:11: program.db.command: command is empty",
            "supervisor.toml:11:15: program.db.stop_signal: signal \"KILL\" cannot be caught; use e.g. \"TERM\"",
            "supervisor.toml:12:13: program.db.instances: 0 is out of range; expected 1 to 10000",
            "supervisor.toml:17:11: program.job.restart: \"always\" would rerun a oneshot forever; use \"on-failure\" or \"never\"",
            "supervisor.toml:18:1: program.job.readiness: more than one probe kind (http, tcp); choose exactly one",
            "supervisor.toml:23:20: group.g.programs: unknown program \"nobody\"",
        ]
    );
}

// ---------------------------------------------------------------------------
// Defaults and order

#[test]
fn defaults_are_filled_in() {
    let config = valid(&program_a(""));
    let s = &config.supervisor;
    assert_eq!(s.http_listen.as_deref(), Some("127.0.0.1:9100"));
    assert_eq!(s.socket_mode, 0o600);
    assert_eq!(s.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(s.drain_delay, Duration::ZERO);
    assert_eq!(s.restart_budget, None);
    assert_eq!(s.log_format, LogFormat::Auto);
    assert_eq!(s.log_level, "info");
    assert!(s.forward_signals.is_empty());

    let p = &config.programs[0];
    assert_eq!(p.name, "a");
    assert_eq!(p.command, ["sh"]);
    assert_eq!(p.directory, None);
    assert!(p.environment.is_empty());
    assert_eq!(
        (p.user.as_deref(), p.group.as_deref(), p.umask),
        (None, None, None)
    );
    assert_eq!(p.instances, 1);
    assert!(p.autostart);
    assert_eq!(p.kind, ProgramKind::Service);
    assert_eq!(p.restart, RestartPolicy::Always);
    assert_eq!(p.success_codes, [0]);
    assert_eq!(p.start_seconds, Duration::from_secs(1));
    assert_eq!(p.start_timeout, Duration::from_secs(60));
    assert_eq!(
        p.backoff,
        BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.2,
        }
    );
    assert_eq!(p.max_restarts, 10);
    assert_eq!(p.restart_window, Duration::from_secs(60));
    assert_eq!(p.on_failure, OnFailure::KeepRunning);
    assert_eq!(p.stop_signal, Signal::SIGTERM);
    assert_eq!(p.stop_timeout, Duration::from_secs(10));
    assert!(p.depends_on.is_empty());
    assert!(p.required);
    assert_eq!(p.readiness, None);
    assert_eq!(p.liveness, None);
    assert_eq!(p.log, LogMode::Inherit);
    assert_eq!(p.instance_name(0), "a:0");
    assert!(p.is_success(0) && !p.is_success(1));
}

#[test]
fn oneshot_defaults_to_restart_on_failure() {
    let config = valid(&program_a("type = \"oneshot\""));
    assert_eq!(config.programs[0].kind, ProgramKind::Oneshot);
    assert_eq!(config.programs[0].restart, RestartPolicy::OnFailure);
}

#[test]
fn explicit_values_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("supervisor.toml");
    let source = "\
[supervisor]
http_listen = \"off\"
restart_budget = { max = 30, per = \"10s\" }
log_format = \"json\"
forward_signals = [\"USR1\", \"SIGUSR2\"]

[program.a]
command = [\"sh\"]
umask = \"027\"
instances = 3
autostart = false
restart = \"never\"
success_codes = [0, 3]
start_seconds = \"1m 30s\"
backoff = { initial = \"250ms\", max = \"5s\", multiplier = 1.5, jitter = 0 }
on_failure = \"shutdown\"
required = false
log = { mode = \"file\", file = \"logs/a.log\", max_size = \"2MiB\", keep = 2 }
";
    let validation = validate(source, &path, Mode::Check, &root());
    assert_eq!(printed(&validation), Vec::<String>::new());
    let config = validation.config.unwrap();
    let s = &config.supervisor;
    assert_eq!(s.http_listen, None);
    assert_eq!(
        s.restart_budget,
        Some(RestartBudget {
            max: 30,
            per: Duration::from_secs(10)
        })
    );
    assert_eq!(s.log_format, LogFormat::Json);
    assert_eq!(s.forward_signals, [Signal::SIGUSR1, Signal::SIGUSR2]);
    let p = &config.programs[0];
    assert_eq!(p.umask, Some(0o027));
    assert_eq!(config.instance_count(), 3);
    assert!(!p.autostart && !p.required);
    assert_eq!(p.restart, RestartPolicy::Never);
    assert_eq!(p.success_codes, [0, 3]);
    assert_eq!(p.start_seconds, Duration::from_secs(90));
    assert_eq!(
        p.backoff,
        BackoffConfig {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(5),
            multiplier: 1.5,
            jitter: 0.0,
        }
    );
    assert_eq!(p.on_failure, OnFailure::Shutdown);
    assert_eq!(
        p.log,
        LogMode::File {
            path: dir.path().join("logs/a.log"),
            max_size: 2 << 20,
            keep: 2,
        }
    );
}

#[test]
fn programs_come_in_dependency_order_with_file_order_for_ties() {
    let config = valid(
        "[program.web]\ncommand = [\"sh\"]\ndepends_on = [\"db\", \"cache\"]\n\
         [program.worker]\ncommand = [\"sh\"]\n\
         [program.db]\ncommand = [\"sh\"]\ndepends_on = { migrate = \"completed\" }\n\
         [program.cache]\ncommand = [\"sh\"]\n\
         [program.migrate]\ncommand = [\"sh\"]\ntype = \"oneshot\"\n\
         [program.zeta]\ncommand = [\"sh\"]\n\
         [program.alpha]\ncommand = [\"sh\"]\n",
    );
    let names: Vec<&str> = config.programs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["migrate", "db", "cache", "web", "worker", "zeta", "alpha"]
    );
    assert_eq!(config.program("alpha").unwrap().name, "alpha");
    assert!(config.program("nope").is_none());
}

#[test]
fn depends_on_forms() {
    let config = valid(
        "[program.db]\ncommand = [\"sh\"]\n[program.job]\ncommand = [\"sh\"]\ntype = \"oneshot\"\n\
         [program.a]\ncommand = [\"sh\"]\ndepends_on = [\"db\"]\n\
         [program.b]\ncommand = [\"sh\"]\ndepends_on = { db = \"started\", job = \"completed\" }\n",
    );
    assert_eq!(
        config.program("a").unwrap().depends_on,
        [("db".to_string(), DependencyCondition::Ready)]
    );
    let mut b = config.program("b").unwrap().depends_on.clone();
    b.sort();
    assert_eq!(
        b,
        [
            ("db".to_string(), DependencyCondition::Started),
            ("job".to_string(), DependencyCondition::Completed),
        ]
    );
}

#[test]
fn groups_are_kept_in_file_order() {
    let config = valid(
        "[program.a]\ncommand = [\"sh\"]\n[program.b]\ncommand = [\"sh\"]\n[program.c]\ncommand = [\"sh\"]\n\
         [group.z]\nprograms = [\"b\", \"a\"]\nstrategy = \"rest_for_one\"\nmax_restarts = 5\n\
         [group.y]\nprograms = [\"c\"]\non_failure = \"shutdown\"\nrestart_window = \"5m\"\n",
    );
    let names: Vec<&str> = config.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["z", "y"]);
    let z = &config.groups[0];
    assert_eq!(z.programs, ["b", "a"]);
    assert_eq!(z.strategy, GroupStrategy::RestForOne);
    assert_eq!(z.max_restarts, Some(5));
    assert_eq!(z.restart_window, Duration::from_secs(60));
    assert_eq!(z.on_failure, OnFailure::KeepRunning);
    let y = &config.groups[1];
    assert_eq!(y.strategy, GroupStrategy::OneForOne);
    assert_eq!(y.max_restarts, None);
    assert_eq!(y.restart_window, Duration::from_secs(300));
    assert_eq!(y.on_failure, OnFailure::Shutdown);
}

// ---------------------------------------------------------------------------
// load()

#[test]
fn load_reports_unreadable_files_without_a_position() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let validation = load(&missing, Mode::Check, &root());
    assert!(validation.config.is_none());
    assert_eq!(
        printed(&validation),
        [format!(
            "{}: cannot read config file: No such file or directory",
            missing.display()
        )]
    );
}

#[test]
fn load_rejects_invalid_utf8_at_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("supervisor.toml");
    std::fs::write(&path, b"[program.a]\ncommand = [\"s\xffh\"]\n").unwrap();
    assert_eq!(
        printed(&load(&path, Mode::Check, &root())),
        [format!(
            "{}:2:14: config file is not valid UTF-8",
            path.display()
        )]
    );
}

#[test]
fn load_rejects_huge_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("supervisor.toml");
    std::fs::write(&path, vec![b'#'; MAX_CONFIG_BYTES + 1]).unwrap();
    assert_eq!(
        printed(&load(&path, Mode::Check, &root())),
        [format!(
            "{}: config file is 4194305 bytes; the limit is 4194304",
            path.display()
        )]
    );
}

#[test]
fn load_reads_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("supervisor.toml");
    std::fs::write(&path, program_a("")).unwrap();
    let validation = load(&path, Mode::Run, &root());
    assert_eq!(printed(&validation), Vec::<String>::new());
    assert_eq!(validation.config.unwrap().path, path);
}

#[test]
fn truncated_or_mangled_input_never_panics() {
    let example = include_str!("../../../supervisor.toml.example");
    let boundaries = example
        .char_indices()
        .map(|(i, _)| i)
        .chain([example.len()]);
    for (n, end) in boundaries.enumerate() {
        let truncated = &example[..end];
        let validation = run_with(truncated, Mode::Run, &user());
        // Whatever is wrong, every diagnostic has a position in the file.
        for diagnostic in &validation.diagnostics {
            assert!(diagnostic.line >= 1, "{end}: {diagnostic}");
        }
        // Dropping one character (or adding a quote) must not panic either;
        // sampled to keep the test fast.
        if n % 4 != 0 {
            continue;
        }
        let mut dropped = truncated.to_string();
        dropped.push_str(&example[end..].chars().skip(1).collect::<String>());
        let _ = run_with(&dropped, Mode::Check, &root());
        let quoted = format!("{truncated}\"{}", &example[end..]);
        let _ = run_with(&quoted, Mode::Check, &root());
    }
}

#[test]
fn stop_timeout_without_headroom_is_a_warning() {
    let source = "[supervisor]\nshutdown_timeout = \"5s\"\n\n[program.slow]\ncommand = [\"sleep\", \"1\"]\nstop_timeout = \"5s\"\n\n[program.quick]\ncommand = [\"sleep\", \"1\"]\nstop_timeout = \"4s\"\n";
    let host = Host::hermetic();
    let v = validate(source, Path::new("supervisor.toml"), Mode::Run, &host);
    let shown: Vec<String> = v.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        shown,
        vec!["supervisor.toml:4:10: warning: program.slow.stop_timeout: stop_timeout (5s) leaves no headroom inside shutdown_timeout (5s); a slow stop will be cut short by SIGKILL"]
    );
    assert!(v.config.is_some(), "warnings are never fatal");
}

#[test]
fn socket_mode_0660_is_quiet() {
    let source =
        "[supervisor]\nsocket_mode = \"0660\"\n\n[program.a]\ncommand = [\"sleep\", \"1\"]\n";
    let host = Host::hermetic();
    let v = validate(source, Path::new("supervisor.toml"), Mode::Check, &host);
    assert!(v.diagnostics.is_empty(), "{:?}", v.diagnostics);
}

#[test]
fn running_the_example_writes_no_log_file_into_the_checkout() {
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = include_str!("../../../supervisor.toml.example");
    let validation = validate(
        source,
        &checkout.join("supervisor.toml.example"),
        Mode::Check,
        &user(),
    );
    let config = validation.config.expect("the example is valid");
    let files: Vec<&Path> = config
        .programs
        .iter()
        .filter_map(|p| match &p.log {
            LogMode::File { path, .. } => Some(path.as_path()),
            _ => None,
        })
        .collect();
    assert!(!files.is_empty(), "the example shows a log file");
    for file in files {
        assert!(
            !file.starts_with(checkout),
            "{} is inside the checkout",
            file.display()
        );
    }
}

#[test]
fn the_examples_log_level_comment_shows_an_accepted_filter() {
    let source = include_str!("../../../supervisor.toml.example");
    let line = source
        .lines()
        .find(|l| l.starts_with("log_level"))
        .expect("the example sets log_level");
    let shown = line
        .split("e.g. \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the comment shows an example filter");
    crate::logging::parse_filter(shown).expect("the shown filter is accepted");
    assert!(!line.contains("EnvFilter"), "{line}");
}

// ---------------------------------------------------------------------------
// Open files against the hard RLIMIT_NOFILE

fn with_open_files_limit(limit: u64) -> Host {
    Host {
        open_files_limit: Some(limit),
        ..user()
    }
}

#[test]
fn instances_beyond_the_open_file_limit_are_refused_for_run_and_warned_for_check() {
    // 64 of kelpie's own, then per instance 2 pipes, the notify socket and
    // an http liveness socket, and one log file for `b`: 64 + 100*2 +
    // 200*4 + 1 = 1065.
    let source = "[program.a]\ncommand = [\"sh\"]\ninstances = 100\n\n\
                  [program.b]\ncommand = [\"sh\"]\ninstances = 200\n\
                  readiness = { notify = true }\nliveness = { http = \"http://127.0.0.1:9/\" }\n\
                  log = { mode = \"file\", file = \"b.log\" }\n";
    let message = "program.b: the config's 300 program instances need about 1065 open files in kelpie (2 pipes per instance, plus notify and probe sockets and log files), above the hard open-file limit (RLIMIT_NOFILE) of 1064; raise it to at least 1065 (LimitNOFILE= in the service unit, `ulimit -n` where kelpie starts, `--ulimit nofile=` for docker)";

    let run = run_with(source, Mode::Run, &with_open_files_limit(1064));
    let shown: Vec<String> = run.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(shown, vec![format!("supervisor.toml:5:10: {message}")]);
    assert!(run.config.is_none(), "run must start nothing");

    let check = run_with(source, Mode::Check, &with_open_files_limit(1064));
    let shown: Vec<String> = check.diagnostics.iter().map(|d| d.to_string()).collect();
    let (position, rest) = message.split_at("program.b: ".len());
    assert_eq!(
        shown,
        vec![format!(
            "supervisor.toml:5:10: warning: {position}{rest}, or `kelpie run` will refuse it"
        )]
    );
    assert!(check.config.is_some(), "a warning is not fatal");

    let exact = run_with(source, Mode::Run, &with_open_files_limit(1065));
    assert!(exact.diagnostics.is_empty(), "{:?}", exact.diagnostics);
}

#[test]
fn the_open_file_shortfall_names_the_program_that_crosses_the_limit() {
    let source = "[program.a]\ncommand = [\"sh\"]\ninstances = 100\n\n\
                  [program.quiet]\ncommand = [\"sh\"]\ninstances = 5000\nlog = { mode = \"discard\" }\n\n\
                  [program.b]\ncommand = [\"sh\"]\ninstances = 100\n\n\
                  [program.c]\ncommand = [\"sh\"]\ninstances = 100\n";
    // 64 + 200, nothing for `quiet` (discarded output: no pipes), + 200
    // crosses 400 at `b`; `c` is past it already.
    let run = run_with(source, Mode::Run, &with_open_files_limit(400));
    let keys: Vec<&str> = run.diagnostics.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(keys, vec!["program.b"]);
    assert!(
        run.diagnostics[0]
            .message
            .contains("5300 program instances need about 664 open files"),
        "{}",
        run.diagnostics[0]
    );
}

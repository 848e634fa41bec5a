//! Config validation: every message is asserted verbatim, as
//! `kelpie check` prints it (`file:line:col: key: message`).

use super::validate::MAX_CONFIG_BYTES;
use super::*;
use crate::os_lookup::find_executable;

use std::os::unix::fs::PermissionsExt;

/// Root, with a PATH where `sh` exists on every Unix.
fn root() -> Host {
    Host {
        is_root: true,
        path_var: Some("/bin:/usr/bin".into()),
        runtime_dir: None,
    }
}

fn user() -> Host {
    Host {
        is_root: false,
        ..root()
    }
}

fn run_with(source: &str, mode: Mode, host: &Host) -> Validation {
    validate(source, Path::new("supervisor.toml"), mode, host)
}

/// Every diagnostic (errors and warnings) of `kelpie check`, as printed.
fn diags(source: &str) -> Vec<String> {
    printed(&run_with(source, Mode::Check, &root()))
}

fn printed(validation: &Validation) -> Vec<String> {
    validation
        .diagnostics
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// The single diagnostic of `source`; fails when there are more or none.
fn one(source: &str) -> String {
    let all = diags(source);
    assert_eq!(
        all.len(),
        1,
        "expected exactly one diagnostic, got {all:#?}"
    );
    all.into_iter().next().unwrap()
}

/// A config that must validate without errors or warnings.
fn valid(source: &str) -> Config {
    let validation = run_with(source, Mode::Check, &root());
    assert_eq!(printed(&validation), Vec::<String>::new());
    validation.config.expect("valid config")
}

/// `[program.a]` with a working command and `extra` lines; the extra lines
/// start on line 3.
fn program_a(extra: &str) -> String {
    format!("[program.a]\ncommand = [\"sh\"]\n{extra}\n")
}

// ---------------------------------------------------------------------------
// TOML syntax

#[test]
fn syntax_error_is_located() {
    assert_eq!(
        one("[program.a]\ncommand = [\"sh\"\n"),
        "supervisor.toml:2:16: TOML syntax: unclosed array, expected `]`"
    );
    assert_eq!(
        one("[program.a]\ncommand = [\"sh\"]\nrestart = always\n"),
        "supervisor.toml:3:11: TOML syntax: string values must be quoted, expected literal string"
    );
}

#[test]
fn syntax_error_column_counts_characters_not_bytes() {
    // "ü" is two bytes; the column is that of the character.
    assert_eq!(
        one("[program.a]\ncommand = [\"sh\"]\nenvironment = { \"ü\" = 1 }\n"),
        "supervisor.toml:3:23: program.a.environment: expected a string, found integer `1`"
    );
}

#[test]
fn duplicate_program_table_names_both_lines() {
    let source = "[program.a]\ncommand = [\"sh\"]\n\n[program.a]\ncommand = [\"sh\"]\n";
    assert_eq!(
        one(source),
        "supervisor.toml:4:10: TOML syntax: table [program.a] is defined twice (first on line 1)"
    );
}

#[test]
fn duplicate_table_after_inline_definition() {
    let source = "[program]\na = { command = [\"sh\"] }\n[program.a]\ncommand = [\"sh\"]\n";
    assert_eq!(
        one(source),
        "supervisor.toml:3:10: TOML syntax: table [program.a] is defined twice"
    );
}

#[test]
fn duplicate_key_is_named() {
    assert_eq!(
        one(&program_a("command = [\"true\"]")),
        "supervisor.toml:3:1: TOML syntax: duplicate key `command`"
    );
}

// ---------------------------------------------------------------------------
// Unknown keys

#[test]
fn unknown_top_level_key() {
    assert_eq!(
        diags(&format!("foo = 1\n{}", program_a(""))),
        ["supervisor.toml:1:1: foo: unknown key; expected one of: supervisor, program, group"]
    );
}

#[test]
fn misspelled_program_section_gets_a_hint() {
    assert_eq!(
        diags("[programs.a]\ncommand = [\"sh\"]\n"),
        [
            "supervisor.toml:1:1: program: no programs defined; add at least one [program.NAME] table",
            "supervisor.toml:1:2: programs: unknown key (did you mean `program`?)",
        ]
    );
}

#[test]
fn unknown_supervisor_keys() {
    let source = format!(
        "[supervisor]\nhttp_listn = \"off\"\nbogus = 1\n{}",
        program_a("")
    );
    assert_eq!(
        diags(&source),
        [
            "supervisor.toml:2:1: supervisor.http_listn: unknown key (did you mean `http_listen`?)",
            "supervisor.toml:3:1: supervisor.bogus: unknown key; expected one of: http_listen, control_socket, socket_mode, shutdown_timeout, drain_delay, restart_budget, log_format, log_level, forward_signals",
        ]
    );
}

#[test]
fn unknown_program_keys() {
    assert_eq!(
        diags(&program_a("restat = \"always\"\nCommand = 1\nzzzzzz = 1")),
        [
            "supervisor.toml:3:1: program.a.restat: unknown key (did you mean `restart`?)",
            "supervisor.toml:4:1: program.a.Command: unknown key (did you mean `command`?)",
            "supervisor.toml:5:1: program.a.zzzzzz: unknown key; expected one of: command, directory, environment, env_file, user, group, umask, instances, autostart, type, restart, success_codes, start_seconds, start_timeout, backoff, max_restarts, restart_window, on_failure, stop_signal, stop_timeout, depends_on, required, readiness, liveness, log",
        ]
    );
}

#[test]
fn unknown_keys_in_nested_blocks() {
    let source = program_a(
        "backoff = { inital = \"1s\", speed = 2 }\n\
         [program.a.readiness]\ntcp = \"127.0.0.1:1\"\nintervall = \"1s\"\n\
         [program.a.liveness]\ntcp = \"127.0.0.1:1\"\nwhatever = 1\n\
         [program.a.log]\nmod = \"inherit\"\nxyz = 1",
    );
    assert_eq!(
        diags(&source),
        [
            "supervisor.toml:3:13: program.a.backoff.inital: unknown key (did you mean `initial`?)",
            "supervisor.toml:3:28: program.a.backoff.speed: unknown key; expected one of: initial, max, multiplier, jitter",
            "supervisor.toml:6:1: program.a.readiness.intervall: unknown key (did you mean `interval`?)",
            "supervisor.toml:9:1: program.a.liveness.whatever: unknown key; expected one of: http, tcp, exec, notify, log, interval, timeout, failure_threshold, success_threshold, initial_delay",
            "supervisor.toml:11:1: program.a.log.mod: unknown key (did you mean `mode`?)",
            "supervisor.toml:12:1: program.a.log.xyz: unknown key; expected one of: mode, file, max_size, keep",
        ]
    );
}

#[test]
fn unknown_keys_in_restart_budget_and_group() {
    let source = format!(
        "[supervisor]\nrestart_budget = {{ max = 5, per = \"10s\", pre = 1 }}\n{}\
         [group.g]\nprograms = [\"a\"]\nstratgy = \"one_for_all\"\n",
        program_a("")
    );
    assert_eq!(
        diags(&source),
        [
            "supervisor.toml:2:42: supervisor.restart_budget.pre: unknown key (did you mean `per`?)",
            "supervisor.toml:8:1: group.g.stratgy: unknown key (did you mean `strategy`?)",
        ]
    );
}

// ---------------------------------------------------------------------------
// Wrong types

#[test]
fn wrong_types_are_reported_at_the_value() {
    let source = program_a(
        "instances = \"3\"\nautostart = 1\nstop_timeout = 10\nrequired = \"yes\"\n\
         success_codes = \"0\"\numask = 22\nmax_restarts = 1.5",
    );
    assert_eq!(
        diags(&source),
        [
            "supervisor.toml:3:13: program.a.instances: expected an integer, found string \"3\"",
            "supervisor.toml:4:13: program.a.autostart: expected a boolean, found integer `1`",
            "supervisor.toml:5:16: program.a.stop_timeout: expected a duration string with a unit, e.g. \"10s\", found number 10",
            "supervisor.toml:6:12: program.a.required: expected a boolean, found string \"yes\"",
            "supervisor.toml:7:17: program.a.success_codes: expected an array, found string \"0\"",
            "supervisor.toml:8:9: program.a.umask: expected a string, found integer `22`",
            "supervisor.toml:9:16: program.a.max_restarts: expected an integer, found float `1.5`",
        ]
    );
}

#[test]
fn wrong_types_of_tables_and_lists() {
    let source = "supervisor = \"x\"\n[program.a]\ncommand = 5\nbackoff = \"fast\"\nenvironment = [\"A=1\"]\n\
                  [program.b]\ncommand = [\"sh\", 1]\ndepends_on = \"a\"\n\
                  [program.c]\ncommand = [\"sh\"]\ndepends_on = [1]\n";
    assert_eq!(
        diags(source),
        [
            "supervisor.toml:1:14: supervisor: expected a table, found string",
            "supervisor.toml:3:11: program.a.command: expected an array of strings or a string, found integer",
            "supervisor.toml:4:11: program.a.backoff: expected a table, found string",
            "supervisor.toml:5:15: program.a.environment: expected a table, found array",
            "supervisor.toml:7:18: program.b.command: every argument must be a string, found integer",
            "supervisor.toml:8:14: program.b.depends_on: expected an array of program names or a table of conditions, found string",
            "supervisor.toml:11:15: program.c.depends_on: expected a program name, found integer",
        ]
    );
}

#[test]
fn program_and_group_entries_must_be_tables() {
    assert_eq!(
        diags("program = 5\n"),
        ["supervisor.toml:1:11: program: expected a table, found integer"]
    );
    assert_eq!(
        diags(&format!("{}[group]\ng = 1\n", program_a(""))),
        ["supervisor.toml:5:5: group.g: expected a table, found integer"]
    );
}

#[test]
fn empty_file_has_no_programs() {
    assert_eq!(
        diags(""),
        ["supervisor.toml:1:1: program: no programs defined; add at least one [program.NAME] table"]
    );
}

// ---------------------------------------------------------------------------
// Durations

#[test]
fn bad_durations() {
    let cases = [
        ("", "empty duration; write e.g. \"10s\" or \"250ms\""),
        ("1", "invalid duration \"1\": a unit is required, e.g. \"1s\""),
        ("-1s", "invalid duration \"-1s\": must not be negative"),
        (
            "5 parsecs",
            "invalid duration \"5 parsecs\": unknown unit \"parsecs\"; use ms, s, m, h or d, e.g. \"10s\"",
        ),
        (
            "10S",
            "invalid duration \"10S\": unknown unit \"S\"; use ms, s, m, h or d, e.g. \"10s\"",
        ),
        (
            "99999999999h",
            "invalid duration \"99999999999h\": longer than 10 years",
        ),
        (
            "99999999999999999999s",
            "invalid duration \"99999999999999999999s\": longer than 10 years",
        ),
        (
            "0.1ns",
            "invalid duration \"0.1ns\": out of range (at most 10 years, in steps of at least 1ns)",
        ),
    ];
    for (text, message) in cases {
        assert_eq!(
            one(&program_a(&format!("stop_timeout = \"{text}\""))),
            format!("supervisor.toml:3:16: program.a.stop_timeout: {message}"),
            "{text:?}"
        );
    }
}

#[test]
fn zero_durations_where_zero_makes_no_sense() {
    let source = program_a(
        "restart_window = \"0s\"\n[program.a.readiness]\ntcp = \"127.0.0.1:1\"\ninterval = \"0ms\"",
    );
    assert_eq!(
        diags(&source),
        [
            "supervisor.toml:3:18: program.a.restart_window: must be longer than 0s",
            "supervisor.toml:6:12: program.a.readiness.interval: must be longer than 0s",
        ]
    );
}

// ---------------------------------------------------------------------------
// Signals

#[test]
fn bad_stop_signals() {
    let cases = [
        (
            "FOO",
            "unknown signal \"FOO\"; write e.g. \"TERM\" or \"SIGTERM\"",
        ),
        (
            "KILL",
            "signal \"KILL\" cannot be caught; use e.g. \"TERM\"",
        ),
        (
            "SIGSTOP",
            "signal \"SIGSTOP\" cannot be caught; use e.g. \"TERM\"",
        ),
        ("9", "signal \"9\" cannot be caught; use e.g. \"TERM\""),
    ];
    for (text, message) in cases {
        assert_eq!(
            one(&program_a(&format!("stop_signal = \"{text}\""))),
            format!("supervisor.toml:3:15: program.a.stop_signal: {message}"),
            "{text:?}"
        );
    }
}

#[test]
fn signal_spellings_are_accepted() {
    for (text, signal) in [
        ("TERM", Signal::SIGTERM),
        ("SIGINT", Signal::SIGINT),
        ("quit", Signal::SIGQUIT),
        ("1", Signal::SIGHUP),
    ] {
        let config = valid(&program_a(&format!("stop_signal = \"{text}\"")));
        assert_eq!(config.programs[0].stop_signal, signal, "{text}");
    }
}

#[test]
fn bad_forward_signals() {
    let source = format!(
        "[supervisor]\nforward_signals = [\"USR1\", \"KILL\", \"CHLD\", \"BOGUS\", \"SEGV\"]\n{}",
        program_a("")
    );
    assert_eq!(
        diags(&source),
        [
            "supervisor.toml:2:28: supervisor.forward_signals: \"KILL\" cannot be forwarded; use signal names like \"USR1\"",
            "supervisor.toml:2:36: supervisor.forward_signals: \"CHLD\" cannot be forwarded; use signal names like \"USR1\"",
            "supervisor.toml:2:44: supervisor.forward_signals: \"BOGUS\" cannot be forwarded; use signal names like \"USR1\"",
            "supervisor.toml:2:53: supervisor.forward_signals: SEGV is a synchronous fault signal and is never forwarded",
        ]
    );
}

// ---------------------------------------------------------------------------
// Modes and choices

#[test]
fn bad_modes_with_hints() {
    let source = "[supervisor]\nlog_format = \"jsn\"\n\
                  [program.a]\ncommand = [\"sh\"]\nrestart = \"alwayz\"\ntype = \"daemon\"\non_failure = \"shutdwn\"\n\
                  log = { mode = \"files\" }\n\
                  [program.b]\ncommand = [\"sh\"]\nrestart = \"on_failure\"\n";
    assert_eq!(
        diags(source),
        [
            "supervisor.toml:2:14: supervisor.log_format: invalid value \"jsn\" (did you mean \"json\"?); expected one of: auto, text, json",
            "supervisor.toml:5:11: program.a.restart: invalid value \"alwayz\" (did you mean \"always\"?); expected one of: always, on-failure, never",
            "supervisor.toml:6:8: program.a.type: invalid value \"daemon\"; expected one of: service, oneshot",
            "supervisor.toml:7:14: program.a.on_failure: invalid value \"shutdwn\" (did you mean \"shutdown\"?); expected one of: keep-running, shutdown",
            "supervisor.toml:8:16: program.a.log.mode: invalid value \"files\" (did you mean \"file\"?); expected one of: inherit, file, discard",
            "supervisor.toml:11:11: program.b.restart: invalid value \"on_failure\" (did you mean \"on-failure\"?); expected one of: always, on-failure, never",
        ]
    );
}

#[test]
fn bad_dependency_condition() {
    let source = "[program.db]\ncommand = [\"sh\"]\n\
                  [program.web]\ncommand = [\"sh\"]\ndepends_on = { db = \"redy\" }\n\
                  [program.api]\ncommand = [\"sh\"]\ndepends_on = { db = true }\n";
    assert_eq!(
        diags(source),
        [
            "supervisor.toml:5:21: program.web.depends_on.db: invalid condition \"redy\" (did you mean \"ready\"?); expected one of: started, ready, completed",
            "supervisor.toml:8:21: program.api.depends_on.db: expected a condition (started, ready or completed), found boolean",
        ]
    );
}

#[test]
fn log_block_consistency() {
    let source = "[program.a]\ncommand = [\"sh\"]\n[program.a.log]\nmode = \"file\"\n\
                  [program.b]\ncommand = [\"sh\"]\nlog = { mode = \"inherit\", keep = 3 }\n\
                  [program.c]\ncommand = [\"sh\"]\nlog = { mode = \"file\", file = \"x.log\", max_size = \"1.5MB\" }\n\
                  [program.d]\ncommand = [\"sh\"]\nlog = { mode = \"file\", file = \"x.log\", max_size = \"100\" }\n";
    assert_eq!(
        diags(source),
        [
            "supervisor.toml:3:1: program.a.log: mode = \"file\" needs `file`",
            "supervisor.toml:7:34: program.b.log.keep: only applies with mode = \"file\"",
            "supervisor.toml:10:51: program.c.log.max_size: invalid size \"1.5MB\": a whole number is required, e.g. \"512KiB\"",
            "supervisor.toml:13:51: program.d.log.max_size: must be at least 1KiB",
        ]
    );
}

// ---------------------------------------------------------------------------
// Commands

#[test]
fn empty_and_malformed_commands() {
    let source = "[program.a]\ncommand = []\n\
                  [program.b]\ncommand = \"\"\n\
                  [program.c]\ncommand = \"   \"\n\
                  [program.d]\ncommand = [\"\"]\n\
                  [program.e]\ncommand = \"echo 'hi\"\n\
                  [program.f]\nrestart = \"never\"\n";
    assert_eq!(
        diags(source),
        [
            "supervisor.toml:2:11: program.a.command: command is empty",
            "supervisor.toml:4:11: program.b.command: command is empty",
            "supervisor.toml:6:11: program.c.command: command is empty",
            "supervisor.toml:8:11: program.d.command: command is empty",
            "supervisor.toml:10:11: program.e.command: unbalanced quotes in command string",
            "supervisor.toml:11:10: program.f: missing key `command`",
        ]
    );
}

#[test]
fn command_string_is_split_shell_style() {
    let config =
        valid(&program_a("").replace("[\"sh\"]", "\"sh -c 'echo \\\"hello world\\\"' --x\""));
    assert_eq!(
        config.programs[0].command,
        ["sh", "-c", "echo \"hello world\"", "--x"]
    );
}

/// A directory with an executable `app`, a non-executable `data` and a
/// subdirectory, to use as PATH.
fn bin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    std::fs::write(&app, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.path().join("data"), "").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    dir
}

#[test]
fn command_not_found_is_a_warning_searched_in_host_path() {
    let bin = bin_dir();
    let dir = bin.path().display().to_string();
    let host = Host {
        path_var: Some(dir.clone()),
        ..root()
    };
    let source = format!(
        "[program.ok]\ncommand = [\"app\"]\n\
         [program.missing]\ncommand = [\"missing\"]\n\
         [program.plain]\ncommand = [\"{dir}/data\"]\n\
         [program.folder]\ncommand = [\"{dir}/sub\"]\n\
         [program.sh]\ncommand = [\"sh\"]\n"
    );
    let expected = [
        "supervisor.toml:4:11: warning: program.missing.command: command \"missing\" not found in PATH".to_string(),
        format!("supervisor.toml:6:11: warning: program.plain.command: \"{dir}/data\" is not executable"),
        format!("supervisor.toml:8:11: warning: program.folder.command: \"{dir}/sub\" is a directory"),
        "supervisor.toml:10:11: warning: program.sh.command: command \"sh\" not found in PATH".to_string(),
    ];
    for mode in [Mode::Check, Mode::Run] {
        let validation = run_with(&source, mode, &host);
        assert_eq!(printed(&validation), expected, "{mode:?}");
        // Warnings never block: the config is usable, the program fails at
        // start.
        let config = validation.config.expect("warnings only");
        assert_eq!(config.programs.len(), 5);
    }
}

#[test]
fn program_environment_path_wins_over_host_path() {
    let bin = bin_dir();
    let dir = bin.path().display();
    let host = Host {
        path_var: Some("/nonexistent".into()),
        ..root()
    };
    let source =
        format!("[program.a]\ncommand = [\"app\"]\nenvironment = {{ PATH = \"{dir}\" }}\n");
    let validation = run_with(&source, Mode::Check, &host);
    assert_eq!(printed(&validation), Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// Names, dependencies, cycles, groups

#[test]
fn invalid_program_names() {
    let long = "x".repeat(65);
    let source = format!(
        "[program.\"a/b\"]\ncommand = [\"sh\"]\n\
         [program.\"web:0\"]\ncommand = [\"sh\"]\n\
         [program.\".x\"]\ncommand = [\"sh\"]\n\
         [program.\"\"]\ncommand = [\"sh\"]\n\
         [program.{long}]\ncommand = [\"sh\"]\n\
         [program.\"a.b\"]\ncommand = []\n"
    );
    let rule = "use 1 to 64 of A-Z a-z 0-9 _ . -, starting with a letter, digit or _";
    assert_eq!(
        diags(&source),
        [
            format!("supervisor.toml:1:10: program.\"a/b\": invalid program name \"a/b\": {rule}"),
            format!(
                "supervisor.toml:3:10: program.\"web:0\": invalid program name \"web:0\": {rule}"
            ),
            format!("supervisor.toml:5:10: program.\".x\": invalid program name \".x\": {rule}"),
            format!("supervisor.toml:7:10: program.\"\": invalid program name \"\": {rule}"),
            format!(
                "supervisor.toml:9:10: program.{long}: invalid program name \"{long}\": {rule}"
            ),
            // A valid name that is not a bare key is quoted in the key path.
            "supervisor.toml:12:11: program.\"a.b\".command: command is empty".to_string(),
        ]
    );
}

#[test]
fn valid_unusual_names() {
    let config = valid(
        "[program.api-v2]\ncommand = [\"sh\"]\n[program._x]\ncommand = [\"sh\"]\n\
         [program.\"a.b\"]\ncommand = [\"sh\"]\n[program.9]\ncommand = [\"sh\"]\n",
    );
    let names: Vec<&str> = config.programs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["api-v2", "_x", "a.b", "9"]);
}

#[test]
fn unknown_dependencies_with_hint() {
    let source = "[program.db]\ncommand = [\"sh\"]\n\
                  [program.web]\ncommand = [\"sh\"]\ndepends_on = [\"dbb\", \"cache\", \"db\", \"db\"]\n";
    assert_eq!(
        diags(source),
        [
            "supervisor.toml:5:15: program.web.depends_on: unknown program \"dbb\" (did you mean \"db\"?)",
            "supervisor.toml:5:22: program.web.depends_on: unknown program \"cache\"",
            "supervisor.toml:5:37: program.web.depends_on: \"db\" is listed twice",
        ]
    );
}

#[test]
fn self_dependency_is_a_cycle() {
    assert_eq!(
        one(&program_a("depends_on = [\"a\"]")),
        "supervisor.toml:3:15: program.a.depends_on: dependency cycle: a -> a"
    );
}

#[test]
fn three_cycle_prints_the_path() {
    let source = "[program.b]\ncommand = [\"sh\"]\ndepends_on = [\"c\"]\n\
                  [program.c]\ncommand = [\"sh\"]\ndepends_on = { d = \"started\" }\n\
                  [program.d]\ncommand = [\"sh\"]\ndepends_on = [\"b\"]\n";
    assert_eq!(
        one(source),
        "supervisor.toml:3:15: program.b.depends_on: dependency cycle: b -> c -> d -> b"
    );
}

#[test]
fn every_cycle_is_reported() {
    let source = "[program.a]\ncommand = [\"sh\"]\ndepends_on = [\"b\"]\n\
                  [program.b]\ncommand = [\"sh\"]\ndepends_on = [\"a\"]\n\
                  [program.x]\ncommand = [\"sh\"]\ndepends_on = [\"y\"]\n\
                  [program.y]\ncommand = [\"sh\"]\ndepends_on = [\"x\"]\n";
    assert_eq!(
        diags(source),
        [
            "supervisor.toml:3:15: program.a.depends_on: dependency cycle: a -> b -> a",
            "supervisor.toml:9:15: program.x.depends_on: dependency cycle: x -> y -> x",
        ]
    );
}

#[test]
fn dependency_problems_are_found_even_when_a_program_has_other_errors() {
    // Both programs have a bad value; the cycle and the unknown program are
    // still reported in the same run.
    let source = "[program.a]\ncommand = [\"sh\"]\nrestart = \"sometimes\"\ndepends_on = [\"b\", \"nope\"]\n\
                  [program.b]\ncommand = []\ndepends_on = [\"a\"]\n";
    assert_eq!(
        diags(source),
        [
            "supervisor.toml:3:11: program.a.restart: invalid value \"sometimes\"; expected one of: always, on-failure, never",
            "supervisor.toml:4:15: program.a.depends_on: dependency cycle: a -> b -> a",
            "supervisor.toml:4:20: program.a.depends_on: unknown program \"nope\"",
            "supervisor.toml:6:11: program.b.command: command is empty",
        ]
    );
}

#[test]
fn completed_needs_a_oneshot() {
    let source = "[program.db]\ncommand = [\"sh\"]\n\
                  [program.migrate]\ncommand = [\"sh\"]\ntype = \"oneshot\"\n\
                  [program.web]\ncommand = [\"sh\"]\ndepends_on = { db = \"completed\", migrate = \"completed\" }\n";
    assert_eq!(
        one(source),
        "supervisor.toml:8:16: program.web.depends_on: \"db\" is a service and never completes; \"completed\" needs type = \"oneshot\""
    );
}

#[test]
fn oneshot_cannot_restart_always() {
    assert_eq!(
        one(&program_a("type = \"oneshot\"\nrestart = \"always\"")),
        "supervisor.toml:4:11: program.a.restart: \"always\" would rerun a oneshot forever; use \"on-failure\" or \"never\""
    );
}

#[test]
fn program_in_two_groups() {
    let source = "[program.a]\ncommand = [\"sh\"]\n[program.b]\ncommand = [\"sh\"]\n\
                  [group.x]\nprograms = [\"a\"]\n\
                  [group.y]\nprograms = [\"b\", \"a\", \"zz\", \"b\"]\n";
    assert_eq!(
        diags(source),
        [
            "supervisor.toml:8:18: group.y.programs: program \"a\" is already in group \"x\"; a program belongs to at most one group",
            "supervisor.toml:8:23: group.y.programs: unknown program \"zz\"",
            "supervisor.toml:8:29: group.y.programs: \"b\" is listed twice",
        ]
    );
}

#[test]
fn group_errors() {
    let source = "[program.a]\ncommand = [\"sh\"]\n\
                  [group.empty]\n\
                  [group.none]\nprograms = []\n\
                  [group.s]\nprograms = [\"a\"]\nstrategy = \"one_for_al\"\nmax_restarts = -1\n\
                  [group.t]\nprograms = []\nrestart_window = \"0s\"\n";
    assert_eq!(
        diags(source),
        [
            "supervisor.toml:3:8: group.empty: missing key `programs`",
            "supervisor.toml:5:12: group.none.programs: must list at least one program",
            "supervisor.toml:8:12: group.s.strategy: invalid value \"one_for_al\" (did you mean \"one_for_all\"?); expected one of: one_for_one, one_for_all, rest_for_one",
            "supervisor.toml:9:16: group.s.max_restarts: -1 is out of range; expected 0 to 4294967295",
            "supervisor.toml:11:12: group.t.programs: must list at least one program",
            "supervisor.toml:12:18: group.t.restart_window: must be longer than 0s",
        ]
    );
}

// ---------------------------------------------------------------------------
// Probes

#[test]
fn probe_block_needs_exactly_one_kind() {
    let source = "[program.a]\ncommand = [\"sh\"]\n\
                  [program.a.readiness]\nhttp = \"http://127.0.0.1:1/\"\ntcp = \"127.0.0.1:1\"\nlog = \"up\"\n\
                  [program.b]\ncommand = [\"sh\"]\n\
                  [program.b.liveness]\ninterval = \"1s\"\n";
    assert_eq!(
        diags(source),
        [
            "supervisor.toml:3:1: program.a.readiness: more than one probe kind (http, tcp, log); choose exactly one",
            "supervisor.toml:9:1: program.b.liveness: needs exactly one probe kind: http, tcp, exec, notify or log",
        ]
    );
}

#[test]
fn probe_values() {
    let source = "[program.a]\ncommand = [\"sh\"]\nreadiness = { http = \"https://x/\" }\nliveness = { tcp = \"localhost\" }\n\
                  [program.b]\ncommand = [\"sh\"]\nreadiness = { exec = [] }\nliveness = { notify = false }\n\
                  [program.c]\ncommand = [\"sh\"]\nreadiness = { log = \"\", failure_threshold = 0 }\n";
    assert_eq!(
        diags(source),
        [
            "supervisor.toml:3:22: program.a.readiness.http: invalid URL \"https://x/\"; expected http://HOST:PORT/PATH",
            "supervisor.toml:4:20: program.a.liveness.tcp: invalid address \"localhost\"; expected HOST:PORT",
            "supervisor.toml:7:22: program.b.readiness.exec: command is empty",
            "supervisor.toml:8:23: program.b.liveness.notify: a notify probe only tells when a program is ready; liveness needs http, tcp or exec",
            "supervisor.toml:11:21: program.c.readiness.log: pattern is empty",
            "supervisor.toml:11:45: program.c.readiness.failure_threshold: 0 is out of range; expected 1 to 1000",
        ]
    );
}

#[test]
fn probe_defaults() {
    let config = valid(&program_a(
        "readiness = { tcp = \"127.0.0.1:80\" }\nliveness = { exec = [\"sh\", \"-c\", \"true\"] }",
    ));
    let p = &config.programs[0];
    assert_eq!(
        p.readiness,
        Some(ProbeConfig {
            kind: ProbeKind::Tcp("127.0.0.1:80".into()),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            failure_threshold: 3,
            success_threshold: 1,
            initial_delay: Duration::ZERO,
        })
    );
    let liveness = p.liveness.as_ref().unwrap();
    assert_eq!(
        liveness.kind,
        ProbeKind::Exec(vec!["sh".into(), "-c".into(), "true".into()])
    );
    assert_eq!(liveness.interval, Duration::from_secs(10));
}

// ---------------------------------------------------------------------------
// Numbers

#[test]
fn instances_out_of_range() {
    for (value, shown) in [
        ("0", "0"),
        ("-1", "-1"),
        ("10001", "10001"),
        ("99999999999999", "99999999999999"),
    ] {
        assert_eq!(
            one(&program_a(&format!("instances = {value}"))),
            format!("supervisor.toml:3:13: program.a.instances: {shown} is out of range; expected 1 to 10000"),
        );
    }
    assert_eq!(
        one(&program_a("instances = 99999999999999999999")),
        "supervisor.toml:3:13: program.a.instances: 99999999999999999999 is out of range; expected 1 to 10000"
    );
    assert_eq!(
        valid(&program_a("instances = 10000")).instance_count(),
        10_000
    );
}

#[test]
fn success_codes_out_of_range() {
    assert_eq!(
        diags(&program_a("success_codes = [0, 256, -1]")),
        [
            "supervisor.toml:3:21: program.a.success_codes: exit code 256 is out of range 0 to 255",
            "supervisor.toml:3:26: program.a.success_codes: exit code -1 is out of range 0 to 255",
        ]
    );
    assert_eq!(
        one(&program_a("success_codes = []")),
        "supervisor.toml:3:17: program.a.success_codes: must list at least one exit code"
    );
}

#[test]
fn backoff_ranges() {
    let source = "[program.a]\ncommand = [\"sh\"]\nbackoff = { initial = \"10s\", max = \"1s\" }\n\
                  [program.b]\ncommand = [\"sh\"]\nbackoff = { multiplier = 0.5, jitter = 1.5 }\n\
                  [program.c]\ncommand = [\"sh\"]\nbackoff = { multiplier = 101, jitter = -0.1 }\n\
                  [program.d]\ncommand = [\"sh\"]\nbackoff = { initial = \"1m\" }\n\
                  [program.e]\ncommand = [\"sh\"]\nbackoff = { multiplier = nan }\n";
    assert_eq!(
        diags(source),
        [
            "supervisor.toml:3:36: program.a.backoff.max: max (1s) is shorter than initial (10s)",
            "supervisor.toml:6:26: program.b.backoff.multiplier: 0.5 is out of range; expected 1.0 to 100.0",
            "supervisor.toml:6:40: program.b.backoff.jitter: 1.5 is out of range; expected 0.0 to 1.0",
            "supervisor.toml:9:26: program.c.backoff.multiplier: 101 is out of range; expected 1.0 to 100.0",
            "supervisor.toml:9:40: program.c.backoff.jitter: -0.1 is out of range; expected 0.0 to 1.0",
            // max defaults to 30s, which is shorter than the initial minute.
            "supervisor.toml:12:11: program.d.backoff.max: max (30s) is shorter than initial (1m)",
            "supervisor.toml:15:26: program.e.backoff.multiplier: NaN is out of range; expected 1.0 to 100.0",
        ]
    );
}

#[test]
fn supervisor_values() {
    let source = format!(
        "[supervisor]\nrestart_budget = {{ max = 0 }}\nhttp_listen = \"localhost:80\"\n\
         socket_mode = \"999\"\nlog_level = \"[[[\"\ncontrol_socket = \"\"\n{}",
        program_a("")
    );
    assert_eq!(
        diags(&source),
        [
            "supervisor.toml:2:18: supervisor.restart_budget: missing key `per`",
            "supervisor.toml:2:26: supervisor.restart_budget.max: 0 is out of range; expected 1 to 4294967295",
            "supervisor.toml:3:15: supervisor.http_listen: invalid address \"localhost:80\"; expected IP:PORT (e.g. \"127.0.0.1:9100\") or \"off\"",
            "supervisor.toml:4:15: supervisor.socket_mode: invalid mode \"999\"; expected octal such as \"0600\"",
            "supervisor.toml:5:13: supervisor.log_level: invalid log filter \"[[[\": \"[[[\" is not a level (trace, debug, info, warn, error, off)",
            "supervisor.toml:6:18: supervisor.control_socket: must not be empty",
        ]
    );
}

#[test]
fn supervisor_warnings_do_not_block() {
    let source = format!(
        "[supervisor]\nhttp_listen = \"0.0.0.0:9100\"\nsocket_mode = \"0666\"\n{}",
        program_a("")
    );
    let validation = run_with(&source, Mode::Check, &root());
    assert_eq!(
        printed(&validation),
        [
            "supervisor.toml:2:15: warning: supervisor.http_listen: 0.0.0.0:9100 is not a loopback address; /health, /ready and /metrics will be reachable from the network",
            "supervisor.toml:3:15: warning: supervisor.socket_mode: mode 0666 is wider than 0660; only kelpie's uid and root are ever served, so the extra bits only let others probe the socket",
        ]
    );
    assert_eq!(validation.errors().count(), 0);
    assert_eq!(validation.warnings().count(), 2);
    let config = validation.config.expect("warnings only");
    assert_eq!(config.supervisor.socket_mode, 0o666);
}

// ---------------------------------------------------------------------------
// Users and the host

#[test]
fn user_needs_root_at_run_time_only() {
    let source = program_a("user = \"nobody\"");
    let run = run_with(&source, Mode::Run, &user());
    assert_eq!(
        printed(&run),
        ["supervisor.toml:3:8: program.a.user: switching to user \"nobody\" needs root; kelpie is not running as root"]
    );
    assert!(run.config.is_none());

    let check = run_with(&source, Mode::Check, &user());
    assert_eq!(
        printed(&check),
        ["supervisor.toml:3:8: warning: program.a.user: switching to user \"nobody\" needs root; kelpie is not running as root"]
    );
    assert!(check.config.is_some());

    for mode in [Mode::Check, Mode::Run] {
        let as_root = run_with(&source, mode, &root());
        assert_eq!(printed(&as_root), Vec::<String>::new(), "{mode:?}");
        assert_eq!(
            as_root.config.unwrap().programs[0].user.as_deref(),
            Some("nobody")
        );
    }
}

#[test]
fn group_alone_needs_root_at_run_time() {
    let source = program_a("group = \"root\"");
    assert_eq!(
        printed(&run_with(&source, Mode::Run, &user())),
        ["supervisor.toml:3:9: program.a.group: switching to group \"root\" needs root; kelpie is not running as root"]
    );
    assert_eq!(
        printed(&run_with(&source, Mode::Check, &user())),
        ["supervisor.toml:3:9: warning: program.a.group: switching to group \"root\" needs root; kelpie is not running as root"]
    );
    assert_eq!(
        printed(&run_with(&source, Mode::Run, &root())),
        Vec::<String>::new()
    );
}

#[test]
fn unknown_user_and_group() {
    assert_eq!(
        diags(&program_a(
            "user = \"no-such-user-kelpie\"\ngroup = \"no-such-group-kelpie\""
        )),
        [
            "supervisor.toml:3:8: program.a.user: unknown user \"no-such-user-kelpie\"",
            "supervisor.toml:4:9: program.a.group: unknown group \"no-such-group-kelpie\"",
        ]
    );
}

#[test]
fn missing_directory_is_fatal_only_at_run() {
    let source = program_a("directory = \"/nonexistent/kelpie\"");
    let message = "program.a.directory: directory \"/nonexistent/kelpie\" does not exist";
    assert_eq!(
        printed(&run_with(&source, Mode::Check, &root())),
        [format!("supervisor.toml:3:13: warning: {message}")]
    );
    assert_eq!(
        printed(&run_with(&source, Mode::Run, &root())),
        [format!("supervisor.toml:3:13: {message}")]
    );
}

#[test]
fn default_control_socket_depends_on_host() {
    let source = program_a("");
    let socket = |host: &Host| {
        run_with(&source, Mode::Run, host)
            .config
            .unwrap()
            .supervisor
            .control_socket
    };
    let with_runtime = Host {
        runtime_dir: Some(PathBuf::from("/run/user/1000")),
        ..user()
    };
    assert_eq!(
        socket(&with_runtime),
        PathBuf::from("/run/user/1000/kelpie.sock")
    );
    assert_eq!(socket(&root()), PathBuf::from("/run/kelpie.sock"));
    assert_eq!(socket(&user()), PathBuf::from("kelpie.sock"));
}

// ---------------------------------------------------------------------------
// env_file

#[test]
fn env_file_is_resolved_against_the_config_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.env"),
        "# comment\n\nexport A=1\nB = \"two words\"\nC='x'\nD=from-file\n",
    )
    .unwrap();
    let path = dir.path().join("supervisor.toml");
    let source = program_a("env_file = \"app.env\"\nenvironment = { D = \"from-toml\" }");
    let validation = validate(&source, &path, Mode::Check, &root());
    assert_eq!(printed(&validation), Vec::<String>::new());
    let config = validation.config.unwrap();
    let env: Vec<(&str, &str)> = config.programs[0]
        .environment
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("A", "1"),
            ("B", "two words"),
            ("C", "x"),
            ("D", "from-toml")
        ]
    );
}

#[test]
fn env_file_missing_or_malformed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.env"), "A=1\nnot a pair\n").unwrap();
    let path = dir.path().join("supervisor.toml");
    let source = "[program.a]\ncommand = [\"sh\"]\nenv_file = \"missing.env\"\n\
                  [program.b]\ncommand = [\"sh\"]\nenv_file = \"bad.env\"\n";
    let shown = path.display();
    let base = dir.path().display();
    assert_eq!(
        printed(&validate(source, &path, Mode::Check, &root())),
        [
            format!("{shown}:3:12: program.a.env_file: cannot read \"{base}/missing.env\": No such file or directory"),
            format!("{shown}:6:12: program.b.env_file: {base}/bad.env:2: expected KEY=VALUE"),
        ]
    );
}

#[test]
fn invalid_environment_names() {
    assert_eq!(
        one(&program_a("environment = { \"A=B\" = \"1\" }")),
        "supervisor.toml:3:15: program.a.environment: invalid environment variable name \"A=B\""
    );
}

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

// ---------------------------------------------------------------------------
// parse_duration, parse_size, parse_env_file

#[test]
fn parse_duration_accepts_units() {
    for (text, expected) in [
        ("250ms", Duration::from_millis(250)),
        ("10s", Duration::from_secs(10)),
        ("5m", Duration::from_secs(300)),
        ("1h", Duration::from_secs(3600)),
        ("1m 30s", Duration::from_secs(90)),
        ("1.5s", Duration::from_millis(1500)),
        (" 2s ", Duration::from_secs(2)),
        ("0s", Duration::ZERO),
        ("10us", Duration::from_micros(10)),
        ("3650d", Duration::from_secs(3650 * 24 * 3600)),
    ] {
        assert_eq!(parse_duration(text), Ok(expected), "{text:?}");
    }
}

#[test]
fn parse_duration_rejects() {
    for (text, message) in [
        ("", "empty duration; write e.g. \"10s\" or \"250ms\""),
        ("   ", "empty duration; write e.g. \"10s\" or \"250ms\""),
        (
            "10",
            "invalid duration \"10\": a unit is required, e.g. \"10s\"",
        ),
        (
            "1.5",
            "invalid duration \"1.5\": a unit is required, e.g. \"1.5s\"",
        ),
        ("-5s", "invalid duration \"-5s\": must not be negative"),
        ("3651d", "invalid duration \"3651d\": longer than 10 years"),
        (
            "1e3s",
            "invalid duration \"1e3s\": unknown unit \"e\"; use ms, s, m, h or d, e.g. \"10s\"",
        ),
        ("s", "invalid duration \"s\": expected number at 0"),
    ] {
        assert_eq!(parse_duration(text), Err(message.to_string()), "{text:?}");
    }
}

#[test]
fn parse_size_units() {
    for (text, expected) in [
        ("0", 0),
        ("1048576", 1_048_576),
        ("10B", 10),
        ("10KB", 10_000),
        ("10MB", 10_000_000),
        ("1GB", 1_000_000_000),
        ("512KiB", 512 * 1024),
        ("2 MiB", 2 << 20),
        ("1g", 1 << 30),
        ("3k", 3 * 1024),
        (" 7mb ", 7_000_000),
    ] {
        assert_eq!(parse_size(text), Ok(expected), "{text:?}");
    }
}

#[test]
fn parse_size_rejects() {
    for (text, message) in [
        ("", "invalid size \"\": expected e.g. \"10MB\""),
        ("MB", "invalid size \"MB\": expected e.g. \"10MB\""),
        ("-5MB", "invalid size \"-5MB\": expected e.g. \"10MB\""),
        (
            "1.5MB",
            "invalid size \"1.5MB\": a whole number is required, e.g. \"512KiB\"",
        ),
        (
            "10 parsecs",
            "invalid size \"10 parsecs\": unknown unit \"parsecs\"; use B, KB, MB, GB, KiB, MiB or GiB",
        ),
        (
            "99999999999999999999",
            "invalid size \"99999999999999999999\": expected e.g. \"10MB\"",
        ),
        (
            "18446744073709551615GiB",
            "invalid size \"18446744073709551615GiB\": too large",
        ),
    ] {
        assert_eq!(parse_size(text), Err(message.to_string()), "{text:?}");
    }
}

#[test]
fn parse_env_file_accepts() {
    let text = "\u{feff}# comment\n\n  A=1  \r\nexport B=two words\nC=\"quoted\"\nD='single'\nE=\nF=a=b\nG=\"unbalanced\n_H1=x\n";
    let vars = parse_env_file(text).unwrap();
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        pairs,
        [
            ("A", "1"),
            ("B", "two words"),
            ("C", "quoted"),
            ("D", "single"),
            ("E", ""),
            ("F", "a=b"),
            ("G", "\"unbalanced"),
            ("_H1", "x"),
        ]
    );
    assert_eq!(parse_env_file(""), Ok(Vec::new()));
}

#[test]
fn parse_env_file_rejects() {
    for (text, line, message) in [
        ("A=1\nnot a pair\n", 2, "expected KEY=VALUE".to_string()),
        ("=1\n", 1, "invalid variable name \"\"".to_string()),
        ("1A=1\n", 1, "invalid variable name \"1A\"".to_string()),
        ("A-B=1\n", 1, "invalid variable name \"A-B\"".to_string()),
        ("\n\nexport\n", 3, "expected KEY=VALUE".to_string()),
        ("A=x\0y\n", 1, "value of A contains a NUL byte".to_string()),
    ] {
        assert_eq!(parse_env_file(text), Err((line, message)), "{text:?}");
    }
}

#[test]
fn find_executable_mirrors_execvp() {
    let bin = bin_dir();
    let dir = bin.path();
    let path_var = format!("/nonexistent:{}", dir.display());
    assert_eq!(
        find_executable("app", None, Some(&path_var)),
        Ok(dir.join("app"))
    );
    assert_eq!(
        find_executable("./app", Some(dir), None),
        Ok(dir.join("./app"))
    );
    assert_eq!(
        find_executable("data", None, Some(&path_var)),
        Err("command \"data\" not found in PATH".to_string())
    );
    assert_eq!(
        find_executable("/nonexistent/app", None, None),
        Err("\"/nonexistent/app\": No such file or directory".to_string())
    );
}

#[test]
fn truncated_or_mangled_input_never_panics() {
    let example = include_str!("../../supervisor.toml.example");
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
    let host = Host {
        is_root: false,
        path_var: Some("/usr/bin:/bin".into()),
        runtime_dir: None,
    };
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
    let host = Host {
        is_root: false,
        path_var: Some("/usr/bin:/bin".into()),
        runtime_dir: None,
    };
    let v = validate(source, Path::new("supervisor.toml"), Mode::Check, &host);
    assert!(v.diagnostics.is_empty(), "{:?}", v.diagnostics);
}

#[test]
fn readiness_only_probe_kinds_and_log_patterns() {
    let source = "[program.a]\ncommand = [\"sh\"]\nreadiness = { notify = false }\nliveness = { log = \"up\" }\n\
                  [program.b]\ncommand = [\"sh\"]\nreadiness = { log = \"ready (\" }\n\
                  [program.c]\ncommand = [\"sh\"]\nreadiness = { log = \"listening\" }\nlog = { mode = \"discard\" }\n";
    assert_eq!(
        diags(source),
        [
            "supervisor.toml:3:24: program.a.readiness.notify: notify = false is not a probe; remove the block instead",
            "supervisor.toml:4:20: program.a.liveness.log: a log probe only tells when a program is ready; liveness needs http, tcp or exec",
            "supervisor.toml:7:21: program.b.readiness.log: invalid regular expression: found open group without closing ')'",
            "supervisor.toml:11:7: program.c.log: mode = \"discard\" drops the output the readiness log probe must read",
        ]
    );
}

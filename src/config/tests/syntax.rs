//! TOML syntax errors, unknown keys and wrong types.

use super::*;

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
            "supervisor.toml:3:1: supervisor.bogus: unknown key; expected one of: http_listen, control_socket, socket_mode, shutdown_timeout, drain_delay, restart_budget, log_format, log_level, forward_signals, dashboard, control_token_file, cgroup_root",
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
            "supervisor.toml:5:1: program.a.zzzzzz: unknown key; expected one of: command, directory, environment, env_file, user, group, umask, instances, autostart, type, restart, success_codes, start_seconds, start_timeout, backoff, max_restarts, restart_window, on_failure, stop_signal, stop_timeout, reload, depends_on, required, readiness, liveness, log, rlimits, memory_max, memory_high, cpu_max, pids_max, io_weight, memory_restart, memory_restart_after",
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

//! Durations, signals, choices and numbers: every value grammar and range.

use super::*;

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
fn reload_mode_is_restart_or_rolling() {
    assert_eq!(
        diags("[program.a]\ncommand = [\"sh\"]\nreload = \"rollin\"\n"),
        ["supervisor.toml:3:10: program.a.reload: invalid value \"rollin\" (did you mean \"rolling\"?); expected one of: restart, rolling"]
    );
    assert!(diags("[program.a]\ncommand = [\"sh\"]\nreload = \"rolling\"\n").is_empty());
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

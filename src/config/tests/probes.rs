//! Readiness and liveness probes.

use super::*;

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

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

// ---------------------------------------------------------------------------
// ${KELPIE_INSTANCE} and ${KELPIE_SLOT}

#[test]
fn instance_variables_are_kept_unexpanded_in_the_config() {
    let config = valid(
        "[program.a]\ncommand = [\"sh\"]\ninstances = 3\n\
         environment = { PORT = \"810${KELPIE_INSTANCE}\", HEALTH = \"910${KELPIE_SLOT}\", LITERAL = \"$${HOME} $$ $x\" }\n\
         readiness = { http = \"http://127.0.0.1:910${KELPIE_SLOT}/health\" }\n\
         liveness = { tcp = \"127.0.0.1:810${KELPIE_INSTANCE}\" }\n",
    );
    let p = &config.programs[0];
    assert_eq!(p.environment["PORT"], "810${KELPIE_INSTANCE}");
    assert_eq!(p.environment["HEALTH"], "910${KELPIE_SLOT}");
    assert_eq!(p.environment["LITERAL"], "$${HOME} $$ $x");
    assert_eq!(
        p.readiness.as_ref().unwrap().kind,
        ProbeKind::Http("http://127.0.0.1:910${KELPIE_SLOT}/health".into())
    );
    assert_eq!(
        p.liveness.as_ref().unwrap().kind,
        ProbeKind::Tcp("127.0.0.1:810${KELPIE_INSTANCE}".into())
    );
}

#[test]
fn unknown_instance_variables_are_errors_at_their_value() {
    let source = "[program.a]\ncommand = [\"sh\"]\n\
                  environment = { OK = \"1\", HOME_DIR = \"${HOME}/x\" }\n\
                  readiness = { http = \"http://127.0.0.1:80${INSTANCE}/\" }\n\
                  liveness = { tcp = \"127.0.0.1:${KELPIE_INSTANCE\" }\n";
    assert_eq!(
        diags(source),
        [
            "supervisor.toml:3:38: program.a.environment.HOME_DIR: unknown variable \"${HOME}\" (write \"$${\" for a literal \"${\"); only ${KELPIE_INSTANCE} and ${KELPIE_SLOT} are expanded",
            "supervisor.toml:4:22: program.a.readiness.http: unknown variable \"${INSTANCE}\" (write \"$${\" for a literal \"${\"); only ${KELPIE_INSTANCE} and ${KELPIE_SLOT} are expanded",
            "supervisor.toml:5:20: program.a.liveness.tcp: unterminated \"${\" (write \"$${\" for a literal \"${\"); only ${KELPIE_INSTANCE} and ${KELPIE_SLOT} are expanded",
        ]
    );
}

#[test]
fn a_target_is_validated_for_the_first_and_the_last_instance() {
    // 6553${KELPIE_INSTANCE} is port 65530 for instance 0 but 65539 for 9.
    let source = "[program.a]\ncommand = [\"sh\"]\ninstances = 10\n\
                  liveness = { tcp = \"127.0.0.1:6553${KELPIE_INSTANCE}\" }\n";
    assert_eq!(
        one(source),
        "supervisor.toml:4:20: program.a.liveness.tcp: invalid address \"127.0.0.1:65539\"; expected HOST:PORT for instance 9"
    );
    valid(&source.replace("instances = 10", "instances = 6"));
    // Nothing to expand: the message quotes the value as written.
    assert_eq!(
        one("[program.a]\ncommand = [\"sh\"]\nreadiness = { tcp = \"h:x\" }\n"),
        "supervisor.toml:3:21: program.a.readiness.tcp: invalid address \"h:x\"; expected HOST:PORT"
    );
}

#[test]
fn a_slot_target_is_validated_up_to_the_last_replacement_slot() {
    // With 5 instances a rolling replacement can be in slot 9: port 65539.
    let source = "[program.a]\ncommand = [\"sh\"]\ninstances = 5\n\
                  readiness = { tcp = \"127.0.0.1:6553${KELPIE_SLOT}\" }\n";
    assert_eq!(
        one(source),
        "supervisor.toml:4:21: program.a.readiness.tcp: invalid address \"127.0.0.1:65539\"; expected HOST:PORT for slot 9"
    );
    // 3 instances use slots 0 to 5, the highest port 65535.
    valid(&source.replace("instances = 5", "instances = 3"));
    // Both variables: the message names the instance and its slot.
    assert_eq!(
        one(&source.replace("127.0.0.1:", "10.0.0.${KELPIE_INSTANCE}:")),
        "supervisor.toml:4:21: program.a.readiness.tcp: invalid address \"10.0.0.4:65539\"; expected HOST:PORT for instance 4 in slot 9"
    );
}

#[test]
fn instances_probed_at_one_address_get_a_warning() {
    let shared = "[program.web]\ncommand = [\"sh\"]\ninstances = 3\n\
                  environment = { PORT = \"8080\" }\n\
                  [program.web.readiness]\nhttp = \"http://127.0.0.1:8080/health\"\n\
                  [program.db]\ncommand = [\"sh\"]\ninstances = 2\nreadiness = { tcp = \"127.0.0.1:5432\" }\n\
                  [program.one]\ncommand = [\"sh\"]\nreadiness = { tcp = \"127.0.0.1:1\" }\n\
                  [program.exec]\ncommand = [\"sh\"]\ninstances = 2\nreadiness = { exec = [\"true\"] }\n";
    let text = "instances are probed at one address, which cannot tell them apart (during a rolling restart or rolling reload another instance answers the replacement's probe); give each instance its own address with ${KELPIE_SLOT} in `environment` and the probe, or use a notify or log probe";
    assert_eq!(
        diags(shared),
        [
            format!("supervisor.toml:6:8: warning: program.web.readiness.http: all 3 {text}"),
            format!("supervisor.toml:10:21: warning: program.db.readiness.tcp: all 2 {text}"),
        ]
    );
    // The warning does not stop the program from running.
    assert!(run_with(shared, Mode::Run, &root()).config.is_some());
    valid(
        "[program.web]\ncommand = [\"sh\"]\ninstances = 3\n\
         readiness = { http = \"http://127.0.0.1:910${KELPIE_SLOT}/health\" }\n",
    );
}

#[test]
fn an_address_per_instance_index_still_gets_a_warning() {
    // A rolling replacement has the index of the instance it replaces, so
    // 810${KELPIE_INSTANCE} is the old instance's address too.
    let by_index = "[program.web]\ncommand = [\"sh\"]\ninstances = 3\n\
                    readiness = { http = \"http://127.0.0.1:810${KELPIE_INSTANCE}/health\" }\n";
    assert_eq!(
        one(by_index),
        "supervisor.toml:4:22: warning: program.web.readiness.http: the probe address follows ${KELPIE_INSTANCE}, which a rolling replacement shares with the instance it replaces (during a rolling restart or rolling reload the old instance answers the replacement's probe); use ${KELPIE_SLOT} in `environment` and the probe instead, which differs between the two"
    );
    // Both: the slot tells them apart.
    valid(&by_index.replace(
        "810${KELPIE_INSTANCE}/",
        "81${KELPIE_INSTANCE}${KELPIE_SLOT}/",
    ));
    // As with one fixed address, a program of one instance is not warned
    // about.
    valid(&by_index.replace("instances = 3", "instances = 1"));
}

#[test]
fn one_instance_with_a_rolling_reload_meets_its_replacement() {
    let rolling = "[program.web]\ncommand = [\"sh\"]\nreload = \"rolling\"\n\
                   readiness = { http = \"http://127.0.0.1:8080/health\" }\n";
    assert_eq!(
        one(rolling),
        "supervisor.toml:4:22: warning: program.web.readiness.http: with reload = \"rolling\" the replacement runs beside the old process, which answers the replacement's probe at this address; give the probe and `environment` an address with ${KELPIE_SLOT}, which differs between the two, or use a notify or log probe"
    );
    valid(&rolling.replace("8080", "808${KELPIE_SLOT}"));
    valid(&rolling.replace("reload = \"rolling\"", "reload = \"restart\""));
}

#[test]
fn env_file_values_stay_literal() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.env"), "A=${HOME}/x\nB=$${y}\n").unwrap();
    let source = "[program.a]\ncommand = [\"sh\"]\nenv_file = \"app.env\"\n";
    let validation = validate(
        source,
        &dir.path().join("supervisor.toml"),
        Mode::Check,
        &root(),
    );
    assert!(
        validation.diagnostics.is_empty(),
        "{:?}",
        validation.diagnostics
    );
    let config = validation.config.unwrap();
    let env = &config.programs[0].environment;
    let values = crate::config::template::Values::first(1);
    assert_eq!(
        crate::config::template::expand(&env["A"], values),
        "${HOME}/x"
    );
    assert_eq!(crate::config::template::expand(&env["B"], values), "$${y}");
}

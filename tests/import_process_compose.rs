//! `kelpie import process-compose` on files covering process-compose's
//! documented keys and on a larger stack: the report names `file:line`,
//! the result passes `kelpie check` and round-trips through `kelpie
//! config`, and an imported stack runs under kelpie in its dependency
//! order with its probes.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/import/process-compose"
);

/// A temporary copy of the fixtures, so imports can write beside them.
fn fixtures() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(FIXTURES).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// The 1-based line of `file` holding `needle` (after line `after`).
fn line_of(dir: &Path, file: &str, needle: &str, after: usize) -> usize {
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    text.lines()
        .enumerate()
        .skip(after)
        .find(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in {file}"))
}

#[test]
fn the_lifetime_examples_map_their_dependencies_restarts_and_shutdown() {
    let dir = fixtures();
    let d = dir.path();
    // No format named: the top-level `processes:` tells.
    let (out, toml) = import_and_round_trip(d, &["lifetime.yaml"]);
    let daemon = line_of(d, "lifetime.yaml", "is_daemon: true", 0);
    let stop_command = line_of(d, "lifetime.yaml", "command: \"docker stop", 0);
    assert!(
        out.stderr.contains(&format!(
            "not carried over: lifetime.yaml:{daemon}: is_daemon: kelpie supervises a process that stays in the foreground"
        )),
        "{out:#?}"
    );
    assert!(
        out.stderr.contains(&format!(
            "not carried over: lifetime.yaml:{stop_command}: shutdown.command: kelpie stops a program with its stop_signal"
        )),
        "{out:#?}"
    );
    assert!(
        out.stderr
            .contains("kelpie: imported 10 programs from process-compose; 2 keys not carried over"),
        "{out:#?}"
    );

    let first = table(&toml, "first");
    assert!(first.contains("# kelpie import: description: Runs once the second has finished"));
    assert!(
        first.contains("depends_on = { second = \"completed\" }"),
        "{first}"
    );
    assert!(first.contains("restart = \"never\""), "{first}");
    let second = table(&toml, "second");
    assert!(second.contains("type = \"oneshot\""), "{second}");
    assert!(
        second.contains("process_completed waits for any exit"),
        "{second}"
    );
    assert!(table(&toml, "third").contains("type = \"oneshot\""));
    let scaled = table(&toml, "scaled");
    assert!(scaled.contains("instances = 2"), "{scaled}");
    assert!(
        scaled.contains(&format!(
            "log = {{ mode = \"file\", file = \"{}/scaled.log\" }}",
            d.display()
        )),
        "{scaled}"
    );
    assert!(table(&toml, "listing").contains("directory = \"/tmp\""));
    assert!(table(&toml, "off").contains("autostart = false"));
    let retried = table(&toml, "retried");
    assert!(retried.contains("restart = \"on-failure\""), "{retried}");
    assert!(retried
        .contains("backoff = { initial = \"2s\", max = \"2s\", multiplier = 1.0, jitter = 0.0 }"));
    assert!(retried.contains("max_restarts = 5"));
    let sanity = table(&toml, "sanitycheck");
    assert!(
        sanity.contains("max_restarts = 0\non_failure = \"shutdown\""),
        "{sanity}"
    );
    let graceful = table(&toml, "graceful");
    assert!(
        graceful.contains("stop_signal = \"INT\"\nstop_timeout = \"10s\""),
        "{graceful}"
    );
    assert!(table(&toml, "nginx").contains("stop_signal = \"TERM\""));
}

#[test]
fn the_health_examples_become_kelpie_probes() {
    let dir = fixtures();
    let d = dir.path();
    let (out, toml) = import_and_round_trip(d, &["process-compose", "health.yaml"]);
    let web = table(&toml, "web");
    assert!(
        web.contains("readiness = { http = \"http://127.0.0.1:8080/\", interval = \"10s\", timeout = \"5s\", initial_delay = \"5s\", failure_threshold = 3, success_threshold = 1 }"),
        "{web}"
    );
    assert!(
        web.contains("liveness = { exec = [\"bash\", \"-c\", \"[ -d /tmp ]\"], interval = \"2s\", timeout = \"5s\", initial_delay = \"5s\", failure_threshold = 3, success_threshold = 1 }"),
        "{web}"
    );
    let secure = table(&toml, "secure");
    assert!(
        secure.contains("readiness = { tcp = \"localhost:8443\" }"),
        "{secure}"
    );
    assert!(
        secure.contains("kelpie's http probe speaks plain HTTP"),
        "{secure}"
    );
    let headers = line_of(d, "health.yaml", "headers:", 0);
    assert!(
        out.stderr.contains(&format!(
            "health.yaml:{headers}: readiness_probe.http_get.headers: kelpie's http probe sends no extra headers"
        )),
        "{out:#?}"
    );
    assert!(table(&toml, "logs").contains("readiness = { log = \"ready to accept connections\" }"));
    let client = table(&toml, "client");
    assert!(
        client.contains("depends_on = { logs = \"ready\", web = \"ready\" }"),
        "{client}"
    );
}

#[test]
fn the_configuration_examples_carry_environment_vars_and_namespaces() {
    let dir = fixtures();
    let d = dir.path();
    let (out, toml) = import_and_round_trip(d, &["process-compose", "configuration.yaml"]);
    assert!(
        out.stderr
            .contains("imported 7 programs from process-compose; 1 key not carried over"),
        "{out:#?}"
    );
    let age = line_of(d, "configuration.yaml", "max_age_days", 0);
    assert!(
        out.stderr.contains(&format!(
            "configuration.yaml:{age}: log_configuration.rotation.max_age_days:"
        )),
        "{out:#?}"
    );
    // process-compose's own variables are set as it sets them.
    let process2 = table(&toml, "process2");
    assert!(
        process2.contains("environment = { I_AM_GLOBAL_EV = \"42\", I_AM_LOCAL_EV = \"42\", PC_PROC_NAME = \"process2\", PC_REPLICA_NUM = \"${KELPIE_INSTANCE}\" }"),
        "{process2}"
    );
    let version = table(&toml, "version");
    assert!(
        version.contains("command = [\"bash\", \"-c\", \"echo 'version v1.2.3'\"]"),
        "{version}"
    );
    assert!(
        version.contains(&format!(
            "log = {{ mode = \"file\", file = \"{}/logs/version.log\", max_size = \"5242880\", keep = 3 }}",
            d.display()
        )),
        "{version}"
    );
    assert!(table(&toml, "escaped").contains("\"echo I am $ENV_TEST\""));
    let server = table(&toml, "server");
    assert!(
        server.contains("\"python3 -m http.server 404${KELPIE_INSTANCE}\""),
        "{server}"
    );
    assert!(
        server.contains("http = \"http://127.0.0.1:404${KELPIE_INSTANCE}/\""),
        "{server}"
    );
    assert!(table(&toml, "tailer").contains("tail -f -n100 process-compose-${USER}.log"));
    assert!(table(&toml, "block_folded").contains("\necho 1 && echo 2\n"));
    assert!(toml.contains("\n[group.debug]\n"), "{toml}");
}

#[test]
fn a_realistic_stack_imports_stably_and_round_trips() {
    let dir = fixtures();
    let d = dir.path();
    let (out, toml) = import_and_round_trip(d, &["process-compose", "stack.yaml"]);
    assert!(
        out.stderr
            .contains("imported 8 programs from process-compose; 2 keys not carried over"),
        "{out:#?}"
    );
    let backend = format!("{}/backend", d.display());
    let api = table(&toml, "api");
    for want in [
        format!("directory = \"{backend}\""),
        "depends_on = { migrate = \"completed\", redis = \"ready\" }".into(),
        "readiness = { http = \"http://127.0.0.1:8000/healthz\", interval = \"5s\", failure_threshold = 3 }".into(),
        "liveness = { http = \"http://127.0.0.1:8000/livez\", interval = \"15s\", initial_delay = \"10s\" }".into(),
        "restart = \"on-failure\"".into(),
        "max_restarts = 5".into(),
        "PORT = \"8000\"".into(),
        "APP_ENV = \"development\"".into(),
    ] {
        assert!(api.contains(&want), "{want} not in\n{api}");
    }
    assert!(table(&toml, "migrate").contains("type = \"oneshot\"\nrestart = \"never\""));
    assert!(table(&toml, "preflight").contains("on_failure = \"shutdown\""));
    let worker = table(&toml, "worker");
    assert!(worker.contains("instances = 3"), "{worker}");
    assert!(worker.contains("--id ${KELPIE_INSTANCE}"), "{worker}");
    assert!(
        toml.contains("[group.storage]\n# from stack.yaml:"),
        "{toml}"
    );

    // Same input, same bytes; and a copy elsewhere differs only in paths.
    let again = import_in(d, &["process-compose", "stack.yaml"]).expect(0);
    assert_eq!(again.stdout, toml);
}

#[test]
fn an_imported_stack_runs_in_dependency_order_with_its_probes() {
    let app = tempfile::tempdir().unwrap();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    std::fs::create_dir(app.path().join("www")).unwrap();
    write(
        app.path(),
        "process-compose.yaml",
        &format!(
            r#"version: "0.5"
environment:
  - "APP_ENV=test"
processes:
  db:
    command: "exec python3 -m http.server {port} --bind 127.0.0.1 --directory www"
    readiness_probe:
      http_get:
        host: 127.0.0.1
        port: {port}
        path: /
      period_seconds: 1
      failure_threshold: 30
    availability:
      restart: always
  migrate:
    command: "echo schema-v2 > migrated.txt && echo migrated"
    depends_on:
      db:
        condition: process_healthy
  api:
    command: "test -f migrated.txt && echo \"api up in $(pwd) as $APP_ENV\" && exec sleep 1000"
    depends_on:
      migrate:
        condition: process_completed_successfully
      db:
        condition: process_healthy
    liveness_probe:
      exec:
        command: "test -f migrated.txt"
      period_seconds: 1
  worker:
    command: "echo worker {{{{.PC_REPLICA_NUM}}}} of $APP_ENV && exec sleep 1000"
    replicas: 2
    depends_on:
      api:
        condition: process_started
"#
        ),
    );
    let out = import_in(app.path(), &["process-compose.yaml"]).expect(0);
    let k = Kelpie::start(&without_http(&out.stdout));

    let dir = app.path().canonicalize().unwrap();
    let api_up = k.wait_output(
        "api",
        &format!("api up in {} as test", dir.display()),
        secs(30.0),
    );
    let db_ready = k.wait_event("program_ready", "db", secs(1.0));
    let migrate_started = k.wait_event("program_started", "migrate", secs(1.0));
    let migrate_done = k.wait_event("program_completed", "migrate", secs(1.0));
    let api_started = k.wait_event("program_started", "api", secs(1.0));
    assert!(timestamp(&db_ready) <= timestamp(&migrate_started));
    assert!(timestamp(&migrate_done) <= timestamp(&api_started));
    assert!(timestamp(&api_started) <= timestamp(&api_up));
    for instance in 0..2 {
        k.wait_nth(1, &format!("worker:{instance} output"), secs(20.0), |e| {
            is(e, "program_output", "worker")
                && e["instance"] == instance
                && e["line"] == format!("worker {instance} of test").as_str()
        });
    }
    assert_eq!(
        std::fs::read_to_string(app.path().join("migrated.txt")).unwrap(),
        "schema-v2\n"
    );
    // The exec liveness probe is live: once its file is gone, it fails.
    assert!(k.events("program_liveness_failed", "api").is_empty());
    std::fs::remove_file(app.path().join("migrated.txt")).unwrap();
    k.wait_event("program_liveness_failed", "api", secs(20.0));
}

#[test]
fn strict_refuses_a_file_with_a_dropped_key_and_writes_nothing() {
    let dir = fixtures();
    let d = dir.path();
    let out = import_in(d, &["health.yaml", "--strict", "-o", "out.toml"]).expect(65);
    assert!(
        out.stderr.contains("readiness_probe.http_get.headers"),
        "{out:#?}"
    );
    assert!(
        out.stderr
            .ends_with("kelpie: --strict: nothing written, as keys were not carried over\n"),
        "{out:#?}"
    );
    assert!(!d.join("out.toml").exists());
    // A file with nothing dropped passes --strict.
    write(
        d,
        "clean.yaml",
        "processes:\n  web:\n    command: sleep 1000\n",
    );
    import_in(d, &["process-compose", "clean.yaml", "--strict"]).expect(0);
}

#[test]
fn bad_input_is_one_line_with_its_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases = [
        (
            "processes:\n  web:\n    command: [sleep\n",
            "kelpie: bad.yaml:4: not valid YAML: while parsing a flow sequence, expected ',' or ']'\n",
        ),
        (
            "processes:\n  web:\n    command: sleep 1\n    replicas: many\n",
            "kelpie: bad.yaml:4: processes.web.replicas: expected a whole number, found \"many\"\n",
        ),
        (
            "processes:\n  web:\n    working_dir: /tmp\n",
            "kelpie: bad.yaml:2: process \"web\" has no command\n",
        ),
        (
            "processes:\n  web:\n    command: a\n    depends_on:\n      db:\n        condition: process_up\n  db:\n    command: b\n",
            "kelpie: bad.yaml:6: unknown depends_on condition \"process_up\"; expected process_started, process_healthy, process_log_ready, process_completed or process_completed_successfully\n",
        ),
        (
            "processes:\n  web:\n    command: a\n    depends_on:\n      web:\n        condition: process_started\n",
            "kelpie: bad.yaml: the translated config does not pass `kelpie check` on this machine: ",
        ),
    ];
    for (text, want) in cases {
        write(d, "bad.yaml", text);
        let out = import_in(d, &["process-compose", "bad.yaml", "-o", "out.toml"]).expect(65);
        assert!(out.stderr.starts_with(want), "{text}\n{out:#?}");
        assert_eq!(out.stderr.lines().count(), 1, "{out:#?}");
        assert!(!d.join("out.toml").exists());
    }
    let missing = import_in(d, &["process-compose", "nope.yaml"]).expect(66);
    assert!(
        missing.stderr.starts_with("kelpie: nope.yaml: cannot read"),
        "{missing:#?}"
    );
}

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")),
        }
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap_or_else(|e| panic!("write: {e}"));
    }

    fn cx(&self) -> Context {
        Context {
            env: HashMap::from([
                ("HOME".to_string(), "/home/u".to_string()),
                ("DATA".to_string(), "/srv/data".to_string()),
            ]),
            cwd: self.dir.path().to_path_buf(),
        }
    }

    fn import(&self, files: &[&str]) -> Result<Draft, ImportError> {
        let files: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
        import(&files, &self.cx())
    }

    fn dir(&self) -> String {
        self.dir.path().display().to_string()
    }
}

fn draft(yaml: &str) -> (Draft, Fixture) {
    let f = Fixture::new();
    f.write("process-compose.yaml", yaml);
    let d = f
        .import(&["process-compose.yaml"])
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    (d, f)
}

fn error(yaml: &str) -> String {
    let f = Fixture::new();
    f.write("process-compose.yaml", yaml);
    f.import(&["process-compose.yaml"])
        .err()
        .unwrap_or_else(|| panic!("accepted:\n{yaml}"))
        .to_string()
}

fn program<'a>(d: &'a Draft, name: &str) -> &'a Program {
    d.programs
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no program {name}: {d:#?}"))
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn commands_run_under_bash_or_the_configured_shell() {
    let cases: [(&str, &[&str]); 7] = [
        ("command: \"sleep 3\"", &["bash", "-c", "sleep 3"]),
        (
            "command: echo I am $$ENV_TEST",
            &["bash", "-c", "echo I am $ENV_TEST"],
        ),
        ("command: echo $HOME", &["bash", "-c", "echo $HOME"]),
        (
            "entrypoint: [\"python3\", \"-m\", \"http.server\", \"$DATA\"]",
            &["python3", "-m", "http.server", "/srv/data"],
        ),
        (
            "vars: {PORT: 8080}\n    command: \"serve --port {{.PORT}}\"",
            &["bash", "-c", "serve --port 8080"],
        ),
        (
            "command: \"python3 -m http.server 404{{.PC_REPLICA_NUM}}\"",
            &["bash", "-c", "python3 -m http.server 404${KELPIE_INSTANCE}"],
        ),
        (
            "command: '[ $(docker inspect -f {{ \"{{.State.Running}}\" }} x) = true ]'",
            &[
                "bash",
                "-c",
                "[ $(docker inspect -f {{.State.Running}} x) = true ]",
            ],
        ),
    ];
    for (body, want) in cases {
        let (d, _f) = draft(&format!("processes:\n  p:\n    {body}\n"));
        assert_eq!(d.programs[0].command, strs(want), "{body}");
    }
    let (d, _f) = draft(
        "shell:\n  shell_command: python3\n  shell_argument: -m\nprocesses:\n  http:\n    command: server.py\n",
    );
    assert_eq!(d.programs[0].command, strs(&["python3", "-m", "server.py"]));
    let (d, _f) = draft("disable_env_expansion: true\nprocesses:\n  p:\n    command: echo $$\n");
    assert_eq!(d.programs[0].command, strs(&["bash", "-c", "echo $$"]));
    // A shell variable is noted: process-compose would have replaced it at load.
    let (d, _f) =
        draft("processes:\n  p:\n    command: echo $HOME\n  q:\n    command: echo $$HOME\n");
    assert!(d.programs[0]
        .notes
        .iter()
        .any(|n| n.contains("expands it when the program starts")));
    assert!(d.programs[1].notes.is_empty(), "{:?}", d.programs[1].notes);
}

#[test]
fn directory_environment_and_dot_env() {
    let f = Fixture::new();
    f.write(".env", "DB_USER=app\n");
    f.write(
        "process-compose.yaml",
        "environment:\n  - \"GLOBAL=1\"\n  - \"SHARED=global\"\nprocesses:\n  a:\n    command: x\n    working_dir: sub\n    environment:\n      - \"SHARED=local\"\n      - 'OUT=$DATA/out'\n      - 'USER_DIR=${HOME}/$DB_USER'\n      - \"EMPTY=\"\n      - \"TEMPLATE={{.Name}}\"\n  b:\n    command: y\n    working_dir: /tmp\n",
    );
    let d = f
        .import(&["process-compose.yaml"])
        .unwrap_or_else(|e| panic!("{e}"));
    let a = program(&d, "a");
    assert_eq!(a.directory, Some(format!("{}/sub", f.dir())));
    let env: Vec<(&str, &str)> = a
        .environment
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("EMPTY", ""),
            ("GLOBAL", "1"),
            ("OUT", "/srv/data/out"),
            ("SHARED", "local"),
            ("TEMPLATE", "{{.Name}}"),
            ("USER_DIR", "/home/u/app"),
        ]
    );
    assert_eq!(a.env_file, Some(format!("{}/.env", f.dir())));
    let b = program(&d, "b");
    assert_eq!(b.directory.as_deref(), Some("/tmp"));
    assert_eq!(b.environment.len(), 2);

    let (d, f) = draft("processes:\n  a:\n    command: x\n");
    assert_eq!(d.programs[0].directory, Some(f.dir()));
    assert_eq!(d.programs[0].env_file, None);
}

#[test]
fn dependency_conditions_map_and_completion_targets_become_oneshots() {
    let (d, _f) = draft(
        "processes:\n  api:\n    command: a\n    depends_on:\n      db:\n        condition: process_healthy\n      migrate:\n        condition: process_completed_successfully\n      cache:\n        condition: process_started\n      seed: process_completed\n      logs:\n        condition: process_log_ready\n      bare: {}\n  db:\n    command: d\n    readiness_probe:\n      exec:\n        command: pg_isready\n  migrate:\n    command: m\n  cache:\n    command: c\n  seed:\n    command: s\n  logs:\n    command: l\n    ready_log_line: ready to accept\n  bare:\n    command: b\n",
    );
    let api = program(&d, "api");
    let deps: Vec<(&str, Condition)> = api
        .depends_on
        .iter()
        .map(|(n, c)| (n.as_str(), *c))
        .collect();
    assert_eq!(
        deps,
        [
            ("db", Condition::Ready),
            ("migrate", Condition::Completed),
            ("cache", Condition::Started),
            ("seed", Condition::Completed),
            ("logs", Condition::Ready),
            ("bare", Condition::Started),
        ]
    );
    assert!(api
        .notes
        .iter()
        .any(|n| n.contains("process_completed waits for any exit")));
    let kinds: Vec<(&str, Option<Kind>)> = d
        .programs
        .iter()
        .map(|p| (p.name.as_str(), p.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("api", None),
            ("db", None),
            ("migrate", Some(Kind::Oneshot)),
            ("cache", None),
            ("seed", Some(Kind::Oneshot)),
            ("logs", None),
            ("bare", None),
        ]
    );
    assert_eq!(
        program(&d, "logs").readiness.as_ref().map(|p| &p.target),
        Some(&ProbeTarget::Log("ready to accept".into()))
    );
}

#[test]
fn availability_maps_to_the_restart_policy() {
    struct Case {
        availability: &'static str,
        depended_to_complete: bool,
        restart: Restart,
        max_restarts: Option<u32>,
        shutdown: bool,
        backoff: Option<u64>,
    }
    let cases = [
        Case {
            availability: "",
            depended_to_complete: false,
            restart: Restart::Never,
            max_restarts: None,
            shutdown: false,
            backoff: None,
        },
        Case {
            availability: "restart: \"no\"",
            depended_to_complete: false,
            restart: Restart::Never,
            max_restarts: None,
            shutdown: false,
            backoff: None,
        },
        Case {
            availability: "backoff_seconds: 3",
            depended_to_complete: false,
            restart: Restart::Never,
            max_restarts: None,
            shutdown: false,
            backoff: Some(3),
        },
        Case {
            availability: "restart: always\n      backoff_seconds: 2\n      max_restarts: 5",
            depended_to_complete: false,
            restart: Restart::Always,
            max_restarts: Some(5),
            shutdown: false,
            backoff: Some(2),
        },
        Case {
            availability: "restart: always\n      backoff_seconds: 0",
            depended_to_complete: false,
            restart: Restart::Always,
            max_restarts: None,
            shutdown: false,
            backoff: Some(1),
        },
        Case {
            availability: "restart: on_failure\n      max_restarts: 0",
            depended_to_complete: false,
            restart: Restart::OnFailure,
            max_restarts: None,
            shutdown: false,
            backoff: None,
        },
        Case {
            availability: "restart: exit_on_failure",
            depended_to_complete: false,
            restart: Restart::OnFailure,
            max_restarts: Some(0),
            shutdown: true,
            backoff: None,
        },
        Case {
            availability: "restart: always",
            depended_to_complete: true,
            restart: Restart::OnFailure,
            max_restarts: None,
            shutdown: false,
            backoff: None,
        },
    ];
    for case in cases {
        let dependent = if case.depended_to_complete {
            "  after:\n    command: z\n    depends_on:\n      p:\n        condition: process_completed_successfully\n"
        } else {
            ""
        };
        let availability = if case.availability.is_empty() {
            String::new()
        } else {
            format!("    availability:\n      {}\n", case.availability)
        };
        let (d, _f) = draft(&format!(
            "processes:\n  p:\n    command: x\n{availability}{dependent}"
        ));
        let p = program(&d, "p");
        assert_eq!(p.restart, Some(case.restart), "{}", case.availability);
        assert_eq!(p.max_restarts, case.max_restarts, "{}", case.availability);
        assert_eq!(
            p.shutdown_on_failure, case.shutdown,
            "{}",
            case.availability
        );
        let backoff = case.backoff.map(|s| Backoff::fixed(Duration::from_secs(s)));
        assert_eq!(p.backoff, backoff, "{}", case.availability);
    }
}

#[test]
fn probes_map_to_http_tcp_or_exec() {
    let cases: [(&str, ProbeTarget); 5] = [
        (
            "http_get:\n        host: 127.0.0.1\n        scheme: http\n        path: \"/healthz\"\n        port: 8080",
            ProbeTarget::Http("http://127.0.0.1:8080/healthz".into()),
        ),
        ("http_get:\n        port: \"90\"", ProbeTarget::Http("http://127.0.0.1:90/".into())),
        (
            "http_get:\n        path: ready\n        port: \"404{{.PC_REPLICA_NUM}}\"",
            ProbeTarget::Http("http://127.0.0.1:404${KELPIE_INSTANCE}/ready".into()),
        ),
        (
            "http_get:\n        host: localhost\n        scheme: HTTPS\n        port: 8443",
            ProbeTarget::Tcp("localhost:8443".into()),
        ),
        (
            "exec:\n        command: \"pg_isready -h $$HOST\"",
            ProbeTarget::Exec(strs(&["bash", "-c", "pg_isready -h $HOST"])),
        ),
    ];
    for (body, want) in cases {
        let (d, _f) = draft(&format!(
            "shell:\n  shell_command: zsh\nprocesses:\n  p:\n    command: x\n    readiness_probe:\n      {body}\n      initial_delay_seconds: 5\n      period_seconds: 10\n      timeout_seconds: 3\n      success_threshold: 1\n      failure_threshold: 4\n"
        ));
        let probe = d.programs[0]
            .readiness
            .clone()
            .unwrap_or_else(|| panic!("{body}"));
        assert_eq!(probe.target, want, "{body}");
        assert_eq!(probe.initial_delay, Some(Duration::from_secs(5)));
        assert_eq!(probe.interval, Some(Duration::from_secs(10)));
        assert_eq!(probe.timeout, Some(Duration::from_secs(3)));
        assert_eq!(probe.success_threshold, Some(1));
        assert_eq!(probe.failure_threshold, Some(4));
    }
    // Values process-compose replaces with its defaults are left to kelpie's.
    let (d, _f) = draft(
        "processes:\n  p:\n    command: x\n    liveness_probe:\n      exec:\n        command: \"true\"\n      period_seconds: 0\n      timeout_seconds: 0\n",
    );
    let probe = d.programs[0]
        .liveness
        .clone()
        .unwrap_or_else(|| panic!("liveness"));
    assert_eq!((probe.interval, probe.timeout), (None, None));
}

#[test]
fn shutdown_replicas_disabled_and_logs() {
    let (d, f) = draft(
        "processes:\n  p:\n    command: x\n    replicas: 3\n    disabled: true\n    shutdown:\n      signal: 2\n      timeout_seconds: 5\n    log_location: logs/p.log\n    log_configuration:\n      rotation:\n        max_size_mb: 2\n        max_backups: 4\n  q:\n    command: y\n    is_disabled: \"false\"\n    disabled: true\n    shutdown:\n      signal: 1\n",
    );
    let p = program(&d, "p");
    assert_eq!(p.instances, Some(3));
    assert_eq!(p.autostart, Some(false));
    assert_eq!(p.stop_signal.as_deref(), Some("INT"));
    assert_eq!(p.stop_timeout, Some(Duration::from_secs(5)));
    assert_eq!(
        p.log,
        Some(Log::File {
            file: format!("{}/logs/p.log", f.dir()),
            max_size: Some(2 * 1024 * 1024),
            keep: Some(4),
        })
    );
    let q = program(&d, "q");
    assert_eq!(q.autostart, None);
    assert_eq!(q.stop_signal.as_deref(), Some("HUP"));
    assert!(d.dropped.is_empty(), "{:?}", d.dropped);
}

#[test]
fn keys_without_an_equivalent_are_dropped_at_their_line() {
    let (d, _f) = draft(
        "version: \"0.5\"\nlog_location: pc.log\nenv_cmds:\n  DATE: date\nprocesses:\n  nginx:\n    command: docker run -d nginx\n    is_daemon: true\n    shutdown:\n      command: docker stop nginx\n      signal: 9\n      parent_only: yes\n    availability:\n      restart: always\n      exit_on_end: true\n    commnad: typo\n    x-meta: ignored\n    is_tty: false\n",
    );
    let dropped: Vec<(usize, Option<&str>, &str)> = d
        .dropped
        .iter()
        .map(|x| (x.origin.line, x.program.as_deref(), x.key.as_str()))
        .collect();
    assert_eq!(
        dropped,
        [
            (2, None, "log_location"),
            (3, None, "env_cmds"),
            (8, Some("nginx"), "is_daemon"),
            (10, Some("nginx"), "shutdown.command"),
            (11, Some("nginx"), "shutdown.signal: 9"),
            (12, Some("nginx"), "shutdown.parent_only"),
            (16, Some("nginx"), "commnad"),
            (15, Some("nginx"), "availability.exit_on_end"),
        ]
    );
    assert!(d.dropped.iter().all(|x| !x.why.is_empty()));
    assert_eq!(d.dropped[0].origin.file, Path::new("process-compose.yaml"));
}

#[test]
fn namespaces_become_groups_unless_a_program_has_the_name() {
    let (d, _f) = draft(
        "processes:\n  a:\n    command: x\n    namespace: backend\n  b:\n    command: y\n    namespace: backend\n  c:\n    command: z\n    namespace: default\n  d:\n    command: w\n    namespace: a\n",
    );
    let groups: Vec<(&str, Vec<&str>)> = d
        .groups
        .iter()
        .map(|g| {
            (
                g.name.as_str(),
                g.programs.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(groups, [("backend", vec!["a", "b"])]);
    assert_eq!(d.dropped.len(), 1);
    assert_eq!(d.dropped[0].key, "namespace: a");
}

#[test]
fn files_merge_and_extends_is_followed() {
    let f = Fixture::new();
    f.write(
        "process-compose.yaml",
        "processes:\n  web:\n    command: npm start\n    environment:\n      - \"A=3\"\n      - \"C=8\"\n  db:\n    command: pg_ctl start\n",
    );
    f.write(
        "process-compose.override.yaml",
        "processes:\n  web:\n    environment:\n      - \"A=4\"\n      - \"B=5\"\n  db:\n    command: pg_ctl start -d\n  cache:\n    command: redis-server\n",
    );
    let d = f
        .import(&["process-compose.yaml", "process-compose.override.yaml"])
        .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = d.programs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["web", "db", "cache"]);
    let web = program(&d, "web");
    assert_eq!(web.command, strs(&["bash", "-c", "npm start"]));
    let env: Vec<String> = web
        .environment
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert_eq!(env, ["A=4", "B=5", "C=8"]);
    assert_eq!(program(&d, "db").command[2], "pg_ctl start -d");
    assert_eq!(
        program(&d, "cache").origin,
        Some(Origin::new("process-compose.override.yaml", 8))
    );

    f.write(
        "prod.yaml",
        "extends: process-compose.yaml\nprocesses:\n  db:\n    replicas: 2\n",
    );
    let d = f.import(&["prod.yaml"]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(program(&d, "db").instances, Some(2));
    assert_eq!(program(&d, "db").command[2], "pg_ctl start");

    f.write("loop.yaml", "extends: loop.yaml\nprocesses: {}\n");
    let err = f.import(&["loop.yaml"]).err().map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("loop.yaml:1: extends \"loop.yaml\" loops back to a file already being read")
    );
}

#[test]
fn bad_input_is_an_error_at_its_line() {
    let cases = [
        ("processes:\n  p:\n    command: x\n    replicas: many\n",
         "process-compose.yaml:4: processes.p.replicas: expected a whole number, found \"many\""),
        ("processes:\n  p:\n    working_dir: /tmp\n",
         "process-compose.yaml:2: process \"p\" has no command"),
        ("processes:\n  p:\n    command: x\n    depends_on:\n      q:\n        condition: process_ready\n  q:\n    command: y\n",
         "process-compose.yaml:6: unknown depends_on condition \"process_ready\"; expected process_started, process_healthy, process_log_ready, process_completed or process_completed_successfully"),
        ("processes:\n  p:\n    command: x\n    depends_on:\n      nope:\n        condition: process_started\n",
         "process-compose.yaml:5: processes.p.depends_on: \"nope\" is not a process in this file"),
        ("processes:\n  p:\n    command: x\n    environment:\n      - JUSTAKEY\n",
         "process-compose.yaml:5: processes.p.environment: expected \"KEY=VALUE\", found \"JUSTAKEY\""),
        ("processes:\n  p:\n    command: x\n    environment:\n      A: 1\n",
         "process-compose.yaml:5: processes.p.environment: expected a list, found a mapping"),
        ("processes:\n  p:\n    command: \"x\n",
         "process-compose.yaml:3: not valid YAML: while scanning a quoted scalar, found unexpected end of stream"),
        ("processes:\n  p:\n    command: x\n    availability:\n      restart: sometimes\n",
         "process-compose.yaml:5: availability.restart: unknown policy \"sometimes\"; expected always, on_failure, exit_on_failure or no"),
        ("processes:\n  p:\n    command: x\n    shutdown:\n      signal: 99\n",
         "process-compose.yaml:5: processes.p.shutdown.signal: 99 is not a signal number (1 to 31)"),
        ("processes:\n  p:\n    command: \"run {{if .X}}a{{end}}\"\n",
         "process-compose.yaml:3: processes.p.command: the template action {{if .X}} cannot be evaluated by kelpie import; replace it with its value"),
        ("processes:\n  p:\n    command: \"run {{.NOPE}}\"\n",
         "process-compose.yaml:3: processes.p.command: template {{.NOPE}} names no var (set it in `vars`)"),
        ("processes:\n  p:\n    command: x\n    readiness_probe:\n      period_seconds: 2\n",
         "process-compose.yaml:5: processes.p.readiness_probe: needs exec or http_get"),
        ("processes:\n  p:\n    command: x\n    readiness_probe:\n      http_get:\n        port: http\n",
         "process-compose.yaml:6: processes.p.readiness_probe.http_get.port: expected a port number (1 to 65535), found \"http\""),
        ("processes:\n  p:\n    command: x\n    ready_log_line: up\n    readiness_probe:\n      exec:\n        command: \"true\"\n",
         "process-compose.yaml:4: processes.p.ready_log_line: ready_log_line and readiness_probe cannot both be set (process-compose refuses it too)"),
        ("processes:\n  - p\n", "process-compose.yaml:2: processes: expected a mapping, found a list"),
    ];
    for (yaml, want) in cases {
        assert_eq!(error(yaml), want, "{yaml}");
    }
}

#[test]
fn helpers_expand_and_render_like_process_compose() {
    let env = HashMap::from([("A".to_string(), "1".to_string())]);
    let cases = [
        ("$A-${A}", "1-1"),
        ("$$A", "$A"),
        ("${MISSING}x", "x"),
        ("cost: $", "cost: $"),
        ("${unclosed", "${unclosed"),
        ("$A_B", ""),
    ];
    for (text, want) in cases {
        assert_eq!(expand_env(text, &env), want, "{text}");
    }
    assert!(mentions_variable("echo $X"));
    assert!(mentions_variable("echo ${X}"));
    assert!(!mentions_variable("echo $$X and $1 and cost$"));
    assert_eq!(signal_name(15), Some("TERM"));
    assert_eq!(signal_name(10), Some("USR1"));
    assert_eq!(signal_name(0), None);
}

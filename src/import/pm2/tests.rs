use std::collections::HashMap;
use std::path::PathBuf;

use super::*;

struct Fixture {
    dir: tempfile::TempDir,
    path: String,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        // A PATH of our own: tools found there are the ones the test made.
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap_or_else(|e| panic!("mkdir: {e}"));
        Self {
            path: bin.display().to_string(),
            dir,
        }
    }

    fn write(&self, name: &str, text: &str) {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir: {e}"));
        }
        std::fs::write(path, text).unwrap_or_else(|e| panic!("write: {e}"));
    }

    fn tool(&self, name: &str, bytes: &[u8]) {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.dir.path().join("bin").join(name);
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("write: {e}"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod: {e}"));
    }

    fn cx(&self, path: &str) -> Context {
        Context {
            env: HashMap::from([
                ("HOME".to_string(), "/home/u".to_string()),
                ("PATH".to_string(), path.to_string()),
            ]),
            cwd: self.dir.path().to_path_buf(),
        }
    }

    fn import(&self, file: &str) -> Result<Draft, ImportError> {
        import(&[PathBuf::from(file)], &self.cx(&self.path))
    }

    fn dir(&self) -> String {
        self.dir.path().display().to_string()
    }
}

fn draft(yaml: &str) -> (Draft, Fixture) {
    let f = Fixture::new();
    f.write("ecosystem.yaml", yaml);
    let d = f
        .import("ecosystem.yaml")
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    (d, f)
}

fn app(body: &str) -> (Program, Draft, Fixture) {
    let (d, f) = draft(&format!("apps:\n  - name: web\n{body}"));
    (d.programs[0].clone(), d, f)
}

fn error(text: &str) -> String {
    let f = Fixture::new();
    f.write("ecosystem.yaml", text);
    f.import("ecosystem.yaml")
        .err()
        .unwrap_or_else(|| panic!("accepted:\n{text}"))
        .to_string()
}

/// An app's body, the files in its directory, and the argv wanted (`{d}`
/// is the directory).
type CommandCase<'a> = (&'a str, &'a [(&'a str, &'a [u8])], &'a [&'a str]);

#[test]
fn the_interpreter_comes_from_the_extension_or_the_app() {
    let cases: [CommandCase; 9] = [
        ("    script: server.js\n", &[], &["node", "{d}/server.js"]),
        (
            "    script: ./app.js\n    args: \"--port 80 --name 'my app'\"\n    node_args: [\"--max-old-space-size=300\"]\n",
            &[],
            &["node", "--max-old-space-size=300", "{d}/app.js", "--port", "80", "--name", "my app"],
        ),
        ("    script: worker.py\n    args: [\"-v\"]\n", &[], &["python3", "{d}/worker.py", "-v"]),
        ("    script: run.sh\n", &[], &["bash", "{d}/run.sh"]),
        ("    script: main.rb\n    interpreter: /usr/bin/ruby\n    interpreter_args: -W0\n", &[], &["/usr/bin/ruby", "-W0", "{d}/main.rb"]),
        ("    script: serve\n    interpreter: none\n    args: start\n", &[], &["serve", "start"]),
        ("    script: ./bin/server\n", &[("bin/server", b"\x7fELF\x00\x01")], &["{d}/bin/server"]),
        ("    script: ./bin/cli\n", &[("bin/cli", b"#!/usr/bin/env node\nrequire('x')\n")], &["node", "{d}/bin/cli"]),
        ("    script: app.js\n    cwd: sub\n", &[], &["node", "{d}/sub/app.js"]),
    ];
    for (body, files, want) in cases {
        let f = Fixture::new();
        for (name, bytes) in files {
            f.write(name, "");
            std::fs::write(f.dir.path().join(name), bytes).unwrap_or_else(|e| panic!("write: {e}"));
        }
        f.write("ecosystem.yaml", &format!("apps:\n  - name: web\n{body}"));
        let d = f.import("ecosystem.yaml").unwrap_or_else(|e| panic!("{e}"));
        let want: Vec<String> = want.iter().map(|w| w.replace("{d}", &f.dir())).collect();
        assert_eq!(d.programs[0].command, want, "{body}");
    }
    // `python` on PATH is preferred, as pm2 prefers it; PYTHONUNBUFFERED as pm2 sets it.
    let f = Fixture::new();
    f.tool("python", b"#!/bin/sh\n");
    f.write("ecosystem.yaml", "apps:\n  - script: worker.py\n");
    let d = f.import("ecosystem.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.programs[0].name, "worker");
    assert_eq!(d.programs[0].command[0], "python");
    assert_eq!(
        d.programs[0]
            .environment
            .get("PYTHONUNBUFFERED")
            .map(String::as_str),
        Some("1")
    );
    // A bare name found on PATH runs with node by its resolved path.
    let f = Fixture::new();
    f.tool("npm", b"#!/usr/bin/env node\n");
    f.write(
        "ecosystem.yaml",
        "apps:\n  - name: api\n    script: npm\n    args: start\n",
    );
    let d = f.import("ecosystem.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        d.programs[0].command,
        [
            "node".to_string(),
            format!("{}/npm", f.path),
            "start".into()
        ]
    );
}

#[test]
fn directory_environment_user_and_port() {
    let (p, d, _f) = app(
        "    script: app.js\n    cwd: ~/srv\n    env:\n      NODE_ENV: production\n      PORT: 3000\n      DEBUG: false\n    port: 9999\n    uid: www-data\n    gid: www\n",
    );
    assert_eq!(p.directory.as_deref(), Some("/home/u/srv"));
    let env: Vec<(&str, &str)> = p
        .environment
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("DEBUG", "false"),
            ("NODE_ENV", "production"),
            ("PORT", "3000")
        ]
    );
    assert_eq!(p.user.as_deref(), Some("www-data"));
    assert_eq!(p.group.as_deref(), Some("www"));
    assert_eq!(p.stop_signal.as_deref(), Some("INT"));
    assert!(d.dropped.is_empty(), "{:?}", d.dropped);
    let (p, _d, f) = app("    script: app.js\n    port: 8080\n");
    assert_eq!(p.environment.get("PORT").map(String::as_str), Some("8080"));
    assert_eq!(p.directory, Some(f.dir()));
}

#[test]
fn restarts_and_backoff() {
    use std::time::Duration;
    let ms = Duration::from_millis;
    struct Case {
        body: &'static str,
        restart: Option<Restart>,
        codes: Option<Vec<u8>>,
        backoff: Option<Backoff>,
        max_restarts: Option<u32>,
        start_seconds: Option<Duration>,
        stop_timeout: Option<Duration>,
    }
    let none = || Case {
        body: "",
        restart: None,
        codes: None,
        backoff: None,
        max_restarts: None,
        start_seconds: None,
        stop_timeout: None,
    };
    let cases = [
        Case {
            body: "    autorestart: false\n",
            restart: Some(Restart::Never),
            ..none()
        },
        Case {
            body: "    autorestart: true\n    stop_exit_codes: [0, 3]\n",
            restart: Some(Restart::OnFailure),
            codes: Some(vec![0, 3]),
            ..none()
        },
        Case {
            body: "    restart_delay: 4000\n",
            backoff: Some(Backoff::fixed(ms(4000))),
            ..none()
        },
        Case {
            body: "    exp_backoff_restart_delay: 100\n    restart_delay: 50\n",
            backoff: Some(Backoff {
                initial: ms(100),
                max: ms(15_000),
                multiplier: Some(1.5),
                jitter: None,
            }),
            ..none()
        },
        Case {
            body: "    exp_backoff_restart_delay: 20000\n",
            backoff: Some(Backoff {
                initial: ms(20_000),
                max: ms(20_000),
                multiplier: Some(1.5),
                jitter: None,
            }),
            ..none()
        },
        Case {
            body: "    max_restarts: 10\n    min_uptime: 10s\n    kill_timeout: 5000\n",
            max_restarts: Some(10),
            start_seconds: Some(ms(10_000)),
            stop_timeout: Some(ms(5000)),
            ..none()
        },
        Case {
            body: "    min_uptime: 2500\n",
            start_seconds: Some(ms(2500)),
            ..none()
        },
        Case {
            body: "    min_uptime: 1m\n",
            start_seconds: Some(ms(60_000)),
            ..none()
        },
        none(),
    ];
    for case in cases {
        let (p, _d, _f) = app(&format!("    script: app.js\n{}", case.body));
        assert_eq!(p.restart, case.restart, "{}", case.body);
        assert_eq!(p.success_codes, case.codes, "{}", case.body);
        assert_eq!(p.backoff, case.backoff, "{}", case.body);
        assert_eq!(p.max_restarts, case.max_restarts, "{}", case.body);
        assert_eq!(p.start_seconds, case.start_seconds, "{}", case.body);
        assert_eq!(p.stop_timeout, case.stop_timeout, "{}", case.body);
    }
}

#[test]
fn logs_become_one_file() {
    let cases: [(&str, Option<&str>, &[&str]); 8] = [
        (
            "    out_file: logs/out.log\n    error_file: logs/out.log\n",
            Some("{d}/logs/out.log"),
            &[],
        ),
        (
            "    out_file: logs/out.log\n    error_file: logs/err.log\n",
            Some("{d}/logs/out.log"),
            &["error_file"],
        ),
        (
            "    log_file: /var/log/web.log\n    out_file: a.log\n",
            Some("/var/log/web.log"),
            &["out_file"],
        ),
        ("    error_file: e.log\n", Some("{d}/e.log"), &[]),
        (
            "    out_file: /dev/null\n    error_file: /dev/null\n",
            Some("discard"),
            &[],
        ),
        (
            "    disable_logs: true\n    out_file: x.log\n",
            Some("discard"),
            &[],
        ),
        ("    log_file: true\n", None, &["log_file"]),
        ("", None, &[]),
    ];
    for (body, want, dropped) in cases {
        let (p, d, f) = app(&format!("    script: app.js\n{body}"));
        let got = match &p.log {
            None => None,
            Some(Log::Discard) => Some("discard".to_string()),
            Some(Log::File { file, .. }) => Some(file.clone()),
            Some(Log::Inherit) => Some("inherit".to_string()),
        };
        assert_eq!(got, want.map(|w| w.replace("{d}", &f.dir())), "{body}");
        let keys: Vec<&str> = d.dropped.iter().map(|x| x.key.as_str()).collect();
        assert_eq!(keys, dropped, "{body}");
    }
}

#[test]
fn instances_and_cluster_mode() {
    let (p, d, _f) = app("    script: app.js\n    instances: 4\n    exec_mode: fork\n");
    assert_eq!(p.instances, Some(4));
    assert!(d.dropped.is_empty());
    assert_eq!(
        p.instance_environment
            .get("NODE_APP_INSTANCE")
            .map(String::as_str),
        Some("${KELPIE_INSTANCE}")
    );
    for value in ["max", "0", "-1", "\"max\"", "-2"] {
        let (p, d, _f) = app(&format!("    script: app.js\n    instances: {value}\n"));
        assert_eq!(p.instances, None, "{value}");
        assert_eq!(d.dropped.len(), 1, "{value}");
        assert_eq!(d.dropped[0].key, "instances");
        assert_eq!(d.dropped[0].origin.line, 4);
    }
    let (_p, d, _f) = app("    script: app.js\n    instances: 2\n    exec_mode: cluster\n");
    assert_eq!(d.dropped.len(), 1);
    assert_eq!(d.dropped[0].key, "exec_mode");
    let (p, _d, _f) = app("    script: app.js\n    instances: 2\n");
    assert!(
        p.notes.iter().any(|n| n.contains("cluster mode")),
        "{:?}",
        p.notes
    );
}

#[test]
fn keys_without_an_equivalent_are_reported_unless_off() {
    let (_p, d, _f) = app(
        "    script: app.js\n    watch: [\"src\"]\n    ignore_watch: [node_modules]\n    max_memory_restart: 300M\n    cron_restart: \"0 3 * * *\"\n    env_production:\n      NODE_ENV: production\n    time: true\n    merge_logs: true\n    vizion: false\n    treekill: false\n    wait_ready: true\n    listen_timeout: 8000\n    source_map_support: false\n    frobnicate: 1\n",
    );
    let dropped: Vec<(usize, &str)> = d
        .dropped
        .iter()
        .map(|x| (x.origin.line, x.key.as_str()))
        .collect();
    assert_eq!(
        dropped,
        [
            (4, "watch"),
            (7, "cron_restart"),
            (8, "env_production"),
            (10, "time"),
            (13, "treekill"),
            (14, "wait_ready"),
            (17, "frobnicate"),
            (5, "ignore_watch"),
        ]
    );
    assert!(d
        .dropped
        .iter()
        .all(|x| x.program.as_deref() == Some("web")));
    // max_memory_restart has its kelpie key now.
    assert_eq!(_p.memory_restart, Some(300 << 20));
    let (p, d, _f) =
        app("    script: app.js\n    watch: false\n    ignore_watch: [x]\n    cron_restart: 0\n");
    assert!(d.dropped.is_empty(), "{:?}", d.dropped);
    assert!(p.notes.is_empty(), "{:?}", p.notes);

    let (d, _f) = draft("apps:\n  - script: a.js\ndeploy:\n  production:\n    user: node\n");
    assert_eq!(d.dropped.len(), 1);
    assert_eq!(
        (
            d.dropped[0].key.as_str(),
            d.dropped[0].program.as_deref(),
            d.dropped[0].origin.line
        ),
        ("deploy", None, 3)
    );
}

#[test]
fn file_shapes_and_json() {
    // A bare list, one app, and JSON with its lines.
    let (d, _f) = draft("- script: a.js\n- script: b.js\n  name: bee\n");
    let names: Vec<&str> = d.programs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["a", "bee"]);
    let (d, _f) = draft("script: one.js\n");
    assert_eq!(d.programs[0].name, "one");

    let f = Fixture::new();
    f.write(
        "ecosystem.json",
        "{\n  \"apps\": [\n    {\n      \"name\": \"@scope/api \\ud83d\\ude80\",\n      \"script\": \"index.js\",\n      \"namespace\": \"backend\",\n      \"watch\": true\n    },\n    {\"name\": \"w\", \"script\": \"w.js\", \"namespace\": \"backend\"}\n  ]\n}\n",
    );
    let d = f.import("ecosystem.json").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.programs[0].name, "_scope-api--");
    assert_eq!(d.programs[0].origin, Some(Origin::new("ecosystem.json", 3)));
    assert!(
        d.programs[0].notes[0].contains("🚀"),
        "{:?}",
        d.programs[0].notes
    );
    assert_eq!(d.dropped[0].origin, Origin::new("ecosystem.json", 7));
    assert_eq!(d.dropped[0].key, "watch");
    assert_eq!(d.groups.len(), 1);
    assert_eq!(d.groups[0].programs, ["_scope-api--", "w"]);
}

#[test]
fn bad_input_is_an_error_at_its_line() {
    let cases = [
        ("apps:\n  - name: web\n    instances: many\n    script: a.js\n", "ecosystem.yaml:3: app \"web\": instances: expected a whole number, found \"many\""),
        ("apps:\n  - name: web\n    cwd: /tmp\n", "ecosystem.yaml:2: app \"web\" has no script"),
        ("apps:\n  - name: web\n    script: a.js\n    min_uptime: soon\n", "ecosystem.yaml:4: app \"web\": min_uptime: expected milliseconds, or a number with h, m or s, found \"soon\""),
        ("apps:\n  - name: web\n    script: a.js\n    kill_timeout: 5s\n", "ecosystem.yaml:4: app \"web\": kill_timeout: expected milliseconds (a whole number), found \"5s\""),
        ("apps:\n  - name: web\n    script: a.js\n    exec_mode: swarm\n", "ecosystem.yaml:4: app \"web\": exec_mode: expected fork or cluster, found \"swarm\""),
        ("apps:\n  - name: web\n    script: a.js\n    args: \"'unclosed\"\n", "ecosystem.yaml:4: app \"web\": args: unbalanced quotes in \"'unclosed\""),
        ("apps:\n  - name: web\n    script: a.js\n    env: [A=1]\n", "ecosystem.yaml:4: app \"web\": env: expected a mapping, found a list"),
        ("apps:\n  - name: web\n    script: a.js\n    stop_exit_codes: [300]\n", "ecosystem.yaml:4: app \"web\": stop_exit_codes: 300 is not an exit code (0 to 255)"),
        ("apps:\n  - name: web\n    script: a.js\n    autorestart: sometimes\n", "ecosystem.yaml:4: app \"web\": autorestart: expected true or false, found \"sometimes\""),
        ("apps: web\n", "ecosystem.yaml:1: apps: expected a list of apps, found \"web\""),
        ("hello\n", "ecosystem.yaml:1: expected `apps: [...]`, a list of apps, or one app with a `script`"),
        ("apps:\n  - name: [web\n", "ecosystem.yaml:3: not valid YAML: while parsing a flow sequence, expected ',' or ']'"),
    ];
    for (text, want) in cases {
        assert_eq!(error(text), want, "{text}");
    }
}

#[test]
fn a_js_file_needs_node_and_is_evaluated_by_it() {
    let f = Fixture::new();
    f.write(
        "ecosystem.config.js",
        "const base = { autorestart: true };\nmodule.exports = {\n  apps: [{ ...base, name: 'api', script: 'server.js', watch: true, env: { PORT: 3000 + 1 } }],\n};\n",
    );
    let missing = import(&[PathBuf::from("ecosystem.config.js")], &f.cx(&f.path))
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        missing.as_deref(),
        Some("ecosystem.config.js: `node` is not on PATH, and only node can evaluate a .js ecosystem file; export it as JSON and import that: node -e \"console.log(JSON.stringify(require('./ecosystem.config.js')))\" > ecosystem.json")
    );
    let system_path = std::env::var("PATH").unwrap_or_default();
    if evaluate::find_node(Some(&system_path)).is_none() {
        eprintln!("skipped the node half: node is not on PATH");
        return;
    }
    let d = import(&[PathBuf::from("ecosystem.config.js")], &f.cx(&system_path))
        .unwrap_or_else(|e| panic!("{e}"));
    let p = &d.programs[0];
    assert_eq!(p.name, "api");
    assert_eq!(p.origin, Some(Origin::new("ecosystem.config.js", 0)));
    assert_eq!(p.environment.get("PORT").map(String::as_str), Some("3001"));
    assert_eq!(d.dropped[0].key, "watch (app \"api\")");
    assert_eq!(d.dropped[0].origin.line, 0);

    // An ES module, and a config that throws at its line.
    f.write(
        "ecosystem.config.mjs",
        "export default { apps: [{ script: 'w.js' }] };\n",
    );
    let d = import(
        &[PathBuf::from("ecosystem.config.mjs")],
        &f.cx(&system_path),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.programs[0].name, "w");
    f.write(
        "broken.config.js",
        "module.exports = {\n  apps: [\n    { script: nope },\n  ],\n};\n",
    );
    let err = import(&[PathBuf::from("broken.config.js")], &f.cx(&system_path))
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("broken.config.js:3: node could not evaluate it: ReferenceError: nope is not defined")
    );
}

#[test]
fn max_memory_restart_becomes_memory_restart() {
    let cases: [(&str, Option<u64>); 6] = [
        ("300M", Some(300 << 20)),
        ("1G", Some(1 << 30)),
        ("200K", Some(200 << 10)),
        ("\"1048576\"", Some(1 << 20)),
        ("5000", Some(5000)),
        ("0", None),
    ];
    for (value, want) in cases {
        let (p, d, _f) = app(&format!(
            "    script: app.js\n    max_memory_restart: {value}\n"
        ));
        assert_eq!(p.memory_restart, want, "{value}");
        assert!(d.dropped.is_empty(), "{value}: {:?}", d.dropped);
        assert_eq!(
            p.notes
                .iter()
                .any(|n| n.contains("max_memory_restart became memory_restart")),
            want.is_some(),
            "{value}: {:?}",
            p.notes
        );
    }
    for bad in ["300MB", "1.5G", "300m", "-5", "G", "[1]"] {
        let text =
            format!("apps:\n  - name: web\n    script: a.js\n    max_memory_restart: {bad}\n");
        let shown = if bad == "[1]" {
            "a list".to_string()
        } else {
            format!("{bad:?}")
        };
        assert_eq!(
            error(&text),
            format!("ecosystem.yaml:4: app \"web\": max_memory_restart: expected bytes, or a whole number with K, M or G (1024 multiples, as pm2 reads them), found {shown}"),
        );
    }
    assert_eq!(
        error("apps:\n  - name: web\n    script: a.js\n    max_memory_restart: 99999999999999G\n"),
        "ecosystem.yaml:4: app \"web\": max_memory_restart: \"99999999999999G\" is too large"
    );
}

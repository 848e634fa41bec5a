//! `kelpie import pm2` on ecosystem files as pm2's docs write them (JS
//! evaluated by node, JSON, YAML) and on a larger production file: the
//! report, `--strict`, the error without node, the round trip through
//! `kelpie check` and `kelpie config`, and an imported file run for real.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/import/pm2");

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// A temporary copy of the fixtures, so imports can write beside them.
fn fixtures() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(Path::new(FIXTURES), dir.path());
    dir
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn node_on_path() -> bool {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .any(|dir| Path::new(dir).join("node").is_file())
}

/// True when node is missing, after saying which test is skipped and why.
fn skip_without_node(test: &str) -> bool {
    if node_on_path() {
        return false;
    }
    println!("skipped {test}: node is not on PATH, and .js ecosystem files need it");
    true
}

#[test]
fn a_js_ecosystem_file_is_evaluated_by_node() {
    if skip_without_node("a_js_ecosystem_file_is_evaluated_by_node") {
        return;
    }
    let dir = fixtures();
    let d = dir.path();
    // No format named: the file name tells.
    let (out, toml) = import_and_round_trip(d, &["ecosystem.config.js"]);
    // Without line numbers, each dropped key names its app.
    for want in [
        "not carried over: ecosystem.config.js: deploy: pm2 deploy fetches and installs code",
        "not carried over: ecosystem.config.js: exec_mode (app \"app\"): kelpie has no cluster mode",
        "not carried over: ecosystem.config.js: env_production (app \"app\"): a named environment pm2 applies with `pm2 start --env NAME`",
        "not carried over: ecosystem.config.js: instances (app \"app\"): pm2 starts one instance per CPU",
        "not carried over: ecosystem.config.js: watch (app \"worker\"): kelpie does not restart programs on file changes",
        "not carried over: ecosystem.config.js: ignore_watch (app \"worker\")",
    ] {
        assert!(out.stderr.contains(want), "{want}\n{out:#?}");
    }
    assert!(!out.stderr.contains("max_memory_restart"), "{out:#?}");
    let app = table(&toml, "app");
    assert!(app.contains("# from ecosystem.config.js\n"), "{app}");
    assert!(
        app.contains(&format!("command = [\"node\", \"{}/app.js\"]", d.display())),
        "{app}"
    );
    assert!(
        app.contains("environment = { NODE_ENV = \"development\" }"),
        "{app}"
    );
    assert!(!app.contains("\ninstances ="), "{app}");
    let worker = table(&toml, "worker");
    assert!(
        worker.contains("backoff = { initial = \"100ms\", max = \"15s\", multiplier = 1.5 }"),
        "{worker}"
    );
    assert!(worker.contains("stop_signal = \"INT\""), "{worker}");
    // max_memory_restart: "300M" is pm2's 300 × 1024².
    assert!(worker.contains("memory_restart = \"300MiB\"\n"), "{worker}");
    assert!(
        worker.contains("# kelpie import: max_memory_restart became memory_restart = \"300MiB\""),
        "{worker}"
    );
}

#[test]
fn json_and_yaml_files_are_read_with_their_lines() {
    let dir = fixtures();
    let d = dir.path();
    let (out, toml) = import_and_round_trip(d, &["pm2", "ecosystem.json"]);
    for want in [
        "not carried over: ecosystem.json:22: error_file: kelpie keeps one log per program, so stderr goes to out_file too",
        "not carried over: ecosystem.json:24: time: a pm2 log format option",
        "not carried over: ecosystem.json:33: cron_restart: kelpie does not restart on a schedule",
        "kelpie: imported 3 programs from pm2; 3 keys not carried over",
    ] {
        assert!(out.stderr.contains(want), "{want}\n{out:#?}");
    }
    let api = table(&toml, "api");
    for want in [
        "# from ecosystem.json:3",
        "command = [\"node\", \"--max-old-space-size=512\", \"/srv/api/server.js\", \"--port\", \"8080\"]",
        "directory = \"/srv/api\"",
        // JSON escapes, surrogate pairs included; `${` stays literal.
        "environment = { GREETING = \"café 🚀\", NODE_APP_INSTANCE = \"${KELPIE_INSTANCE}\", NODE_ENV = \"production\", TEMPLATE = \"$${not_expanded}\" }",
        "instances = 2",
        "start_seconds = \"5s\"",
        "backoff = { initial = \"2s\", max = \"2s\", multiplier = 1.0, jitter = 0.0 }",
        "max_restarts = 10",
        "stop_timeout = \"8s\"",
        "log = { mode = \"file\", file = \"/var/log/api/out.log\" }",
    ] {
        assert!(api.contains(want), "{want}\n{api}");
    }
    let scheduler = table(&toml, "scheduler");
    assert!(scheduler.contains("command = [\"python3\", \"-u\", \"/srv/scheduler/scheduler.py\"]"));
    assert!(scheduler.contains("restart = \"never\""), "{scheduler}");
    assert!(
        scheduler.contains("PYTHONUNBUFFERED = \"1\""),
        "{scheduler}"
    );
    let cleanup = table(&toml, "cleanup");
    for want in [
        "command = [\"bash\", \"/srv/ops/bin/cleanup.sh\"]",
        "user = \"nobody\"",
        "restart = \"on-failure\"",
        "success_codes = [0]",
        "backoff = { initial = \"250ms\", max = \"15s\", multiplier = 1.5 }",
    ] {
        assert!(cleanup.contains(want), "{want}\n{cleanup}");
    }

    let (out, toml) = import_and_round_trip(d, &["ecosystem.yaml"]);
    assert!(
        out.stderr
            .contains("not carried over: ecosystem.yaml:6: exec_mode: kelpie has no cluster mode"),
        "{out:#?}"
    );
    assert!(table(&toml, "api-app").contains("instances = 4"));
    assert!(table(&toml, "worker").contains("# from ecosystem.yaml:7"));
}

#[test]
fn a_realistic_production_file_imports_stably() {
    if skip_without_node("a_realistic_production_file_imports_stably") {
        return;
    }
    let dir = fixtures();
    let d = dir.path();
    let (out, toml) = import_and_round_trip(d, &["pm2", "production.config.js"]);
    assert!(
        out.stderr
            .contains("kelpie: imported 4 programs from pm2; 8 keys not carried over"),
        "{out:#?}"
    );
    let web = table(&toml, "shop-web");
    for want in [
        "command = [\"node\", \"--enable-source-maps\", \"--max-old-space-size=768\", \"/srv/shop/current/dist/server.js\"]",
        "environment = { LOG_LEVEL = \"info\", NODE_APP_INSTANCE = \"${KELPIE_INSTANCE}\", NODE_ENV = \"production\", PORT = \"8080\" }",
        "instances = 4",
        "start_seconds = \"10s\"",
        "start_timeout = \"10s\"",
        "backoff = { initial = \"4s\", max = \"4s\", multiplier = 1.0, jitter = 0.0 }",
        "stop_timeout = \"5s\"",
        "log = { mode = \"file\", file = \"/var/log/shop/web.out.log\" }",
        "memory_restart = \"900MiB\"",
    ] {
        assert!(web.contains(want), "{want}\n{web}");
    }
    let jobs = table(&toml, "shop-jobs");
    assert!(
        jobs.contains("\"/srv/shop/current/dist/jobs.js\", \"--queues\", \"default,mail\"]"),
        "{jobs}"
    );
    assert!(jobs.contains("backoff = { initial = \"200ms\", max = \"15s\", multiplier = 1.5 }"));
    let sitemap = table(&toml, "shop-sitemap");
    assert!(
        sitemap.contains("command = [\"/srv/shop/current/bin/sitemap\"]"),
        "{sitemap}"
    );
    assert!(
        sitemap.contains("log = { mode = \"discard\" }"),
        "{sitemap}"
    );
    assert!(
        toml.contains(
            "\n[group.batch]\n# from production.config.js\nprograms = [\"shop-sitemap\"]"
        ),
        "{toml}"
    );
    let again = import_in(d, &["pm2", "production.config.js"]).expect(0);
    assert_eq!(again.stdout, toml);
}

#[test]
fn an_imported_ecosystem_runs_with_its_directory_environment_and_stop_signal() {
    if skip_without_node(
        "an_imported_ecosystem_runs_with_its_directory_environment_and_stop_signal",
    ) {
        return;
    }
    let dir = fixtures();
    let run = dir.path().join("run");
    let out = import_in(&run, &["ecosystem.config.js"]).expect(0);
    let k = Kelpie::start(&without_http(&out.stdout));
    let run = run.canonicalize().unwrap();
    k.wait_output(
        "api",
        &format!("api production in {}/api port 3000", run.display()),
        secs(20.0),
    );
    k.wait_output(
        "worker",
        &format!("worker high from jobs in {}", run.display()),
        secs(20.0),
    );
    // pm2 stops apps with SIGINT; so does the imported config.
    k.wait_control();
    k.ctl(&["stop", "api"]).expect(0);
    k.wait_output("api", "api: SIGINT, shutting down", secs(10.0));
}

#[test]
fn without_node_a_js_file_is_a_clear_error() {
    let dir = fixtures();
    let mut child = Command::new(BIN)
        .args(["import", "ecosystem.config.js", "-o", "out.toml"])
        .current_dir(dir.path())
        .env("PATH", "/nonexistent")
        .env_remove("KELPIE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (stdout, stderr, status) = collect_child(&mut child, secs(60.0), "kelpie import");
    assert_eq!(status.code(), Some(65), "{stdout}{stderr}");
    assert_eq!(
        stderr,
        "kelpie: ecosystem.config.js: `node` is not on PATH, and only node can evaluate a .js ecosystem file; export it as JSON and import that: node -e \"console.log(JSON.stringify(require('./ecosystem.config.js')))\" > ecosystem.json\n"
    );
    assert!(!dir.path().join("out.toml").exists());
}

#[test]
fn strict_refuses_a_file_with_a_dropped_key_and_writes_nothing() {
    let dir = fixtures();
    let d = dir.path();
    let out = import_in(d, &["pm2", "ecosystem.yaml", "--strict", "-o", "out.toml"]).expect(65);
    assert!(
        out.stderr.contains("ecosystem.yaml:11: env_production"),
        "{out:#?}"
    );
    assert!(
        out.stderr
            .ends_with("kelpie: --strict: nothing written, as keys were not carried over\n"),
        "{out:#?}"
    );
    assert!(!d.join("out.toml").exists());
    write(
        d,
        "clean.json",
        "{\"apps\": [{\"name\": \"web\", \"script\": \"web.js\"}]}\n",
    );
    import_in(d, &["pm2", "clean.json", "--strict"]).expect(0);
}

#[test]
fn bad_input_is_one_line_with_its_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut cases = vec![
        (
            "bad.json",
            "{\n  \"apps\": [\n    {\"name\": \"web\", \"script\": \"a.js\",}\n    {\"name\": \"x\"}\n  ]\n}\n",
            "kelpie: bad.json:4: not valid YAML: while parsing a flow sequence, expected ',' or ']'\n",
        ),
        (
            "bad.yaml",
            "apps:\n  - name: web\n    script: a.js\n    instances: many\n",
            "kelpie: bad.yaml:4: app \"web\": instances: expected a whole number, found \"many\"\n",
        ),
        (
            "bad.yaml",
            "apps:\n  - name: web\n    cwd: /srv\n",
            "kelpie: bad.yaml:2: app \"web\" has no script\n",
        ),
        (
            "bad.yaml",
            "apps:\n  - name: web\n    script: a.js\n    kill_timeout: soon\n",
            "kelpie: bad.yaml:4: app \"web\": kill_timeout: expected milliseconds (a whole number), found \"soon\"\n",
        ),
    ];
    if node_on_path() {
        cases.push((
            "bad.config.js",
            "module.exports = {\n  apps: [\n    { name: 'web', script: 'a.js' }\n    { name: 'x' },\n  ],\n};\n",
            "kelpie: bad.config.js:4: node could not evaluate it: SyntaxError: Unexpected token '{'\n",
        ));
    } else {
        println!("skipped the .js case: node is not on PATH");
    }
    for (name, text, want) in cases {
        write(d, name, text);
        let out = import_in(d, &["pm2", name, "-o", "out.toml"]).expect(65);
        assert_eq!(out.stderr, want, "{text}");
        assert!(!d.join("out.toml").exists());
    }
}

#[test]
fn a_js_file_that_prints_or_keeps_node_busy_still_imports() {
    if skip_without_node("a_js_file_that_prints_or_keeps_node_busy_still_imports") {
        return;
    }
    // What configs do in the wild: dotenv announces itself on stdout, and
    // a timer (or an open handle) would keep node running after the
    // export, as it does not matter to pm2, which only `require`s it.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "ecosystem.config.js",
        "console.log('[dotenv@16.4.5] injecting env (2) from .env');\n\
         process.stdout.write('{\"apps\": []}');\n\
         setInterval(() => {}, 1000);\n\
         module.exports = { apps: [{ name: 'web', script: 'server.js' }] };\n",
    );
    // Waiting for node to exit by itself would end in the 10 s timeout's
    // error instead.
    let out = import_in(d, &["ecosystem.config.js"]).expect(0);
    assert!(out.stdout.contains("[program.web]"), "{out:#?}");
}

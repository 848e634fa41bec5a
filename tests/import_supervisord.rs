//! `kelpie import supervisord` on real files: a setup with `[include]`,
//! `numprocs` and `%(process_num)` imported and run, each process checked
//! in /proc for the argv, environment and directory supervisord would give
//! it; the documented sample's keys; `--strict`; detection by content;
//! round trips; and one-line errors.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import/supervisord")
        .join(name)
}

/// The fixture directory copied into a temporary one (the import and the
/// programs write beside it).
fn copy_of(name: &str) -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
        for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("read_dir: {e}")) {
            let entry = entry.unwrap_or_else(|e| panic!("entry: {e}"));
            let target = to.join(entry.file_name());
            if entry.path().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).unwrap_or_else(|e| panic!("copy: {e}"));
            }
        }
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    copy(&fixture(name), dir.path());
    dir
}

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir: {e}"));
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {name}: {e}"));
}

fn proc_file(pid: i64, name: &str) -> Vec<u8> {
    std::fs::read(format!("/proc/{pid}/{name}")).unwrap_or_default()
}

fn cmdline(pid: i64) -> String {
    let raw = proc_file(pid, "cmdline");
    raw.split(|&b| b == 0)
        .filter(|part| !part.is_empty())
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn environ(pid: i64) -> BTreeMap<String, String> {
    proc_file(pid, "environ")
        .split(|&b| b == 0)
        .filter_map(|pair| {
            let text = String::from_utf8_lossy(pair);
            let (k, v) = text.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

/// What supervisord would start for the shop fixture: per program, per
/// process, its argv and the variables it sets (beyond the inherited ones).
/// One process: its argv and the variables it must have.
type Process = (&'static str, Vec<(&'static str, &'static str)>);

fn shop_processes() -> Vec<(&'static str, Vec<Process>)> {
    let common = [("APP_ENV", "production"), ("TZ", "UTC")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut vars = common.to_vec();
        vars.extend_from_slice(extra);
        vars
    };
    vec![
        (
            "web",
            vec![(
                "sleep 1000",
                with(&[("GREETING", "hello, world"), ("PORT", "8000")]),
            )],
        ),
        (
            "worker",
            vec![
                (
                    "sleep 1000",
                    with(&[("WORKER_ID", "w00"), ("QUEUE", "jobs, high")]),
                ),
                (
                    "sleep 1001",
                    with(&[("WORKER_ID", "w01"), ("QUEUE", "jobs, high")]),
                ),
            ],
        ),
        (
            "shard",
            vec![
                ("sleep 2001", with(&[("SHARD", "1"), ("SHARDS", "2")])),
                ("sleep 2002", with(&[("SHARD", "2"), ("SHARDS", "2")])),
            ],
        ),
    ]
}

#[test]
fn an_imported_setup_starts_the_same_processes_with_the_same_environment_and_directory() {
    let shop = copy_of("shop");
    let out = import_in(shop.path(), &["supervisord.conf"]).expect(0);
    assert!(
        out.stderr
            .contains("kelpie: imported 3 programs from supervisord; 8 keys not carried over"),
        "{out:#?}"
    );
    let kelpie = Kelpie::start(&without_http(&out.stdout));
    kelpie.wait_control();
    let app = shop
        .path()
        .join("app")
        .canonicalize()
        .unwrap_or_else(|e| panic!("canonicalize: {e}"));
    for (program, processes) in shop_processes() {
        let pids = kelpie.wait_running(program);
        assert_eq!(pids.len(), processes.len(), "{program}: {pids:?}");
        for (index, (pid, (argv, vars))) in pids.iter().zip(processes).enumerate() {
            let what = format!("{program}:{index} (pid {pid})");
            // A /bin/sh wrapper execs the program: wait for the exec.
            wait_until(&format!("{what} to run {argv:?}"), secs(10.0), || {
                (cmdline(*pid) == argv).then_some(())
            });
            let env = environ(*pid);
            for (key, value) in vars {
                assert_eq!(
                    env.get(key).map(String::as_str),
                    Some(value),
                    "{what}: {key} in {env:?}"
                );
            }
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
                .unwrap_or_else(|e| panic!("{what}: cwd: {e}"));
            assert_eq!(cwd, app, "{what}");
        }
    }
    // The workers' stdout goes to the file stdout_logfile names.
    let log = shop.path().join("logs/worker.log");
    wait_until("both workers' lines in logs/worker.log", secs(10.0), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        (text.contains("worker w00 takes jobs, high")
            && text.contains("worker w01 takes jobs, high"))
        .then_some(())
    });
}

#[test]
fn the_documented_sample_maps_key_by_key() {
    let dir = fixture("sample");
    let out = import_in(&dir, &["supervisord.conf"]).expect(0);
    let expected = std::fs::read_to_string(dir.join("expected.toml"))
        .unwrap_or_else(|e| panic!("read expected.toml: {e}"));
    assert_eq!(out.stdout, expected);
    assert!(
        out.stderr
            .contains("kelpie: imported 1 program from supervisord; 21 keys not carried over"),
        "{out:#?}"
    );
    for line in [
        "not carried over: supervisord.conf:4: [unix_http_server]: kelpie has no XML-RPC server",
        "not carried over: supervisord.conf:20: [supervisord] nodaemon: kelpie does not daemonize",
        "not carried over: supervisord.conf:54: stdout_capture_maxbytes:",
        "not carried over: supervisord.conf:64: [eventlistener:theeventlistenername]: kelpie has no event listeners",
        "not carried over: supervisord.conf:69: [fcgi-program:thefcgiprogramname]:",
    ] {
        assert!(out.stderr.contains(line), "{line}\n{}", out.stderr);
    }
}

#[test]
fn strict_fails_on_anything_dropped_and_writes_nothing() {
    let shop = copy_of("shop");
    let out = import_in(
        shop.path(),
        &[
            "supervisord",
            "supervisord.conf",
            "--strict",
            "-o",
            "supervisor.toml",
        ],
    )
    .expect(65);
    assert!(
        out.stderr.contains(
            "not carried over: conf.d/worker.conf:16: stdout_events_enabled: kelpie has no event notifications"
        ),
        "{out:#?}"
    );
    assert!(
        out.stderr
            .ends_with("kelpie: --strict: nothing written, as keys were not carried over\n"),
        "{out:#?}"
    );
    assert!(!shop.path().join("supervisor.toml").exists());

    // Nothing dropped: --strict writes.
    let clean = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    write(
        clean.path(),
        "supervisord.conf",
        "[supervisord]\nnodaemon=true\n[program:web]\ncommand=sleep 1000\nstdout_events_enabled=false\n",
    );
    import_in(
        clean.path(),
        &["supervisord.conf", "--strict", "-o", "supervisor.toml"],
    )
    .expect(0);
    assert!(clean.path().join("supervisor.toml").exists());
}

#[test]
fn a_supervisord_file_is_told_by_its_content() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    write(
        dir.path(),
        "shop.ini",
        "; the shop\n[program:web]\ncommand = sleep 1000\n",
    );
    write(dir.path(), "main.cfg", "[include]\nfiles = more/*.ini\n");
    write(
        dir.path(),
        "more/a.ini",
        "[program:a]\ncommand=sleep 1000\n",
    );
    let out = import_in(dir.path(), &["shop.ini"]).expect(0);
    assert!(
        out.stderr
            .contains("kelpie: imported 1 program from supervisord"),
        "{out:#?}"
    );
    assert!(out.stdout.contains("[program.web]"), "{}", out.stdout);
    let out = import_in(dir.path(), &["main.cfg"]).expect(0);
    assert!(out.stdout.contains("# from more/a.ini:1"), "{}", out.stdout);
}

#[test]
fn the_output_passes_check_and_config_round_trips() {
    let shop = copy_of("shop");
    import_in(shop.path(), &["supervisord.conf", "-o", "supervisor.toml"]).expect(0);
    kelpie_in(shop.path(), &["check", "-c", "supervisor.toml"]).expect(0);
    let printed = kelpie_in(shop.path(), &["config", "-c", "supervisor.toml"]).expect(0);
    write(shop.path(), "printed.toml", &printed.stdout);
    kelpie_in(shop.path(), &["check", "-c", "printed.toml"]).expect(0);
    // `kelpie config` keeps the per-instance template.
    assert!(
        printed.stdout.contains("w0${KELPIE_INSTANCE}"),
        "{}",
        printed.stdout
    );

    let written = std::fs::read_to_string(shop.path().join("supervisor.toml"))
        .unwrap_or_else(|e| panic!("read: {e}"));
    let again = import_in(shop.path(), &["supervisord.conf"]).expect(0);
    assert_eq!(written, again.stdout, "same input, same bytes");
}

#[test]
fn bad_input_is_one_line_at_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let cases = [
        (
            "[program:a]\ncommand=x\nthis is not a key\n",
            "s.conf:3: expected \"key = value\" or a [section] header, found \"this is not a key\"",
        ),
        (
            "command=x\n",
            "s.conf:1: expected a [section] header before \"command=x\"",
        ),
        (
            "[program:a]\ncommand=/bin/%(nothing)s\n",
            "s.conf:2: command: %(nothing)s is not an expansion supervisord offers here (it offers group_name, here, host_node_name, numprocs, process_num, program_name, ENV_<variable>)",
        ),
        ("[program:a]\nautostart=true\n", "s.conf:1: [program:a] has no command"),
        (
            "[program:a]\ncommand=x\nstartsecs=soon\n",
            "s.conf:3: startsecs: \"soon\" is not a whole number",
        ),
        (
            "[program:a]\ncommand=x\nautostart=perhaps\n",
            "s.conf:3: autostart: \"perhaps\" is not a boolean (true, false, yes, no, on, off, 1, 0)",
        ),
        (
            "[include]\nfiles=conf.d/*.conf\n",
            "conf.d/bad.conf:2: autorestart: \"often\" is not true, false or unexpected",
        ),
    ];
    write(
        dir.path(),
        "conf.d/bad.conf",
        "[program:b]\nautorestart=often\ncommand=x\n",
    );
    for (text, want) in cases {
        write(dir.path(), "s.conf", text);
        let out = import_in(dir.path(), &["supervisord", "s.conf", "-o", "out.toml"]).expect(65);
        assert_eq!(out.stderr, format!("kelpie: {want}\n"), "{text}");
        assert!(!dir.path().join("out.toml").exists(), "{text}");
    }

    // An include that matches nothing is not an error in supervisord.
    write(
        dir.path(),
        "s.conf",
        "[include]\nfiles=none/*.conf\n[program:a]\ncommand=sleep 1000\n",
    );
    let out = import_in(dir.path(), &["s.conf"]).expect(0);
    assert!(
        out.stdout.contains(
            "# kelpie import: [include] files pattern \"none/*.conf\" (s.conf:2) matches no file; supervisord starts without it too"
        ),
        "{}",
        out.stdout
    );
}

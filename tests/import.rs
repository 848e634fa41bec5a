//! `kelpie import` as a user runs it: formats told apart, the config on
//! stdout or written whole with `-o`, one-line errors with their exit
//! codes, stable output, and an imported Procfile run for real.

mod common;

use std::path::Path;

use common::*;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("write {name}: {e}"));
}

const PROCFILE: &str = "\
# the app
web: echo \"$GREETING in $(pwd) on $PORT\" && exec sleep 1000
worker: sleep 1001
";

#[test]
fn an_imported_procfile_runs_with_its_env_file_and_directory() {
    let app = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    write(app.path(), "Procfile", PROCFILE);
    write(app.path(), ".env", "GREETING=hello\n");
    let out = import_in(app.path(), &["Procfile"]).expect(0);
    assert!(
        out.stderr
            .contains("kelpie: imported 2 programs from procfile; 0 keys not carried over"),
        "{out:#?}"
    );

    let kelpie = Kelpie::start(&without_http(&out.stdout));
    let dir = app
        .path()
        .canonicalize()
        .unwrap_or_else(|e| panic!("canonicalize: {e}"));
    kelpie.wait_output(
        "web",
        &format!("hello in {} on 5000", dir.display()),
        secs(20.0),
    );
    kelpie.wait_running("worker");
}

#[test]
fn the_output_passes_check_and_config_round_trips() {
    let app = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    write(app.path(), "Procfile", PROCFILE);
    write(app.path(), ".env", "GREETING=hello\n");
    let first = import_in(
        app.path(),
        &["procfile", "Procfile", "-o", "supervisor.toml"],
    )
    .expect(0);
    assert!(first.stdout.is_empty(), "{first:#?}");
    kelpie_in(app.path(), &["check", "-c", "supervisor.toml"]).expect(0);
    let printed = kelpie_in(app.path(), &["config", "-c", "supervisor.toml"]).expect(0);
    write(app.path(), "printed.toml", &printed.stdout);
    kelpie_in(app.path(), &["check", "-c", "printed.toml"]).expect(0);

    // Same input, same bytes.
    let written =
        std::fs::read(app.path().join("supervisor.toml")).unwrap_or_else(|e| panic!("read: {e}"));
    let again = import_in(app.path(), &["Procfile"]).expect(0);
    assert_eq!(String::from_utf8_lossy(&written), again.stdout);
}

#[test]
fn an_existing_output_is_replaced_only_with_force() {
    let app = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    write(app.path(), "Procfile", "web: sleep 1000\n");
    write(app.path(), "supervisor.toml", "# mine\n");
    let refused = import_in(app.path(), &["Procfile", "-o", "supervisor.toml"]).expect(73);
    assert_eq!(
        refused.stderr.trim(),
        "kelpie: supervisor.toml already exists; pass --force to replace it"
    );
    let kept = std::fs::read_to_string(app.path().join("supervisor.toml"))
        .unwrap_or_else(|e| panic!("read: {e}"));
    assert_eq!(kept, "# mine\n");

    import_in(
        app.path(),
        &["Procfile", "-o", "supervisor.toml", "--force"],
    )
    .expect(0);
    let replaced = std::fs::read_to_string(app.path().join("supervisor.toml"))
        .unwrap_or_else(|e| panic!("read: {e}"));
    assert!(replaced.contains("[program.web]"), "{replaced}");
    let leftovers: Vec<String> = std::fs::read_dir(app.path())
        .unwrap_or_else(|e| panic!("read_dir: {e}"))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("kelpie-import"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn bad_input_is_one_line_with_its_exit_code_and_writes_nothing() {
    let app = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    write(
        app.path(),
        "Procfile",
        "web: sleep 1000\nnot a process line\n",
    );
    let bad = import_in(app.path(), &["Procfile", "-o", "out.toml"]).expect(65);
    assert_eq!(
        bad.stderr,
        "kelpie: Procfile:2: expected \"name: command\", found \"not a process line\"\n"
    );
    assert!(!app.path().join("out.toml").exists());

    let missing = import_in(app.path(), &["procfile", "Nope"]).expect(66);
    assert!(
        missing
            .stderr
            .to_lowercase()
            .starts_with("kelpie: nope: cannot read: no such file"),
        "{missing:#?}"
    );

    write(app.path(), "notes.txt", "hello world\n");
    let unknown = import_in(app.path(), &["notes.txt"]).expect(65);
    assert!(
        unknown
            .stderr
            .contains("notes.txt: cannot tell which format this is"),
        "{unknown:#?}"
    );

    write(app.path(), "empty", "# nothing here\n");
    let empty = import_in(app.path(), &["procfile", "empty"]).expect(65);
    assert_eq!(
        empty.stderr,
        "kelpie: empty: no programs found in this procfile file\n"
    );

    let usage = import_in(app.path(), &["procfile"]).expect(2);
    assert!(
        usage
            .stderr
            .contains("no FILE given after the format `procfile`"),
        "{usage:#?}"
    );
}

#[test]
fn a_config_that_would_not_pass_check_here_is_not_written() {
    // `.env` with a line kelpie's env_file reader refuses: the import
    // names the problem instead of writing a file `run` would reject.
    let app = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    write(app.path(), "Procfile", "web: sleep 1000\n");
    write(app.path(), ".env", "OK=1\nthis is not an assignment\n");
    let out = import_in(app.path(), &["Procfile", "-o", "supervisor.toml"]).expect(65);
    assert!(
        out.stderr.starts_with("kelpie: Procfile: the translated config does not pass `kelpie check` on this machine: "),
        "{out:#?}"
    );
    assert!(out.stderr.contains(".env:2:"), "{out:#?}");
    assert!(!app.path().join("supervisor.toml").exists());
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import/procfile")
        .join(name)
}

#[test]
fn a_realistic_procfile_keeps_its_ports_shell_lines_and_release_phase() {
    let app = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    for name in ["Procfile", ".env"] {
        std::fs::copy(fixture(name), app.path().join(name))
            .unwrap_or_else(|e| panic!("copy {name}: {e}"));
    }
    let out = import_in(app.path(), &["Procfile", "-o", "supervisor.toml"]).expect(0);
    assert!(
        out.stderr
            .contains("kelpie: imported 8 programs from procfile; 0 keys not carried over"),
        "{out:#?}"
    );
    let toml = std::fs::read_to_string(app.path().join("supervisor.toml"))
        .unwrap_or_else(|e| panic!("read: {e}"));
    let config = kelpie_in(app.path(), &["config", "-c", "supervisor.toml"]).expect(0);
    for want in [
        // foreman's ports follow the order of the lines.
        "[program.web]\n# from Procfile:3\n",
        "command = [\"/bin/sh\", \"-c\", \"exec bundle exec puma -C config/puma.rb -p $PORT\"]",
        "environment = { PORT = \"5000\" }\n",
        "command = [\"/bin/sh\", \"-c\", \"exec bin/webpack-dev-server --port ${PORT}\"]",
        "environment = { PORT = \"5500\" }\n",
        "environment = { PORT = \"5700\" }\n",
        // A plain line needs no shell.
        "command = [\"bundle\", \"exec\", \"sidekiq\", \"-C\", \"config/sidekiq.yml\", \"-q\", \"default\", \"-q\", \"mailers\"]",
        "command = [\"bundle\", \"exec\", \"sidekiq\", \"-q\", \"critical,2\", \"-c\", \"5\"]",
        "command = [\"/bin/sh\", \"-c\", \"exec env RAILS_ENV=development bundle exec rails runner 'MailPreview.serve' 2>&1\"]",
        "[program.release]\n# from Procfile:4\n",
        "type = \"oneshot\"",
        "depends_on = { release = \"completed\" }",
    ] {
        assert!(toml.contains(want), "missing {want:?} in\n{toml}");
    }
    assert_eq!(
        toml.matches("depends_on = { release = \"completed\" }")
            .count(),
        7
    );
    // The .env values reach every program (kelpie merges env_file).
    assert_eq!(
        config
            .stdout
            .matches("DATABASE_URL = \"postgres://app@localhost/app_production\"")
            .count(),
        8,
        "{}",
        config.stdout
    );
}

#[test]
fn an_imported_release_phase_completes_before_the_web_process_starts() {
    // The release step takes a while (its sleep is the fixture's, not a
    // wait of the test's): a web process started beside it says "missing".
    let app = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    write(
        app.path(),
        "Procfile",
        "web: cat migrated.txt 2>/dev/null || echo missing; exec sleep 1000\n\
         release: sh -c 'sleep 0.5; echo migrated > migrated.txt'\n",
    );
    let out = import_in(app.path(), &["Procfile"]).expect(0);
    let kelpie = Kelpie::start(&without_http(&out.stdout));
    let first = kelpie.wait_nth(1, "web's first line", secs(20.0), |e| {
        is(e, "program_output", "web")
    });
    assert_eq!(
        first["line"], "migrated",
        "web started before release completed"
    );
}

#[test]
fn files_saved_on_windows_import_like_any_other() {
    // A byte order mark and CRLF line ends, as Windows editors save, in
    // every text format, with the format told from the content.
    let cases = [
        ("Procfile", "web: sleep 1000\r\n"),
        ("app.conf", "[program:web]\r\ncommand = sleep 1000\r\n"),
        ("pc.yaml", "processes:\r\n  web:\r\n    command: sleep 1000\r\n"),
        (
            "apps.json",
            "{\"apps\": [{\"name\": \"web\", \"script\": \"sleep\", \"interpreter\": \"none\"}]}\r\n",
        ),
        (
            "job.plist",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<plist version=\"1.0\">\r\n<dict>\r\n<key>Label</key><string>web</string>\r\n<key>ProgramArguments</key><array><string>sleep</string></array>\r\n</dict>\r\n</plist>\r\n",
        ),
    ];
    for (name, text) in cases {
        let app = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        write(app.path(), name, &format!("\u{feff}{text}"));
        let out = import_in(app.path(), &[name]).expect(0);
        assert!(out.stdout.contains("[program.web]"), "{name}: {out:#?}");
    }
}

#[test]
fn a_fifo_is_refused_at_once() {
    // Named by mistake (or a `<(…)` process substitution), a FIFO that no
    // one writes must not hang the import, whichever way it is read.
    let app = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let fifo = app.path().join("supervisord.conf");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .unwrap_or_else(|e| panic!("mkfifo: {e}"));
    for args in [&["supervisord.conf"][..], &["procfile", "supervisord.conf"]] {
        let out = import_in(app.path(), args).expect(66);
        assert_eq!(
            out.stderr,
            "kelpie: supervisord.conf: is not a regular file (a FIFO, socket or device); kelpie import reads a file, so save the setup to one first\n",
            "{args:?}"
        );
    }
    std::fs::rename(&fifo, app.path().join("data")).unwrap_or_else(|e| panic!("rename: {e}"));
    // Content detection opens the file too.
    let out = import_in(app.path(), &["data"]).expect(66);
    assert!(out.stderr.contains("is not a regular file"), "{out:#?}");
}

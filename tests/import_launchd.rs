//! `kelpie import launchd` on plist files as a user has them: the
//! fixtures under tests/fixtures/import/launchd (one per kind of job
//! launchd.plist(5) describes, and a larger daemon), a binary plist told
//! apart by its content, --strict, bad input, the round trip through
//! `check` and `config`, and imported agents run for real.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import/launchd")
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixtures().join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) {
    std::fs::write(dir.join(name), bytes).unwrap_or_else(|e| panic!("write {name}: {e}"));
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
}

/// The lines of the report that name dropped keys.
fn dropped_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("not carried over: "))
        .collect()
}

#[test]
fn each_fixture_imports_with_its_differences_reported() {
    // (file, keys not carried over, what the config must say)
    let cases: [(&str, &[&str], &[&str]); 4] = [
        (
            "com.example.hello.plist",
            &[],
            &[
                "[program.\"com.example.hello\"]\n# from com.example.hello.plist:4\n",
                "command = [\"/bin/echo\", \"hello from launchd\"]\nrestart = \"never\"\n",
                "# kelpie import: launchd does not restart this job when it exits",
            ],
        ),
        (
            "com.example.keepalive.plist",
            &["com.example.keepalive.plist:20: KeepAlive.PathState: kelpie keeps a program alive by how it exited, not by whether a path exists"],
            &[
                "command = [\"/usr/local/bin/worker\", \"--queue\", \"default\"]\n",
                "restart = \"on-failure\"\nbackoff = { initial = \"30s\", max = \"30s\", multiplier = 1.0, jitter = 0.0 }\n",
                "launchd runs Program \"/usr/local/bin/worker\" with argv[0] \"worker\"",
            ],
        ),
        (
            "com.example.backup.plist",
            &[
                "com.example.backup.plist:12: StartCalendarInterval: kelpie has no calendar timers; run the job from cron or a systemd timer",
                "com.example.backup.plist:27: WatchPaths: kelpie does not start programs when a path changes",
                "com.example.backup.plist:35: LowPriorityIO: kelpie sets no I/O priority; run the command under `ionice` (Linux)",
                "com.example.backup.plist:37: Nice: kelpie sets no scheduling priority; run the command under `nice -n N`",
            ],
            &[
                "autostart = false\nrestart = \"never\"\nlog = { mode = \"file\", file = \"/tmp/backup.log\" }\n",
                "# kelpie import: not carried over: com.example.backup.plist:12: StartCalendarInterval:",
                "launchd starts this job only on demand",
            ],
        ),
        (
            "com.example.webapp.plist",
            &[
                "com.example.webapp.plist:49: KeepAlive.NetworkState: kelpie has no network conditions (and launchd no longer acts on this one)",
                "com.example.webapp.plist:58: StandardErrorPath: kelpie keeps one log per program: stderr goes to StandardOutPath's file, /var/log/webapp/access.log",
                "com.example.webapp.plist:62: SoftResourceLimits.NumberOfFiles: kelpie sets one value as both the soft and the hard limit: rlimits.nofile = 8192 keeps the hard limit, so the soft limit is 8192 rather than 4096",
                "com.example.webapp.plist:70: ProcessType: macOS resource classes (Background, Adaptive, …) have no kelpie equivalent",
                "com.example.webapp.plist:76: Sockets: kelpie has no socket activation: the program has to open its own listening sockets",
                "com.example.webapp.plist:84: EnableTransactions: XPC transactions (exit when idle) are macOS-only",
            ],
            &["umask = \"027\"\nrlimits = { nofile = 8192 }\nrestart = \"on-failure\"\n"],
        ),
    ];
    for (file, lost, says) in cases {
        let out = import_in(&fixtures(), &[file]).expect(0);
        let want_lost: Vec<String> = lost
            .iter()
            .map(|l| format!("not carried over: {l}"))
            .collect();
        assert_eq!(dropped_lines(&out.stderr), want_lost, "{file}: {out:#?}");
        let summary = format!(
            "kelpie: imported 1 program from launchd; {} key{} not carried over",
            lost.len(),
            if lost.len() == 1 { "" } else { "s" }
        );
        assert!(out.stderr.contains(&summary), "{file}: {out:#?}");
        for text in says {
            assert!(
                out.stdout.contains(text),
                "{file}: missing {text:?} in\n{}",
                out.stdout
            );
        }
    }
}

#[test]
fn a_realistic_daemon_gives_the_expected_config_byte_for_byte() {
    let out = import_in(&fixtures(), &["com.example.webapp.plist"]).expect(0);
    assert_eq!(out.stdout, fixture("com.example.webapp.expected.toml"));
}

#[test]
fn a_binary_plist_without_an_extension_is_told_by_its_content() {
    let dir = tempdir();
    let xml = fixtures().join("com.example.webapp.plist");
    let value = plist::Value::from_file(&xml).unwrap_or_else(|e| panic!("read the fixture: {e}"));
    value
        .to_file_binary(dir.path().join("com.example.webapp"))
        .unwrap_or_else(|e| panic!("write a binary plist: {e}"));
    let binary = import_in(dir.path(), &["com.example.webapp"]).expect(0);
    assert!(
        binary
            .stdout
            .starts_with("# Imported by `kelpie import launchd` from com.example.webapp.\n"),
        "{binary:#?}"
    );
    // A binary plist has no lines: the report names the file only.
    assert!(
        binary.stderr.contains(
            "not carried over: com.example.webapp: Sockets: kelpie has no socket activation"
        ),
        "{binary:#?}"
    );
    assert_eq!(dropped_lines(&binary.stderr).len(), 6, "{binary:#?}");
    let keys = |toml: &str| -> Vec<String> {
        toml.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        keys(&binary.stdout),
        keys(&fixture("com.example.webapp.expected.toml"))
    );
}

#[test]
fn strict_refuses_a_job_with_dropped_keys_and_writes_nothing() {
    let dir = tempdir();
    write(
        dir.path(),
        "backup.plist",
        fixture("com.example.backup.plist"),
    );
    write(
        dir.path(),
        "hello.plist",
        fixture("com.example.hello.plist"),
    );
    let refused = import_in(
        dir.path(),
        &[
            "launchd",
            "hello.plist",
            "backup.plist",
            "--strict",
            "-o",
            "supervisor.toml",
        ],
    )
    .expect(65);
    assert_eq!(dropped_lines(&refused.stderr).len(), 4, "{refused:#?}");
    assert!(
        refused
            .stderr
            .ends_with("kelpie: --strict: nothing written, as keys were not carried over\n"),
        "{refused:#?}"
    );
    assert!(!dir.path().join("supervisor.toml").exists());

    import_in(
        dir.path(),
        &["hello.plist", "--strict", "-o", "supervisor.toml"],
    )
    .expect(0);
    assert!(dir.path().join("supervisor.toml").is_file());
}

#[test]
fn many_plists_round_trip_through_check_and_config() {
    let dir = tempdir();
    // As a shell expands `~/Library/LaunchAgents/*.plist`, but in an order
    // that is not sorted: the programs follow the arguments.
    let files = [
        "com.example.webapp.plist",
        "com.example.hello.plist",
        "com.example.keepalive.plist",
        "com.example.backup.plist",
    ];
    for file in files {
        write(dir.path(), file, fixture(file));
    }
    let mut args = vec!["launchd"];
    args.extend(files);
    args.extend(["-o", "supervisor.toml"]);
    let first = import_in(dir.path(), &args).expect(0);
    assert!(first.stdout.is_empty(), "{first:#?}");
    assert!(
        first
            .stderr
            .contains("kelpie: imported 4 programs from launchd; 11 keys not carried over"),
        "{first:#?}"
    );
    let written = std::fs::read_to_string(dir.path().join("supervisor.toml"))
        .unwrap_or_else(|e| panic!("read: {e}"));
    let tables: Vec<&str> = written
        .lines()
        .filter(|l| l.starts_with("[program."))
        .collect();
    assert_eq!(
        tables,
        [
            "[program.\"com.example.webapp\"]",
            "[program.\"com.example.hello\"]",
            "[program.\"com.example.keepalive\"]",
            "[program.\"com.example.backup\"]",
        ]
    );

    kelpie_in(dir.path(), &["check", "-c", "supervisor.toml"]).expect(0);
    let printed = kelpie_in(dir.path(), &["config", "-c", "supervisor.toml"]).expect(0);
    write(dir.path(), "printed.toml", &printed.stdout);
    kelpie_in(dir.path(), &["check", "-c", "printed.toml"]).expect(0);

    let again = import_in(dir.path(), &args[..args.len() - 2]).expect(0);
    assert_eq!(again.stdout, written);
}

#[test]
fn bad_plists_are_one_line_errors_and_write_nothing() {
    let label_x = "<?xml version=\"1.0\"?>\n<plist version=\"1.0\">\n<dict>\n<key>Label</key><string>x</string>\n<key>Program</key><string>/bin/true</string>\n</dict>\n</plist>\n";
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[("a.plist", "Label = x\n")],
            "kelpie: a.plist:1: not a property list: expected XML (<?xml …><plist>) or a binary plist\n",
        ),
        (
            &[(
                "a.plist",
                "<?xml version=\"1.0\"?>\n<plist version=\"1.0\">\n<dict>\n<key>Program</key><string>/bin/true</string>\n</dict>\n</plist>\n",
            )],
            "kelpie: a.plist:3: no Label: launchd needs one to name the job\n",
        ),
        (
            &[(
                "a.plist",
                "<?xml version=\"1.0\"?>\n<plist version=\"1.0\">\n<dict>\n<key>Label</key><string>x</string>\n<key>Program</key><string>/bin/true</string>\n<key>KeepAlive</key>\n<string>always</string>\n</dict>\n</plist>\n",
            )],
            "kelpie: a.plist:6: KeepAlive must be a boolean or a dictionary, found a string\n",
        ),
        (
            &[("a.plist", label_x), ("b.plist", label_x)],
            "kelpie: b.plist:4: Label \"x\" is also the Label of a.plist: launchd loads only one job per label\n",
        ),
    ];
    for (files, want) in cases {
        let dir = tempdir();
        let mut args = vec!["launchd"];
        for (name, text) in files {
            write(dir.path(), name, text);
            args.push(name);
        }
        args.extend(["-o", "supervisor.toml"]);
        let out = import_in(dir.path(), &args).expect(65);
        assert_eq!(out.stderr, want, "{files:?}");
        assert!(out.stdout.is_empty(), "{out:#?}");
        assert!(!dir.path().join("supervisor.toml").exists(), "{files:?}");
    }
}

/// The environment of a running process, from /proc.
fn environ(pid: i64) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/environ: {e}"));
    raw.split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

fn agent(label: &str, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n<plist version=\"1.0\">\n<dict>\n<key>Label</key><string>{label}</string>\n{body}</dict>\n</plist>\n"
    )
}

#[test]
fn imported_agents_run_with_their_environment_directory_and_log() {
    let home = tempdir();
    let work = home.path().join("work dir");
    std::fs::create_dir(&work).unwrap_or_else(|e| panic!("mkdir: {e}"));
    let work_text = work.display().to_string();
    let log = home.path().join("echo.log");
    write(
        home.path(),
        "com.example.sleeper.plist",
        agent(
            "com.example.sleeper",
            &format!(
                "<key>ProgramArguments</key><array><string>/bin/sleep</string><string>1000</string></array>
<key>EnvironmentVariables</key><dict>
  <key>GREETING</key><string>hello</string>
  <key>LITERAL</key><string>${{HOME}}</string>
</dict>
<key>WorkingDirectory</key><string>{work_text}</string>
<key>KeepAlive</key><true/>
<key>SoftResourceLimits</key><dict><key>NumberOfFiles</key><integer>256</integer></dict>
<key>HardResourceLimits</key><dict><key>NumberOfFiles</key><integer>256</integer></dict>
"
            ),
        ),
    );
    write(
        home.path(),
        "com.example.echo.plist",
        agent(
            "com.example.echo",
            &format!(
                "<key>ProgramArguments</key><array><string>/bin/sh</string><string>-c</string><string>echo \"echo in $(pwd) says $GREETING\"; exec sleep 1000</string></array>
<key>EnvironmentVariables</key><dict><key>GREETING</key><string>hi</string></dict>
<key>WorkingDirectory</key><string>{work_text}</string>
<key>StandardOutPath</key><string>echo.log</string>
<key>RunAtLoad</key><true/>
"
            ),
        ),
    );
    write(
        home.path(),
        "com.example.ondemand.plist",
        agent(
            "com.example.ondemand",
            "<key>ProgramArguments</key><array><string>/bin/sleep</string><string>1000</string></array>\n",
        ),
    );
    let out = import_in(
        home.path(),
        &[
            "com.example.sleeper.plist",
            "com.example.echo.plist",
            "com.example.ondemand.plist",
        ],
    )
    .expect(0);
    // The relative StandardOutPath is resolved against WorkingDirectory.
    let echo_log = work.join("echo.log");
    assert!(
        out.stdout
            .contains(&format!("file = \"{}\"", echo_log.display())),
        "{out:#?}"
    );
    assert!(!log.exists());

    let kelpie = Kelpie::start(&without_http(&out.stdout));
    // `status` answers only once the control socket is up.
    kelpie.wait_control();
    let pid = kelpie.wait_running("com.example.sleeper")[0];
    let env = environ(pid);
    for var in ["GREETING=hello", "LITERAL=${HOME}"] {
        assert!(env.iter().any(|v| v == var), "{var} not in {env:?}");
    }
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/cwd: {e}"));
    assert_eq!(cwd, work);
    // Soft and hard NumberOfFiles became rlimits.nofile, set before exec.
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/limits: {e}"));
    let open_files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .map(|l| l.split_whitespace().skip(3).take(2).collect())
        .unwrap_or_default();
    assert_eq!(open_files, ["256", "256"], "{limits}");

    kelpie.wait_running("com.example.echo");
    let want = format!("echo in {work_text} says hi");
    wait_until(
        &format!("{} to hold {want:?}", echo_log.display()),
        secs(20.0),
        || {
            std::fs::read_to_string(&echo_log)
                .ok()
                .filter(|text| text.contains(&want))
        },
    );

    // Without RunAtLoad or KeepAlive launchd waits for a demand: kelpie
    // leaves it stopped until `kelpie start`.
    assert_eq!(
        kelpie.state("com.example.ondemand").as_deref(),
        Some("stopped")
    );
    kelpie.ctl(&["start", "com.example.ondemand"]).expect(0);
    kelpie.wait_running("com.example.ondemand");
}

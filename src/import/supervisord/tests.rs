//! supervisord files read into drafts: each key's translation as the TOML
//! it becomes, what is reported, the errors, and whole setups with
//! includes, groups and `[supervisord]`.

use std::path::{Path, PathBuf};

use super::*;
use crate::import::emit::to_toml;
use crate::import::Format;

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        Setup {
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, name: &str, text: &str) -> &Self {
        let path = self.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir: {e}"));
        }
        std::fs::write(path, text).unwrap_or_else(|e| panic!("write {name}: {e}"));
        self
    }

    fn cx(&self) -> Context {
        Context {
            env: [
                ("HOME".to_string(), "/home/app".to_string()),
                ("DEPLOY".to_string(), "blue".to_string()),
            ]
            .into(),
            cwd: self.path().to_path_buf(),
        }
    }

    fn import(&self, files: &[&str]) -> Result<Draft, ImportError> {
        let files: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
        import(&files, &self.cx())
    }
}

/// One `[program:x]` with `body`, as TOML.
fn program(body: &str) -> (String, Draft) {
    let setup = Setup::new();
    setup.write("s.conf", &format!("[program:x]\n{body}\n"));
    let draft = setup
        .import(&["s.conf"])
        .unwrap_or_else(|e| panic!("{body}: {e}"));
    let text = to_toml(&draft, Format::Supervisord, &["s.conf".into()])
        .replace(&setup.path().display().to_string(), "DIR");
    (text, draft)
}

#[test]
fn each_program_key_becomes_its_kelpie_key() {
    let cases: &[(&str, &[&str])] = &[
        (
            "command=/usr/bin/app --name \"my app\" 'a b'",
            &[r#"command = ["/usr/bin/app", "--name", "my app", "a b"]"#],
        ),
        ("command=sleep\n  1000", &[r#"command = ["sleep", "1000"]"#]),
        ("command=x\nautostart=false", &["autostart = false"]),
        // supervisord's default autorestart is `unexpected`.
        ("command=x", &["restart = \"on-failure\""]),
        (
            "command=x\nexitcodes=0,2",
            &["restart = \"on-failure\"", "success_codes = [0, 2]"],
        ),
        (
            "command=x\nexitcodes=",
            &["restart = \"always\"", "# kelpie import: exitcodes is empty"],
        ),
        ("command=x\nautorestart=true", &["restart = \"always\""]),
        ("command=x\nautorestart=false", &["restart = \"never\""]),
        (
            "command=x\nautorestart=unexpected\nexitcodes=0,2",
            &["restart = \"on-failure\"", "success_codes = [0, 2]"],
        ),
        (
            "command=x\nautorestart=unexpected\nexitcodes=",
            &["restart = \"always\"", "# kelpie import: exitcodes is empty"],
        ),
        ("command=x\nstartsecs=5", &["start_seconds = \"5s\""]),
        ("command=x\nstartsecs=0", &["start_seconds = \"0s\""]),
        (
            "command=x\nstartretries=5",
            &["max_restarts = 5", "# kelpie import: startretries = 5 became max_restarts = 5"],
        ),
        ("command=x\nstopsignal=INT", &["stop_signal = \"INT\""]),
        ("command=x\nstopsignal=sigquit", &["stop_signal = \"QUIT\""]),
        ("command=x\nstopsignal=15", &["stop_signal = \"TERM\""]),
        ("command=x\nstopwaitsecs=20", &["stop_timeout = \"20s\""]),
        (
            "command=x\nstopasgroup=false",
            &["# kelpie import: stopasgroup = false: supervisord signals only the program's own process"],
        ),
        ("command=x\nstopasgroup=true", &[]),
        ("command=x\numask=002", &["umask = \"002\""]),
        ("command=x\numask=0o27", &["umask = \"027\""]),
        ("command=x\nuser=nobody", &["user = \"nobody\""]),
        ("command=x\ndirectory=/srv/app", &["directory = \"/srv/app\""]),
        ("command=x\ndirectory=%(here)s/app", &["directory = \"DIR/app\""]),
        (
            "command=x\ndirectory=app",
            &["directory = \"DIR/app\"", "# kelpie import: directory \"app\" is relative: taken from DIR"],
        ),
        (
            "command=bin/app",
            &[r#"command = ["DIR/bin/app"]"#, "# kelpie import: the command's path is relative"],
        ),
        (
            "command=bin/app\ndirectory=/srv",
            &[r#"command = ["bin/app"]"#, "directory = \"/srv\""],
        ),
        (
            "command=x\nenvironment=A=\"1, 2\",B=x,C='${HOME}'",
            &[r#"environment = { A = "1, 2", B = "x", C = "$${HOME}" }"#],
        ),
        (
            "command=x\nenvironment=WHO=\"%(program_name)s in %(ENV_DEPLOY)s\"",
            &[r#"environment = { WHO = "x in blue" }"#],
        ),
        (
            "command=/bin/app --env %(ENV_STAGE)s\nenvironment=STAGE=prod",
            &[r#"command = ["/bin/app", "--env", "prod"]"#],
        ),
        (
            "command=x\nnumprocs=3\nprocess_name=%(program_name)s_%(process_num)d\nenvironment=ID=\"w%(process_num)d\"",
            &[
                "instances = 3",
                r#"environment = { ID = "w${KELPIE_INSTANCE}" }"#,
                "# kelpie import: process_name \"%(program_name)s_%(process_num)d\": supervisord's processes x_0 … x_2 are kelpie's instances x:0 … x:2",
            ],
        ),
        (
            "command=sleep 10%(process_num)02d\nnumprocs=2\nprocess_name=w%(process_num)s",
            &[
                r#"command = ["/bin/sh", "-c", 'exec sleep "100${KELPIE_INSTANCE}"']"#,
                "instances = 2",
            ],
        ),
        (
            "command=x\nnumprocs_start=4\nenvironment=N=%(process_num)s",
            &[r#"environment = { N = "4" }"#],
        ),
        (
            "command=x\nstdout_logfile=/var/log/x.log\nstdout_logfile_maxbytes=1MB\nstdout_logfile_backups=2\nredirect_stderr=true",
            &[r#"log = { mode = "file", file = "/var/log/x.log", max_size = "1048576", keep = 2 }"#],
        ),
        (
            "command=x\nstdout_logfile=%(program_name)s.log",
            &[r#"log = { mode = "file", file = "DIR/x.log" }"#, "stdout_logfile \"x.log\" is relative"],
        ),
        (
            "command=x\nstdout_logfile=~/logs/x.log\nredirect_stderr=true",
            &[r#"log = { mode = "file", file = "/home/app/logs/x.log" }"#],
        ),
        ("command=x\nstdout_logfile=NONE\nredirect_stderr=true", &[r#"log = { mode = "discard" }"#]),
        (
            "command=x\nstdout_logfile=/dev/stdout\nstdout_logfile_maxbytes=0\nredirect_stderr=true",
            &["# kelpie import: stdout_logfile = /dev/stdout: kelpie writes the program's lines to its own output"],
        ),
    ];
    for (body, want) in cases {
        let (text, draft) = program(body);
        for line in *want {
            assert!(
                text.contains(line),
                "{body}\n--- wants {line}\n--- in\n{text}"
            );
        }
        assert!(draft.dropped.is_empty(), "{body}: {:?}", draft.dropped);
    }
}

#[test]
fn keys_kelpie_has_no_equivalent_for_are_reported_at_their_line() {
    let cases: &[(&str, &[&str])] = &[
        ("stdout_events_enabled=true", &["stdout_events_enabled"]),
        ("stdout_events_enabled=false", &[]),
        ("stderr_capture_maxbytes=1MB", &["stderr_capture_maxbytes"]),
        ("stderr_capture_maxbytes=0", &[]),
        ("stdout_syslog=true", &["stdout_syslog"]),
        ("serverurl=unix:///tmp/s.sock", &["serverurl"]),
        ("serverurl=AUTO", &[]),
        ("stopsignal=KILL", &["stopsignal"]),
        ("nosuchkey=1", &["nosuchkey"]),
        (
            "stdout_logfile=/l/o.log\nstderr_logfile=/l/e.log\nstderr_logfile_maxbytes=1MB",
            &["stderr_logfile", "stderr_logfile_maxbytes"],
        ),
        ("stdout_logfile_maxbytes=1MB", &["stdout_logfile_maxbytes"]),
        ("numprocs=0", &["numprocs"]),
    ];
    for (body, want) in cases {
        let (text, draft) = program(&format!("command=x\n{body}"));
        let keys: Vec<&str> = draft.dropped.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(&keys, want, "{body}");
        for d in &draft.dropped {
            assert!(d.origin.line >= 2, "{d}");
            assert!(text.contains(&format!("not carried over: {d}")), "{text}");
        }
    }
    let (_, draft) = program("command=x\nstdout_events_enabled=true");
    assert_eq!(
        draft.dropped[0].to_string(),
        "s.conf:3: stdout_events_enabled: kelpie has no event notifications for program output (supervisord's event listeners)"
    );
    assert_eq!(draft.dropped[0].program.as_deref(), Some("x"));
    let (_, draft) = program("command=x\nnumprocs=0");
    assert!(draft.programs.is_empty());
}

#[test]
fn bad_values_are_one_line_errors_at_their_line() {
    let cases = [
        ("autostart=true", "s.conf:1: [program:x] has no command"),
        ("command=", "s.conf:2: command: is empty"),
        ("command=x\nautostart=maybe", "s.conf:3: autostart: \"maybe\" is not a boolean (true, false, yes, no, on, off, 1, 0)"),
        ("command=x\nautorestart=sometimes", "s.conf:3: autorestart: \"sometimes\" is not true, false or unexpected"),
        ("command=x\nstartsecs=abc", "s.conf:3: startsecs: \"abc\" is not a whole number"),
        ("command=x\nstartsecs=-1", "s.conf:3: startsecs: -1 is negative"),
        ("command=x\nexitcodes=0,256", "s.conf:3: exitcodes: 256 is not an exit code (0–255)"),
        ("command=x\nstopsignal=NOPE", "s.conf:3: stopsignal: \"NOPE\" is not a signal"),
        ("command=x\numask=9", "s.conf:3: umask: \"9\" is not an octal number such as 022"),
        ("command=x\nstdout_logfile_maxbytes=lots", "s.conf:3: stdout_logfile_maxbytes: \"lots\" is not a size"),
        ("command=x\nnumprocs=2", "s.conf:3: numprocs = 2 needs %(process_num) in process_name"),
        ("command=x\nnumprocs=20000\nprocess_name=%(process_num)s", "s.conf:3: numprocs: 20000: kelpie runs at most 10000 instances"),
        ("command=x\nenvironment=A", "s.conf:3: environment: expected KEY=value pairs separated by commas, found \"A\""),
        ("command=echo 'x", "s.conf:2: command: the command has an unclosed quote"),
        ("command=%(nope)s", "s.conf:2: command: %(nope)s is not an expansion supervisord offers here"),
        ("command=x\npriority=%(process_num)s", "s.conf:3: priority: %(process_num)s is not an expansion supervisord offers here"),
        ("command=x\nstopasgroup=true\nkillasgroup=false", "s.conf:4: killasgroup: supervisord refuses stopasgroup = true with killasgroup = false"),
        ("command=x\nprocess_name=a b", "s.conf:3: process_name: \"a b\": supervisord refuses a space"),
    ];
    for (body, want) in cases {
        let setup = Setup::new();
        setup.write("s.conf", &format!("[program:x]\n{body}\n"));
        let err = setup
            .import(&["s.conf"])
            .err()
            .unwrap_or_else(|| panic!("accepted {body:?}"));
        assert!(
            err.to_string().starts_with(want),
            "{body}:\n{err}\nwanted {want}"
        );
        assert_eq!(err.code, crate::import::EXIT_DATAERR);
        assert!(!err.to_string().contains('\n'), "{err}");
    }
    let setup = Setup::new();
    setup.write("s.conf", "[program:bad name]\ncommand=x\n");
    let err = setup.import(&["s.conf"]).err().map(|e| e.to_string());
    assert!(
        err.is_some_and(|e| e.starts_with("s.conf:1: [program:bad name]: invalid program name"))
    );
}

#[test]
fn a_setup_with_includes_groups_and_supervisord_keys() {
    let setup = Setup::new();
    setup
        .write(
            "etc/supervisord.conf",
            "\
[unix_http_server]
file=/tmp/supervisor.sock

[supervisord]
logfile=%(here)s/supervisord.log
nodaemon=true
environment=SHARED=\"from supervisord\",DEPLOY=green

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix:///tmp/supervisor.sock

[include]
files = conf.d/*.conf missing/*.conf

[group:backend]
programs=worker,api
priority=10

[eventlistener:alerts]
command=alert.py
events=PROCESS_STATE
",
        )
        .write(
            "etc/conf.d/api.conf",
            "[program:api]\ncommand=/bin/api\ndirectory=%(here)s\nenvironment=DEPLOY=\"%(ENV_DEPLOY)s\",GROUP=%(group_name)s\n",
        )
        .write(
            "etc/conf.d/web.conf",
            "[program:web]\ncommand=/bin/web\npriority=5\n[include]\nfiles=more/*.conf\n",
        )
        .write("etc/conf.d/worker.conf", "[program:worker]\ncommand=/bin/worker\n")
        .write("etc/conf.d/zz.conf", "[program:cron]\ncommand=/bin/cron\n")
        .write("etc/conf.d/notes.txt", "not read");
    let draft = setup
        .import(&["etc/supervisord.conf"])
        .unwrap_or_else(|e| panic!("{e}"));
    // web (5), then the backend group (10: api before worker by name),
    // then cron (999).
    let names: Vec<&str> = draft.programs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["web", "api", "worker", "cron"]);
    let api = &draft.programs[1];
    assert_eq!(api.origin, Some(Origin::new("etc/conf.d/api.conf", 1)));
    let conf_d = setup.path().join("etc/conf.d").display().to_string();
    assert_eq!(api.directory.as_deref(), Some(conf_d.as_str()));
    // [supervisord] environment extends %(ENV_X)s and every program's
    // environment; the program's own wins.
    assert_eq!(api.environment["DEPLOY"], "green");
    assert_eq!(api.environment["SHARED"], "from supervisord");
    assert_eq!(api.environment["GROUP"], "backend");
    assert_eq!(draft.programs[0].environment["DEPLOY"], "green");
    assert_eq!(draft.groups.len(), 1);
    assert_eq!(draft.groups[0].name, "backend");
    assert_eq!(draft.groups[0].programs, ["worker", "api"]);

    let dropped: Vec<String> = draft
        .dropped
        .iter()
        .map(|d| format!("{}: {}", d.origin, d.key))
        .collect();
    assert_eq!(
        dropped,
        [
            "etc/supervisord.conf:1: [unix_http_server]",
            "etc/supervisord.conf:5: [supervisord] logfile",
            "etc/supervisord.conf:9: [rpcinterface:supervisor]",
            "etc/supervisord.conf:12: [supervisorctl]",
            "etc/supervisord.conf:22: [eventlistener:alerts]",
            "etc/conf.d/web.conf:5: [include] files",
        ]
    );
    let notes = draft.supervisor.notes.join("\n");
    assert!(
        notes.contains("\"missing/*.conf\" (etc/supervisord.conf:16) matches no file"),
        "{notes}"
    );
    assert!(notes.contains("supervisord's start order"), "{notes}");
    let text = to_toml(
        &draft,
        Format::Supervisord,
        &["etc/supervisord.conf".into()],
    );
    let again = setup
        .import(&["etc/supervisord.conf"])
        .unwrap_or_else(|e| panic!("{e}"));
    let again = to_toml(
        &again,
        Format::Supervisord,
        &["etc/supervisord.conf".into()],
    );
    assert_eq!(text, again, "stable output");
}

#[test]
fn supervisord_directory_and_umask_apply_when_it_daemonizes() {
    let setup = Setup::new();
    setup.write(
        "s.conf",
        "[supervisord]\ndirectory=/srv\numask=027\n[program:a]\ncommand=bin/a\n[program:b]\ncommand=/bin/b\ndirectory=/opt\numask=002\nstdout_logfile=b.log\n",
    );
    let draft = setup.import(&["s.conf"]).unwrap_or_else(|e| panic!("{e}"));
    let (a, b) = (&draft.programs[0], &draft.programs[1]);
    assert_eq!(a.directory.as_deref(), Some("/srv"));
    assert_eq!(a.command, ["bin/a"]);
    assert_eq!(a.umask, Some(0o27));
    assert_eq!(b.directory.as_deref(), Some("/opt"));
    assert_eq!(b.umask, Some(0o2));
    assert!(
        matches!(&b.log, Some(crate::import::draft::Log::File { file, .. }) if file == "/srv/b.log")
    );
    assert!(draft.dropped.is_empty(), "{:?}", draft.dropped);

    setup.write(
        "s.conf",
        "[supervisord]\nnodaemon=true\ndirectory=/srv\numask=027\n[program:a]\ncommand=/bin/a\n",
    );
    let draft = setup.import(&["s.conf"]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(draft.programs[0].directory, None);
    assert_eq!(draft.programs[0].umask, None);
}

#[test]
fn long_stop_timeouts_raise_the_shutdown_bound() {
    let (text, draft) = program("command=x\nstopwaitsecs=60");
    assert_eq!(
        draft.supervisor.shutdown_timeout,
        Some(std::time::Duration::from_secs(65))
    );
    assert!(text.contains("shutdown_timeout = \"1m 5s\""), "{text}");
    let (_, draft) = program("command=x\nstopwaitsecs=10");
    assert_eq!(draft.supervisor.shutdown_timeout, None);
}

#[test]
fn group_errors_and_leftovers() {
    let setup = Setup::new();
    setup.write(
        "s.conf",
        "[group:g]\nprograms=a,nope\n[program:a]\ncommand=x\n",
    );
    let err = setup.import(&["s.conf"]).err().map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("s.conf:2: programs: [group:g] names unknown program \"nope\"")
    );

    setup.write(
        "s.conf",
        "[group:g]\nprograms=a,f\n[group:h]\nprograms=a\nstrategy=x\n[program:a]\ncommand=x\n[fcgi-program:f]\ncommand=y\nsocket=tcp://localhost:9000\n",
    );
    let draft = setup.import(&["s.conf"]).unwrap_or_else(|e| panic!("{e}"));
    let keys: Vec<&str> = draft.dropped.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "[group:g] programs f",
            "[group:h] programs a",
            "[group:h] strategy",
            "[fcgi-program:f]"
        ]
    );
    assert_eq!(draft.groups.len(), 1);
    assert_eq!(draft.groups[0].programs, ["a"]);

    setup.write("s.conf", "[include]\nfile=x\n[program:a]\ncommand=x\n");
    let err = setup.import(&["s.conf"]).err().map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("s.conf:1: [include] has no files = setting")
    );
}

#[test]
fn further_files_are_read_as_included_and_names_are_made_valid() {
    let setup = Setup::new();
    setup
        .write("a.conf", "[program:web+api]\ncommand=/bin/web\n")
        .write(
            "b.conf",
            "[program:worker]\ncommand=/bin/worker\n[include]\nfiles=*.conf\n",
        );
    let draft = setup
        .import(&["a.conf", "b.conf"])
        .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = draft.programs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["web-api", "worker"]);
    assert!(draft.programs[0].notes[0].starts_with("renamed from \"web+api\""));
    let dropped: Vec<String> = draft
        .dropped
        .iter()
        .map(|d| format!("{}: {}", d.origin, d.key))
        .collect();
    assert_eq!(dropped, ["b.conf:4: [include] files"]);
}

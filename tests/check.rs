//! `kelpie check` (and `kelpie run` with a bad config) driven through the
//! real binary: exact stderr/stdout and exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const EX_CONFIG: i32 = 78;

/// A bound on how long one `kelpie` invocation may take; only reached when
/// the binary hangs (it should exit on its own within milliseconds).
const HANG_LIMIT: Duration = Duration::from_secs(60);

/// A scratch directory to run `kelpie` in, so the file names in messages
/// are the short relative ones.
struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// Runs `kelpie ARGS` in this directory with a clean kelpie environment
    /// plus `env`, and waits for it to exit.
    fn kelpie(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kelpie"));
        command
            .args(args)
            .current_dir(self.path())
            .env_remove("KELPIE_CONFIG")
            .env_remove("KELPIE_SOCKET")
            .env_remove("KELPIE_LOG")
            .env_remove("KELPIE_LOG_FORMAT")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = command.spawn().expect("spawn kelpie");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // A test process has no reaper; waiting on its own child here is
            // what the reaper rule protects in the supervisor itself.
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(HANG_LIMIT) {
            Ok(output) => output.expect("wait for kelpie"),
            Err(_) => {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                panic!("kelpie {args:?} did not exit within {HANG_LIMIT:?}");
            }
        }
    }

    /// `kelpie check -c supervisor.toml` on `config`.
    fn check(&self, config: &str) -> Output {
        self.write("supervisor.toml", config);
        self.kelpie(&["check", "-c", "supervisor.toml"], &[])
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

/// Asserts `config` is rejected with exactly `errors` (then the summary line),
/// nothing on stdout, and exit code 78.
fn assert_rejected(config: &str, errors: &[&str]) {
    let dir = Dir::new();
    let out = dir.check(config);
    let count = errors.len();
    let summary = format!(
        "supervisor.toml: invalid ({count} error{})",
        if count == 1 { "" } else { "s" }
    );
    let mut expected: Vec<&str> = errors.to_vec();
    expected.push(&summary);
    assert_eq!(text(&out.stderr), format!("{}\n", expected.join("\n")));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(out.status.code(), Some(EX_CONFIG));
}

// ---------------------------------------------------------------------------
// One broken config each: message, line:col, key, exit code 78

#[test]
fn syntax_error() {
    assert_rejected(
        "[program.web]\ncommand = [\"/bin/sh\"\n",
        &["supervisor.toml:2:21: TOML syntax: unclosed array, expected `]`"],
    );
}

#[test]
fn duplicate_program() {
    assert_rejected(
        "[program.web]\ncommand = [\"/bin/sh\"]\n\n[program.web]\ncommand = [\"/bin/sh\"]\n",
        &["supervisor.toml:4:10: TOML syntax: table [program.web] is defined twice (first on line 1)"],
    );
}

#[test]
fn unknown_key_with_hint() {
    assert_rejected(
        "[program.web]\ncommand = [\"/bin/sh\"]\nrestrat = \"always\"\n",
        &["supervisor.toml:3:1: program.web.restrat: unknown key (did you mean `restart`?)"],
    );
}

#[test]
fn unknown_key_in_nested_block() {
    assert_rejected(
        "[program.web]\ncommand = [\"/bin/sh\"]\n[program.web.readiness]\ntcp = \"127.0.0.1:80\"\nfoo = 1\n",
        &["supervisor.toml:5:1: program.web.readiness.foo: unknown key; expected one of: http, tcp, exec, notify, log, interval, timeout, failure_threshold, success_threshold, initial_delay"],
    );
}

#[test]
fn wrong_type() {
    assert_rejected(
        "[program.web]\ncommand = [\"/bin/sh\"]\ninstances = \"2\"\n",
        &["supervisor.toml:3:13: program.web.instances: expected an integer, found string \"2\""],
    );
}

#[test]
fn bad_duration() {
    assert_rejected(
        "[program.web]\ncommand = [\"/bin/sh\"]\nstop_timeout = \"5 parsecs\"\n",
        &["supervisor.toml:3:16: program.web.stop_timeout: invalid duration \"5 parsecs\": unknown unit \"parsecs\"; use ms, s, m, h or d, e.g. \"10s\""],
    );
}

#[test]
fn bad_rlimits() {
    assert_rejected(
        "[program.web]\ncommand = [\"/bin/sh\"]\nrlimits = { nofiles = 10, core = -1, nproc = \"lots\" }\n",
        &[
            "supervisor.toml:3:13: program.web.rlimits.nofiles: unknown rlimit `nofiles`; did you mean `nofile`?",
            "supervisor.toml:3:34: program.web.rlimits.core: expected a non-negative integer or \"unlimited\"",
            "supervisor.toml:3:46: program.web.rlimits.nproc: expected a non-negative integer or \"unlimited\"",
        ],
    );
    assert_rejected(
        "[program.web]\ncommand = [\"/bin/sh\"]\nrlimits = 5\n",
        &["supervisor.toml:3:11: program.web.rlimits: expected a table such as { nofile = 65536 }, found integer"],
    );
}

#[test]
fn bad_cgroup_limits() {
    assert_rejected(
        "[program.web]\ncommand = [\"/bin/sh\"]\nmemory_max = \"20 megs\"\nmemory_high = \"0\"\ncpu_max = \"fifty\"\npids_max = 0\nio_weight = 20000\nmemory_restart = 300\nmemory_restart_after = \"soon\"\n",
        &[
            "supervisor.toml:3:14: program.web.memory_max: invalid size \"20 megs\": unknown unit \"megs\"; use B, KB, MB, GB, KiB, MiB or GiB",
            "supervisor.toml:4:15: program.web.memory_high: must be more than 0 bytes",
            "supervisor.toml:5:11: program.web.cpu_max: expected a share of one CPU such as \"50%\" or \"0.5\"",
            "supervisor.toml:6:12: program.web.pids_max: 0 is out of range; expected 1 to 4294967295",
            "supervisor.toml:7:13: program.web.io_weight: 20000 is out of range; expected 1 to 10000",
            "supervisor.toml:8:18: program.web.memory_restart: expected a string, found integer `300`",
            "supervisor.toml:9:24: program.web.memory_restart_after: invalid duration \"soon\": expected number at 0",
        ],
    );
    assert_rejected(
        "[program.web]\ncommand = [\"/bin/sh\"]\ncpu_max = \"0.5%\"\n",
        &["supervisor.toml:3:11: program.web.cpu_max: 0.5% is out of range; expected 1% to 409600% of one CPU"],
    );
    assert_rejected(
        "[supervisor]\ncgroup_root = \"kelpie\"\n[program.web]\ncommand = [\"/bin/sh\"]\n",
        &["supervisor.toml:2:15: supervisor.cgroup_root: \"kelpie\" is not an absolute path; expected \"auto\", \"off\" or a directory under the cgroup v2 mount such as \"/sys/fs/cgroup/kelpie\""],
    );
}

#[test]
fn uncatchable_stop_signal() {
    assert_rejected(
        "[program.web]\ncommand = [\"/bin/sh\"]\nstop_signal = \"KILL\"\n",
        &["supervisor.toml:3:15: program.web.stop_signal: signal \"KILL\" cannot be caught; use e.g. \"TERM\""],
    );
}

#[test]
fn bad_restart_mode() {
    assert_rejected(
        "[program.web]\ncommand = [\"/bin/sh\"]\nrestart = \"alwayz\"\n",
        &["supervisor.toml:3:11: program.web.restart: invalid value \"alwayz\" (did you mean \"always\"?); expected one of: always, on-failure, never"],
    );
}

#[test]
fn empty_command() {
    assert_rejected(
        "[program.web]\ncommand = []\n",
        &["supervisor.toml:2:11: program.web.command: command is empty"],
    );
}

#[test]
fn unknown_dependency() {
    assert_rejected(
        "[program.db]\ncommand = [\"/bin/sh\"]\n[program.web]\ncommand = [\"/bin/sh\"]\ndepends_on = [\"dbb\"]\n",
        &["supervisor.toml:5:15: program.web.depends_on: unknown program \"dbb\" (did you mean \"db\"?)"],
    );
}

#[test]
fn dependency_cycle() {
    assert_rejected(
        "[program.a]\ncommand = [\"/bin/sh\"]\ndepends_on = [\"b\"]\n\
         [program.b]\ncommand = [\"/bin/sh\"]\ndepends_on = [\"c\"]\n\
         [program.c]\ncommand = [\"/bin/sh\"]\ndepends_on = [\"a\"]\n",
        &["supervisor.toml:3:15: program.a.depends_on: dependency cycle: a -> b -> c -> a"],
    );
}

#[test]
fn program_in_two_groups() {
    assert_rejected(
        "[program.a]\ncommand = [\"/bin/sh\"]\n\
         [group.x]\nprograms = [\"a\"]\n[group.y]\nprograms = [\"a\"]\n",
        &["supervisor.toml:6:13: group.y.programs: program \"a\" is already in group \"x\"; a program belongs to at most one group"],
    );
}

#[test]
fn group_named_like_a_program() {
    assert_rejected(
        "[program.web]\ncommand = [\"/bin/sh\"]\n\
         [program.db]\ncommand = [\"/bin/sh\"]\n\
         [group.web]\nprograms = [\"db\"]\n",
        &["supervisor.toml:5:8: group.web: group name \"web\" is also the name of a program; `kelpie restart web` could not tell them apart: rename the group"],
    );
}

#[test]
fn two_probe_kinds() {
    assert_rejected(
        "[program.web]\ncommand = [\"/bin/sh\"]\n[program.web.readiness]\nhttp = \"http://127.0.0.1:80/\"\nlog = \"up\"\n",
        &["supervisor.toml:3:1: program.web.readiness: more than one probe kind (http, log); choose exactly one"],
    );
}

#[test]
fn zero_instances() {
    assert_rejected(
        "[program.web]\ncommand = [\"/bin/sh\"]\ninstances = 0\n",
        &["supervisor.toml:3:13: program.web.instances: 0 is out of range; expected 1 to 10000"],
    );
}

#[test]
fn completed_dependency_on_a_service() {
    assert_rejected(
        "[program.db]\ncommand = [\"/bin/sh\"]\n[program.web]\ncommand = [\"/bin/sh\"]\ndepends_on = { db = \"completed\" }\n",
        &["supervisor.toml:5:16: program.web.depends_on: \"db\" is a service and never completes; \"completed\" needs type = \"oneshot\""],
    );
}

#[test]
fn backoff_max_below_initial() {
    assert_rejected(
        "[program.web]\ncommand = [\"/bin/sh\"]\nbackoff = { initial = \"10s\", max = \"1s\" }\n",
        &["supervisor.toml:3:36: program.web.backoff.max: max (1s) is shorter than initial (10s)"],
    );
}

#[test]
fn invalid_program_name() {
    assert_rejected(
        "[program.\"web:0\"]\ncommand = [\"/bin/sh\"]\n",
        &["supervisor.toml:1:10: program.\"web:0\": invalid program name \"web:0\": use 1 to 64 of A-Z a-z 0-9 _ . -, starting with a letter, digit or _"],
    );
}

#[test]
fn no_programs() {
    assert_rejected(
        "[supervisor]\nhttp_listen = \"off\"\n",
        &["supervisor.toml:1:1: program: no programs defined; add at least one [program.NAME] table"],
    );
}

// ---------------------------------------------------------------------------
// Several errors, valid configs, file lookup

#[test]
fn every_error_is_printed_in_one_run() {
    assert_rejected(
        "\
[supervisor]
log_format = \"xml\"

[program.web]
command = [\"/bin/sh\"]
depends_on = [\"db\", \"cache\"]
stop_timeout = \"10\"

[program.db]
command = \"\"
restart = \"never\"
bogus = true

[program.job]
type = \"oneshot\"
command = [\"/bin/sh\"]
restart = \"always\"
",
        &[
            "supervisor.toml:2:14: supervisor.log_format: invalid value \"xml\"; expected one of: auto, text, json",
            "supervisor.toml:6:21: program.web.depends_on: unknown program \"cache\"",
            "supervisor.toml:7:16: program.web.stop_timeout: invalid duration \"10\": a unit is required, e.g. \"10s\"",
            "supervisor.toml:10:11: program.db.command: command is empty",
            "supervisor.toml:12:1: program.db.bogus: unknown key; expected one of: command, directory, environment, env_file, user, group, umask, instances, autostart, type, restart, success_codes, start_seconds, start_timeout, backoff, max_restarts, restart_window, on_failure, stop_signal, stop_timeout, reload, depends_on, required, readiness, liveness, log, rlimits, memory_max, memory_high, cpu_max, pids_max, io_weight, memory_restart, memory_restart_after",
            "supervisor.toml:17:11: program.job.restart: \"always\" would rerun a oneshot forever; use \"on-failure\" or \"never\"",
        ],
    );
}

const VALID: &str = "\
[supervisor]
http_listen = \"off\"

[program.migrate]
type = \"oneshot\"
command = [\"/bin/sh\", \"-c\", \"exit 0\"]

[program.web]
command = \"/bin/sh -c 'sleep 1000'\"
instances = 3
depends_on = { migrate = \"completed\" }
";

#[test]
fn valid_config_prints_a_summary() {
    let dir = Dir::new();
    let out = dir.check(VALID);
    assert_eq!(text(&out.stderr), "");
    assert_eq!(
        text(&out.stdout),
        "supervisor.toml: OK (2 programs, 4 instances)\n"
    );
    assert_eq!(out.status.code(), Some(0));
}

/// Limits that need a cgroup are accepted, with a warning per key naming
/// why it cannot apply.
#[test]
fn cgroup_limits_without_cgroups_are_warnings() {
    let dir = Dir::new();
    let out = dir.check(
        "[supervisor]\ncgroup_root = \"off\"\n[program.web]\ncommand = [\"/bin/sh\"]\nmemory_max = \"64MiB\"\npids_max = 100\nrlimits = { nofile = 1024 }\n",
    );
    assert_eq!(
        text(&out.stderr),
        "supervisor.toml: warning: program.web.memory_max: cannot apply here: cgroup_root = \"off\"\n\
         supervisor.toml: warning: program.web.pids_max: cannot apply here: cgroup_root = \"off\"\n"
    );
    assert_eq!(
        text(&out.stdout),
        "supervisor.toml: OK (1 program, 1 instance, 2 warnings)\n"
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn warnings_do_not_fail_the_check() {
    let dir = Dir::new();
    let out = dir.check("[program.web]\ncommand = [\"/nonexistent/kelpie-test-binary\"]\n");
    assert_eq!(
        text(&out.stderr),
        "supervisor.toml:2:11: warning: program.web.command: \"/nonexistent/kelpie-test-binary\": No such file or directory\n"
    );
    assert_eq!(
        text(&out.stdout),
        "supervisor.toml: OK (1 program, 1 instance, 1 warning)\n"
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn instances_sharing_a_probe_address_get_a_warning() {
    let dir = Dir::new();
    let shared = "[program.web]\ncommand = [\"sh\"]\ninstances = 3\n\
                  environment = { PORT = \"8080\" }\n\
                  readiness = { http = \"http://127.0.0.1:8080/health\" }\n";
    let out = dir.check(shared);
    assert_eq!(
        text(&out.stderr),
        "supervisor.toml:5:22: warning: program.web.readiness.http: all 3 instances are probed at one address, which cannot tell them apart (during a rolling restart or rolling reload another instance answers the replacement's probe); give each instance its own address with ${KELPIE_SLOT} in `environment` and the probe, or use a notify or log probe\n"
    );
    assert_eq!(
        text(&out.stdout),
        "supervisor.toml: OK (1 program, 3 instances, 1 warning)\n"
    );
    assert_eq!(out.status.code(), Some(0));

    // An address per index is shared with the instance's own replacement.
    let by_index = shared
        .replace("\"8080\"", "\"808${KELPIE_INSTANCE}\"")
        .replace(":8080/", ":808${KELPIE_INSTANCE}/");
    let out = dir.check(&by_index);
    assert_eq!(
        text(&out.stderr),
        "supervisor.toml:5:22: warning: program.web.readiness.http: the probe address follows ${KELPIE_INSTANCE}, which a rolling replacement shares with the instance it replaces (during a rolling restart or rolling reload the old instance answers the replacement's probe); use ${KELPIE_SLOT} in `environment` and the probe instead, which differs between the two\n"
    );
    assert_eq!(out.status.code(), Some(0));

    let own = shared
        .replace("\"8080\"", "\"808${KELPIE_SLOT}\"")
        .replace(":8080/", ":808${KELPIE_SLOT}/");
    let out = dir.check(&own);
    assert_eq!(text(&out.stderr), "");
    assert_eq!(
        text(&out.stdout),
        "supervisor.toml: OK (1 program, 3 instances)\n"
    );
}

#[test]
fn unknown_variable_in_a_probe_target() {
    assert_rejected(
        "[program.web]\ncommand = [\"sh\"]\nreadiness = { tcp = \"127.0.0.1:80${INSTANCE}\" }\n",
        &["supervisor.toml:3:21: program.web.readiness.tcp: unknown variable \"${INSTANCE}\" (write \"$${\" for a literal \"${\"); only ${KELPIE_INSTANCE} and ${KELPIE_SLOT} are expanded"],
    );
}

#[test]
fn example_config_passes() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("supervisor.toml.example");
    let dir = Dir::new();
    let shown = example.display().to_string();
    let out = dir.kelpie(&["check", "-c", &shown], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // The example runs python3; where it is not installed that is a warning,
    // and nothing else may be.
    let stderr = text(&out.stderr);
    let warnings = stderr.lines().count();
    for line in stderr.lines() {
        assert!(
            line.starts_with(&format!("{shown}:")) && line.contains(": warning: "),
            "{line}"
        );
    }
    let suffix = match warnings {
        0 => String::new(),
        1 => ", 1 warning".to_string(),
        n => format!(", {n} warnings"),
    };
    assert_eq!(
        text(&out.stdout),
        format!("{shown}: OK (3 programs, 3 instances{suffix})\n")
    );
}

#[test]
fn missing_config_file() {
    let dir = Dir::new();
    let out = dir.kelpie(&["check", "-c", "nope.toml"], &[]);
    assert_eq!(
        text(&out.stderr),
        "nope.toml: cannot read config file: No such file or directory\n"
    );
    assert_eq!(text(&out.stdout), "");
    assert_eq!(out.status.code(), Some(EX_CONFIG));
}

#[test]
fn kelpie_config_env_is_honoured() {
    let dir = Dir::new();
    // ./supervisor.toml is broken; $KELPIE_CONFIG names a valid file and wins.
    dir.write("supervisor.toml", "this is not toml");
    dir.write("custom.toml", VALID);
    let out = dir.kelpie(&["check"], &[("KELPIE_CONFIG", "custom.toml")]);
    assert_eq!(text(&out.stderr), "");
    assert_eq!(
        text(&out.stdout),
        "custom.toml: OK (2 programs, 4 instances)\n"
    );
    assert_eq!(out.status.code(), Some(0));

    // -c wins over $KELPIE_CONFIG.
    let out = dir.kelpie(
        &["check", "-c", "supervisor.toml"],
        &[("KELPIE_CONFIG", "custom.toml")],
    );
    assert_eq!(out.status.code(), Some(EX_CONFIG));
    assert!(text(&out.stderr).starts_with("supervisor.toml:1:6: TOML syntax: "));

    // A missing $KELPIE_CONFIG file is reported under its own name.
    let out = dir.kelpie(&["check"], &[("KELPIE_CONFIG", "gone.toml")]);
    assert_eq!(
        text(&out.stderr),
        "gone.toml: cannot read config file: No such file or directory\n"
    );
    assert_eq!(out.status.code(), Some(EX_CONFIG));
}

#[test]
fn local_supervisor_toml_is_the_default() {
    let dir = Dir::new();
    dir.write("supervisor.toml", VALID);
    let out = dir.kelpie(&["check"], &[("KELPIE_CONFIG", "")]);
    assert_eq!(
        text(&out.stdout),
        "supervisor.toml: OK (2 programs, 4 instances)\n"
    );
    assert_eq!(out.status.code(), Some(0));
}

// ---------------------------------------------------------------------------
// run

#[test]
fn run_with_an_invalid_config_starts_nothing() {
    let dir = Dir::new();
    let marker = dir.path().join("started");
    let config = format!(
        "[supervisor]\nhttp_listen = \"off\"\ncontrol_socket = \"{}\"\n\
         [program.touch]\ncommand = [\"/bin/sh\", \"-c\", \"touch '{}'\"]\n\
         [program.broken]\ncommand = [\"/bin/sh\"]\nrestart = \"alwayz\"\n",
        dir.path().join("kelpie.sock").display(),
        marker.display()
    );
    dir.write("supervisor.toml", &config);
    // kelpie exits on its own with 78: waiting for it is the synchronisation.
    let out = dir.kelpie(&["run", "-c", "supervisor.toml"], &[]);
    assert_eq!(
        text(&out.stderr),
        "supervisor.toml:8:11: program.broken.restart: invalid value \"alwayz\" (did you mean \"always\"?); expected one of: always, on-failure, never\n\
         supervisor.toml: invalid config; nothing was started\n"
    );
    assert_eq!(text(&out.stdout), "");
    assert_eq!(out.status.code(), Some(EX_CONFIG));
    assert!(!marker.exists(), "a program was started");
}

#[test]
fn run_with_a_missing_config_file() {
    let dir = Dir::new();
    let out = dir.kelpie(&["run", "-c", "nope.toml"], &[]);
    assert_eq!(
        text(&out.stderr),
        "nope.toml: cannot read config file: No such file or directory\n"
    );
    assert_eq!(out.status.code(), Some(EX_CONFIG));
}

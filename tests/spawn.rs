//! What a started program gets: command, environment, directory, umask,
//! credentials, clean fds; and what happens when it cannot start.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::{secs, Kelpie, Options};

fn output_lines(k: &Kelpie, program: &str) -> Vec<String> {
    k.events("program_output", program)
        .iter()
        .map(|e| e["line"].as_str().unwrap().to_string())
        .collect()
}

/// A missing binary is a clear error, counts as a failed start (ending in
/// `failed` after max_restarts), and the other programs keep running.
#[test]
fn missing_binary_is_a_clear_error_and_others_keep_running() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.ghost]
command = ["/nonexistent/kelpie-test-binary", "--flag"]
max_restarts = 2
backoff = { initial = "10ms", jitter = 0.0 }

[program.noexec]
command = ["{dir}/supervisor.toml"]
restart = "never"

[program.healthy]
command = ["sleep", "1000"]
start_seconds = "0s"
"#,
    );
    let error = k.wait_event("program_spawn_failed", "ghost", secs(5.0));
    assert_eq!(
        error["error"],
        "cannot start \"/nonexistent/kelpie-test-binary\": command not found"
    );
    let failed = k.wait_event("program_failed", "ghost", secs(5.0));
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("restarted 2 times"),
        "{failed}"
    );
    let error = k.wait_event("program_spawn_failed", "noexec", secs(5.0));
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .ends_with("permission denied (not executable?)"),
        "{error}"
    );
    k.wait_event("program_running", "healthy", secs(5.0));
    assert_eq!(k.events("program_started", "ghost").len(), 0);
    assert_eq!(k.marked_processes().len(), 1, "healthy keeps running");
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
    assert!(!k.lines().iter().any(|l| l.contains("panicked")));
}

/// Instances, KELPIE_* variables, environment, env_file, directory, umask,
/// and a command string split shell-style.
#[test]
fn program_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.env"),
        "# comment\nFROM_FILE=file\nexport SHARED=from-file\nQUOTED=\"a b\"\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("work")).unwrap();
    let config = format!(
        r#"
[supervisor]
http_listen = "off"

[program.env]
command = "sh -c 'echo \"$KELPIE_PROGRAM/$KELPIE_INSTANCE/$KELPIE_SLOT $FROM_FILE $SHARED $QUOTED $(pwd) $(umask)\"'"
instances = 2
restart = "never"
env_file = "{}/app.env"
environment = {{ SHARED = "from-config" }}
directory = "{}/work"
umask = "027"
"#,
        dir.path().display(),
        dir.path().display()
    );
    let mut k = Kelpie::start(&config);
    let exits = k.wait_nth(2, "both instances to exit", secs(5.0), |e| {
        common::is(e, "program_exited", "env")
    });
    assert_eq!(exits["reason"], "success");
    k.wait_nth(2, "both output lines", secs(5.0), |e| {
        common::is(e, "program_output", "env")
    });
    let mut lines = output_lines(&k, "env");
    lines.sort();
    let work = dir.path().join("work");
    assert_eq!(
        lines,
        vec![
            format!("env/0/0 file from-config a b {} 0027", work.display()),
            format!("env/1/1 file from-config a b {} 0027", work.display()),
        ]
    );
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

/// Variables meant for kelpie itself (systemd's NOTIFY_SOCKET) are not
/// passed on, and inherited file descriptors do not leak into programs.
#[test]
fn children_get_a_clean_fd_table_and_no_private_variables() {
    let mut k = Kelpie::start_with(
        r#"
[supervisor]
http_listen = "off"

[program.probe]
command = ["sh", "-c", "for n in 3 4 7 9 10 251; do [ -e /proc/$$/fd/$n ] && echo leaked=$n; done; echo notify=${NOTIFY_SOCKET-unset}; echo checked"]
restart = "never"
"#,
        Options {
            wrapper: Some("exec 3</etc/hostname 4>/dev/null 7</dev/null; export NOTIFY_SOCKET=/nonexistent/notify"),
            ..Options::default()
        },
    );
    k.wait_event("program_exited", "probe", secs(5.0));
    k.wait_nth(1, "probe output", secs(5.0), |e| {
        common::is(e, "program_output", "probe") && e["line"] == "checked"
    });
    assert_eq!(output_lines(&k, "probe"), vec!["notify=unset", "checked"]);
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

/// As root, `user` drops privileges: uid, gid and supplementary groups of
/// the target user, and HOME/USER set for it.
#[test]
fn user_switch_drops_privileges() {
    if !nix_is_root() {
        eprintln!("skipped: needs root to switch users");
        return;
    }
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.dropped]
command = ["sh", "-c", "echo $(id -u) $(id -g) $(id -G) $USER"]
user = "nobody"
restart = "never"
"#,
    );
    k.wait_event("program_exited", "dropped", secs(5.0));
    k.wait_nth(1, "id output", secs(5.0), |e| {
        common::is(e, "program_output", "dropped")
    });
    let expected_uid = id_of("-u");
    let expected_gid = id_of("-g");
    let line = &output_lines(&k, "dropped")[0];
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields[0], expected_uid, "{line}");
    assert_eq!(fields[1], expected_gid, "{line}");
    assert!(!fields[2..].contains(&"0"), "root group kept: {line}");
    assert_eq!(*fields.last().unwrap(), "nobody");
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"))
}

fn id_of(flag: &str) -> String {
    let out = std::process::Command::new("id")
        .arg(flag)
        .arg("nobody")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Signals ignored or blocked by whoever started kelpie are not inherited
/// by programs.
#[test]
fn children_start_with_default_signal_dispositions() {
    let mut k = Kelpie::start_with(
        r#"
[supervisor]
http_listen = "off"

[program.sigs]
command = ["sh", "-c", "grep -E '^Sig(Ign|Blk)' /proc/self/status"]
restart = "never"
"#,
        Options {
            // What nohup and non-interactive shells leave ignored.
            wrapper: Some("trap '' HUP INT QUIT USR1 USR2 ALRM 40"),
            ..Options::default()
        },
    );
    k.wait_event("program_exited", "sigs", secs(5.0));
    k.wait_nth(2, "both lines", secs(5.0), |e| {
        common::is(e, "program_output", "sigs")
    });
    let lines = output_lines(&k, "sigs");
    assert_eq!(lines[0], "SigBlk:\t0000000000000000");
    // glibc's own signals 32 and 33 included: the spawn resets them too.
    assert_eq!(lines[1], "SigIgn:\t0000000000000000");
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

/// The signal masks of `pid` from /proc: (SigBlk, SigIgn), bit n-1 being
/// signal n.
fn signal_masks(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status:\n{status}"));
        u64::from_str_radix(line.trim(), 16).unwrap()
    };
    (field("SigBlk:"), field("SigIgn:"))
}

/// Waits until `pid` has exec'd `comm` and returns its signal masks.
fn masks_once_running(pid: i32, comm: &str) -> (u64, u64) {
    common::wait_until(&format!("{pid} to run {comm}"), secs(5.0), || {
        let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (name.trim_end() == comm).then_some(())
    });
    signal_masks(pid)
}

fn bit(signal: libc::c_int) -> u64 {
    1 << (signal - 1)
}

/// A program exec'd directly (no shell in between to reset anything) has
/// no signal blocked or ignored: not even glibc's 32 and 33, which glibc's
/// posix_spawn leaves ignored unless asked to reset them.
#[test]
fn a_plain_program_has_no_signal_ignored_or_blocked() {
    let mut k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"

[program.plain]
command = ["sleep", "1000"]
"#,
    );
    let pid = k.started_pid("plain", 1);
    let (blocked, ignored) = masks_once_running(pid, "sleep");
    assert_eq!(blocked, 0, "SigBlk of the program: {blocked:016x}");
    assert_eq!(ignored, 0, "SigIgn of the program: {ignored:016x}");
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

/// Job-control signals a parent of kelpie ignored (a background job, a
/// launcher) are ignored by kelpie too, but its programs start with them
/// at their default: the spawn resets every disposition.
#[test]
fn signals_ignored_by_kelpies_parent_are_default_in_programs() {
    let mut k = Kelpie::start_with(
        r#"
[supervisor]
http_listen = "off"

[program.plain]
command = ["sleep", "1000"]
"#,
        Options {
            wrapper: Some("trap '' QUIT TTIN TTOU TSTP"),
            ..Options::default()
        },
    );
    let pid = k.started_pid("plain", 1);
    let job_control = bit(libc::SIGTTIN) | bit(libc::SIGTTOU) | bit(libc::SIGTSTP);
    let (_, kelpie_ignored) = signal_masks(k.pid());
    assert_eq!(
        kelpie_ignored & job_control,
        job_control,
        "kelpie itself should have inherited the ignored signals; SigIgn of kelpie: {kelpie_ignored:016x}"
    );
    let (blocked, ignored) = masks_once_running(pid, "sleep");
    assert_eq!(blocked, 0, "SigBlk of the program: {blocked:016x}");
    assert_eq!(
        ignored,
        0,
        "SigIgn of the program: {ignored:016x} (QUIT is bit {:x}, TTOU bit {:x})",
        bit(libc::SIGQUIT),
        bit(libc::SIGTTOU)
    );
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

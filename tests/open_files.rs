//! The open-file limit against the programs' pipes: a config that cannot
//! fit under the hard `RLIMIT_NOFILE` is refused before anything starts
//! (and a reload that would not fit changes nothing), and one that fits
//! under the hard limit but not the soft one has the soft limit raised, so
//! every instance runs instead of the spawns failing half-way.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::{secs, wait_until, Kelpie, Options};

fn sleepers(instances: u32) -> String {
    format!(
        "[supervisor]\nhttp_listen = \"127.0.0.1:0\"\n\n\
         [program.many]\ncommand = [\"sleep\", \"1000\"]\ninstances = {instances}\nstart_seconds = \"0s\"\n"
    )
}

/// The soft open-file limit of a running process, from /proc.
fn soft_nofile(pid: i32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no open-files line in /proc/{pid}/limits:\n{limits}"));
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

#[test]
fn run_refuses_instances_beyond_the_hard_limit_and_starts_nothing() {
    // 64 + 100 instances × 2 pipes = 264 > 200.
    let mut k = Kelpie::start_with(
        &sleepers(100),
        Options {
            wrapper: Some("ulimit -Sn 200 && ulimit -Hn 200"),
            ..Options::default()
        },
    );
    let status = k.wait_exit(secs(10.0));
    assert_eq!(status.code(), Some(78), "lines: {:#?}", k.lines());
    let refusal: Vec<String> = k
        .lines()
        .into_iter()
        .filter(|l| l.contains("RLIMIT_NOFILE"))
        .collect();
    assert_eq!(
        refusal,
        vec![format!(
            "{}:4:10: program.many: the config's 100 program instances need about 264 open files in kelpie (2 pipes per instance, plus notify and probe sockets and log files), above the hard open-file limit (RLIMIT_NOFILE) of 200; raise it to at least 264 (LimitNOFILE= in the service unit, `ulimit -n` where kelpie starts, `--ulimit nofile=` for docker)",
            k.path("supervisor.toml").display()
        )],
        "one line naming the limit; all lines: {:#?}",
        k.lines()
    );
    assert!(
        k.events("program_started", "many").is_empty(),
        "nothing may start"
    );
}

#[test]
fn the_soft_limit_is_raised_until_every_instance_fits() {
    // 64 + 300 × 2 = 664 needed, far above the soft 100 and under the hard
    // 2000: without the raise the spawns fail after about 50 instances.
    let k = Kelpie::start_with(
        &sleepers(300),
        Options {
            wrapper: Some("ulimit -Sn 100 && ulimit -Hn 2000"),
            ..Options::default()
        },
    );
    k.wait_control();
    let pids = k.wait_running("many");
    assert_eq!(pids.len(), 300);
    assert!(
        k.events("program_spawn_failed", "many").is_empty(),
        "no spawn may fail: {:?}",
        k.events("program_spawn_failed", "many")
    );
    let soft = soft_nofile(k.pid());
    assert!(
        (664..=2000).contains(&soft),
        "kelpie's soft limit {soft} must cover the 664 needed and stay within the hard 2000"
    );
}

#[test]
fn a_reload_beyond_the_hard_limit_is_refused_and_changes_nothing() {
    let k = Kelpie::start_with(
        &sleepers(10),
        Options {
            wrapper: Some("ulimit -Sn 300 && ulimit -Hn 300"),
            ..Options::default()
        },
    );
    k.wait_control();
    let before = k.wait_running("many");
    assert_eq!(before.len(), 10);

    // 64 + 200 × 2 = 464 > 300.
    k.rewrite_config(&sleepers(200));
    for command in ["diff", "reload"] {
        let refused = k.ctl(&[command]).expect(78);
        assert!(
            refused.stderr.contains("need about 464 open files")
                && refused.stderr.contains("RLIMIT_NOFILE) of 300"),
            "`kelpie {command}` must name the need and the limit: {refused:#?}"
        );
    }
    assert_eq!(
        k.wait_running("many"),
        before,
        "the old instances keep running"
    );
    assert_eq!(k.events("program_started", "many").len(), 10);

    // A reload that fits still applies, and all of it starts.
    k.rewrite_config(&sleepers(100));
    k.ctl(&["reload"]).expect(0);
    let after = wait_until("100 instances running after the reload", secs(10.0), || {
        let pids = k.pids("many");
        (pids.len() == 100 && pids.iter().all(Option::is_some)).then_some(pids)
    });
    assert_eq!(after.len(), 100);
}

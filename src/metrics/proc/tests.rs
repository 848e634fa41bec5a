//! The scan against a fake procfs tree.

use super::*;
use crate::status::{InstanceStatus, ProgramStatus};

fn stat_line(pid: i32, comm: &str, pgrp: i32, ticks: (u64, u64), start: u64, rss: u64) -> String {
    // Fields 3..=24 of proc(5), then the rest of a real line.
    format!(
        "{pid} ({comm}) S 1 {pgrp} {pgrp} 0 -1 4194560 100 0 0 0 {} {} 0 0 20 0 1 0 {start} \
         8941568 {rss} 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
        ticks.0, ticks.1
    )
}

/// A fake procfs: `<root>/<pid>/stat` files.
struct FakeProc {
    dir: tempfile::TempDir,
}

impl FakeProc {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Non-process entries a real /proc has.
        std::fs::create_dir(dir.path().join("sys")).unwrap();
        std::fs::write(dir.path().join("uptime"), "1.0 1.0\n").unwrap();
        Self { dir }
    }

    fn root(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    fn set(&self, pid: i32, pgrp: i32, ticks: u64, start: u64, rss: u64) {
        let dir = self.dir.path().join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("stat"),
            stat_line(pid, "p", pgrp, (ticks, 0), start, rss),
        )
        .unwrap();
    }

    fn kill(&self, pid: i32) {
        std::fs::remove_dir_all(self.dir.path().join(pid.to_string())).unwrap();
    }
}

fn board(programs: &[(&str, &[Option<i32>])]) -> Board {
    Board {
        shutting_down: false,
        programs: programs
            .iter()
            .map(|(name, pids)| {
                let mut p = ProgramStatus::new(name, true, false, pids.len());
                for (instance, pid) in p.instances.iter_mut().zip(pids.iter()) {
                    *instance = InstanceStatus::new();
                    instance.snapshot.pid = *pid;
                }
                Arc::new(p)
            })
            .collect(),
    }
}

#[test]
fn sums_groups_and_keeps_cpu_monotonic_as_processes_come_and_go() {
    let proc = FakeProc::new();
    let mut scanner = GroupScanner::with_root(proc.root());
    let hz = scanner.clk_tck();
    let page = scanner.page_size;
    let secs = |ticks: u64| ticks as f64 / hz;

    proc.set(100, 100, 15, 1, 10); // a's leader
    proc.set(101, 100, 20, 2, 5); // a's child
    proc.set(200, 200, 7, 3, 1); // b
    proc.set(300, 300, 1000, 4, 99); // not ours
    proc.set(400, 100, 0, 0, 0); // a "zombie-like" member with nothing used
    let both = board(&[("a", &[Some(100)]), ("b", &[Some(200)])]);
    let u = scanner.scan(&both);
    assert_eq!(u[0].cpu_seconds, secs(35));
    assert_eq!(u[0].rss_bytes, 15 * page);
    assert_eq!(u[0].processes, 3);
    assert_eq!(u[1].cpu_seconds, secs(7));

    // The child exits; the leader keeps working: nothing is lost.
    proc.kill(101);
    proc.set(100, 100, 20, 1, 10);
    let u = scanner.scan(&both);
    assert_eq!(u[0].cpu_seconds, secs(20 + 20));
    assert_eq!(u[0].rss_bytes, 10 * page);

    // The leader exits (the board drops its pid) while a member drains:
    // the group is still a's.
    proc.kill(100);
    proc.set(102, 100, 5, 5, 3);
    let draining = board(&[("a", &[None]), ("b", &[Some(200)])]);
    let u = scanner.scan(&draining);
    assert_eq!(u[0].cpu_seconds, secs(40 + 5));
    assert_eq!(u[0].processes, 2, "102 and 400");

    // pid 200 is reused by an unrelated process of b's group (new start
    // time): the old one keeps its 7 ticks.
    proc.set(200, 200, 1, 9, 1);
    let u = scanner.scan(&draining);
    assert_eq!(u[1].cpu_seconds, secs(7 + 1));

    // Counters never step back, even if procfs reported less.
    proc.set(102, 100, 2, 5, 3);
    let u = scanner.scan(&draining);
    assert_eq!(u[0].cpu_seconds, secs(45));

    // The group empties: the total stays.
    proc.kill(102);
    proc.kill(400);
    let u = scanner.scan(&draining);
    assert_eq!(u[0].cpu_seconds, secs(45));
    assert_eq!((u[0].rss_bytes, u[0].processes), (0, 0));

    // Removal forgets everything about the program.
    scanner.forget("a");
    let u = scanner.scan(&draining);
    assert_eq!(u[0].cpu_seconds, 0.0);
    assert_eq!(u[1].cpu_seconds, secs(8));

    // A program that left the board is forgotten too.
    let only_a = board(&[("a", &[None])]);
    scanner.scan(&only_a);
    let u = scanner.scan(&both);
    assert_eq!(
        u[1].cpu_seconds,
        secs(1),
        "b starts over; only pid 200's current ticks"
    );
}

#[test]
fn processes_of_other_sessions_are_read_once_until_their_pid_is_reused() {
    let proc = FakeProc::new();
    let mut scanner = GroupScanner::with_root(proc.root());
    scanner.own_session = Some(1);
    let a = board(&[("a", &[Some(100)])]);
    proc.set(100, 100, 1, 1, 1); // session 100: a's leader did setsid
    proc.set(300, 300, 10, 2, 1); // another session
    proc.set(301, 1, 0, 3, 1); // kelpie's session, not in a group (yet)
    assert_eq!(scanner.scan(&a)[0].processes, 1);
    assert!(scanner.reader.entries[&300].file.is_none());
    assert!(scanner.reader.entries[&301].file.is_some());

    // (Impossible in reality, which is the point: 300 is not re-read.)
    proc.set(300, 100, 10, 2, 1);
    // 301 joins a's group (setpgid within the session).
    proc.set(301, 100, 0, 3, 1);
    assert_eq!(scanner.scan(&a)[0].processes, 2, "100 and 301");

    // A new process under pid 300 (a new /proc/300 inode): read again.
    let dir = proc.dir.path();
    std::fs::create_dir(dir.join("new")).unwrap();
    std::fs::write(dir.join("new/stat"), stat_line(300, "p", 100, (5, 0), 9, 1)).unwrap();
    std::fs::remove_dir_all(dir.join("300")).unwrap();
    std::fs::rename(dir.join("new"), dir.join("300")).unwrap();
    assert_eq!(scanner.scan(&a)[0].processes, 3);

    // Gone processes are forgotten, their files closed.
    proc.kill(301);
    scanner.scan(&a);
    assert!(!scanner.reader.entries.contains_key(&301));
}

#[test]
fn outsiders_are_rechecked_now_and_then() {
    let proc = FakeProc::new();
    let mut scanner = GroupScanner::with_root(proc.root());
    scanner.own_session = Some(1);
    let a = board(&[("a", &[Some(100)])]);
    proc.set(100, 100, 1, 1, 1);
    proc.set(300, 300, 10, 2, 1);
    scanner.scan(&a);
    proc.set(300, 100, 10, 2, 1);
    let mut scans = 1;
    while scanner.scan(&a)[0].processes == 1 {
        scans += 1;
        assert!(scans <= OUTSIDER_RECHECK, "never re-read");
    }
}

#[test]
fn large_scans_spread_over_threads_and_add_up_the_same() {
    // Above PARALLEL_MIN reads, so several threads share the work when
    // the machine has several CPUs.
    let proc = FakeProc::new();
    let mut scanner = GroupScanner::with_root(proc.root());
    let (hz, page) = (scanner.clk_tck(), scanner.page_size);
    let leaders: Vec<i32> = (0..6).map(|i| 1000 + i * 1000).collect();
    for &leader in &leaders {
        for k in 0..100 {
            proc.set(leader + k, leader, k as u64, k as u64, 1);
        }
    }
    let pids: Vec<Option<i32>> = leaders.iter().map(|&l| Some(l)).collect();
    let names = ["a", "b", "c", "d", "e", "f"];
    let programs: Vec<(&str, &[Option<i32>])> = names
        .iter()
        .zip(&pids)
        .map(|(name, pid)| (*name, std::slice::from_ref(pid)))
        .collect();
    let b = board(&programs);
    for _ in 0..2 {
        for u in scanner.scan(&b) {
            assert_eq!(u.processes, 100);
            assert_eq!(u.rss_bytes, 100 * page);
            assert_eq!(u.cpu_seconds, 4950.0 / hz);
        }
    }
    assert_eq!(scanner.reader_files().len(), 600);
    for k in 50..100 {
        proc.kill(leaders[0] + k);
    }
    let u = scanner.scan(&b);
    assert_eq!(u[0].processes, 50);
    assert_eq!(
        u[0].cpu_seconds,
        4950.0 / hz,
        "gone processes keep their CPU"
    );
    assert_eq!(scanner.reader_files().len(), 550);
}

#[test]
fn a_process_that_cannot_be_read_keeps_its_figures() {
    let proc = FakeProc::new();
    let mut scanner = GroupScanner::with_root(proc.root());
    // Open every time, as when kelpie is out of file descriptors.
    scanner.reader.max_files = Some(0);
    let hz = scanner.clk_tck();
    let a = board(&[("a", &[Some(100)])]);
    proc.set(100, 100, 10, 1, 1);
    proc.set(101, 100, 20, 2, 1);
    assert_eq!(scanner.scan(&a)[0].cpu_seconds, 30.0 / hz);
    assert!(scanner.reader_files().is_empty());

    // 101 cannot be read (its stat is a directory: EISDIR).
    let stat = proc.dir.path().join("101/stat");
    std::fs::remove_file(&stat).unwrap();
    std::fs::create_dir(&stat).unwrap();
    let u = scanner.scan(&a);
    assert_eq!(u[0].cpu_seconds, 30.0 / hz, "no dip");
    assert_eq!(u[0].processes, 2);

    // Readable again: counted once, not twice.
    std::fs::remove_dir(&stat).unwrap();
    proc.set(101, 100, 25, 2, 1);
    assert_eq!(scanner.scan(&a)[0].cpu_seconds, 35.0 / hz);
}

#[test]
fn a_missing_proc_tree_yields_zero_usage() {
    let mut scanner = GroupScanner::with_root("/nonexistent/proc");
    let u = scanner.scan(&board(&[("a", &[Some(1)])]));
    assert_eq!(u, vec![Usage::default()]);
}

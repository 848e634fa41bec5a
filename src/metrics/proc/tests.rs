//! The scan against a fake procfs tree.

use super::*;
use crate::status::{InstanceStatus, ProgramStatus};

/// Who a fake process is: its parent, group and session.
#[derive(Clone, Copy)]
struct Family {
    ppid: i32,
    pgrp: i32,
    session: i32,
}

impl Family {
    /// A child of kelpie (the test process plays kelpie) leading a group
    /// and a session of its own, as a program that called setsid.
    fn of_kelpie(pgrp: i32) -> Self {
        Self {
            ppid: kelpie(),
            pgrp,
            session: pgrp,
        }
    }
}

/// The pid the scanner takes for kelpie's.
fn kelpie() -> i32 {
    nix::unistd::getpid().as_raw()
}

fn stat_line(pid: i32, comm: &str, who: Family, ticks: (u64, u64), start: u64, rss: u64) -> String {
    let Family {
        ppid,
        pgrp,
        session,
    } = who;
    // Fields 3..=24 of proc(5), then the rest of a real line.
    format!(
        "{pid} ({comm}) S {ppid} {pgrp} {session} 0 -1 4194560 100 0 0 0 {} {} 0 0 20 0 1 0 {start} \
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

    /// A process under kelpie in group (and session) `pgrp`.
    fn set(&self, pid: i32, pgrp: i32, ticks: u64, start: u64, rss: u64) {
        self.set_in(pid, Family::of_kelpie(pgrp), ticks, start, rss);
    }

    /// A process that is not kelpie's descendant (its parent is init).
    fn set_foreign(&self, pid: i32, pgrp: i32, ticks: u64, start: u64, rss: u64) {
        let who = Family {
            ppid: 1,
            ..Family::of_kelpie(pgrp)
        };
        self.set_in(pid, who, ticks, start, rss);
    }

    fn set_in(&self, pid: i32, who: Family, ticks: u64, start: u64, rss: u64) {
        let dir = self.dir.path().join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("stat"),
            stat_line(pid, "p", who, (ticks, 0), start, rss),
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
    proc.set_foreign(300, 300, 1000, 4, 99); // not ours
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
    proc.set_foreign(300, 300, 10, 2, 1); // another session
    proc.set(301, 1, 0, 3, 1); // kelpie's session, not in a group (yet)
    assert_eq!(scanner.scan(&a)[0].processes, 1);
    assert!(scanner.reader.entries[&300].file.is_none());
    assert!(scanner.reader.entries[&301].file.is_some());

    // (Impossible in reality, which is the point: 300 is not re-read.)
    proc.set_foreign(300, 100, 10, 2, 1);
    // 301 joins a's group (setpgid within the session).
    let joined = Family {
        session: 1,
        ..Family::of_kelpie(100)
    };
    proc.set_in(301, joined, 0, 3, 1);
    assert_eq!(scanner.scan(&a)[0].processes, 2, "100 and 301");

    // A new process under pid 300 (a new /proc/300 inode): read again.
    let dir = proc.dir.path();
    std::fs::create_dir(dir.join("new")).unwrap();
    std::fs::write(
        dir.join("new/stat"),
        stat_line(300, "p", Family::of_kelpie(100), (5, 0), 9, 1),
    )
    .unwrap();
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
    proc.set_foreign(300, 300, 10, 2, 1);
    scanner.scan(&a);
    proc.set_foreign(300, 100, 10, 2, 1);
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
    // Room to keep every file open (kelpie's share comes from fd_budget).
    scanner.reader.max_files = Some(1000);
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

#[test]
fn the_whole_tree_under_a_main_process_counts_each_process_once() {
    let proc = FakeProc::new();
    let mut scanner = GroupScanner::with_root(proc.root());
    let (hz, page) = (scanner.clk_tck(), scanner.page_size);
    let child = |ppid, pgrp, session| Family {
        ppid,
        pgrp,
        session,
    };
    proc.set(100, 100, 1, 1, 1); // a's main process
    proc.set_in(101, child(100, 101, 101), 10, 2, 2); // setsid: a postgres backend
    proc.set_in(102, child(101, 101, 101), 100, 3, 4); // its child
    proc.set_in(103, child(100, 100, 100), 1000, 4, 8); // in the group and the tree
    proc.set_in(104, child(100, 104, 100), 10000, 5, 16); // setpgid only
    proc.set(500, 500, 7, 6, 1); // kelpie's child, no program's (a probe)
    proc.set_foreign(600, 600, 7, 7, 1); // not under kelpie
    let a = board(&[("a", &[Some(100)])]);
    for _ in 0..2 {
        let u = scanner.scan(&a);
        assert_eq!(u[0].processes, 5);
        assert_eq!(u[0].cpu_seconds, 11111.0 / hz);
        assert_eq!(u[0].rss_bytes, 31 * page);
    }
    // Processes of other sessions under a program are read every time,
    // through a kept-open file; the one outside kelpie's tree is not.
    for pid in [101, 102] {
        assert!(scanner.reader.entries[&pid].file.is_some(), "{pid}");
    }
    assert!(scanner.reader.entries[&600].file.is_none());
    assert!(scanner.reader.entries[&600].skip_until > scanner.reader.generation);
}

#[test]
fn cpu_of_descendants_in_other_groups_survives_them_and_orphans_stay_counted() {
    let proc = FakeProc::new();
    let mut scanner = GroupScanner::with_root(proc.root());
    let hz = scanner.clk_tck();
    let child = |ppid, pgrp| Family {
        ppid,
        pgrp,
        session: pgrp,
    };
    proc.set(100, 100, 1, 1, 1);
    proc.set_in(101, child(100, 101), 10, 2, 1); // leads a session and group
    proc.set_in(102, child(101, 101), 100, 3, 1); // a member of it
    let a = board(&[("a", &[Some(100)])]);
    assert_eq!(scanner.scan(&a)[0].cpu_seconds, 111.0 / hz);

    // 101 exits; kelpie, the subreaper, adopts 102. It was seen under a,
    // so it is still a's, and 101's CPU is kept.
    proc.kill(101);
    proc.set_in(102, child(kelpie(), 101), 150, 3, 1);
    let u = scanner.scan(&a);
    assert_eq!((u[0].processes, u[0].cpu_seconds), (2, 161.0 / hz));

    // A process that joins the drained group 101 after that is a's too:
    // the group was a's and the kernel keeps its id while it has members.
    proc.set_in(103, child(kelpie(), 101), 5, 4, 1);
    let u = scanner.scan(&a);
    assert_eq!((u[0].processes, u[0].cpu_seconds), (3, 166.0 / hz));

    // Even with the main process gone from the board.
    proc.kill(100);
    let gone = board(&[("a", &[None])]);
    let u = scanner.scan(&gone);
    assert_eq!((u[0].processes, u[0].cpu_seconds), (2, 166.0 / hz));
    proc.kill(102);
    proc.kill(103);
    let u = scanner.scan(&gone);
    assert_eq!((u[0].processes, u[0].cpu_seconds), (0, 166.0 / hz));
}

#[test]
fn joining_a_group_that_is_not_the_programs_does_not_bring_the_group_in() {
    let proc = FakeProc::new();
    let mut scanner = GroupScanner::with_root(proc.root());
    scanner.own_session = Some(7);
    let in_session = |ppid, pgrp| Family {
        ppid,
        pgrp,
        session: 7,
    };
    // Group 7 is kelpie's (its leader here is kelpie's parent, a shell).
    proc.set_in(7, in_session(1, 7), 1000, 1, 50);
    proc.set_in(100, in_session(kelpie(), 100), 1, 2, 1);
    proc.set_in(101, in_session(100, 7), 10, 3, 1); // setpgid(0, 7)
    let a = board(&[("a", &[Some(100)])]);
    for _ in 0..3 {
        let u = scanner.scan(&a);
        assert_eq!(u[0].processes, 2, "100 and 101, not the shell");
    }
    // 100 exits and kelpie adopts 101. Neither its group nor its parent
    // is a's now, but it was seen as a's and still is.
    proc.kill(100);
    proc.set_in(101, in_session(kelpie(), 7), 10, 3, 1);
    let u = scanner.scan(&board(&[("a", &[None])]));
    assert_eq!(u[0].processes, 1);
}

#[test]
fn a_child_of_kelpie_the_board_does_not_list_yet_is_not_written_off() {
    // kelpie spawned it, it called setsid, and the scrape came before the
    // board had its pid: it must be counted as soon as the board does.
    let proc = FakeProc::new();
    let mut scanner = GroupScanner::with_root(proc.root());
    scanner.own_session = Some(1);
    proc.set(100, 100, 3, 1, 1);
    let child = Family {
        ppid: 100,
        pgrp: 101,
        session: 101,
    };
    proc.set_in(101, child, 4, 2, 1);
    proc.set(200, 200, 1, 3, 1); // b, so that the pass has work
    let u = scanner.scan(&board(&[("a", &[None]), ("b", &[Some(200)])]));
    assert_eq!((u[0].processes, u[1].processes), (0, 1));
    let u = scanner.scan(&board(&[("a", &[Some(100)]), ("b", &[Some(200)])]));
    assert_eq!(u[0].processes, 2);
}

#[test]
fn instances_are_counted_apart_and_add_up_to_their_program() {
    let proc = FakeProc::new();
    let mut by_instance = GroupScanner::with_root(proc.root());
    let mut by_program = GroupScanner::with_root(proc.root());
    by_instance.reader.max_files = Some(0);
    let (hz, page) = (by_instance.clk_tck(), by_instance.page_size);
    let child = |ppid, pgrp| Family {
        ppid,
        pgrp,
        session: pgrp,
    };
    proc.set(100, 100, 10, 1, 2); // web:0
    proc.set_in(101, child(100, 101), 5, 2, 3); // web:0's child, a session of its own
    proc.set(200, 200, 20, 3, 4); // web:1
    proc.set(300, 300, 7, 4, 1); // db
    let running = board(&[("web", &[Some(100), Some(200)]), ("db", &[Some(300)])]);
    let u = by_instance.scan_instances(&running);
    assert_eq!(u.len(), 2);
    assert_eq!(u[0].len(), 2);
    assert_eq!(
        (u[0][0].cpu_seconds, u[0][0].rss_bytes, u[0][0].processes),
        (15.0 / hz, 5 * page, 2)
    );
    assert_eq!((u[0][1].cpu_seconds, u[0][1].processes), (20.0 / hz, 1));
    assert_eq!(u[1][0].cpu_seconds, 7.0 / hz);
    let programs = by_program.scan(&running);
    assert_eq!(
        u[0][0].cpu_seconds + u[0][1].cpu_seconds,
        programs[0].cpu_seconds
    );
    // No file stays open for the instance scanner.
    assert!(by_instance.reader_files().is_empty());

    // web:0's child exits and web:0 restarts under a new pid: its CPU
    // stays its own, and web:1's is untouched.
    proc.kill(101);
    proc.kill(100);
    proc.set(110, 110, 1, 5, 2);
    let restarted = board(&[("web", &[Some(110), Some(200)]), ("db", &[Some(300)])]);
    let u = by_instance.scan_instances(&restarted);
    assert_eq!(u[0][0].cpu_seconds, 16.0 / hz);
    assert_eq!(u[0][1].cpu_seconds, 20.0 / hz);

    // Scaled down to one instance: web:1's figures are forgotten.
    let one = board(&[("web", &[Some(110)]), ("db", &[Some(300)])]);
    let u = by_instance.scan_instances(&one);
    assert_eq!(u[0].len(), 1);
    assert!(!by_instance.exited.contains_key("web:1"));
}

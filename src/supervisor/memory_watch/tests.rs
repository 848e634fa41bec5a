//! `MemoryWatch` as tables: each row is one sampling tick (the time, and
//! per instance its phase, pid and memory) and the restarts it decides.

use std::time::Duration;

use tokio::time::Instant;

use super::*;

const MB: u64 = 1_000_000;

fn limit(threshold_mb: u64, after_secs: u64) -> MemoryRestart {
    MemoryRestart {
        threshold: threshold_mb * MB,
        after: Duration::from_secs(after_secs),
    }
}

/// `web:0` with `memory_restart = "100MB"`, `memory_restart_after = "10s"`.
fn web(index: u32, phase: Phase, pid: Option<i32>, rss_mb: u64) -> Sample<'static> {
    Sample {
        program: "web",
        index,
        limit: limit(100, 10),
        phase,
        pid,
        rss_bytes: rss_mb * MB,
    }
}

fn running(pid: i32, rss_mb: u64) -> Sample<'static> {
    web(0, Phase::Running, Some(pid), rss_mb)
}

/// Each row: seconds since the start, the samples, the restarts decided
/// (as `program:index pid`).
fn run(table: &[(u64, Vec<Sample<'static>>, &[&str])]) {
    let start = Instant::now();
    let mut watch = MemoryWatch::default();
    for (row, (secs, samples, expected)) in table.iter().enumerate() {
        let now = start + Duration::from_secs(*secs);
        let due: Vec<String> = watch
            .observe(samples.iter().cloned(), now)
            .iter()
            .map(|d| format!("{}:{} {}", d.program, d.index, d.pid))
            .collect();
        assert_eq!(&due, expected, "row {row} (t = {secs}s)");
    }
}

#[test]
fn above_for_after_restarts_once_then_counts_again() {
    run(&[
        (0, vec![running(7, 50)], &[]),
        (5, vec![running(7, 150)], &[]),
        (10, vec![running(7, 200)], &[]),
        (14, vec![running(7, 200)], &[]),
        (15, vec![running(7, 200)], &["web:0 7"]),
        // Decided: the count starts over (the restart is under way).
        (16, vec![running(7, 200)], &[]),
        (25, vec![running(7, 200)], &[]),
        (26, vec![running(7, 200)], &["web:0 7"]),
    ]);
}

#[test]
fn a_dip_to_the_threshold_or_below_starts_over() {
    run(&[
        (0, vec![running(7, 150)], &[]),
        (9, vec![running(7, 100)], &[]),
        (10, vec![running(7, 150)], &[]),
        (19, vec![running(7, 150)], &[]),
        (20, vec![running(7, 150)], &["web:0 7"]),
    ]);
}

#[test]
fn a_new_pid_or_no_process_starts_over() {
    run(&[
        (0, vec![running(7, 150)], &[]),
        // Restarted (by a crash, an operator, a reload): a new process.
        (8, vec![running(8, 150)], &[]),
        (12, vec![running(8, 150)], &[]),
        (17, vec![web(0, Phase::Backoff, None, 0)], &[]),
        (18, vec![running(9, 150)], &[]),
        (27, vec![running(9, 150)], &[]),
        (28, vec![running(9, 150)], &["web:0 9"]),
    ]);
}

#[test]
fn starting_counts_but_only_running_restarts() {
    run(&[
        (0, vec![web(0, Phase::Starting, Some(7), 150)], &[]),
        (20, vec![web(0, Phase::Starting, Some(7), 150)], &[]),
        (21, vec![running(7, 150)], &["web:0 7"]),
    ]);
}

#[test]
fn stopping_is_never_restarted_and_starts_over() {
    run(&[
        (0, vec![running(7, 150)], &[]),
        (10, vec![web(0, Phase::Stopping, Some(7), 150)], &[]),
        (11, vec![running(7, 150)], &[]),
        (20, vec![running(7, 150)], &[]),
        (21, vec![running(7, 150)], &["web:0 7"]),
    ]);
}

#[test]
fn instances_and_programs_are_counted_apart() {
    let worker = |rss_mb| Sample {
        program: "worker",
        index: 0,
        limit: limit(50, 2),
        phase: Phase::Running,
        pid: Some(20),
        rss_bytes: rss_mb * MB,
    };
    run(&[
        (
            0,
            vec![
                running(7, 150),
                web(1, Phase::Running, Some(8), 90),
                worker(60),
            ],
            &[],
        ),
        (
            2,
            vec![
                running(7, 150),
                web(1, Phase::Running, Some(8), 150),
                worker(60),
            ],
            &["worker:0 20"],
        ),
        (
            10,
            vec![
                running(7, 150),
                web(1, Phase::Running, Some(8), 150),
                worker(10),
            ],
            &["web:0 7"],
        ),
        (
            12,
            vec![web(1, Phase::Running, Some(8), 150), worker(10)],
            &["web:1 8"],
        ),
    ]);
}

#[test]
fn an_instance_missing_from_a_tick_is_forgotten() {
    run(&[
        (0, vec![running(7, 150)], &[]),
        // A reload removed the key (or the program) for a while.
        (5, vec![], &[]),
        (6, vec![running(7, 150)], &[]),
        (15, vec![running(7, 150)], &[]),
        (16, vec![running(7, 150)], &["web:0 7"]),
    ]);
}

#[test]
fn the_decision_carries_what_was_measured() {
    let mut watch = MemoryWatch::default();
    let start = Instant::now();
    assert!(watch.observe([running(7, 150)], start).is_empty());
    let due = watch.observe([running(7, 180)], start + Duration::from_secs(10));
    assert_eq!(
        due,
        [MemoryRestartDue {
            program: "web".into(),
            index: 0,
            pid: 7,
            rss_bytes: 180 * MB,
            threshold: 100 * MB,
            after: Duration::from_secs(10),
        }]
    );
}

#[test]
fn a_zero_after_restarts_on_the_first_sample_above() {
    let zero = Sample {
        limit: MemoryRestart {
            threshold: 100 * MB,
            after: Duration::ZERO,
        },
        ..running(7, 150)
    };
    run(&[(0, vec![zero], &["web:0 7"])]);
}

#[test]
fn the_interval_is_a_quarter_of_the_shortest_after_within_bounds() {
    let ms = Duration::from_millis;
    let cases: &[(&[MemoryRestart], Option<Duration>)] = &[
        (&[], None),
        // The default `after` (30s): capped at 5s.
        (&[limit(1, 30)], Some(ms(5000))),
        (&[limit(1, 30), limit(1, 8)], Some(ms(2000))),
        (&[limit(1, 1)], Some(ms(250))),
        (
            &[MemoryRestart {
                threshold: 1,
                after: ms(200),
            }],
            Some(ms(100)),
        ),
        (&[limit(1, 0)], Some(ms(100))),
    ];
    for (limits, expected) in cases {
        assert_eq!(sampling_interval(limits.iter()), *expected, "{limits:?}");
    }
}

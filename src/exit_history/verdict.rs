//! The one-line verdict of `kelpie why`: what the recent exits of a program
//! add up to. Pure: the exits (newest first), the program's state now and
//! the time now go in, a sentence comes out.

use std::borrow::Borrow;
use std::time::{Duration, SystemTime};

use super::{duration_text, Decision, ExitRecord};
use crate::state::{ExitKind, ExitStatus, Phase};

/// Exits this close together (newest to oldest of them) are one loop.
pub const LOOP_WINDOW: Duration = Duration::from_secs(60);
/// Crashes within `LOOP_WINDOW` that make a crash loop.
pub const LOOP_EXITS: usize = 3;

/// `SIGSEGV`, `exit code 3`.
pub fn status_name(status: ExitStatus) -> String {
    match status {
        ExitStatus::Code(code) => format!("exit code {code}"),
        ExitStatus::Signal(n) => match nix::sys::signal::Signal::try_from(n) {
            Ok(signal) => signal.as_str().to_string(),
            Err(_) => format!("signal {n}"),
        },
    }
}

/// `exited with code 3`, `killed by SIGSEGV`.
pub fn ended(status: ExitStatus) -> String {
    match status {
        ExitStatus::Code(code) => format!("exited with code {code}"),
        ExitStatus::Signal(_) => format!("killed by {}", status_name(status)),
    }
}

fn at(exit: &ExitRecord) -> String {
    humantime::format_rfc3339_seconds(exit.at).to_string()
}

/// An end of a run nobody asked for that did not succeed.
fn is_crash(exit: &ExitRecord) -> bool {
    !exit.by_kelpie && exit.kind != ExitKind::Success
}

/// What happened next, as the end of a verdict.
fn next(decision: &Decision) -> String {
    match decision {
        Decision::Pending => "stopping its leftover processes".into(),
        Decision::Restart { delay } => format!("restarting after {}", duration_text(*delay)),
        Decision::BudgetWait { .. } => "waiting for the restart budget".into(),
        Decision::Failed { reason } => format!("failed: {reason}"),
        Decision::Stopped => "then stopped on request".into(),
        Decision::Restarted => "started again on request".into(),
        Decision::Exited => "not restarted (restart policy)".into(),
    }
}

fn restarts(decision: &Decision) -> bool {
    matches!(
        decision,
        Decision::Restart { .. } | Decision::BudgetWait { .. } | Decision::Restarted
    )
}

/// The crashes at the head of `exits` within `LOOP_WINDOW` of the newest.
fn crash_run<E: Borrow<ExitRecord>>(exits: &[E]) -> &[E] {
    let Some(newest) = exits.first().map(Borrow::borrow) else {
        return exits;
    };
    let n = exits
        .iter()
        .map(Borrow::borrow)
        .take_while(|e| {
            is_crash(e)
                && newest
                    .at
                    .duration_since(e.at)
                    .is_ok_and(|gap| gap <= LOOP_WINDOW)
        })
        .count();
    &exits[..n]
}

/// `7 exits in 12s, all SIGSEGV after ~0.2s`.
fn loop_summary<E: Borrow<ExitRecord>>(run: &[E]) -> String {
    let (Some(newest), Some(oldest)) = (run.first(), run.last()) else {
        return String::new();
    };
    let (newest, oldest) = (newest.borrow(), oldest.borrow());
    let span = newest.at.duration_since(oldest.at).unwrap_or_default();
    let mut ran: Vec<Duration> = run.iter().map(|e| e.borrow().ran).collect();
    ran.sort();
    let typical = duration_text(ran[ran.len() / 2]);
    let how = if run.iter().all(|e| e.borrow().status == newest.status) {
        format!("all {} after ~{typical}", status_name(newest.status))
    } else {
        format!(
            "the last {} after {}",
            status_name(newest.status),
            duration_text(newest.ran)
        )
    };
    format!("{} exits in {}, {how}", run.len(), duration_text(span))
}

/// The verdict on a program (or one instance) whose state is `state`,
/// from its exits, newest first.
pub fn verdict<E: Borrow<ExitRecord>>(exits: &[E], state: Phase, now: SystemTime) -> String {
    let Some(newest) = exits.first().map(Borrow::borrow) else {
        return format!("{}; no exits recorded", state.as_str());
    };
    let pid = newest.pid;
    if let Some(oom) = &newest.oom {
        let (seen, evidence) = match (oom.source, &oom.memcg) {
            (super::OomSource::KernelLog, Some(cg)) => (
                "killed by the kernel OOM killer",
                format!(", memory cgroup {cg} at its limit"),
            ),
            (super::OomSource::KernelLog, None) => {
                ("killed by the kernel OOM killer", String::new())
            }
            (super::OomSource::InstanceCgroup, cg) => (
                "killed by the kernel OOM killer",
                cg.as_ref()
                    .map(|cg| format!(", counted by its cgroup {cg}"))
                    .unwrap_or_default(),
            ),
            (super::OomSource::CgroupCounter, _) => (
                "probably killed by the kernel OOM killer",
                ", kelpie's memory cgroup counted an OOM kill".to_string(),
            ),
        };
        return format!(
            "{seen} (pid {pid} at {}{evidence}); {}",
            at(newest),
            next(&newest.decision)
        );
    }
    if newest.by_kelpie {
        let what = match (&newest.decision, &newest.kelpie_reason) {
            (Decision::Restarted, None) => "restarted by kelpie",
            _ => "stopped by kelpie",
        };
        let head = format!(
            "{what} (pid {pid} at {}, {} after {})",
            at(newest),
            ended(newest.status),
            duration_text(newest.ran)
        );
        return match (&newest.kelpie_reason, &newest.decision) {
            (Some(reason), decision) => format!("{reason}: {head}; {}", next(decision)),
            (None, Decision::Stopped | Decision::Restarted) => head,
            (None, decision) => format!("{head}; {}", next(decision)),
        };
    }
    let run = crash_run(exits);
    let recent = now
        .duration_since(newest.at)
        .map_or(true, |ago| ago < LOOP_WINDOW);
    if let Decision::Failed { reason } = &newest.decision {
        return if run.len() >= 2 {
            format!("failed after {}: {reason}", loop_summary(run))
        } else {
            format!("failed: {reason}")
        };
    }
    if state == Phase::Running && restarts(&newest.decision) && !(recent && run.len() >= LOOP_EXITS)
    {
        let ago = now.duration_since(newest.at).unwrap_or_default();
        return format!(
            "running; last exit {} ago: {} after {} (pid {pid})",
            duration_text(ago),
            ended(newest.status),
            duration_text(newest.ran)
        );
    }
    if run.len() >= LOOP_EXITS && restarts(&newest.decision) {
        return format!(
            "crash-looping: {}; {}",
            loop_summary(run),
            next(&newest.decision)
        );
    }
    if newest.kind == ExitKind::Success && newest.decision == Decision::Exited {
        return format!(
            "{} (completed) after {} at {}",
            ended(newest.status),
            duration_text(newest.ran),
            at(newest)
        );
    }
    format!(
        "{} after {} (pid {pid} at {}); {}",
        ended(newest.status),
        duration_text(newest.ran),
        at(newest),
        next(&newest.decision)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit_history::{Oom, OomSource};

    const T0: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z

    /// An exit `secs` after T0 (tenths allowed) that ran `ran_ms`.
    fn exit(secs: f64, status: ExitStatus, ran_ms: u64, decision: Decision) -> ExitRecord {
        let kind = match status {
            ExitStatus::Code(0) => ExitKind::Success,
            ExitStatus::Code(_) => ExitKind::Failure,
            ExitStatus::Signal(_) => ExitKind::Signal,
        };
        ExitRecord {
            seq: 0,
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(T0) + Duration::from_secs_f64(secs),
            instance: 0,
            pid: 4000 + (secs * 10.0) as i32,
            status,
            kind,
            by_kelpie: false,
            kelpie_reason: None,
            ran: Duration::from_millis(ran_ms),
            decision,
            oom: None,
            output: Vec::new(),
        }
    }

    fn restart(ms: u64) -> Decision {
        Decision::Restart {
            delay: Duration::from_millis(ms),
        }
    }

    const SEGV: ExitStatus = ExitStatus::Signal(11);

    /// `n` SIGSEGV crashes 2 s apart, newest first, the newest at `last`.
    fn segv_loop(n: usize, last: f64) -> Vec<ExitRecord> {
        (0..n)
            .map(|i| exit(last - 2.0 * i as f64, SEGV, 200, restart(1600)))
            .collect()
    }

    fn by_kelpie(mut e: ExitRecord, reason: Option<&str>) -> ExitRecord {
        e.by_kelpie = true;
        e.kelpie_reason = reason.map(str::to_string);
        e
    }

    fn oom(mut e: ExitRecord, source: OomSource, memcg: Option<&str>) -> ExitRecord {
        e.oom = Some(Oom {
            source,
            memcg: memcg.map(str::to_string),
        });
        e
    }

    #[test]
    fn verdicts() {
        let now = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + secs);
        let failed = Decision::Failed {
            reason: "exited with exit code 3; restarted 2 times within 1m; giving up".into(),
        };
        let mut mixed = segv_loop(3, 20.0);
        mixed[0].status = ExitStatus::Code(3);
        mixed[0].kind = ExitKind::Failure;
        let mut sigkilled = exit(5.0, ExitStatus::Signal(9), 30_000, Decision::Stopped);
        sigkilled.kind = ExitKind::Killed;
        let cases: Vec<(&str, Vec<ExitRecord>, Phase, u64, &str)> = vec![
            ("nothing yet", vec![], Phase::Running, 0, "running; no exits recorded"),
            ("never started", vec![], Phase::Stopped, 0, "stopped; no exits recorded"),
            (
                "a crash loop",
                segv_loop(7, 12.0),
                Phase::Backoff,
                13,
                "crash-looping: 7 exits in 12s, all SIGSEGV after ~0.2s; restarting after 1.6s",
            ),
            (
                "a loop is a loop even while the next run starts",
                segv_loop(3, 4.0),
                Phase::Running,
                5,
                "crash-looping: 3 exits in 4s, all SIGSEGV after ~0.2s; restarting after 1.6s",
            ),
            (
                "only crashes within the window count",
                [segv_loop(2, 100.0), segv_loop(5, 10.0)].concat(),
                Phase::Backoff,
                101,
                "killed by SIGSEGV after 0.2s (pid 5000 at 2026-01-01T00:01:40Z); restarting after 1.6s",
            ),
            (
                "different ends",
                mixed,
                Phase::Backoff,
                21,
                "crash-looping: 3 exits in 4s, the last exit code 3 after 0.2s; restarting after 1.6s",
            ),
            (
                "waiting for the budget",
                vec![exit(
                    1.0,
                    SEGV,
                    200,
                    Decision::BudgetWait {
                        delay: Duration::from_secs(1),
                    },
                )],
                Phase::Backoff,
                2,
                "killed by SIGSEGV after 0.2s (pid 4010 at 2026-01-01T00:00:01Z); waiting for the restart budget",
            ),
            (
                "given up after a loop",
                vec![
                    exit(4.0, ExitStatus::Code(3), 100, failed.clone()),
                    exit(2.0, ExitStatus::Code(3), 100, restart(100)),
                    exit(0.0, ExitStatus::Code(3), 100, restart(100)),
                ],
                Phase::Failed,
                5,
                "failed after 3 exits in 4s, all exit code 3 after ~0.1s: exited with exit code 3; restarted 2 times within 1m; giving up",
            ),
            (
                "given up at once",
                vec![exit(
                    1.0,
                    ExitStatus::Code(1),
                    10,
                    Decision::Failed {
                        reason: "exited with exit code 1".into(),
                    },
                )],
                Phase::Failed,
                2,
                "failed: exited with exit code 1",
            ),
            (
                "kelpie stop",
                vec![by_kelpie(
                    exit(5.0, ExitStatus::Signal(15), 192_000, Decision::Stopped),
                    None,
                )],
                Phase::Stopped,
                6,
                "stopped by kelpie (pid 4050 at 2026-01-01T00:00:05Z, killed by SIGTERM after 3m 12s)",
            ),
            (
                "kelpie stop, SIGKILL after stop_timeout",
                vec![by_kelpie(sigkilled, None)],
                Phase::Stopped,
                6,
                "stopped by kelpie (pid 4050 at 2026-01-01T00:00:05Z, killed by SIGKILL after 30s)",
            ),
            (
                "kelpie restart",
                vec![by_kelpie(
                    exit(5.0, ExitStatus::Code(0), 1500, Decision::Restarted),
                    None,
                )],
                Phase::Running,
                6,
                "restarted by kelpie (pid 4050 at 2026-01-01T00:00:05Z, exited with code 0 after 1.5s)",
            ),
            (
                "a failed liveness probe",
                vec![by_kelpie(
                    exit(5.0, ExitStatus::Signal(15), 60_000, restart(1000)),
                    Some("liveness probe failed 3 times: connection refused"),
                )],
                Phase::Backoff,
                6,
                "liveness probe failed 3 times: connection refused: stopped by kelpie (pid 4050 at 2026-01-01T00:00:05Z, killed by SIGTERM after 1m); restarting after 1s",
            ),
            (
                "the OOM killer",
                vec![oom(
                    exit(5.0, ExitStatus::Signal(9), 800, restart(1000)),
                    OomSource::KernelLog,
                    Some("/batch"),
                )],
                Phase::Backoff,
                6,
                "killed by the kernel OOM killer (pid 4050 at 2026-01-01T00:00:05Z, memory cgroup /batch at its limit); restarting after 1s",
            ),
            (
                "the OOM killer, seen by the cgroup counter",
                vec![oom(
                    exit(5.0, ExitStatus::Signal(9), 800, Decision::Exited),
                    OomSource::CgroupCounter,
                    None,
                )],
                Phase::Exited,
                6,
                "probably killed by the kernel OOM killer (pid 4050 at 2026-01-01T00:00:05Z, kelpie's memory cgroup counted an OOM kill); not restarted (restart policy)",
            ),
            (
                "recovered long ago",
                segv_loop(5, 10.0),
                Phase::Running,
                3600,
                "running; last exit 59m 50s ago: killed by SIGSEGV after 0.2s (pid 4100)",
            ),
            (
                "one crash, running again",
                vec![exit(10.0, SEGV, 7_200_000, restart(100))],
                Phase::Running,
                12,
                "running; last exit 2s ago: killed by SIGSEGV after 2h (pid 4100)",
            ),
            (
                "a completed oneshot",
                vec![exit(3.0, ExitStatus::Code(0), 2500, Decision::Exited)],
                Phase::Exited,
                4,
                "exited with code 0 (completed) after 2.5s at 2026-01-01T00:00:03Z",
            ),
            (
                "a failure not restarted",
                vec![exit(3.0, ExitStatus::Code(2), 2500, Decision::Exited)],
                Phase::Exited,
                4,
                "exited with code 2 after 2.5s (pid 4030 at 2026-01-01T00:00:03Z); not restarted (restart policy)",
            ),
            (
                "a crash, then a stop during its clean-up",
                vec![exit(3.0, SEGV, 2500, Decision::Stopped)],
                Phase::Stopped,
                4,
                "killed by SIGSEGV after 2.5s (pid 4030 at 2026-01-01T00:00:03Z); then stopped on request",
            ),
            (
                "leftovers being stopped",
                vec![exit(3.0, ExitStatus::Code(1), 2500, Decision::Pending)],
                Phase::Stopping,
                4,
                "exited with code 1 after 2.5s (pid 4030 at 2026-01-01T00:00:03Z); stopping its leftover processes",
            ),
        ];
        for (what, exits, state, at, want) in cases {
            assert_eq!(verdict(&exits, state, now(at)), want, "{what}");
        }
    }
}

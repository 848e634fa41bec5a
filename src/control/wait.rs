//! When a control action is done: judged from a program's published
//! status, never by asking an actor. An instance's status counts only once
//! its `ack` reached the action's sequence number, so a state from before
//! the action (a `running` just before a restart) is never taken for its
//! outcome.

use crate::state::{ExitKind, Phase};
use crate::status::ProgramStatus;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Pending,
    Done(String),
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `start`, `restart`: every instance running (a oneshot: completed).
    Up,
    /// `stop`: no process of the program left.
    Down,
}

/// `only`: the one instance addressed (`kelpie stop web:1`); the others
/// are not looked at.
pub fn progress(
    target: Target,
    seq: u64,
    program: &ProgramStatus,
    only: Option<usize>,
) -> Progress {
    let mut pending = false;
    for (n, instance) in program.instances.iter().enumerate() {
        if only.is_some_and(|only| only != n) {
            continue;
        }
        let name = format!("{}:{n}", program.name);
        if instance.ack < seq {
            pending = true;
            continue;
        }
        let s = &instance.snapshot;
        match target {
            Target::Down => {
                if !(s.phase.is_down() && s.pid.is_none()) {
                    pending = true;
                }
            }
            Target::Up => match s.phase {
                Phase::Running => {}
                Phase::Exited if program.oneshot && s.last_exit_kind == Some(ExitKind::Success) => {
                }
                Phase::Failed => {
                    let reason = s.reason.as_deref().unwrap_or("failed");
                    return Progress::Failed(format!("{name} failed: {reason}"));
                }
                Phase::Backoff => {
                    let exit = match s.last_exit {
                        Some(status) => format!("exited with {status}"),
                        None => s.reason.clone().unwrap_or_else(|| "did not start".into()),
                    };
                    return Progress::Failed(format!(
                        "{name} {exit}; restarting in {}",
                        humantime::format_duration(std::time::Duration::from_millis(
                            s.backoff.as_millis() as u64
                        ))
                    ));
                }
                Phase::Exited => {
                    let exit = s
                        .last_exit
                        .map(|e| format!("exited with {e}"))
                        .unwrap_or_else(|| "exited".into());
                    return Progress::Failed(format!("{name} {exit} and is not restarted"));
                }
                Phase::Stopped if !s.want_up => {
                    return Progress::Failed(format!("{name} was stopped"));
                }
                Phase::Stopped | Phase::Starting | Phase::Stopping => pending = true,
            },
        }
    }
    if pending {
        return Progress::Pending;
    }
    Progress::Done(match target {
        Target::Down => "stopped".into(),
        Target::Up if program.oneshot => "completed".into(),
        Target::Up => "running".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ExitStatus, Snapshot};
    use crate::status::InstanceStatus;
    use std::time::Duration;

    fn program(oneshot: bool, instances: Vec<(Phase, Option<i32>, u64)>) -> ProgramStatus {
        let mut p = ProgramStatus::new("web", true, oneshot, instances.len());
        for (slot, (phase, pid, ack)) in p.instances.iter_mut().zip(instances) {
            let mut snapshot = Snapshot::initial();
            snapshot.phase = phase;
            snapshot.pid = pid;
            snapshot.want_up = true;
            *slot = InstanceStatus {
                snapshot,
                started_at: None,
                ack,
                held: false,
                slot: 0,
            };
        }
        p
    }

    #[test]
    fn a_status_from_before_the_action_never_counts() {
        let p = program(false, vec![(Phase::Running, Some(10), 4)]);
        assert_eq!(progress(Target::Up, 5, &p, None), Progress::Pending);
        assert_eq!(
            progress(Target::Up, 4, &p, None),
            Progress::Done("running".into())
        );
    }

    #[test]
    fn up_waits_for_every_instance() {
        let p = program(
            false,
            vec![
                (Phase::Running, Some(10), 7),
                (Phase::Starting, Some(11), 7),
            ],
        );
        assert_eq!(progress(Target::Up, 7, &p, None), Progress::Pending);
    }

    #[test]
    fn up_fails_fast_on_a_crash_with_the_exit_and_the_delay() {
        let mut p = program(false, vec![(Phase::Backoff, None, 3)]);
        p.instances[0].snapshot.last_exit = Some(ExitStatus::Code(2));
        p.instances[0].snapshot.backoff = Duration::from_millis(200);
        assert_eq!(
            progress(Target::Up, 3, &p, None),
            Progress::Failed("web:0 exited with exit code 2; restarting in 200ms".into())
        );
        let mut p = program(false, vec![(Phase::Failed, None, 3)]);
        p.instances[0].snapshot.reason = Some("dependency \"db\" failed".into());
        assert_eq!(
            progress(Target::Up, 3, &p, None),
            Progress::Failed("web:0 failed: dependency \"db\" failed".into())
        );
    }

    #[test]
    fn a_oneshot_is_up_when_it_completed() {
        let mut p = program(true, vec![(Phase::Exited, None, 1)]);
        p.instances[0].snapshot.last_exit_kind = Some(ExitKind::Success);
        assert_eq!(
            progress(Target::Up, 1, &p, None),
            Progress::Done("completed".into())
        );
        p.instances[0].snapshot.last_exit_kind = Some(ExitKind::Failure);
        assert!(matches!(
            progress(Target::Up, 1, &p, None),
            Progress::Failed(_)
        ));
    }

    #[test]
    fn one_addressed_instance_is_all_that_is_waited_for() {
        // web:0 never saw the action (ack 1 < 2); web:1 is down.
        let p = program(
            false,
            vec![(Phase::Running, Some(10), 1), (Phase::Stopped, None, 2)],
        );
        assert_eq!(progress(Target::Down, 2, &p, None), Progress::Pending);
        assert_eq!(
            progress(Target::Down, 2, &p, Some(1)),
            Progress::Done("stopped".into())
        );
        assert_eq!(progress(Target::Down, 2, &p, Some(0)), Progress::Pending);
    }

    #[test]
    fn down_means_no_process_left() {
        let p = program(false, vec![(Phase::Stopping, None, 2)]);
        assert_eq!(progress(Target::Down, 2, &p, None), Progress::Pending);
        let p = program(
            false,
            vec![(Phase::Stopped, None, 2), (Phase::Failed, None, 2)],
        );
        assert_eq!(
            progress(Target::Down, 2, &p, None),
            Progress::Done("stopped".into())
        );
    }
}

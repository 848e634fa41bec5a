use super::*;
use crate::backoff::BackoffConfig;
use crate::restart_policy::{ProgramKind, RestartPolicy};

const PID: i32 = 100;

fn policy(kind: ProgramKind, restart: RestartPolicy) -> Policy {
    Policy {
        kind,
        restart,
        success_codes: vec![0],
        start_seconds: Duration::from_secs(1),
        start_timeout: Duration::from_secs(60),
        backoff: BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: 0.0,
        },
        max_restarts: 3,
        restart_window: Duration::from_secs(60),
        stop_signal: Signal::SIGTERM,
        stop_timeout: Duration::from_secs(5),
        readiness: None,
        liveness: None,
        budgeted: false,
    }
}

fn service() -> Policy {
    policy(ProgramKind::Service, RestartPolicy::Always)
}

/// Drives an instance with a virtual clock and a fake launcher that hands
/// out increasing pids.
struct Rig {
    inst: Instance,
    now: Instant,
    next_pid: i32,
    spawn_fails: bool,
    log: Vec<Action>,
}

impl Rig {
    fn new(policy: Policy) -> Self {
        Self {
            inst: Instance::new(Arc::new(policy), 1),
            now: Instant::now(),
            next_pid: PID,
            spawn_fails: false,
            log: Vec::new(),
        }
    }

    /// Feeds an event and answers `Spawn` actions like the actor does.
    fn feed(&mut self, event: Event) -> Vec<Action> {
        let mut all = Vec::new();
        let mut queue = vec![event];
        while let Some(ev) = queue.pop() {
            let actions = self.inst.step(ev, self.now);
            for action in &actions {
                if *action == Action::Spawn {
                    if self.spawn_fails {
                        queue.push(Event::SpawnFailed {
                            error: "no such file".into(),
                        });
                    } else {
                        queue.push(Event::Spawned { pid: self.next_pid });
                        self.next_pid += 1;
                    }
                }
            }
            all.extend(actions);
        }
        self.log.extend(all.clone());
        all
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    /// Fires the most recent timer of `kind`, as the actor's send_after would.
    fn fire(&mut self, kind: TimerKind) -> Vec<Action> {
        let generation = self
            .log
            .iter()
            .rev()
            .find_map(|a| match a {
                Action::StartTimer {
                    kind: k,
                    generation,
                    ..
                } if *k == kind => Some(*generation),
                _ => None,
            })
            .expect("a timer of that kind was started");
        self.feed(Event::Timer { kind, generation })
    }

    fn last_timer(&self, kind: TimerKind) -> Option<Duration> {
        self.log.iter().rev().find_map(|a| match a {
            Action::StartTimer { kind: k, after, .. } if *k == kind => Some(*after),
            _ => None,
        })
    }

    fn exit(&mut self, status: ExitStatus) -> Vec<Action> {
        let pid = self.inst.pid().expect("running");
        self.feed(Event::Exited {
            pid,
            status,
            group_alive: false,
        })
    }

    fn phase(&self) -> Phase {
        self.inst.phase()
    }
}

fn notes(actions: &[Action]) -> Vec<&'static str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Emit(n) => Some(n.event_name()),
            _ => None,
        })
        .collect()
}

fn signals(actions: &[Action]) -> Vec<Signal> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SignalGroup(s) => Some(*s),
            _ => None,
        })
        .collect()
}

/// The transition table: (policy, exit status, run time) → phase after the
/// exit. One row per restart-policy decision.
#[test]
fn exit_outcome_table() {
    use ExitStatus::{Code, Signal as Sig};
    use ProgramKind::{Oneshot, Service};
    use RestartPolicy::{Always, Never, OnFailure};
    let rows: &[(ProgramKind, RestartPolicy, ExitStatus, Phase)] = &[
        (Service, Always, Code(0), Phase::Backoff),
        (Service, Always, Code(1), Phase::Backoff),
        (Service, Always, Sig(9), Phase::Backoff),
        (Service, OnFailure, Code(0), Phase::Exited),
        (Service, OnFailure, Code(3), Phase::Backoff),
        (Service, OnFailure, Sig(11), Phase::Backoff),
        (Service, Never, Code(0), Phase::Exited),
        (Service, Never, Code(1), Phase::Exited),
        (Oneshot, OnFailure, Code(0), Phase::Exited),
        (Oneshot, OnFailure, Code(1), Phase::Backoff),
        (Oneshot, Never, Code(0), Phase::Exited),
        (Oneshot, Never, Code(1), Phase::Failed),
        (Oneshot, Never, Sig(15), Phase::Failed),
    ];
    for (kind, restart, status, expected) in rows {
        let mut rig = Rig::new(policy(*kind, *restart));
        rig.feed(Event::Start);
        assert_eq!(rig.phase(), Phase::Starting);
        rig.advance(Duration::from_millis(10));
        rig.exit(*status);
        assert_eq!(rig.phase(), *expected, "{kind:?} {restart:?} {status:?}");
    }
}

/// The OOM check answers after the exit: only an unplanned SIGKILL of the
/// last exit's own process becomes `oom`, and the decision taken stands.
#[test]
fn an_oom_answer_reclassifies_only_the_last_unplanned_sigkill() {
    use ExitStatus::{Code, Signal as Sig};
    // (restart policy, exit, oom answer's pid is the exit's, kind after, phase after)
    let rows: &[(RestartPolicy, ExitStatus, bool, ExitKind, Phase)] = &[
        (
            RestartPolicy::Always,
            Sig(9),
            true,
            ExitKind::Oom,
            Phase::Backoff,
        ),
        (
            RestartPolicy::Never,
            Sig(9),
            true,
            ExitKind::Oom,
            Phase::Exited,
        ),
        (
            RestartPolicy::Always,
            Sig(9),
            false,
            ExitKind::Signal,
            Phase::Backoff,
        ),
        (
            RestartPolicy::Always,
            Sig(15),
            true,
            ExitKind::Signal,
            Phase::Backoff,
        ),
        (
            RestartPolicy::Always,
            Code(1),
            true,
            ExitKind::Failure,
            Phase::Backoff,
        ),
    ];
    for (restart, status, same_pid, kind, phase) in rows {
        let mut rig = Rig::new(policy(ProgramKind::Service, *restart));
        rig.feed(Event::Start);
        let pid = rig.inst.pid().unwrap();
        rig.exit(*status);
        let before = rig.inst.snapshot();
        let actions = rig.feed(Event::OomKilled {
            pid: if *same_pid { pid } else { pid + 7 },
        });
        assert!(actions.is_empty(), "{actions:?}");
        let after = rig.inst.snapshot();
        assert_eq!(
            after.last_exit_kind,
            Some(*kind),
            "{restart:?} {status:?} {same_pid}"
        );
        assert_eq!(after.phase, *phase);
        assert_eq!(after.phase, before.phase);
        assert_eq!(after.restarts, before.restarts);
    }

    // A SIGKILL kelpie sent after stop_timeout stays `killed`.
    let mut rig = Rig::new(service());
    rig.feed(Event::Start);
    let pid = rig.inst.pid().unwrap();
    rig.feed(Event::Stop);
    rig.fire(TimerKind::StopTimeout);
    rig.exit(Sig(9));
    rig.feed(Event::OomKilled { pid });
    assert_eq!(rig.inst.snapshot().last_exit_kind, Some(ExitKind::Killed));

    // The reason a failed oneshot shows names the OOM killer.
    let mut rig = Rig::new(policy(ProgramKind::Oneshot, RestartPolicy::Never));
    rig.feed(Event::Start);
    let pid = rig.inst.pid().unwrap();
    rig.exit(Sig(9));
    assert_eq!(rig.phase(), Phase::Failed);
    rig.feed(Event::OomKilled { pid });
    assert_eq!(
        rig.inst.snapshot().reason.as_deref(),
        Some("killed by the kernel OOM killer (signal KILL)")
    );
}

#[test]
fn success_codes_decide_success() {
    let mut p = policy(ProgramKind::Service, RestartPolicy::OnFailure);
    p.success_codes = vec![0, 3];
    let mut rig = Rig::new(p);
    rig.feed(Event::Start);
    rig.exit(ExitStatus::Code(3));
    assert_eq!(rig.phase(), Phase::Exited);
    assert_eq!(rig.inst.snapshot().last_exit_kind, Some(ExitKind::Success));
}

#[test]
fn start_seconds_marks_running_and_ready() {
    let mut rig = Rig::new(service());
    let actions = rig.feed(Event::Start);
    assert_eq!(notes(&actions), vec!["program_started"]);
    assert_eq!(
        rig.last_timer(TimerKind::StartSeconds),
        Some(Duration::from_secs(1))
    );
    assert!(!rig.inst.snapshot().ready);
    rig.advance(Duration::from_secs(1));
    let actions = rig.fire(TimerKind::StartSeconds);
    assert_eq!(notes(&actions), vec!["program_running", "program_ready"]);
    assert_eq!(rig.phase(), Phase::Running);
    assert!(rig.inst.snapshot().ready);
}

#[test]
fn backoff_grows_until_the_cap_then_resets_after_a_stable_run() {
    let mut p = service();
    p.max_restarts = 100;
    let mut rig = Rig::new(p);
    rig.feed(Event::Start);
    let mut delays = Vec::new();
    for _ in 0..6 {
        rig.advance(Duration::from_millis(50));
        rig.exit(ExitStatus::Code(1));
        delays.push(rig.last_timer(TimerKind::Backoff).expect("backoff timer"));
        rig.fire(TimerKind::Backoff);
        assert_eq!(rig.phase(), Phase::Starting);
    }
    let ms = Duration::from_millis;
    assert_eq!(
        delays,
        vec![ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
    );
    // A run longer than start_seconds resets the curve.
    rig.advance(Duration::from_secs(2));
    rig.exit(ExitStatus::Code(1));
    assert_eq!(rig.last_timer(TimerKind::Backoff), Some(ms(100)));
    assert_eq!(rig.inst.snapshot().restarts, 6);
}

#[test]
fn intensity_exceeded_fails_and_stops_spawning() {
    let mut rig = Rig::new(service()); // max_restarts = 3 per 60 s
    rig.feed(Event::Start);
    for _ in 0..3 {
        rig.exit(ExitStatus::Code(1));
        assert_eq!(rig.phase(), Phase::Backoff);
        rig.fire(TimerKind::Backoff);
    }
    let actions = rig.exit(ExitStatus::Code(1));
    assert_eq!(rig.phase(), Phase::Failed);
    assert!(notes(&actions).contains(&"program_failed"));
    assert!(!actions.contains(&Action::Spawn));
    let reason = rig.inst.snapshot().reason.expect("reason");
    assert!(reason.contains("restarted 3 times within 1m"), "{reason}");
    // Old timers do nothing.
    let spawns_before = rig.log.iter().filter(|a| **a == Action::Spawn).count();
    rig.feed(Event::Timer {
        kind: TimerKind::Backoff,
        generation: 0,
    });
    let spawns_after = rig.log.iter().filter(|a| **a == Action::Spawn).count();
    assert_eq!(spawns_before, spawns_after);
}

#[test]
fn intensity_window_slides() {
    let mut rig = Rig::new(service());
    rig.feed(Event::Start);
    for _ in 0..3 {
        rig.exit(ExitStatus::Code(1));
        rig.fire(TimerKind::Backoff);
    }
    rig.advance(Duration::from_secs(61));
    rig.exit(ExitStatus::Code(1));
    assert_eq!(
        rig.phase(),
        Phase::Backoff,
        "restarts older than the window are forgotten"
    );
}

#[test]
fn start_clears_failed_and_resets_backoff() {
    let mut p = service();
    p.max_restarts = 0;
    let mut rig = Rig::new(p);
    rig.feed(Event::Start);
    rig.exit(ExitStatus::Code(1));
    assert_eq!(rig.phase(), Phase::Failed);
    let actions = rig.feed(Event::Start);
    assert!(actions.contains(&Action::Spawn));
    assert_eq!(rig.phase(), Phase::Starting);
    assert_eq!(rig.inst.snapshot().reason, None);
}

#[test]
fn stop_signals_the_group_then_escalates() {
    let mut rig = Rig::new(service());
    rig.feed(Event::Start);
    let actions = rig.feed(Event::Stop);
    assert_eq!(rig.phase(), Phase::Stopping);
    assert_eq!(signals(&actions), vec![Signal::SIGTERM, Signal::SIGCONT]);
    assert_eq!(
        rig.last_timer(TimerKind::StopTimeout),
        Some(Duration::from_secs(5))
    );
    let actions = rig.fire(TimerKind::StopTimeout);
    assert_eq!(signals(&actions), vec![Signal::SIGKILL]);
    assert!(notes(&actions).contains(&"program_stop_timeout"));
    let actions = rig.exit(ExitStatus::Signal(9));
    assert!(notes(&actions).contains(&"program_stopped"));
    assert_eq!(rig.phase(), Phase::Stopped);
    assert_eq!(rig.inst.snapshot().last_exit_kind, Some(ExitKind::Killed));
}

#[test]
fn stop_waits_for_the_whole_group() {
    let mut rig = Rig::new(service());
    rig.feed(Event::Start);
    rig.feed(Event::Stop);
    let actions = rig.feed(Event::Exited {
        pid: PID,
        status: ExitStatus::Signal(15),
        group_alive: true,
    });
    assert_eq!(rig.phase(), Phase::Stopping, "members of the group remain");
    assert!(actions.contains(&Action::WatchGroup));
    // The deadline still applies to the leftovers.
    let actions = rig.fire(TimerKind::StopTimeout);
    assert_eq!(signals(&actions), vec![Signal::SIGKILL]);
    rig.feed(Event::GroupGone);
    assert_eq!(rig.phase(), Phase::Stopped);
}

#[test]
fn stop_is_sticky_across_a_crash() {
    let mut rig = Rig::new(service());
    rig.feed(Event::Start);
    rig.exit(ExitStatus::Code(1));
    assert_eq!(rig.phase(), Phase::Backoff);
    rig.feed(Event::Stop);
    assert_eq!(rig.phase(), Phase::Stopped);
    // The pending backoff timer is stale now.
    let actions = rig.fire(TimerKind::Backoff);
    assert!(actions.is_empty());
    assert_eq!(rig.phase(), Phase::Stopped);
}

#[test]
fn crash_with_leftover_children_cleans_up_before_restarting() {
    let mut rig = Rig::new(service());
    rig.feed(Event::Start);
    let actions = rig.feed(Event::Exited {
        pid: PID,
        status: ExitStatus::Code(1),
        group_alive: true,
    });
    assert_eq!(rig.phase(), Phase::Stopping);
    assert_eq!(signals(&actions), vec![Signal::SIGTERM, Signal::SIGCONT]);
    assert!(!actions.contains(&Action::Spawn));
    let actions = rig.feed(Event::GroupGone);
    assert_eq!(rig.phase(), Phase::Backoff);
    assert!(notes(&actions).contains(&"program_restart_scheduled"));
}

#[test]
fn stop_during_crash_cleanup_ends_stopped() {
    let mut rig = Rig::new(service());
    rig.feed(Event::Start);
    rig.feed(Event::Exited {
        pid: PID,
        status: ExitStatus::Code(1),
        group_alive: true,
    });
    rig.feed(Event::Stop);
    rig.feed(Event::GroupGone);
    assert_eq!(rig.phase(), Phase::Stopped);
}

#[test]
fn kill_skips_the_stop_signal() {
    let mut rig = Rig::new(service());
    rig.feed(Event::Start);
    let actions = rig.feed(Event::Kill);
    assert_eq!(signals(&actions), vec![Signal::SIGKILL]);
    rig.exit(ExitStatus::Signal(9));
    assert_eq!(rig.phase(), Phase::Stopped);
    // Kill during a graceful stop escalates at once.
    rig.feed(Event::Start);
    rig.feed(Event::Stop);
    let actions = rig.feed(Event::Kill);
    assert_eq!(signals(&actions), vec![Signal::SIGKILL]);
}

#[test]
fn spawn_failure_counts_as_a_failed_start() {
    let mut rig = Rig::new(service());
    rig.spawn_fails = true;
    let actions = rig.feed(Event::Start);
    assert!(notes(&actions).contains(&"program_spawn_failed"));
    assert_eq!(rig.phase(), Phase::Backoff);
    assert_eq!(rig.inst.snapshot().reason.as_deref(), Some("no such file"));
    for _ in 0..3 {
        rig.fire(TimerKind::Backoff);
    }
    assert_eq!(rig.phase(), Phase::Failed);
}

#[test]
fn stale_exits_are_ignored() {
    let mut rig = Rig::new(service());
    rig.feed(Event::Start);
    let actions = rig.feed(Event::Exited {
        pid: PID + 50,
        status: ExitStatus::Code(1),
        group_alive: false,
    });
    assert!(actions.is_empty());
    assert_eq!(rig.phase(), Phase::Starting);
}

#[test]
fn block_fails_an_instance_that_never_started() {
    let mut rig = Rig::new(service());
    let actions = rig.feed(Event::Block("dependency migrate failed".into()));
    assert_eq!(rig.phase(), Phase::Failed);
    assert_eq!(notes(&actions), vec!["program_failed"]);
    // A running instance is not affected.
    let mut rig = Rig::new(service());
    rig.feed(Event::Start);
    assert!(rig.feed(Event::Block("x".into())).is_empty());
}

#[test]
fn oneshot_success_emits_completed() {
    let mut rig = Rig::new(policy(ProgramKind::Oneshot, RestartPolicy::OnFailure));
    rig.feed(Event::Start);
    let actions = rig.exit(ExitStatus::Code(0));
    assert!(notes(&actions).contains(&"program_completed"));
    assert_eq!(rig.phase(), Phase::Exited);
}

#[test]
fn zero_initial_backoff_restarts_in_the_same_step() {
    let mut p = service();
    p.backoff.initial = Duration::ZERO;
    let mut rig = Rig::new(p);
    rig.feed(Event::Start);
    let actions = rig.exit(ExitStatus::Signal(9));
    assert!(actions.contains(&Action::Spawn));
    assert_eq!(rig.phase(), Phase::Starting);
    assert_eq!(rig.inst.snapshot().restarts, 1);
}

#[test]
fn start_during_stop_restarts_once_stopped() {
    let mut rig = Rig::new(service());
    rig.feed(Event::Start);
    rig.feed(Event::Stop);
    rig.feed(Event::Start);
    let actions = rig.exit(ExitStatus::Signal(15));
    assert!(actions.contains(&Action::Spawn));
    assert_eq!(rig.phase(), Phase::Starting);
}

#[test]
fn drain_prevents_restarts_but_keeps_running_processes() {
    let mut rig = Rig::new(service());
    rig.feed(Event::Start);
    let actions = rig.feed(Event::Drain);
    assert!(signals(&actions).is_empty(), "drain does not signal");
    assert_eq!(rig.phase(), Phase::Starting);
    rig.exit(ExitStatus::Code(1));
    assert_eq!(
        rig.phase(),
        Phase::Stopped,
        "a crash during shutdown is not restarted"
    );
    // An instance waiting in backoff is stopped at once.
    let mut rig = Rig::new(service());
    rig.feed(Event::Start);
    rig.exit(ExitStatus::Code(1));
    assert_eq!(rig.phase(), Phase::Backoff);
    rig.feed(Event::Drain);
    assert_eq!(rig.phase(), Phase::Stopped);
}

#[test]
fn sigkill_is_repeated_when_the_leader_exits_after_escalation() {
    let mut rig = Rig::new(service());
    rig.feed(Event::Start);
    rig.feed(Event::Stop);
    rig.fire(TimerKind::StopTimeout);
    let actions = rig.feed(Event::Exited {
        pid: PID,
        status: ExitStatus::Signal(9),
        group_alive: true,
    });
    assert_eq!(
        actions[1..3],
        [Action::WatchGroup, Action::SignalGroup(Signal::SIGKILL)]
    );
    assert!(
        matches!(
            actions[3],
            Action::StartTimer {
                kind: TimerKind::KillRecheck,
                ..
            }
        ),
        "{actions:?}"
    );
}

#[test]
fn a_killed_group_is_looked_at_again_with_doubling_delays_then_left_to_sigchld() {
    let mut rig = Rig::new(service());
    rig.feed(Event::Start);
    rig.feed(Event::Stop);
    rig.fire(TimerKind::StopTimeout);
    assert_eq!(
        rig.last_timer(TimerKind::KillRecheck),
        Some(Duration::from_millis(50))
    );
    let mut delays = Vec::new();
    let mut rechecks = 0;
    loop {
        let actions = rig.fire(TimerKind::KillRecheck);
        rechecks += actions
            .iter()
            .filter(|a| **a == Action::RecheckGroup)
            .count();
        match actions.iter().find_map(|a| match a {
            Action::StartTimer {
                kind: TimerKind::KillRecheck,
                after,
                ..
            } => Some(*after),
            _ => None,
        }) {
            Some(after) => delays.push(after.as_millis()),
            None => break,
        }
    }
    assert_eq!(rechecks, 8);
    assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 6400]);
    // Once the group is gone, a late recheck timer is stale.
    rig.feed(Event::Exited {
        pid: PID,
        status: ExitStatus::Signal(9),
        group_alive: false,
    });
    assert_eq!(rig.phase(), Phase::Stopped);
    assert!(rig.fire(TimerKind::KillRecheck).is_empty());
}

fn probed(success: u32, failure: u32) -> Policy {
    let mut p = service();
    p.readiness = Some(Thresholds { success, failure });
    p.liveness = Some(Thresholds {
        success: 1,
        failure: 3,
    });
    p
}

fn probe(rig: &mut Rig, role: ProbeRole, ok: bool) -> Vec<Action> {
    let run = rig.inst.snapshot().run;
    rig.feed(Event::Probe {
        role,
        run,
        ok,
        detail: if ok {
            String::new()
        } else {
            "connection refused".into()
        },
    })
}

/// Readiness follows the probe with its thresholds; the process keeps
/// running either way.
#[test]
fn readiness_table() {
    // (results fed in order, ready after each)
    let rows: &[(u32, u32, &[bool], &[bool])] = &[
        (1, 3, &[true], &[true]),
        (2, 3, &[true, true], &[false, true]),
        (
            2,
            3,
            &[true, false, true, true],
            &[false, false, false, true],
        ),
        (
            1,
            2,
            &[true, false, false, true],
            &[true, true, false, true],
        ),
        (1, 1, &[false, true, false], &[false, true, false]),
    ];
    for (success, failure, results, expected) in rows {
        let mut rig = Rig::new(probed(*success, *failure));
        rig.feed(Event::Start);
        let seen: Vec<bool> = results
            .iter()
            .map(|ok| {
                probe(&mut rig, ProbeRole::Readiness, *ok);
                rig.inst.snapshot().ready
            })
            .collect();
        assert_eq!(
            &seen, expected,
            "success {success} failure {failure} results {results:?}"
        );
        assert_eq!(
            rig.phase(),
            Phase::Starting,
            "readiness never stops the process"
        );
    }
}

#[test]
fn readiness_events_and_reason() {
    let mut rig = Rig::new(probed(1, 1));
    rig.feed(Event::Start);
    let actions = probe(&mut rig, ProbeRole::Readiness, false);
    assert_eq!(notes(&actions), vec!["probe_failed"]);
    assert_eq!(
        rig.inst.snapshot().reason.as_deref(),
        Some("readiness probe failed: connection refused")
    );
    let actions = probe(&mut rig, ProbeRole::Readiness, true);
    assert_eq!(notes(&actions), vec!["program_ready"]);
    assert_eq!(rig.inst.snapshot().reason, None);
    let actions = probe(&mut rig, ProbeRole::Readiness, false);
    assert_eq!(notes(&actions), vec!["probe_failed", "program_not_ready"]);
}

#[test]
fn without_a_readiness_probe_running_means_ready() {
    let mut rig = Rig::new(service());
    rig.feed(Event::Start);
    assert!(!rig.inst.snapshot().ready);
    let actions = rig.fire(TimerKind::StartSeconds);
    assert_eq!(notes(&actions), vec!["program_running", "program_ready"]);
    assert!(rig.inst.snapshot().ready);
}

#[test]
fn stale_probe_results_are_ignored() {
    let mut rig = Rig::new(probed(1, 1));
    rig.feed(Event::Start);
    let old_run = rig.inst.snapshot().run;
    rig.exit(ExitStatus::Code(1));
    rig.fire(TimerKind::Backoff);
    let actions = rig.feed(Event::Probe {
        role: ProbeRole::Readiness,
        run: old_run,
        ok: true,
        detail: String::new(),
    });
    assert!(actions.is_empty());
    assert!(!rig.inst.snapshot().ready);
}

#[test]
fn announcement_makes_ready_at_once() {
    let mut rig = Rig::new(probed(3, 3));
    rig.feed(Event::Start);
    let run = rig.inst.snapshot().run;
    let actions = rig.feed(Event::Announced { run });
    assert_eq!(notes(&actions), vec!["program_ready"]);
    assert!(rig.inst.snapshot().ready);
    rig.feed(Event::StatusText {
        run,
        text: "serving".into(),
    });
    assert_eq!(rig.inst.snapshot().status_text.as_deref(), Some("serving"));
}

/// failure_threshold consecutive liveness failures stop the instance and
/// restart it as a failure (backoff and intensity apply).
#[test]
fn liveness_failures_restart_the_instance() {
    let mut rig = Rig::new(probed(1, 3));
    rig.feed(Event::Start);
    probe(&mut rig, ProbeRole::Liveness, false);
    probe(&mut rig, ProbeRole::Liveness, true);
    probe(&mut rig, ProbeRole::Liveness, false);
    probe(&mut rig, ProbeRole::Liveness, false);
    assert_eq!(rig.phase(), Phase::Starting, "a success resets the streak");
    let actions = probe(&mut rig, ProbeRole::Liveness, false);
    assert!(notes(&actions).contains(&"program_liveness_failed"));
    assert_eq!(signals(&actions), vec![Signal::SIGTERM, Signal::SIGCONT]);
    assert_eq!(rig.phase(), Phase::Stopping);
    let actions = rig.exit(ExitStatus::Signal(15));
    assert!(notes(&actions).contains(&"program_restart_scheduled"));
    assert_eq!(rig.phase(), Phase::Backoff);
    assert!(rig
        .inst
        .snapshot()
        .reason
        .unwrap()
        .starts_with("liveness probe failed 3 times"));
    rig.fire(TimerKind::Backoff);
    assert_eq!(rig.inst.snapshot().restarts, 1);
}

#[test]
fn start_timeout_fails_a_never_ready_start() {
    let mut p = probed(1, 3);
    p.start_timeout = Duration::from_secs(5);
    let mut rig = Rig::new(p);
    rig.feed(Event::Start);
    assert_eq!(
        rig.last_timer(TimerKind::StartTimeout),
        Some(Duration::from_secs(5))
    );
    rig.fire(TimerKind::StartSeconds);
    assert_eq!(rig.phase(), Phase::Running, "running, but not ready");
    rig.advance(Duration::from_secs(5));
    let actions = rig.fire(TimerKind::StartTimeout);
    assert!(notes(&actions).contains(&"program_start_timeout"));
    assert_eq!(rig.phase(), Phase::Stopping);
    rig.exit(ExitStatus::Signal(15));
    assert_eq!(rig.phase(), Phase::Backoff);
    // A start that became ready in time is left alone.
    let mut rig = Rig::new(probed(1, 3));
    rig.feed(Event::Start);
    probe(&mut rig, ProbeRole::Readiness, true);
    let actions = rig.fire(TimerKind::StartTimeout);
    assert!(actions.is_empty());
}

#[test]
fn a_budgeted_restart_waits_for_its_grant() {
    let mut rig = Rig::new(Policy {
        budgeted: true,
        ..service()
    });
    rig.feed(Event::Start);
    rig.advance(Duration::from_millis(10));
    rig.exit(ExitStatus::Code(1));
    assert_eq!(rig.phase(), Phase::Backoff);
    // The backoff is over: ask, and stay in backoff until granted.
    let asked = rig.fire(TimerKind::Backoff);
    assert_eq!(asked, vec![Action::AskRestart]);
    assert_eq!(rig.phase(), Phase::Backoff);
    rig.feed(Event::BudgetExhausted);
    assert_eq!(
        rig.inst.snapshot().reason.as_deref(),
        Some("restart budget exhausted")
    );
    let granted = rig.feed(Event::RestartGranted);
    assert!(granted.contains(&Action::Spawn));
    assert_eq!(rig.phase(), Phase::Starting);
    assert_eq!(rig.inst.snapshot().restarts, 1);
    // A late second grant is moot.
    let again = rig.feed(Event::RestartGranted);
    assert!(again.is_empty());
}

#[test]
fn a_grant_after_a_stop_starts_nothing() {
    let mut rig = Rig::new(Policy {
        budgeted: true,
        ..service()
    });
    rig.feed(Event::Start);
    rig.exit(ExitStatus::Code(1));
    rig.fire(TimerKind::Backoff);
    rig.feed(Event::Stop);
    assert_eq!(rig.phase(), Phase::Stopped);
    assert!(rig.feed(Event::RestartGranted).is_empty());
    assert_eq!(rig.phase(), Phase::Stopped);
}

#[test]
fn crashes_count_unplanned_exits_only() {
    let mut rig = Rig::new(service());
    rig.feed(Event::Start);
    rig.exit(ExitStatus::Code(1));
    assert_eq!(rig.inst.snapshot().crashes, 1);
    rig.fire(TimerKind::Backoff);
    // A requested stop is not a crash.
    rig.feed(Event::Stop);
    rig.exit(ExitStatus::Signal(15));
    assert_eq!(rig.inst.snapshot().crashes, 1);
    // A oneshot that completes is not a crash either.
    let mut job = Rig::new(policy(ProgramKind::Oneshot, RestartPolicy::OnFailure));
    job.feed(Event::Start);
    job.exit(ExitStatus::Code(0));
    assert_eq!(job.inst.snapshot().crashes, 0);
}

#[test]
fn relaunch_keeps_intensity_and_never_revives_failed() {
    let mut rig = Rig::new(Policy {
        max_restarts: 1,
        ..service()
    });
    rig.feed(Event::Start);
    rig.exit(ExitStatus::Code(1));
    assert_eq!(rig.phase(), Phase::Backoff);
    // A group restart stops it and starts it again: a restart, with the
    // intensity window kept.
    rig.feed(Event::Stop);
    rig.feed(Event::Relaunch);
    assert_eq!(rig.phase(), Phase::Starting);
    assert_eq!(rig.inst.snapshot().restarts, 1);
    rig.exit(ExitStatus::Code(1));
    assert_eq!(
        rig.phase(),
        Phase::Failed,
        "the second crash exceeds max_restarts = 1"
    );
    assert!(rig.feed(Event::Relaunch).is_empty());
    assert_eq!(rig.phase(), Phase::Failed);
    assert!(!rig.inst.snapshot().want_up);
}

fn sweeps(actions: &[Action]) -> Vec<Signal> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SweepEscaped(signal) => Some(*signal),
            _ => None,
        })
        .collect()
}

#[test]
fn a_run_is_swept_once_when_it_ends() {
    let mut rig = Rig::new(service());
    // Never started: nothing can have escaped.
    assert!(sweeps(&rig.feed(Event::Stop)).is_empty());
    rig.feed(Event::Start);
    // A crash ends the run: swept on the way into backoff.
    let actions = rig.exit(ExitStatus::Code(1));
    assert_eq!(rig.phase(), Phase::Backoff);
    assert_eq!(sweeps(&actions), [Signal::SIGTERM], "{actions:?}");
    // The same run is not swept twice.
    let actions = rig.feed(Event::Stop);
    assert_eq!(rig.phase(), Phase::Stopped);
    assert!(sweeps(&actions).is_empty(), "{actions:?}");
    assert!(sweeps(&rig.feed(Event::Block("dependency failed".into()))).is_empty());
    assert_eq!(rig.phase(), Phase::Failed);

    // A restart (stop, then start) ends the run too: swept before the
    // next spawn, so the lookup cannot see the new run's daemons.
    let mut rig = Rig::new(service());
    rig.feed(Event::Start);
    rig.feed(Event::Stop);
    rig.feed(Event::Start);
    let actions = rig.exit(ExitStatus::Signal(15));
    let sweep = actions
        .iter()
        .position(|a| matches!(a, Action::SweepEscaped(_)))
        .expect("a sweep");
    let spawn = actions
        .iter()
        .position(|a| *a == Action::Spawn)
        .expect("a spawn");
    assert!(sweep < spawn, "{actions:?}");

    // A oneshot that completes is swept with its own stop signal.
    let mut rig = Rig::new(Policy {
        stop_signal: Signal::SIGINT,
        ..policy(ProgramKind::Oneshot, RestartPolicy::Never)
    });
    rig.feed(Event::Start);
    let actions = rig.exit(ExitStatus::Code(0));
    assert_eq!(rig.phase(), Phase::Exited);
    assert_eq!(sweeps(&actions), [Signal::SIGINT]);
}

#[test]
fn no_escaped_daemon_found_means_no_kill_timer() {
    let mut rig = Rig::new(service());
    rig.feed(Event::Start);
    rig.feed(Event::Stop);
    rig.exit(ExitStatus::Signal(15));
    assert!(rig
        .feed(Event::EscapedSignalled { pids: Vec::new() })
        .is_empty());
}

#[test]
fn the_sweeps_sigkill_survives_a_restart() {
    let mut rig = Rig::new(service());
    rig.feed(Event::Start);
    rig.feed(Event::Stop);
    let actions = rig.exit(ExitStatus::Signal(15));
    assert_eq!(sweeps(&actions), [Signal::SIGTERM]);
    let actions = rig.feed(Event::EscapedSignalled { pids: vec![7, 8] });
    let [Action::StartTimer {
        kind: TimerKind::SweepKill,
        after,
        generation: seq,
    }] = actions[..]
    else {
        panic!("expected one sweep_kill timer, got {actions:?}");
    };
    assert_eq!(after, Duration::from_secs(5), "stop_timeout");
    // Started again before the SIGKILL is due: a new generation, which
    // makes every timer of the stopped phase stale, but not this one.
    let stopped_generation = rig.inst.generation();
    rig.feed(Event::Start);
    assert_eq!(rig.phase(), Phase::Starting);
    assert!(!rig
        .inst
        .timer_is_live(TimerKind::StopTimeout, stopped_generation));
    assert!(rig.inst.timer_is_live(TimerKind::SweepKill, seq));
    assert_eq!(
        rig.feed(Event::Timer {
            kind: TimerKind::SweepKill,
            generation: seq,
        }),
        [Action::KillEscaped { pids: vec![7, 8] }]
    );
    assert!(!rig.inst.timer_is_live(TimerKind::SweepKill, seq));
    // Once done, the same timer again is stale.
    assert!(rig
        .feed(Event::Timer {
            kind: TimerKind::SweepKill,
            generation: seq,
        })
        .is_empty());
    assert_eq!(rig.phase(), Phase::Starting);
}

#[test]
fn overlapping_sweeps_each_kill_their_own_daemons() {
    let mut rig = Rig::new(service());
    let mut seqs = Vec::new();
    for pids in [vec![7], vec![7, 9]] {
        rig.feed(Event::Start);
        rig.feed(Event::Stop);
        let actions = rig.exit(ExitStatus::Signal(15));
        assert_eq!(sweeps(&actions), [Signal::SIGTERM]);
        match rig.feed(Event::EscapedSignalled { pids })[..] {
            [Action::StartTimer { generation, .. }] => seqs.push(generation),
            ref other => panic!("expected a sweep_kill timer, got {other:?}"),
        }
    }
    assert_ne!(seqs[0], seqs[1]);
    let kill = |rig: &mut Rig, seq| {
        rig.feed(Event::Timer {
            kind: TimerKind::SweepKill,
            generation: seq,
        })
    };
    assert_eq!(
        kill(&mut rig, seqs[0]),
        [Action::KillEscaped { pids: vec![7] }]
    );
    assert_eq!(
        kill(&mut rig, seqs[1]),
        [Action::KillEscaped { pids: vec![7, 9] }]
    );
}

#[test]
fn probes_live_from_the_spawn_until_the_process_goes_or_is_stopped() {
    let probes = |actions: &[Action]| -> Vec<Action> {
        actions
            .iter()
            .filter(|a| matches!(a, Action::StartProbes { .. } | Action::StopProbes))
            .cloned()
            .collect()
    };
    // Without a probe configured there is nothing to start.
    let mut rig = Rig::new(service());
    assert_eq!(probes(&rig.feed(Event::Start)), []);
    assert_eq!(probes(&rig.feed(Event::Stop)), []);

    let mut rig = Rig::new(probed(1, 1));
    assert_eq!(
        probes(&rig.feed(Event::Start)),
        [Action::StartProbes { run: 1 }]
    );
    // A crash ends them; the restart starts them for its own run.
    assert_eq!(probes(&rig.exit(ExitStatus::Code(1))), [Action::StopProbes]);
    rig.fire(TimerKind::Backoff);
    assert_eq!(rig.inst.snapshot().run, 2);
    assert!(rig.log.contains(&Action::StartProbes { run: 2 }));
    // A stop ends them as it begins, not when the group is gone.
    assert_eq!(probes(&rig.feed(Event::Stop)), [Action::StopProbes]);
    assert_eq!(probes(&rig.exit(ExitStatus::Signal(15))), []);
}

#[test]
fn a_backoff_says_when_it_ends() {
    let mut rig = Rig::new(service());
    rig.feed(Event::Start);
    rig.advance(Duration::from_millis(50));
    let crashed_at = rig.now;
    rig.exit(ExitStatus::Code(1));
    let delay = rig.last_timer(TimerKind::Backoff).expect("backoff timer");
    let snapshot = rig.inst.snapshot();
    assert_eq!(snapshot.phase, Phase::Backoff);
    // The end is fixed when the backoff begins, so what is left shrinks as
    // time passes (the status shows the time left, not the delay).
    assert_eq!(snapshot.backoff_until, Some(crashed_at + delay));
    assert_eq!(snapshot.backoff, delay);
    rig.fire(TimerKind::Backoff);
    assert_eq!(
        rig.inst.snapshot().backoff_until,
        None,
        "no backoff, no end"
    );
}

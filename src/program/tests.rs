//! The Program actor on tokio's paused clock, with a fake launcher: real
//! ractor messages and `send_after` timers, no processes. Every launcher
//! call is recorded with the (virtual) time it happened, so a test reads
//! as the exact sequence of what the actor did to the OS and when; the test
//! delivers exits itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::mpsc;

use super::*;

use crate::reaper::{OnExit, OnGroupGone};
use crate::report::InstanceEvent;
use crate::spawn::Spawned;

/// How long a test waits, in virtual time, for what it expects next. With
/// the clock paused this costs nothing; a missing call fails at once with
/// its name.
const PATIENCE: Duration = Duration::from_secs(3600);

/// What the actor asked the launcher to do.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Launch { pid: i32 },
    SignalGroup { pgid: i32, signal: Signal },
    WatchGroup { pgid: i32 },
    Recheck,
    SignalEscaped { pid: i32, signal: Signal },
}

#[derive(Default)]
struct Processes {
    next_pid: i32,
    /// The `KELPIE_RUN_ID` of the last launch.
    run_id: String,
    exits: HashMap<i32, OnExit>,
    watched: HashMap<i32, OnGroupGone>,
    /// Escaped daemons (they ignore the stop signal) and the run-id
    /// variable in their environment.
    escaped: Vec<(i32, String)>,
    /// What the kernel says about a SIGKILL nobody at kelpie sent.
    oom: Option<crate::exit_history::Oom>,
}

struct FakeLauncher {
    processes: Mutex<Processes>,
    calls: mpsc::UnboundedSender<(Instant, Call)>,
}

impl FakeLauncher {
    fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<(Instant, Call)>) {
        let (calls, rx) = mpsc::unbounded_channel();
        let fake = Self {
            processes: Mutex::new(Processes {
                next_pid: 1000,
                ..Processes::default()
            }),
            calls,
        };
        (Arc::new(fake), rx)
    }

    fn processes(&self) -> std::sync::MutexGuard<'_, Processes> {
        self.processes.lock().expect("fake launcher lock")
    }

    fn record(&self, call: Call) {
        // The test may be over (the actor's state is dropped at the end).
        let _ = self.calls.send((Instant::now(), call));
    }

    /// The leader `pid` exits, as the reaper would report it.
    fn exit(&self, pid: i32, status: ExitStatus, group_alive: bool) {
        let on_exit = self
            .processes()
            .exits
            .remove(&pid)
            .unwrap_or_else(|| panic!("pid {pid} is not a running leader"));
        on_exit(pid, status, group_alive);
    }

    /// A daemon of the last launched run leaves its process group.
    fn escape(&self, pid: i32) {
        let mut processes = self.processes();
        let variable = format!("{}={}", process::RUN_ID_VARIABLE, processes.run_id);
        processes.escaped.push((pid, variable));
    }
}

impl Launcher for FakeLauncher {
    fn launch(&self, spec: LaunchSpec<'_>, on_exit: OnExit) -> Result<Spawned, String> {
        let pid = {
            let mut processes = self.processes();
            let pid = processes.next_pid;
            processes.next_pid += 1;
            processes.run_id = spec.run_id.to_string();
            processes.exits.insert(pid, on_exit);
            pid
        };
        self.record(Call::Launch { pid });
        Ok(Spawned {
            pid,
            stdout: None,
            stderr: None,
        })
    }

    fn signal_group(&self, pgid: i32, signal: Signal) -> bool {
        self.record(Call::SignalGroup { pgid, signal });
        true
    }

    fn watch_group(&self, pgid: i32, on_gone: OnGroupGone) {
        self.processes().watched.insert(pgid, on_gone);
        self.record(Call::WatchGroup { pgid });
    }

    fn recheck(&self) {
        self.record(Call::Recheck);
    }

    fn escaped_with(&self, variable: &str) -> Vec<i32> {
        let processes = self.processes();
        processes
            .escaped
            .iter()
            .filter(|(_, v)| v == variable)
            .map(|(pid, _)| *pid)
            .collect()
    }

    fn signal_escaped(&self, pid: i32, signal: Signal) {
        if signal == Signal::SIGKILL {
            self.processes().escaped.retain(|(p, _)| *p != pid);
        }
        self.record(Call::SignalEscaped { pid, signal });
    }

    fn check_oom(&self, _pid: i32, _ran: Duration, answer: crate::exit_history::oom::OnOom) {
        let oom = self.processes().oom.clone();
        answer(oom);
    }
}

/// One instance actor of program `web` (configured by `extra` TOML lines),
/// its launcher calls and its reports.
struct Rig {
    fake: Arc<FakeLauncher>,
    actor: ActorRef<ProgramMsg>,
    calls: mpsc::UnboundedReceiver<(Instant, Call)>,
    reports: mpsc::UnboundedReceiver<InstanceReport>,
    output: Arc<ProgramOutput>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Rig {
    async fn new(extra: &str) -> Self {
        Self::with_policy(extra, |_| {}).await
    }

    /// A rig whose policy `adjust` changes (what the fleet core decides,
    /// such as `budgeted`).
    async fn with_policy(extra: &str, adjust: impl FnOnce(&mut Policy)) -> Self {
        let toml = format!(
            "[program.web]\ncommand = [\"sleep\", \"1000\"]\nlog = {{ mode = \"discard\" }}\n{extra}\n"
        );
        let config = crate::config::valid_for_test(&toml);
        let config = config.programs[0].clone();
        let metrics = Arc::new(crate::metrics::Metrics::new().expect("metrics"));
        let (relay, _) =
            crate::output::Relay::start(crate::logging::RelayFormat::Text).expect("relay");
        let (report, reports) = mpsc::unbounded_channel();
        let mut policy = Policy::from(&*config);
        adjust(&mut policy);
        let output = Arc::new(ProgramOutput::new(&config, &relay, &metrics));
        let args = ProgramArgs {
            policy: Arc::new(policy),
            output: output.clone(),
            config,
            incarnation: 1,
            index: 0,
            slot: 0,
            reaper: Reaper::new(),
            identity: None,
            reports: Arc::new(move |r| {
                let _ = report.send(r);
            }),
            pumps: PumpTracker::new(),
            metrics: metrics.clone(),
            cgroups: None,
        };
        let (fake, calls) = FakeLauncher::new();
        let (actor, _) = Actor::spawn(None, ProgramActor::with_launcher(fake.clone()), args)
            .await
            .expect("actor spawned");
        Self {
            fake,
            actor,
            calls,
            reports,
            output,
            metrics,
        }
    }

    /// The newest exit in the program's crash history.
    fn newest_exit(&self) -> crate::exit_history::ExitRecord {
        let exits = self.output.exits();
        exits.into_iter().next().expect("an exit in the history")
    }

    fn send(&self, message: ProgramMsg) {
        self.actor.cast(message).expect("actor alive");
    }

    /// The next launcher call must be `want`; returns when it happened.
    async fn expect(&mut self, want: Call) -> Instant {
        let next = tokio::time::timeout(PATIENCE, self.calls.recv()).await;
        let Ok(Some((at, call))) = next else {
            panic!("the actor never made the launcher call {want:?}");
        };
        assert_eq!(call, want, "launcher calls out of order");
        at
    }

    /// Reads reports until one satisfies `pred`.
    async fn report(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&Snapshot, &[InstanceEvent]) -> bool,
    ) -> Snapshot {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.reports.recv()).await;
            let Ok(Some(report)) = next else {
                panic!("no report of {what}");
            };
            if let InstanceReport::Changed { status, events, .. } = report {
                if pred(&status.snapshot, &events) {
                    return status.snapshot;
                }
            }
        }
    }

    /// Nothing more happens within `PATIENCE` of virtual time.
    async fn quiet(&mut self) {
        tokio::time::sleep(PATIENCE).await;
        if let Ok((at, call)) = self.calls.try_recv() {
            panic!("unexpected launcher call {call:?} at {at:?}");
        }
    }
}

/// Asserts that `later` came exactly `delay` after `earlier`. The paused
/// clock only moves to the next timer's deadline, so virtual times are
/// exact.
fn after(earlier: Instant, later: Instant, delay: Duration, what: &str) {
    assert_eq!(later.duration_since(earlier), delay, "{what}");
}

#[tokio::test(start_paused = true)]
async fn a_crash_restarts_after_the_backoff_delay() {
    let mut rig = Rig::new(
        "backoff = { initial = \"2s\", max = \"1m\", multiplier = 3.0, jitter = 0.0 }\n\
         start_seconds = \"10s\"",
    )
    .await;
    rig.send(ProgramMsg::Start);
    rig.expect(Call::Launch { pid: 1000 }).await;
    // Two crashes before start_seconds: the second delay is the first
    // times the multiplier.
    for (pid, delay) in [(1000, 2), (1001, 6)] {
        let delay = Duration::from_secs(delay);
        let crashed = Instant::now();
        rig.fake.exit(pid, ExitStatus::Code(1), false);
        let backoff = rig
            .report("backoff", |s, _| s.phase == Phase::Backoff)
            .await;
        assert_eq!(backoff.backoff, delay);
        let restarted = rig.expect(Call::Launch { pid: pid + 1 }).await;
        after(crashed, restarted, delay, "restart");
    }
}

#[tokio::test(start_paused = true)]
async fn a_stop_signals_then_kills_after_stop_timeout() {
    let mut rig = Rig::new("stop_signal = \"SIGINT\"\nstop_timeout = \"3s\"").await;
    rig.send(ProgramMsg::Start);
    rig.expect(Call::Launch { pid: 1000 }).await;
    rig.send(ProgramMsg::Stop);
    let stopping = rig
        .expect(Call::SignalGroup {
            pgid: 1000,
            signal: Signal::SIGINT,
        })
        .await;
    let continued = rig
        .expect(Call::SignalGroup {
            pgid: 1000,
            signal: Signal::SIGCONT,
        })
        .await;
    assert_eq!(continued, stopping);
    let killed = rig
        .expect(Call::SignalGroup {
            pgid: 1000,
            signal: Signal::SIGKILL,
        })
        .await;
    after(stopping, killed, Duration::from_secs(3), "SIGKILL");
    rig.fake.exit(1000, ExitStatus::Signal(9), false);
    let stopped = rig
        .report("stopped", |s, _| s.phase == Phase::Stopped)
        .await;
    assert_eq!(stopped.last_exit_kind, Some(crate::state::ExitKind::Killed));
    // The group is gone: no recheck, no restart.
    rig.quiet().await;
}

#[tokio::test(start_paused = true)]
async fn the_sweeps_sigkill_comes_after_stop_timeout_across_a_restart() {
    let mut rig = Rig::new("restart = \"on-failure\"\nstop_timeout = \"3s\"").await;
    rig.send(ProgramMsg::Start);
    rig.expect(Call::Launch { pid: 1000 }).await;
    rig.fake.escape(4242);
    rig.fake.exit(1000, ExitStatus::Code(0), false);
    let term = rig
        .expect(Call::SignalEscaped {
            pid: 4242,
            signal: Signal::SIGTERM,
        })
        .await;
    rig.expect(Call::SignalEscaped {
        pid: 4242,
        signal: Signal::SIGCONT,
    })
    .await;
    // Started again before the SIGKILL is due: the new run's own daemon is
    // no part of the earlier sweep.
    rig.send(ProgramMsg::Start);
    rig.expect(Call::Launch { pid: 1001 }).await;
    rig.fake.escape(4343);
    let kill = rig
        .expect(Call::SignalEscaped {
            pid: 4242,
            signal: Signal::SIGKILL,
        })
        .await;
    after(term, kill, Duration::from_secs(3), "the sweep's SIGKILL");
    rig.quiet().await;
}

#[tokio::test(start_paused = true)]
async fn too_many_restarts_report_failed() {
    let mut rig = Rig::new(
        "max_restarts = 1\nrestart_window = \"1m\"\n\
         backoff = { initial = \"1s\", max = \"1s\", jitter = 0.0 }",
    )
    .await;
    rig.send(ProgramMsg::Start);
    rig.expect(Call::Launch { pid: 1000 }).await;
    rig.fake.exit(1000, ExitStatus::Code(1), false);
    rig.expect(Call::Launch { pid: 1001 }).await;
    rig.fake.exit(1001, ExitStatus::Code(1), false);
    let failed = rig
        .report("failed", |s, events| {
            s.phase == Phase::Failed && events.contains(&InstanceEvent::Failed)
        })
        .await;
    assert_eq!(failed.restarts, 1);
    assert_eq!(failed.crashes, 2);
    let reason = failed.reason.unwrap_or_default();
    assert!(
        reason.contains("restarted 1 times within 1m; giving up"),
        "{reason}"
    );
    rig.quiet().await;
}

#[tokio::test(start_paused = true)]
async fn the_history_records_each_exit_with_the_decision_after_it() {
    use crate::exit_history::Decision;
    let mut rig = Rig::new(
        "max_restarts = 1\nrestart_window = \"1m\"\n\
         backoff = { initial = \"2s\", max = \"2s\", jitter = 0.0 }",
    )
    .await;
    rig.send(ProgramMsg::Start);
    rig.expect(Call::Launch { pid: 1000 }).await;
    rig.fake.exit(1000, ExitStatus::Signal(11), false);
    rig.report("backoff", |s, _| s.phase == Phase::Backoff)
        .await;
    let first = rig.newest_exit();
    assert_eq!((first.pid, first.status), (1000, ExitStatus::Signal(11)));
    assert!(!first.by_kelpie && first.oom.is_none());
    assert_eq!(
        first.decision,
        Decision::Restart {
            delay: Duration::from_secs(2)
        }
    );
    rig.expect(Call::Launch { pid: 1001 }).await;
    rig.fake.exit(1001, ExitStatus::Code(3), false);
    rig.report("failed", |s, _| s.phase == Phase::Failed).await;
    let last = rig.newest_exit();
    assert_eq!((last.pid, last.status), (1001, ExitStatus::Code(3)));
    let Decision::Failed { reason } = &last.decision else {
        panic!("not failed: {last:?}");
    };
    assert!(reason.contains("giving up"), "{reason}");
    assert_eq!(rig.output.exits().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_stop_is_recorded_as_kelpies_doing_and_a_restart_as_started_again() {
    use crate::exit_history::Decision;
    let mut rig = Rig::new("stop_timeout = \"3s\"").await;
    rig.send(ProgramMsg::Start);
    rig.expect(Call::Launch { pid: 1000 }).await;
    // `kelpie restart`: a stop, then a start while stopping.
    rig.send(ProgramMsg::Stop);
    rig.send(ProgramMsg::Start);
    for signal in [Signal::SIGTERM, Signal::SIGCONT] {
        rig.expect(Call::SignalGroup { pgid: 1000, signal }).await;
    }
    rig.fake.exit(1000, ExitStatus::Signal(15), false);
    rig.expect(Call::Launch { pid: 1001 }).await;
    let restarted = rig.newest_exit();
    assert!(restarted.by_kelpie);
    assert_eq!(restarted.decision, Decision::Restarted);
    // `kelpie stop` that needs a SIGKILL after stop_timeout.
    rig.send(ProgramMsg::Stop);
    for signal in [Signal::SIGTERM, Signal::SIGCONT, Signal::SIGKILL] {
        rig.expect(Call::SignalGroup { pgid: 1001, signal }).await;
    }
    rig.fake.exit(1001, ExitStatus::Signal(9), false);
    rig.report("stopped", |s, _| s.phase == Phase::Stopped)
        .await;
    let stopped = rig.newest_exit();
    assert_eq!(stopped.kind, crate::state::ExitKind::Killed);
    assert!(stopped.by_kelpie && stopped.kelpie_reason.is_none());
    assert_eq!(stopped.decision, Decision::Stopped);
    // A SIGKILL kelpie sent is never put to the kernel as an OOM question.
    assert!(stopped.oom.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_restart_that_waits_for_the_budget_says_so() {
    use crate::exit_history::Decision;
    let mut rig = Rig::with_policy(
        "backoff = { initial = \"1s\", max = \"1s\", jitter = 0.0 }",
        |policy| policy.budgeted = true,
    )
    .await;
    rig.send(ProgramMsg::Start);
    rig.expect(Call::Launch { pid: 1000 }).await;
    rig.fake.exit(1000, ExitStatus::Code(1), false);
    rig.report("backoff", |s, _| s.phase == Phase::Backoff)
        .await;
    rig.send(ProgramMsg::BudgetExhausted);
    rig.report("waiting for the budget", |s, _| {
        s.reason.as_deref() == Some("restart budget exhausted")
    })
    .await;
    assert_eq!(
        rig.newest_exit().decision,
        Decision::BudgetWait {
            delay: Duration::from_secs(1)
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_sigkill_kelpie_did_not_send_is_checked_for_the_oom_killer() {
    use crate::exit_history::{Oom, OomSource};
    let mut rig = Rig::new("restart = \"never\"").await;
    let oom = Oom {
        source: OomSource::KernelLog,
        memcg: Some("/batch".into()),
    };
    rig.fake.processes().oom = Some(oom.clone());
    rig.send(ProgramMsg::Start);
    rig.expect(Call::Launch { pid: 1000 }).await;
    rig.fake.exit(1000, ExitStatus::Signal(9), false);
    rig.report("exited", |s, _| s.phase == Phase::Exited).await;
    assert_eq!(
        rig.newest_exit().decision,
        crate::exit_history::Decision::Exited
    );
    // The answer goes straight into the history, without the actor.
    let checked = rig.newest_exit().oom;
    assert_eq!(checked, Some(oom), "the OOM check never answered");
    // Counted once, as `oom` (success, failure, signal, killed, oom), and
    // the status says so.
    assert_eq!(rig.metrics.exits_of("web"), [0, 0, 0, 0, 1]);
    rig.report("last exit oom", |s, _| {
        s.last_exit_kind == Some(crate::state::ExitKind::Oom)
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_sigkill_that_was_no_oom_kill_counts_as_a_signal() {
    let mut rig = Rig::new("restart = \"never\"").await;
    rig.fake.processes().oom = None;
    rig.send(ProgramMsg::Start);
    rig.expect(Call::Launch { pid: 1000 }).await;
    rig.fake.exit(1000, ExitStatus::Signal(9), false);
    let exited = rig.report("exited", |s, _| s.phase == Phase::Exited).await;
    assert_eq!(rig.metrics.exits_of("web"), [0, 0, 1, 0, 0]);
    assert_eq!(exited.last_exit_kind, Some(crate::state::ExitKind::Signal));
}

#[tokio::test(start_paused = true)]
async fn an_end_kelpie_chose_on_its_own_carries_its_reason() {
    use crate::exit_history::Decision;
    // Not running within start_timeout (start_seconds is longer): kelpie
    // stops it and restarts it, as for a crash.
    let mut rig = Rig::new(
        "start_seconds = \"10s\"\nstart_timeout = \"5s\"\n\
         backoff = { initial = \"1s\", max = \"1s\", jitter = 0.0 }",
    )
    .await;
    rig.send(ProgramMsg::Start);
    rig.expect(Call::Launch { pid: 1000 }).await;
    for signal in [Signal::SIGTERM, Signal::SIGCONT] {
        rig.expect(Call::SignalGroup { pgid: 1000, signal }).await;
    }
    rig.fake.exit(1000, ExitStatus::Signal(15), false);
    rig.report("backoff", |s, _| s.phase == Phase::Backoff)
        .await;
    let exit = rig.newest_exit();
    assert!(exit.by_kelpie);
    let reason = exit.kelpie_reason.unwrap_or_default();
    assert!(reason.contains("start_timeout"), "{reason}");
    assert_eq!(
        exit.decision,
        Decision::Restart {
            delay: Duration::from_secs(1)
        }
    );
    // The next run's reason starts empty: its own end was not kelpie's.
    rig.expect(Call::Launch { pid: 1001 }).await;
    rig.fake.exit(1001, ExitStatus::Code(1), false);
    rig.report("backoff again", |s, _| s.phase == Phase::Backoff)
        .await;
    let crash = rig.newest_exit();
    assert!(!crash.by_kelpie && crash.kelpie_reason.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_relayed_signal_that_kills_is_kelpies_doing() {
    let mut rig = Rig::new("backoff = { initial = \"1s\", max = \"1s\", jitter = 0.0 }").await;
    rig.fake.processes().oom = Some(crate::exit_history::Oom {
        source: crate::exit_history::OomSource::KernelLog,
        memcg: None,
    });
    rig.send(ProgramMsg::Start);
    rig.expect(Call::Launch { pid: 1000 }).await;
    rig.send(ProgramMsg::Signal(Signal::SIGKILL));
    rig.expect(Call::SignalGroup {
        pgid: 1000,
        signal: Signal::SIGKILL,
    })
    .await;
    rig.fake.exit(1000, ExitStatus::Signal(9), false);
    rig.report("backoff", |s, _| s.phase == Phase::Backoff)
        .await;
    let exit = rig.newest_exit();
    assert!(exit.by_kelpie);
    let reason = exit.kelpie_reason.unwrap_or_default();
    assert!(reason.contains("SIGKILL relayed"), "{reason}");
    // Not a question for the kernel, even though this fake would say OOM.
    assert!(exit.oom.is_none());
    // The next run dies of a SIGKILL nobody at kelpie sent.
    rig.expect(Call::Launch { pid: 1001 }).await;
    rig.fake.exit(1001, ExitStatus::Signal(9), false);
    rig.report("backoff again", |s, _| s.phase == Phase::Backoff)
        .await;
    let exit = rig.newest_exit();
    assert!(!exit.by_kelpie && exit.kelpie_reason.is_none());
    assert!(exit.oom.is_some());
}

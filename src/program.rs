//! The Program actor: one per instance, owning at most one OS process (and
//! its process group). It runs the pure state machine of `state.rs` and
//! carries out its actions; it never blocks or sleeps in a handler. Delays
//! are `send_after` timers tagged as the state machine says (its generation,
//! or a sweep's sequence number). Everything it does to processes goes
//! through a `Launcher` (`launcher.rs`), so tests can drive an actor with a
//! fake one on a paused clock (`tests.rs`).

mod history;
mod launcher;
mod log;
#[cfg(test)]
mod tests;

use launcher::{LaunchSpec, Launcher, ReaperLauncher};

use std::collections::VecDeque;
use std::sync::Arc;

use nix::sys::signal::Signal;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::backoff::Jitter;
use crate::config::ProgramConfig;
use crate::notify_socket::{Notice, NotifySocket};
use crate::output::{ProgramOutput, PumpTracker};
use crate::output_stream::Stream;
use crate::probe::{ExecBuilder, ProbeResult, Probes};
use crate::process::{self, Identity, Launch};
use crate::reaper::Reaper;
use crate::report::{InstanceEvent, InstanceReport, Reporter, Reports};
use crate::spawn::Stdio;
use crate::state::{
    Action, Event, ExitStatus, Instance, Note, Phase, Policy, ProbeRole, Snapshot, TimerKind,
};

pub enum ProgramMsg {
    Start,
    Stop,
    Kill,
    Drain,
    Block(String),
    /// Relay a signal (forward_signals) to the group if it runs.
    Signal(Signal),
    Exited {
        pid: i32,
        status: ExitStatus,
        group_alive: bool,
    },
    GroupGone {
        pgid: i32,
    },
    /// The OOM check's answer: the kernel's OOM killer ended `pid`.
    OomKilled {
        pid: i32,
    },
    Timer {
        kind: TimerKind,
        generation: u64,
    },
    Probe(ProbeResult),
    /// sd_notify messages from the instance's socket.
    Notify(Vec<Notice>),
    /// The log readiness pattern matched a line of run `run`.
    LogMatched {
        run: u64,
    },
    /// The control request (its id) behind the commands that follow; its
    /// id is logged with every event they cause.
    Cause(Option<Arc<str>>),
    /// Every command sent before this one has been processed: published so
    /// a waiting control request knows the state it sees is the outcome.
    Ack(u64),
    /// Start again as part of a group restart (keeps backoff and intensity).
    Relaunch,
    /// The global restart budget allows the restart this instance asked for.
    RestartGranted,
    /// The global restart budget is spent; the restart waits its turn.
    BudgetExhausted,
}

pub struct ProgramArgs {
    pub config: Arc<ProgramConfig>,
    /// Unique per actor ever spawned: tells a rolling restart's replacement
    /// apart from the instance it replaces.
    pub incarnation: u64,
    pub index: u32,
    /// `KELPIE_SLOT`, chosen by the fleet core: a rolling replacement gets
    /// another than the instance it replaces.
    pub slot: u32,
    pub policy: Arc<Policy>,
    pub reaper: Reaper,
    pub output: Arc<ProgramOutput>,
    pub identity: Option<Arc<Identity>>,
    /// Where this instance reports (the fleet).
    pub reports: Reports,
    pub pumps: PumpTracker,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Where instance cgroups go, when kelpie manages some.
    pub cgroups: Option<Arc<crate::cgroup::CgroupTree>>,
}

/// The Program actor; `ProgramActor::default()` launches through the
/// reaper, tests put a fake `Launcher` in its place.
#[derive(Default)]
pub struct ProgramActor {
    launcher: Option<Arc<dyn Launcher>>,
}

impl ProgramActor {
    #[cfg(test)]
    fn with_launcher(launcher: Arc<dyn Launcher>) -> Self {
        Self {
            launcher: Some(launcher),
        }
    }
}

type TimerHandle = JoinHandle<Result<(), ractor::MessagingErr<ProgramMsg>>>;

pub struct ProgramState {
    args: ProgramArgs,
    launcher: Arc<dyn Launcher>,
    instance: Instance,
    /// The process group of the current or last process, until it is empty.
    pgid: Option<i32>,
    timers: Vec<(u64, TimerKind, TimerHandle)>,
    published: Option<(Snapshot, u64)>,
    /// Wall-clock start of the current process, for status display.
    started_at: Option<std::time::SystemTime>,
    /// Probe tasks of the current process.
    probes: Probes,
    /// Boxed: only instances with a notify readiness probe have one.
    notify: Option<Box<NotifySocket>>,
    /// The last `Ack` sequence number processed.
    ack: u64,
    /// The control request id to log with events, until the instance
    /// settles.
    cause: Option<Arc<str>>,
    /// `KELPIE_RUN_ID` of every process this actor starts.
    run_id: String,
    /// Between an exit and its decision, for the crash history; boxed on
    /// the first exit.
    exits: Option<Box<history::ExitTracking>>,
}

impl Drop for ProgramState {
    /// Runs however the actor ends (stop, kill, panic): a bug in kelpie must
    /// never leave an unsupervised process group behind. The reaper only
    /// signals groups it still owns, so this is a no-op after a clean stop.
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            if self.launcher.signal_group(pgid, Signal::SIGKILL) {
                tracing::error!(
                    event = "program_actor_lost",
                    program = %self.args.config.name,
                    instance = self.args.index,
                    pgid,
                    "instance actor ended with processes left; killed its process group"
                );
            }
        }
        for (_, _, timer) in self.timers.drain(..) {
            timer.abort();
        }
        self.args.output.forget(self.args.incarnation);
    }
}

impl Actor for ProgramActor {
    type Msg = ProgramMsg;
    /// Boxed: inside the actor's task the state would be rounded up with
    /// the task to tokio's 128-byte task alignment; on its own, every byte
    /// it saves is saved.
    type State = Box<ProgramState>;
    type Arguments = ProgramArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ProgramMsg>,
        args: ProgramArgs,
    ) -> Result<Box<ProgramState>, ActorProcessingErr> {
        let launcher = match &self.launcher {
            Some(launcher) => launcher.clone(),
            None => Arc::new(ReaperLauncher::new(
                args.reaper.clone(),
                args.cgroups.clone(),
            )),
        };
        Ok(Box::new(ProgramState::new(&myself, args, launcher)))
    }

    async fn handle(
        &self,
        myself: ActorRef<ProgramMsg>,
        message: ProgramMsg,
        state: &mut Box<ProgramState>,
    ) -> Result<(), ActorProcessingErr> {
        state.handle(&myself, message);
        Ok(())
    }
}

impl ProgramState {
    fn new(myself: &ActorRef<ProgramMsg>, args: ProgramArgs, launcher: Arc<dyn Launcher>) -> Self {
        let seed = Jitter::seed_from(&args.config.instance_name(args.index));
        let wants_notify = args
            .config
            .readiness
            .as_ref()
            .is_some_and(|p| p.kind == crate::config::ProbeKind::Notify);
        let notify = if wants_notify {
            let owner = args.identity.as_ref().map(|i| (i.uid, i.gid));
            let me = myself.clone();
            let deliver = Box::new(move |notices| me.cast(ProgramMsg::Notify(notices)).is_ok());
            match NotifySocket::bind(args.incarnation, owner, deliver) {
                Ok(socket) => Some(Box::new(socket)),
                Err(error) => {
                    tracing::error!(
                        event = "notify_socket_failed",
                        program = %args.config.name,
                        instance = args.index,
                        error = %error,
                        "cannot create the notify socket; the instance will never become ready"
                    );
                    None
                }
            }
        } else {
            None
        };
        let instance = Instance::new(args.policy.clone(), seed);
        let run_id = process::run_id(args.incarnation);
        ProgramState {
            args,
            launcher,
            instance,
            pgid: None,
            timers: Vec::new(),
            published: None,
            started_at: None,
            probes: Probes::default(),
            notify,
            ack: 0,
            cause: None,
            run_id,
            exits: None,
        }
    }

    fn handle(&mut self, myself: &ActorRef<ProgramMsg>, message: ProgramMsg) {
        let event = match message {
            ProgramMsg::Start => Event::Start,
            ProgramMsg::Stop => Event::Stop,
            ProgramMsg::Kill => Event::Kill,
            ProgramMsg::Drain => Event::Drain,
            ProgramMsg::Block(reason) => Event::Block(reason),
            ProgramMsg::Signal(signal) => {
                if let (Some(pgid), Some(_)) = (self.pgid, self.instance.pid()) {
                    self.launcher.signal_group(pgid, signal);
                    self.record_relayed(signal);
                }
                return;
            }
            ProgramMsg::Exited {
                pid,
                status,
                group_alive,
            } => {
                if !group_alive && self.pgid == Some(pid) {
                    self.pgid = None;
                }
                let stopping = self.instance.phase() == Phase::Stopping;
                self.exits_mut().stopping = stopping;
                Event::Exited {
                    pid,
                    status,
                    group_alive,
                }
            }
            ProgramMsg::GroupGone { pgid } => {
                if self.pgid != Some(pgid) {
                    return;
                }
                self.pgid = None;
                Event::GroupGone
            }
            ProgramMsg::OomKilled { pid } => Event::OomKilled { pid },
            ProgramMsg::Timer { kind, generation } => Event::Timer { kind, generation },
            ProgramMsg::Probe(ProbeResult {
                role,
                run,
                ok,
                detail,
                duration,
            }) => {
                self.args
                    .metrics
                    .probe_result(&self.args.config.name, role.as_str(), duration, ok);
                Event::Probe {
                    role,
                    run,
                    ok,
                    detail,
                }
            }
            ProgramMsg::LogMatched { run } => Event::Announced { run },
            ProgramMsg::Notify(notices) => {
                let run = self.instance.snapshot().run;
                for notice in notices {
                    let event = match notice {
                        Notice::Ready => Event::Announced { run },
                        Notice::Status(text) => Event::StatusText { run, text },
                    };
                    self.apply(myself, event);
                }
                return;
            }
            ProgramMsg::Relaunch => Event::Relaunch,
            ProgramMsg::RestartGranted => Event::RestartGranted,
            ProgramMsg::BudgetExhausted => {
                self.apply(myself, Event::BudgetExhausted);
                self.record_budget_wait();
                return;
            }
            ProgramMsg::Cause(cause) => {
                self.cause = cause;
                return;
            }
            ProgramMsg::Ack(seq) => {
                self.ack = seq;
                // A command that changed nothing (stop of a stopped
                // instance) leaves no transition to end its cause.
                let phase = self.instance.phase();
                if phase.is_down() || phase == Phase::Running {
                    self.cause = None;
                }
                self.publish();
                return;
            }
        };
        self.apply(myself, event);
    }

    fn name(&self) -> String {
        self.args.config.instance_name(self.args.index)
    }

    /// What `${KELPIE_INSTANCE}` and `${KELPIE_SLOT}` stand for here.
    fn values(&self) -> crate::config::template::Values {
        crate::config::template::Values {
            instance: self.args.index,
            slot: self.args.slot,
        }
    }

    fn apply(&mut self, myself: &ActorRef<ProgramMsg>, event: Event) {
        let mut queue = VecDeque::from([event]);
        while let Some(event) = queue.pop_front() {
            let actions = self.instance.step(event, Instant::now());
            for action in actions {
                match action {
                    Action::Spawn => queue.push_back(match self.spawn(myself) {
                        Ok(pid) => Event::Spawned { pid },
                        Err(error) => Event::SpawnFailed { error },
                    }),
                    Action::SignalGroup(signal) => {
                        if let Some(pgid) = self.pgid {
                            self.launcher.signal_group(pgid, signal);
                        }
                    }
                    Action::RecheckGroup => {
                        if self.pgid.is_some() {
                            self.launcher.recheck();
                        }
                    }
                    Action::WatchGroup => {
                        if let Some(pgid) = self.pgid {
                            let me = myself.clone();
                            self.launcher.watch_group(
                                pgid,
                                Box::new(move || {
                                    let _ = me.cast(ProgramMsg::GroupGone { pgid });
                                }),
                            );
                        } else {
                            queue.push_back(Event::GroupGone);
                        }
                    }
                    Action::StartTimer {
                        kind,
                        after,
                        generation,
                    } => {
                        let timer = myself
                            .send_after(after, move || ProgramMsg::Timer { kind, generation });
                        self.timers.push((generation, kind, timer));
                    }
                    Action::StartProbes { run } => self.start_probes(myself, run),
                    Action::StopProbes => self.probes = Probes::default(),
                    Action::SweepEscaped(signal) => {
                        if let Some(pids) = self.sweep_escaped(signal) {
                            queue.push_back(Event::EscapedSignalled { pids });
                        }
                    }
                    Action::KillEscaped { pids } => {
                        // Still ours: kelpie's child with this actor's run
                        // id (a pid reused meanwhile would fail either
                        // check).
                        let left = self.launcher.escaped_with(&self.run_variable());
                        for pid in pids.into_iter().filter(|pid| left.contains(pid)) {
                            self.launcher.signal_escaped(pid, Signal::SIGKILL);
                        }
                    }
                    Action::AskRestart => {
                        (self.args.reports)(InstanceReport::RestartWanted {
                            from: self.reporter(),
                        });
                    }
                    Action::Emit(note) => {
                        self.record(&note);
                        if let Note::Exited {
                            pid, status, kind, ..
                        } = &note
                        {
                            // A SIGKILL put to the OOM check is counted
                            // with its answer, as `oom` or `signal`.
                            let asked = self
                                .exits
                                .as_ref()
                                .is_some_and(|e| e.awaits_oom_answer(*pid));
                            if !asked {
                                self.args.metrics.program_exited(
                                    &self.args.config.name,
                                    *kind,
                                    *status,
                                );
                            }
                        }
                        self.log(&note);
                        // A restart logs `stopped` on its way to `starting`:
                        // the request still owns what follows.
                        let settled = match note {
                            Note::Stopped => self.instance.phase().is_down(),
                            Note::Running { .. }
                            | Note::Failed { .. }
                            | Note::Completed
                            | Note::RestartScheduled { .. } => true,
                            _ => false,
                        };
                        if settled {
                            self.cause = None;
                        }
                    }
                }
            }
        }
        self.record_settled(myself);
        // Timers of past phases would only wake kelpie up to be ignored, and
        // so would a start_timeout once the instance is ready.
        let ready = self.instance.snapshot().ready;
        let instance = &self.instance;
        self.timers.retain(|(generation, kind, handle)| {
            let moot = ready && *kind == TimerKind::StartTimeout;
            let keep = instance.timer_is_live(*kind, *generation) && !moot && !handle.is_finished();
            if !keep {
                handle.abort();
            }
            keep
        });
        self.publish();
    }

    /// `NAME=value` of the run id in the environment of this actor's
    /// processes.
    fn run_variable(&self) -> String {
        format!("{}={}", process::RUN_ID_VARIABLE, self.run_id)
    }

    /// The daemons this actor's runs left outside their process group
    /// (reparented to kelpie) get `signal` and SIGCONT; their pids, when
    /// there are any, for the SIGKILL the state machine times.
    fn sweep_escaped(&self, signal: Signal) -> Option<Vec<i32>> {
        let pids = self.launcher.escaped_with(&self.run_variable());
        if pids.is_empty() {
            return None;
        }
        tracing::warn!(
            event = "escaped_processes",
            program = %self.args.config.name,
            instance = self.args.index,
            count = pids.len(),
            pids = ?pids,
            "{} left {} process(es) outside its process group; sending SIG{}",
            self.name(),
            pids.len(),
            crate::signals::short_name(signal)
        );
        for &pid in &pids {
            self.launcher.signal_escaped(pid, signal);
            self.launcher.signal_escaped(pid, Signal::SIGCONT);
        }
        Some(pids)
    }

    fn reporter(&self) -> Reporter {
        Reporter {
            program: self.args.config.name.clone(),
            index: self.args.index,
            incarnation: self.args.incarnation,
        }
    }

    fn publish(&mut self) {
        let snapshot = self.instance.snapshot();
        if self.published.as_ref() == Some(&(snapshot.clone(), self.ack)) {
            return;
        }
        let events = InstanceEvent::between(self.published.as_ref().map(|(s, _)| s), &snapshot);
        self.published = Some((snapshot.clone(), self.ack));
        (self.args.reports)(InstanceReport::Changed {
            from: self.reporter(),
            status: crate::status::InstanceStatus {
                snapshot,
                started_at: self.started_at,
                ack: self.ack,
                held: false,
                slot: self.args.slot,
            },
            events,
        });
    }

    fn start_probes(&mut self, myself: &ActorRef<ProgramMsg>, run: u64) {
        let config = self.args.config.clone();
        let mut probes = Probes::default();
        let exec: Arc<ExecBuilder> = {
            let config = config.clone();
            let index = self.args.index;
            let slot = self.args.slot;
            let identity = self.args.identity.clone();
            let run_id = self.run_id.clone();
            Arc::new(Box::new(move |argv: &[String]| {
                process::command(Launch {
                    program: &config,
                    argv,
                    index,
                    slot,
                    notify_socket: None,
                    identity: identity.as_deref(),
                    run_id: &run_id,
                    stdout: Stdio::null(),
                    stderr: Stdio::null(),
                    cgroup_procs: None,
                })
            }))
        };
        for (role, probe) in [
            (ProbeRole::Readiness, &config.readiness),
            (ProbeRole::Liveness, &config.liveness),
        ] {
            let Some(probe) = probe else { continue };
            if let crate::config::ProbeKind::Log(_) = probe.kind {
                let me = myself.clone();
                self.args.output.watch_for_match(
                    self.args.incarnation,
                    Box::new(move || {
                        let _ = me.cast(ProgramMsg::LogMatched { run });
                    }),
                );
            }
            if let Some(task) = crate::probe::start(
                role,
                &crate::probe::for_instance(probe, self.values()),
                run,
                {
                    let me = myself.clone();
                    Box::new(move |result| me.cast(ProgramMsg::Probe(result)).is_ok())
                },
                self.args.reaper.clone(),
                exec.clone(),
            ) {
                probes.push(task);
            }
        }
        self.probes = probes;
    }

    fn spawn(&mut self, myself: &ActorRef<ProgramMsg>) -> Result<i32, String> {
        let config = &self.args.config;
        let me = myself.clone();
        let launched = self.launcher.launch(
            LaunchSpec {
                program: config,
                index: self.args.index,
                slot: self.args.slot,
                notify_socket: self.notify.as_ref().map(|n| n.path()),
                identity: self.args.identity.as_deref(),
                run_id: &self.run_id,
                piped: self.args.output.wants_pipes(),
            },
            Box::new(move |pid, status, group_alive| {
                let _ = me.cast(ProgramMsg::Exited {
                    pid,
                    status,
                    group_alive,
                });
            }),
        )?;
        let pid = launched.pid;
        self.pgid = Some(pid);
        self.started_at = Some(std::time::SystemTime::now());
        let pipes = [
            (launched.stdout, Stream::Stdout),
            (launched.stderr, Stream::Stderr),
        ];
        for (fd, stream) in pipes {
            let Some(fd) = fd else { continue };
            match pipe::Receiver::from_owned_fd(fd) {
                Ok(reader) => {
                    self.args.pumps.spawn(
                        reader,
                        self.args.output.clone(),
                        crate::output::Source {
                            index: self.args.index,
                            incarnation: self.args.incarnation,
                            pid,
                        },
                        stream,
                    );
                }
                Err(err) => tracing::error!(
                    event = "output_pipe_failed",
                    program = %config.name,
                    instance = self.args.index,
                    error = %err,
                    "cannot read program output"
                ),
            }
        }
        Ok(pid)
    }
}

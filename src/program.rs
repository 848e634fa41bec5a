//! The Program actor: one per instance, owning at most one OS process (and
//! its process group). It runs the pure state machine of `state.rs` and
//! carries out its actions; it never blocks or sleeps in a handler. Delays
//! are `send_after` timers tagged with the state machine's generation.

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
use crate::reaper::{kill_with_group, Reaper};
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
    /// Escaped daemons of an ended run had their grace after SIGTERM.
    SweepKill {
        pids: Vec<i32>,
    },
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
    pub policy: Arc<Policy>,
    pub reaper: Reaper,
    pub output: Arc<ProgramOutput>,
    pub identity: Option<Arc<Identity>>,
    /// Where this instance reports (the fleet).
    pub reports: Reports,
    pub pumps: PumpTracker,
    pub metrics: Arc<crate::metrics::Metrics>,
}

pub struct ProgramActor;

type TimerHandle = JoinHandle<Result<(), ractor::MessagingErr<ProgramMsg>>>;

pub struct ProgramState {
    args: ProgramArgs,
    instance: Instance,
    /// The process group of the current or last process, until it is empty.
    pgid: Option<i32>,
    timers: Vec<(u64, TimerKind, TimerHandle)>,
    published: Option<(Snapshot, u64)>,
    /// Wall-clock start of the current process, for status display.
    started_at: Option<std::time::SystemTime>,
    /// Probe tasks of the current process.
    probes: Probes,
    notify: Option<NotifySocket>,
    /// The last `Ack` sequence number processed.
    ack: u64,
    /// The control request id to log with events, until the instance
    /// settles.
    cause: Option<Arc<str>>,
    /// `KELPIE_RUN_ID` of every process this actor starts.
    run_id: String,
    /// The last run whose escaped daemons were swept.
    swept_run: u64,
}

impl Drop for ProgramState {
    /// Runs however the actor ends (stop, kill, panic): a bug in kelpie must
    /// never leave an unsupervised process group behind. The reaper only
    /// signals groups it still owns, so this is a no-op after a clean stop.
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            if self.args.reaper.signal_group(pgid, Signal::SIGKILL) {
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
    type State = ProgramState;
    type Arguments = ProgramArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ProgramMsg>,
        args: ProgramArgs,
    ) -> Result<ProgramState, ActorProcessingErr> {
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
                Ok(socket) => Some(socket),
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
        Ok(ProgramState {
            args,
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
            swept_run: 0,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ProgramMsg>,
        message: ProgramMsg,
        state: &mut ProgramState,
    ) -> Result<(), ActorProcessingErr> {
        let event = match message {
            ProgramMsg::Start => Event::Start,
            ProgramMsg::Stop => Event::Stop,
            ProgramMsg::Kill => Event::Kill,
            ProgramMsg::Drain => Event::Drain,
            ProgramMsg::Block(reason) => Event::Block(reason),
            ProgramMsg::Signal(signal) => {
                if let (Some(pgid), Some(_)) = (state.pgid, state.instance.pid()) {
                    state.args.reaper.signal_group(pgid, signal);
                }
                return Ok(());
            }
            ProgramMsg::Exited {
                pid,
                status,
                group_alive,
            } => {
                if !group_alive && state.pgid == Some(pid) {
                    state.pgid = None;
                }
                Event::Exited {
                    pid,
                    status,
                    group_alive,
                }
            }
            ProgramMsg::GroupGone { pgid } => {
                if state.pgid != Some(pgid) {
                    return Ok(());
                }
                state.pgid = None;
                Event::GroupGone
            }
            ProgramMsg::Timer { kind, generation } => Event::Timer { kind, generation },
            ProgramMsg::Probe(ProbeResult {
                role,
                run,
                ok,
                detail,
                duration,
            }) => {
                state.args.metrics.probe_result(
                    &state.args.config.name,
                    role.as_str(),
                    duration,
                    ok,
                );
                Event::Probe {
                    role,
                    run,
                    ok,
                    detail,
                }
            }
            ProgramMsg::LogMatched { run } => Event::Announced { run },
            ProgramMsg::Notify(notices) => {
                let run = state.instance.snapshot().run;
                for notice in notices {
                    let event = match notice {
                        Notice::Ready => Event::Announced { run },
                        Notice::Status(text) => Event::StatusText { run, text },
                    };
                    state.apply(&myself, event);
                }
                return Ok(());
            }
            ProgramMsg::Relaunch => Event::Relaunch,
            ProgramMsg::SweepKill { pids } => {
                let variable = format!("{}={}", process::RUN_ID_VARIABLE, state.run_id);
                for pid in pids {
                    // Still ours: kelpie's child with this run's id (a pid
                    // reused meanwhile would fail either check).
                    if state.args.reaper.escaped_with(&variable).contains(&pid) {
                        kill_with_group(pid, Signal::SIGKILL);
                    }
                }
                return Ok(());
            }
            ProgramMsg::RestartGranted => Event::RestartGranted,
            ProgramMsg::BudgetExhausted => Event::BudgetExhausted,
            ProgramMsg::Cause(cause) => {
                state.cause = cause;
                return Ok(());
            }
            ProgramMsg::Ack(seq) => {
                state.ack = seq;
                // A command that changed nothing (stop of a stopped
                // instance) leaves no transition to end its cause.
                let phase = state.instance.phase();
                if phase.is_down() || phase == Phase::Running {
                    state.cause = None;
                }
                state.publish();
                return Ok(());
            }
        };
        state.apply(&myself, event);
        Ok(())
    }
}

impl ProgramState {
    fn name(&self) -> String {
        self.args.config.instance_name(self.args.index)
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
                            self.args.reaper.signal_group(pgid, signal);
                        }
                    }
                    Action::RecheckGroup => {
                        if self.pgid.is_some() {
                            self.args.reaper.recheck();
                        }
                    }
                    Action::WatchGroup => {
                        if let Some(pgid) = self.pgid {
                            let me = myself.clone();
                            self.args.reaper.watch_group(
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
                    Action::AskRestart => {
                        (self.args.reports)(InstanceReport::RestartWanted {
                            from: self.reporter(),
                        });
                    }
                    Action::Emit(note) => {
                        match &note {
                            Note::Started { .. } => self.start_probes(myself),
                            Note::Exited { status, kind, .. } => self.args.metrics.program_exited(
                                &self.args.config.name,
                                *kind,
                                *status,
                            ),
                            _ => {}
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
        self.sweep_escaped(myself);
        // Probes watch a live, not-stopping process only.
        if self.instance.pid().is_none() || self.instance.phase() == Phase::Stopping {
            self.probes = Probes::default();
        }
        // Timers of past phases would only wake kelpie up to be ignored, and
        // so would a start_timeout once the instance is ready.
        let current = self.instance.generation();
        let ready = self.instance.snapshot().ready;
        self.timers.retain(|(generation, kind, handle)| {
            let moot = ready && *kind == TimerKind::StartTimeout;
            let keep = *generation == current && !moot && !handle.is_finished();
            if !keep {
                handle.abort();
            }
            keep
        });
        self.publish();
    }

    /// Once the instance is down (no leader, group empty, not restarting),
    /// daemons its runs left behind by leaving the process group (double
    /// fork, setsid) were reparented to kelpie: they get the stop signal,
    /// and SIGKILL after `stop_timeout`.
    fn sweep_escaped(&mut self, myself: &ActorRef<ProgramMsg>) {
        let run = self.instance.snapshot().run;
        // Only when the instance is down for good (stopped, exited,
        // failed): a crash loop must not pay a /proc scan per exit. The
        // run id is the actor's, so this sweep also catches what earlier
        // runs left; shutdown sweeps whatever remains.
        if run == 0
            || run == self.swept_run
            || self.instance.pid().is_some()
            || self.pgid.is_some()
            || !self.instance.phase().is_down()
        {
            return;
        }
        self.swept_run = run;
        let variable = format!("{}={}", process::RUN_ID_VARIABLE, self.run_id);
        let pids = self.args.reaper.escaped_with(&variable);
        if pids.is_empty() {
            return;
        }
        let signal = self.args.policy.stop_signal;
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
            kill_with_group(pid, signal);
            kill_with_group(pid, Signal::SIGCONT);
        }
        myself.send_after(self.args.policy.stop_timeout, move || {
            ProgramMsg::SweepKill { pids }
        });
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
            },
            events,
        });
    }

    fn start_probes(&mut self, myself: &ActorRef<ProgramMsg>) {
        let run = self.instance.snapshot().run;
        let config = self.args.config.clone();
        let mut probes = Probes::default();
        let exec: Arc<ExecBuilder> = {
            let config = config.clone();
            let index = self.args.index;
            let identity = self.args.identity.clone();
            let run_id = self.run_id.clone();
            Arc::new(Box::new(move |argv: &[String]| {
                process::command(Launch {
                    program: &config,
                    argv,
                    index,
                    notify_socket: None,
                    identity: identity.as_deref(),
                    run_id: &run_id,
                    stdout: Stdio::null(),
                    stderr: Stdio::null(),
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
                &crate::probe::for_instance(probe, self.args.index),
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
        let piped = self.args.output.wants_pipes();
        let stdio = || if piped { Stdio::piped() } else { Stdio::null() };
        let mut command = process::command(Launch {
            program: config,
            argv: &config.command,
            index: self.args.index,
            notify_socket: self.notify.as_ref().map(|n| n.path()),
            identity: self.args.identity.as_deref(),
            run_id: &self.run_id,
            stdout: stdio(),
            stderr: stdio(),
        });
        let me = myself.clone();
        let spawned = self.args.reaper.spawn(
            &mut command,
            Box::new(move |pid, status, group_alive| {
                let _ = me.cast(ProgramMsg::Exited {
                    pid,
                    status,
                    group_alive,
                });
            }),
        );
        let mut child = match spawned {
            Ok(child) => child,
            Err(err) => {
                return Err(process::spawn_error(
                    &config.command[0],
                    &err,
                    config.directory.as_deref(),
                ))
            }
        };
        let pid = child.pid;
        self.pgid = Some(pid);
        self.started_at = Some(std::time::SystemTime::now());
        let pipes = [
            (child.stdout.take(), Stream::Stdout),
            (child.stderr.take(), Stream::Stderr),
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
        // Dropping it neither waits nor kills; the reaper owns the child.
        drop(child);
        Ok(pid)
    }

    fn log(&self, note: &Note) {
        let program = self.args.config.name.as_str();
        let instance = self.args.index;
        let name = self.name();
        let event = note.event_name();
        let request_id = self.cause.as_deref();
        match note {
            Note::Started { pid } => {
                tracing::info!(
                    event,
                    program,
                    instance,
                    request_id,
                    pid,
                    "{name} started (pid {pid})"
                )
            }
            Note::Running { pid } => {
                tracing::info!(
                    event,
                    program,
                    instance,
                    request_id,
                    pid,
                    "{name} is running"
                )
            }
            Note::SpawnFailed { error } => {
                tracing::error!(event, program, instance, request_id, error = %error, "{name}: {error}")
            }
            Note::Exited {
                pid,
                status,
                kind,
                ran,
            } => tracing::info!(
                event,
                program,
                instance,
                request_id,
                pid,
                status = %status,
                reason = kind.as_str(),
                ran_ms = ran.as_millis() as u64,
                "{name} exited with {status} after {}",
                humantime::format_duration(std::time::Duration::from_millis(ran.as_millis() as u64))
            ),
            Note::RestartScheduled { delay, attempt } => tracing::info!(
                event,
                program,
                instance,
                request_id,
                delay_ms = delay.as_millis() as u64,
                attempt,
                "{name} restarts in {}",
                humantime::format_duration(std::time::Duration::from_millis(
                    delay.as_millis() as u64
                ))
            ),
            Note::Completed => {
                tracing::info!(event, program, instance, request_id, "{name} completed")
            }
            Note::Failed { reason } => {
                tracing::error!(event, program, instance, request_id, reason = %reason, "{name} failed: {reason}")
            }
            Note::Stopping { signal } => tracing::info!(
                event,
                program,
                instance,
                request_id,
                signal = crate::signals::short_name(*signal),
                "stopping {name} with SIG{}",
                crate::signals::short_name(*signal)
            ),
            Note::StopTimedOut => tracing::warn!(
                event,
                program,
                instance,
                request_id,
                "{name} did not stop within {}; sending SIGKILL to its process group",
                humantime::format_duration(self.args.policy.stop_timeout)
            ),
            Note::Stopped => tracing::info!(event, program, instance, request_id, "{name} stopped"),
            Note::Ready => tracing::info!(event, program, instance, request_id, "{name} is ready"),
            Note::NotReady { reason } => tracing::warn!(
                event,
                program,
                instance,
                request_id,
                reason = %reason,
                "{name} is no longer ready: {reason}"
            ),
            Note::ProbeFailed {
                role,
                detail,
                streak,
            } => tracing::warn!(
                event,
                program,
                instance,
                request_id,
                probe = role.as_str(),
                streak,
                detail = %detail,
                "{name} {} probe failed ({streak} in a row): {detail}",
                role.as_str()
            ),
            Note::LivenessFailed { detail } => tracing::warn!(
                event,
                program,
                instance,
                request_id,
                detail = %detail,
                "{name} failed its liveness probe; restarting it"
            ),
            Note::StartTimedOut => tracing::warn!(
                event,
                program,
                instance,
                request_id,
                "{name} was not ready within start_timeout ({}); restarting it",
                humantime::format_duration(self.args.policy.start_timeout)
            ),
        }
    }
}

//! The root actor. It owns the validated config and one Program actor per
//! instance (linked, so a panicking Program is seen and replaced), gates
//! starts on dependency conditions, and runs the shutdown sequence: no new
//! starts, `drain_delay`, stops in reverse dependency order (independent
//! programs in parallel), all bounded by `shutdown_timeout`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::config::{Config, DependencyCondition, OnFailure, ProgramConfig, SupervisorConfig};
use crate::metrics::Metrics;
use crate::output::{ProgramOutput, PumpTracker, Relay};
use crate::process::Identity;
use crate::program::{ProgramActor, ProgramArgs, ProgramMsg};
use crate::reaper::Reaper;
use crate::state::{ExitKind, Phase, Policy, Snapshot};
use crate::status::{Board, InstanceStatus, ProgramStatus, StatusSender};

/// After a forced shutdown (SIGKILL to every group), how long to wait for
/// the kernel to deliver the exits before giving up on stragglers (a
/// process in uninterruptible sleep cannot be killed any faster).
const KILL_GRACE: Duration = Duration::from_secs(5);

/// How long descendants that escaped their process group get between
/// SIGTERM and SIGKILL at the end of a shutdown.
const ESCAPED_GRACE: Duration = Duration::from_secs(1);

pub enum SupervisorMsg {
    InstanceChanged {
        program: String,
        index: u32,
        snapshot: Snapshot,
        started_at: Option<SystemTime>,
    },
    /// SIGTERM or SIGINT.
    Terminate(Signal),
    Hangup,
    /// A signal listed in `forward_signals`.
    Forward(Signal),
    DrainElapsed,
    ShutdownDeadline,
    KillGraceElapsed,
    /// Escaped descendants had their grace after SIGTERM.
    SweepElapsed,
}

pub struct SupervisorArgs {
    pub config: Config,
    pub reaper: Reaper,
    pub relay: Relay,
    pub exit: oneshot::Sender<i32>,
    pub pumps: PumpTracker,
    pub status: StatusSender,
    pub metrics: Arc<Metrics>,
}

struct Entry {
    config: Arc<ProgramConfig>,
    policy: Arc<Policy>,
    output: Arc<ProgramOutput>,
    identity: Result<Option<Arc<Identity>>, String>,
    actors: Vec<Option<ActorRef<ProgramMsg>>>,
    /// What the outside world sees; shared with published boards.
    status: Arc<ProgramStatus>,
    launched: bool,
    stop_sent: bool,
    /// Programs that depend on this one (indices into `entries`).
    dependents: Vec<usize>,
}

impl Entry {
    /// No process, and none wanted: an instance told to start counts as up
    /// until it reports otherwise, so a shutdown right after a start never
    /// mistakes it for stopped.
    fn is_down(&self) -> bool {
        self.snapshots()
            .all(|s| s.phase.is_down() && s.pid.is_none() && !s.want_up)
    }

    fn snapshots(&self) -> impl Iterator<Item = &Snapshot> {
        self.status.instances.iter().map(|i| &i.snapshot)
    }

    /// Starts every instance and records that in the snapshots at once.
    fn start_all(&mut self) {
        let status = Arc::make_mut(&mut self.status);
        for instance in &mut status.instances {
            instance.snapshot.want_up = true;
        }
        status.reason = None;
        self.cast_all(|| ProgramMsg::Start);
    }

    fn set_reason(&mut self, reason: Option<String>) {
        if self.status.reason != reason {
            Arc::make_mut(&mut self.status).reason = reason;
        }
    }

    fn cast_all(&self, make: impl Fn() -> ProgramMsg) {
        for actor in self.actors.iter().flatten() {
            let _ = actor.cast(make());
        }
    }
}

struct Shutdown {
    code: i32,
    started: Instant,
    draining: bool,
    forced: bool,
    sweeping: bool,
}

pub struct SupervisorState {
    settings: SupervisorConfig,
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
    reaper: Reaper,
    pumps: PumpTracker,
    status: StatusSender,
    metrics: Arc<Metrics>,
    shutdown: Option<Shutdown>,
    exit: Option<oneshot::Sender<i32>>,
}

pub struct SupervisorActor;

enum Gate {
    Open,
    Wait(String),
    Blocked(String),
}

impl Actor for SupervisorActor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let config = args.config;
        let index: HashMap<String, usize> = config
            .programs
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.clone(), i))
            .collect();
        let mut entries: Vec<Entry> = config
            .programs
            .iter()
            .map(|p| Entry {
                config: p.clone(),
                policy: Arc::new(Policy::from(p.as_ref())),
                output: Arc::new(ProgramOutput::new(p, &args.relay, &args.metrics)),
                identity: Identity::resolve(p.user.as_deref(), p.group.as_deref())
                    .map(|i| i.map(Arc::new)),
                actors: Vec::new(),
                status: Arc::new(ProgramStatus::new(
                    &p.name,
                    p.required,
                    p.kind == crate::config::ProgramKind::Oneshot,
                    p.instances as usize,
                )),
                launched: false,
                stop_sent: false,
                dependents: Vec::new(),
            })
            .collect();
        for (i, program) in config.programs.iter().enumerate() {
            for (dep, _) in &program.depends_on {
                if let Some(&d) = index.get(dep) {
                    entries[d].dependents.push(i);
                }
            }
        }
        let mut state = SupervisorState {
            settings: config.supervisor.clone(),
            entries,
            index,
            reaper: args.reaper,
            pumps: args.pumps,
            status: args.status,
            metrics: args.metrics,
            shutdown: None,
            exit: Some(args.exit),
        };
        for i in 0..state.entries.len() {
            for n in 0..state.entries[i].config.instances {
                let actor = state.spawn_program(&myself, i, n).await;
                state.entries[i].actors.push(actor);
            }
        }
        tracing::info!(
            event = "supervisor_started",
            programs = state.entries.len(),
            instances = state
                .entries
                .iter()
                .map(|e| e.status.instances.len())
                .sum::<usize>(),
            pid = std::process::id(),
            "kelpie {} supervising {} programs",
            env!("CARGO_PKG_VERSION"),
            state.entries.len()
        );
        state.launch_ready_programs();
        state.publish();
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        message: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::InstanceChanged {
                program,
                index,
                snapshot,
                started_at,
            } => {
                state.on_instance_changed(&myself, &program, index, snapshot, started_at);
            }
            SupervisorMsg::Terminate(signal) => state.on_terminate(&myself, signal),
            SupervisorMsg::Hangup => {
                tracing::warn!(event = "reload_unsupported", "SIGHUP received; live reload is not available in this version, keeping the running config");
            }
            SupervisorMsg::Forward(signal) => {
                for entry in &state.entries {
                    entry.cast_all(|| ProgramMsg::Signal(signal));
                }
            }
            SupervisorMsg::DrainElapsed => {
                if let Some(shutdown) = state.shutdown.as_mut() {
                    shutdown.draining = false;
                }
            }
            SupervisorMsg::ShutdownDeadline => {
                if state.shutdown.as_ref().is_some_and(|s| !s.forced) {
                    tracing::warn!(
                        event = "shutdown_timeout",
                        timeout_ms = state.settings.shutdown_timeout.as_millis() as u64,
                        "shutdown_timeout reached; killing every remaining process group"
                    );
                    state.force(&myself);
                }
            }
            SupervisorMsg::KillGraceElapsed => {
                let left: Vec<String> = state
                    .entries
                    .iter()
                    .filter(|e| !e.is_down())
                    .map(|e| e.config.name.clone())
                    .collect();
                tracing::error!(
                    event = "shutdown_incomplete",
                    programs = %left.join(","),
                    "processes survived SIGKILL (uninterruptible sleep?); exiting anyway"
                );
                if let Some(shutdown) = state.shutdown.as_mut() {
                    shutdown.code = 1;
                }
                state.finish(&myself);
                return Ok(());
            }
            SupervisorMsg::SweepElapsed => {
                state.kill_escaped(Signal::SIGKILL);
                state.finish(&myself);
                return Ok(());
            }
        }
        if state.shutdown.is_some() {
            state.advance_shutdown(&myself);
        } else {
            state.launch_ready_programs();
        }
        state.publish();
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, error) = event {
            let name = cell.get_name().unwrap_or_default();
            tracing::error!(
                event = "program_actor_failed",
                actor = %name,
                error = %error,
                "BUG: the actor supervising {name} failed; its process group was killed and the actor is replaced"
            );
            let Some((program, index)) = name.rsplit_once(':') else {
                return Ok(());
            };
            let (Some(&i), Ok(n)) = (state.index.get(program), index.parse::<u32>()) else {
                return Ok(());
            };
            let actor = state.spawn_program(&myself, i, n).await;
            let entry = &mut state.entries[i];
            let restart = entry.launched && state.shutdown.is_none();
            let slot = &mut Arc::make_mut(&mut entry.status).instances[n as usize];
            *slot = InstanceStatus::new();
            slot.snapshot.want_up = restart;
            if let (Some(actor), true) = (&actor, restart) {
                let _ = actor.cast(ProgramMsg::Start);
            }
            entry.actors[n as usize] = actor;
            if state.shutdown.is_some() {
                state.advance_shutdown(&myself);
            }
        }
        Ok(())
    }
}

impl SupervisorState {
    async fn spawn_program(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        i: usize,
        n: u32,
    ) -> Option<ActorRef<ProgramMsg>> {
        let entry = &self.entries[i];
        let args = ProgramArgs {
            config: entry.config.clone(),
            program_index: i,
            index: n,
            policy: entry.policy.clone(),
            reaper: self.reaper.clone(),
            output: entry.output.clone(),
            identity: entry.identity.clone().ok().flatten(),
            supervisor: myself.clone(),
            pumps: self.pumps.clone(),
            metrics: self.metrics.clone(),
        };
        let name = entry.config.instance_name(n);
        match Actor::spawn_linked(Some(name.clone()), ProgramActor, args, myself.get_cell()).await {
            Ok((actor, _)) => Some(actor),
            Err(err) => {
                tracing::error!(event = "program_actor_spawn_failed", actor = %name, error = %err, "cannot create the actor for {name}");
                None
            }
        }
    }

    fn on_instance_changed(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        program: &str,
        index: u32,
        snapshot: Snapshot,
        started_at: Option<SystemTime>,
    ) {
        let Some(&i) = self.index.get(program) else {
            return;
        };
        let entry = &mut self.entries[i];
        if index as usize >= entry.status.instances.len() {
            return;
        }
        let slot = &mut Arc::make_mut(&mut entry.status).instances[index as usize];
        let newly_failed = snapshot.phase == Phase::Failed && slot.snapshot.phase != Phase::Failed;
        if snapshot.restarts > slot.snapshot.restarts {
            self.metrics
                .program_restarted(program, snapshot.restarts - slot.snapshot.restarts);
        }
        slot.snapshot = snapshot;
        slot.started_at = started_at;
        if newly_failed && entry.config.on_failure == OnFailure::Shutdown && self.shutdown.is_none()
        {
            tracing::error!(
                event = "shutdown_on_failure",
                program,
                "{program} failed and has on_failure = \"shutdown\"; shutting down"
            );
            self.begin_shutdown(myself, 1);
        }
    }

    /// Whether program `i` may start now, must wait, or never can.
    fn gate(&self, i: usize) -> Gate {
        let mut waiting: Option<String> = None;
        for (dep, condition) in &self.entries[i].config.depends_on {
            let Some(&d) = self.index.get(dep) else {
                continue;
            };
            let target = &self.entries[d];
            if target.snapshots().any(|s| s.phase == Phase::Failed) {
                return Gate::Blocked(format!("dependency \"{dep}\" failed"));
            }
            let met = target.snapshots().all(|s| match condition {
                DependencyCondition::Started => {
                    s.pid.is_some() && matches!(s.phase, Phase::Starting | Phase::Running)
                }
                DependencyCondition::Ready => s.ready,
                DependencyCondition::Completed => {
                    s.phase == Phase::Exited && s.last_exit_kind == Some(ExitKind::Success)
                }
            });
            if !met {
                let ended = target.snapshots().all(|s| s.phase == Phase::Exited);
                if ended && *condition != DependencyCondition::Completed {
                    return Gate::Blocked(format!(
                        "dependency \"{dep}\" exited and will not be restarted"
                    ));
                }
                if *condition == DependencyCondition::Completed
                    && target.snapshots().any(|s| {
                        s.phase == Phase::Exited && s.last_exit_kind != Some(ExitKind::Success)
                    })
                {
                    return Gate::Blocked(format!(
                        "dependency \"{dep}\" did not complete successfully"
                    ));
                }
                if waiting.is_none() {
                    waiting = Some(format!(
                        "waiting for dependency \"{dep}\" to be {}",
                        condition.as_str()
                    ));
                }
            }
        }
        match waiting {
            Some(reason) => Gate::Wait(reason),
            None => Gate::Open,
        }
    }

    fn launch_ready_programs(&mut self) {
        if self.shutdown.is_some() {
            return;
        }
        for i in 0..self.entries.len() {
            if self.entries[i].launched || !self.entries[i].config.autostart {
                continue;
            }
            let gate = self.gate(i);
            let entry = &mut self.entries[i];
            match gate {
                Gate::Wait(reason) => entry.set_reason(Some(reason)),
                Gate::Open => {
                    entry.launched = true;
                    match &entry.identity {
                        Ok(_) => entry.start_all(),
                        Err(reason) => {
                            let reason = reason.clone();
                            entry.cast_all(|| ProgramMsg::Block(reason.clone()));
                        }
                    }
                }
                Gate::Blocked(reason) => {
                    entry.launched = true;
                    tracing::error!(event = "program_blocked", program = %entry.config.name, reason = %reason, "{} cannot start: {reason}", entry.config.name);
                    entry.cast_all(|| ProgramMsg::Block(reason.clone()));
                }
            }
        }
    }

    fn on_terminate(&mut self, myself: &ActorRef<SupervisorMsg>, signal: Signal) {
        let name = crate::signals::short_name(signal);
        match &self.shutdown {
            None => {
                tracing::info!(
                    event = "signal_received",
                    signal = name,
                    "received SIG{name}"
                );
                self.begin_shutdown(myself, 0);
            }
            Some(shutdown) if !shutdown.forced => {
                tracing::warn!(
                    event = "shutdown_forced",
                    signal = name,
                    "second SIG{name}: killing every process group now"
                );
                self.force(myself);
            }
            Some(_) => {}
        }
    }

    fn begin_shutdown(&mut self, myself: &ActorRef<SupervisorMsg>, code: i32) {
        if self.shutdown.is_some() {
            return;
        }
        tracing::info!(
            event = "shutdown_started",
            drain_delay_ms = self.settings.drain_delay.as_millis() as u64,
            timeout_ms = self.settings.shutdown_timeout.as_millis() as u64,
            "shutting down"
        );
        self.shutdown = Some(Shutdown {
            code,
            started: Instant::now(),
            draining: !self.settings.drain_delay.is_zero(),
            forced: false,
            sweeping: false,
        });
        for entry in &self.entries {
            entry.cast_all(|| ProgramMsg::Drain);
        }
        if !self.settings.drain_delay.is_zero() {
            myself.send_after(self.settings.drain_delay, || SupervisorMsg::DrainElapsed);
        }
        myself.send_after(self.settings.shutdown_timeout, || {
            SupervisorMsg::ShutdownDeadline
        });
    }

    fn force(&mut self, myself: &ActorRef<SupervisorMsg>) {
        let Some(shutdown) = self.shutdown.as_mut() else {
            return;
        };
        shutdown.forced = true;
        shutdown.draining = false;
        for entry in &mut self.entries {
            entry.stop_sent = true;
            entry.cast_all(|| ProgramMsg::Kill);
        }
        myself.send_after(KILL_GRACE, || SupervisorMsg::KillGraceElapsed);
    }

    fn advance_shutdown(&mut self, myself: &ActorRef<SupervisorMsg>) {
        let Some(shutdown) = &self.shutdown else {
            return;
        };
        if shutdown.draining {
            return;
        }
        for i in 0..self.entries.len() {
            if self.entries[i].stop_sent {
                continue;
            }
            let dependents_down = self.entries[i]
                .dependents
                .iter()
                .all(|&d| self.entries[d].is_down());
            if dependents_down {
                self.entries[i].stop_sent = true;
                self.entries[i].cast_all(|| ProgramMsg::Stop);
            }
        }
        if self.entries.iter().all(Entry::is_down) {
            self.sweep_escaped(myself);
        }
    }

    /// Every program is down; anything still parented to kelpie left its
    /// program's process group (double fork, setsid) and would otherwise
    /// outlive kelpie. TERM it, give it a moment, then KILL.
    fn sweep_escaped(&mut self, myself: &ActorRef<SupervisorMsg>) {
        let Some(shutdown) = self.shutdown.as_mut() else {
            return;
        };
        if shutdown.sweeping || self.exit.is_none() {
            return;
        }
        shutdown.sweeping = true;
        let forced = shutdown.forced;
        let signal = if forced {
            Signal::SIGKILL
        } else {
            Signal::SIGTERM
        };
        let escaped = self.kill_escaped(signal);
        if escaped == 0 || forced {
            self.finish(myself);
        } else {
            myself.send_after(ESCAPED_GRACE, || SupervisorMsg::SweepElapsed);
        }
    }

    /// Signals every escaped descendant (its whole group when it leads
    /// one). Returns how many there were.
    fn kill_escaped(&self, signal: Signal) -> usize {
        let escaped = self.reaper.escaped_children();
        if !escaped.is_empty() {
            tracing::warn!(
                event = "escaped_processes",
                count = escaped.len(),
                pids = ?escaped,
                signal = crate::signals::short_name(signal),
                "{} left {} program's process group; sending SIG{}",
                if escaped.len() == 1 { "1 process".to_string() } else { format!("{} processes", escaped.len()) },
                if escaped.len() == 1 { "its" } else { "their" },
                crate::signals::short_name(signal)
            );
        }
        for &pid in &escaped {
            let target = nix::unistd::Pid::from_raw(pid);
            if nix::unistd::getpgid(Some(target)).ok() == Some(target) {
                let _ = nix::sys::signal::killpg(target, signal);
            }
            let _ = nix::sys::signal::kill(target, signal);
        }
        escaped.len()
    }

    /// Publishes the current state for the HTTP and control endpoints.
    fn publish(&self) {
        let board = Board {
            shutting_down: self.shutdown.is_some(),
            programs: self.entries.iter().map(|e| e.status.clone()).collect(),
        };
        // Compare under the shared read lock, and only replace under the
        // write lock: HTTP readers never wait for a comparison. Unchanged
        // programs are the same `Arc`, which `Eq` compares by pointer.
        if **self.status.borrow() == board {
            return;
        }
        self.status.send_replace(Arc::new(board));
    }

    fn finish(&mut self, myself: &ActorRef<SupervisorMsg>) {
        let Some(exit) = self.exit.take() else { return };
        let (code, elapsed) = self
            .shutdown
            .as_ref()
            .map(|s| (s.code, s.started.elapsed()))
            .unwrap_or((0, Duration::ZERO));
        tracing::info!(
            event = "shutdown_complete",
            exit_code = code,
            elapsed_ms = elapsed.as_millis() as u64,
            orphans_reaped = self.reaper.orphans_reaped(),
            "shutdown complete"
        );
        crate::notify::remove_socket_dir();
        let _ = exit.send(code);
        myself.stop(None);
    }
}

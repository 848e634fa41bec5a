//! The root actor. It owns the validated config and one Program actor per
//! instance (linked, so a panicking Program is seen and replaced), gates
//! starts on dependency conditions, carries out control actions
//! (`actions`), rolling restarts (`rolling`) and reloads (`reloading`), and
//! runs the shutdown sequence: no new starts, `drain_delay`, stops in
//! reverse dependency order (independent programs in parallel), all
//! bounded by `shutdown_timeout`.

mod actions;
mod budget;
mod entry;
mod groups;
mod reloading;
mod rolling;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::oneshot;
use tokio::time::Instant;

pub use actions::{default_timeout, Accepted, AcceptedProgram, ActionCommand, ActionError, Verb};
pub use reloading::{ReloadCommand, ReloadOutcome, ReloadRefused};

use crate::config::{Config, DependencyCondition, OnFailure, SupervisorConfig};
use crate::metrics::Metrics;
use crate::output::{ProgramOutput, PumpTracker, Relay};
use crate::program::{ProgramActor, ProgramArgs, ProgramMsg};
use crate::reaper::Reaper;
use crate::state::{ExitKind, Phase, Snapshot};
use crate::status::{Board, InstanceStatus, StatusSender};
use entry::{Entry, Slot};

/// After a forced shutdown (SIGKILL to every group), how long to wait for
/// the kernel to deliver the exits before giving up on stragglers (a
/// process in uninterruptible sleep cannot be killed any faster).
const KILL_GRACE: Duration = Duration::from_secs(5);

/// How long descendants that escaped their process group get between
/// SIGTERM and SIGKILL at the end of a shutdown.
const ESCAPED_GRACE: Duration = Duration::from_secs(1);

/// The control request behind an action: its id, logged with every event
/// the action causes.
pub type Cause = Option<Arc<str>>;

pub enum SupervisorMsg {
    InstanceChanged {
        program: String,
        index: u32,
        incarnation: u64,
        snapshot: Snapshot,
        started_at: Option<SystemTime>,
        ack: u64,
    },
    /// SIGTERM or SIGINT.
    Terminate(Signal),
    /// SIGHUP: reload.
    Hangup,
    /// A signal listed in `forward_signals`.
    Forward(Signal),
    DrainElapsed,
    ShutdownDeadline,
    KillGraceElapsed,
    /// Escaped descendants had their grace after SIGTERM.
    SweepElapsed,
    /// `start`, `stop`, `restart`, `signal` from the control socket.
    Action(ActionCommand),
    /// `reload` and `diff`.
    Reload(ReloadCommand),
    /// `kelpie shutdown`.
    Shutdown {
        cause: Cause,
    },
    /// A program's output, for `kelpie logs`.
    Output {
        program: String,
        reply: oneshot::Sender<Option<Arc<ProgramOutput>>>,
    },
    /// A rolling restart's replacement had its time to become ready.
    RollDeadline {
        program: String,
        incarnation: u64,
    },
    /// An instance's backoff is over and a global restart budget applies.
    RestartWanted {
        program: String,
        incarnation: u64,
    },
    /// The oldest restart left the budget's window.
    BudgetRefill,
    /// Time to tell systemd kelpie is alive (`WATCHDOG=1`).
    Watchdog,
}

pub struct SupervisorArgs {
    pub config: Config,
    pub reaper: Reaper,
    pub relay: Relay,
    pub exit: oneshot::Sender<i32>,
    pub pumps: PumpTracker,
    pub status: StatusSender,
    pub metrics: Arc<Metrics>,
    /// The service manager to notify, when kelpie runs under one.
    pub systemd: Option<crate::systemd::Systemd>,
}

struct Shutdown {
    code: i32,
    started: Instant,
    draining: bool,
    forced: bool,
    sweeping: bool,
}

pub struct SupervisorState {
    config_path: PathBuf,
    settings: SupervisorConfig,
    entries: Vec<Entry>,
    /// Programs removed by a reload, until they are down.
    retired: Vec<Entry>,
    index: HashMap<String, usize>,
    reaper: Reaper,
    relay: Relay,
    pumps: PumpTracker,
    status: StatusSender,
    metrics: Arc<Metrics>,
    shutdown: Option<Shutdown>,
    exit: Option<oneshot::Sender<i32>>,
    next_incarnation: u64,
    next_seq: u64,
    budget: Option<budget::Budget>,
    groups: Vec<groups::Group>,
    systemd: Option<crate::systemd::Systemd>,
    /// When the pending budget refill timer fires, if one is set.
    refill_armed: Option<Instant>,
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
        let entries: Vec<Entry> = config
            .programs
            .iter()
            .map(|p| {
                Entry::new(
                    p.clone(),
                    &args.relay,
                    &args.metrics,
                    config.supervisor.restart_budget.is_some(),
                )
            })
            .collect();
        let mut state = SupervisorState {
            config_path: config.path.clone(),
            settings: config.supervisor.clone(),
            entries,
            retired: Vec::new(),
            index: HashMap::new(),
            reaper: args.reaper,
            relay: args.relay,
            pumps: args.pumps,
            status: args.status,
            metrics: args.metrics,
            shutdown: None,
            exit: Some(args.exit),
            next_incarnation: 0,
            next_seq: 0,
            budget: None,
            refill_armed: None,
            groups: config
                .groups
                .iter()
                .cloned()
                .map(groups::Group::new)
                .collect(),
            systemd: args.systemd,
        };
        if let Some(interval) = state.systemd.as_ref().and_then(|s| s.watchdog_interval()) {
            myself.send_after(interval, || SupervisorMsg::Watchdog);
        }
        state.set_budget(&myself, config.supervisor.restart_budget);
        let mut entries = std::mem::take(&mut state.entries);
        for entry in &mut entries {
            state.spawn_slots(&myself, entry).await;
        }
        state.entries = entries;
        state.reindex();
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
                incarnation,
                snapshot,
                started_at,
                ack,
            } => {
                let update = InstanceStatus {
                    snapshot,
                    started_at,
                    ack,
                };
                state.on_instance_changed(&myself, &program, index, incarnation, update);
            }
            SupervisorMsg::Terminate(signal) => state.on_terminate(&myself, signal),
            SupervisorMsg::Hangup => {
                tracing::info!(
                    event = "signal_received",
                    signal = "HUP",
                    "received SIGHUP; reloading the config"
                );
                let command = ReloadCommand {
                    apply: true,
                    path: None,
                    cause: None,
                    reply: None,
                };
                state.on_reload(&myself, command).await;
            }
            SupervisorMsg::Forward(signal) => {
                for entry in state.entries.iter().chain(&state.retired) {
                    entry.cast_everywhere(|| ProgramMsg::Signal(signal));
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
                let left: Vec<&str> = state
                    .entries
                    .iter()
                    .chain(&state.retired)
                    .filter(|e| !e.is_down())
                    .map(|e| e.name())
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
            SupervisorMsg::Action(command) => state.on_action(command),
            SupervisorMsg::Reload(command) => state.on_reload(&myself, command).await,
            SupervisorMsg::Shutdown { cause } => {
                tracing::info!(
                    event = "shutdown_requested",
                    request_id = cause.as_deref(),
                    "shutdown requested over the control socket"
                );
                state.begin_shutdown(&myself, 0);
            }
            SupervisorMsg::Output { program, reply } => {
                let _ = reply.send(state.output_of(&program));
                return Ok(());
            }
            SupervisorMsg::RollDeadline {
                program,
                incarnation,
            } => state.on_roll_deadline(&program, incarnation),
            SupervisorMsg::RestartWanted {
                program,
                incarnation,
            } => state.on_restart_wanted(&myself, program, incarnation),
            SupervisorMsg::BudgetRefill => state.on_budget_refill(&myself),
            SupervisorMsg::Watchdog => {
                // Sent from this actor, so a wedged supervisor stops
                // petting the watchdog and systemd restarts it.
                if let Some(systemd) = &state.systemd {
                    systemd.watchdog();
                    if let Some(interval) = systemd.watchdog_interval() {
                        myself.send_after(interval, || SupervisorMsg::Watchdog);
                    }
                }
                return Ok(());
            }
        }
        if state.shutdown.is_some() {
            state.advance_shutdown(&myself);
        } else {
            state.advance_requested_stops();
            state.settle_reload(&myself).await;
            state.advance_group_restarts();
            state.launch_ready_programs();
            state.advance_rolls(&myself).await;
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
            state
                .on_actor_failed(&myself, cell.get_id(), &error.to_string())
                .await;
            if state.shutdown.is_some() {
                state.advance_shutdown(&myself);
            }
            state.publish();
        }
        Ok(())
    }
}

impl SupervisorState {
    async fn spawn_slots(&mut self, myself: &ActorRef<SupervisorMsg>, entry: &mut Entry) {
        entry.slots.clear();
        for n in 0..entry.config.instances {
            let incarnation = self.next_incarnation();
            let actor = self.spawn_instance(myself, entry, n, incarnation).await;
            entry.slots.push(Slot { actor, incarnation });
        }
    }

    async fn spawn_instance(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        entry: &Entry,
        n: u32,
        incarnation: u64,
    ) -> Option<ActorRef<ProgramMsg>> {
        let args = ProgramArgs {
            config: entry.config.clone(),
            incarnation,
            index: n,
            policy: entry.policy.clone(),
            reaper: self.reaper.clone(),
            output: entry.output.clone(),
            identity: entry.identity.clone().ok().flatten(),
            supervisor: myself.clone(),
            pumps: self.pumps.clone(),
            metrics: self.metrics.clone(),
        };
        // Unnamed: a reload or rolling restart has two actors for one
        // instance name at a time, and ractor's registry wants names unique.
        match Actor::spawn_linked(None, ProgramActor, args, myself.get_cell()).await {
            Ok((actor, _)) => Some(actor),
            Err(err) => {
                let name = entry.config.instance_name(n);
                tracing::error!(event = "program_actor_spawn_failed", actor = %name, error = %err, "cannot create the actor for {name}");
                None
            }
        }
    }

    /// An instance actor panicked (a bug in kelpie): its state's `Drop`
    /// killed its process group. A slot actor is replaced (and restarted if
    /// it was meant to run); a roll replacement aborts the roll; a retiring
    /// actor is simply gone.
    async fn on_actor_failed(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        id: ractor::ActorId,
        error: &str,
    ) {
        let is =
            |actor: &Option<ActorRef<ProgramMsg>>| actor.as_ref().is_some_and(|a| a.get_id() == id);
        for retired in [false, true] {
            let count = if retired {
                self.retired.len()
            } else {
                self.entries.len()
            };
            for i in 0..count {
                let entry = if retired {
                    &mut self.retired[i]
                } else {
                    &mut self.entries[i]
                };
                if let Some(position) = entry.retiring.iter().position(|r| r.actor.get_id() == id) {
                    entry.retiring.remove(position);
                    log_actor_failure(entry.name(), error);
                    return;
                }
                if entry
                    .roll
                    .as_ref()
                    .and_then(|r| r.replacement_actor())
                    .is_some_and(|a| a.get_id() == id)
                {
                    log_actor_failure(entry.name(), error);
                    if let Some(roll) = entry.roll.as_mut() {
                        roll.step = rolling::Step::Spawn;
                    }
                    entry.abort_roll("the replacement's actor failed");
                    return;
                }
                let Some(n) = entry.slots.iter().position(|s| is(&s.actor)) else {
                    continue;
                };
                log_actor_failure(&entry.config.instance_name(n as u32), error);
                let incarnation = self.next_incarnation();
                let entry = if retired {
                    &self.retired[i]
                } else {
                    &self.entries[i]
                };
                let actor = self
                    .spawn_instance(myself, entry, n as u32, incarnation)
                    .await;
                let restart = !retired
                    && self.shutdown.is_none()
                    && entry.launched
                    && !entry.stopped_by_user()
                    && entry.pending.is_none();
                let entry = if retired {
                    &mut self.retired[i]
                } else {
                    &mut self.entries[i]
                };
                let slot = &mut Arc::make_mut(&mut entry.status).instances[n];
                *slot = InstanceStatus::new();
                slot.snapshot.want_up = restart;
                if let (Some(actor), true) = (&actor, restart) {
                    let _ = actor.cast(ProgramMsg::Start);
                }
                entry.slots[n] = Slot { actor, incarnation };
                return;
            }
        }
    }

    fn on_instance_changed(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        program: &str,
        index: u32,
        incarnation: u64,
        update: InstanceStatus,
    ) {
        if let Some(&i) = self.index.get(program) {
            let entry = &mut self.entries[i];
            let is_slot = entry
                .slots
                .get(index as usize)
                .is_some_and(|s| s.incarnation == incarnation);
            if is_slot {
                self.slot_changed(myself, i, index as usize, update);
                return;
            }
            if entry.replacement_changed(incarnation, &update)
                || entry.retiring_changed(incarnation, &update)
            {
                return;
            }
        }
        for entry in self.retired.iter_mut().filter(|e| e.name() == program) {
            let is_slot = entry
                .slots
                .get(index as usize)
                .is_some_and(|s| s.incarnation == incarnation);
            if is_slot {
                Arc::make_mut(&mut entry.status).instances[index as usize] = update;
                return;
            }
            if entry.retiring_changed(incarnation, &update) {
                return;
            }
        }
    }

    fn slot_changed(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        i: usize,
        index: usize,
        update: InstanceStatus,
    ) {
        let entry = &mut self.entries[i];
        let program = entry.config.name.clone();
        let on_failure = entry.config.on_failure;
        let slot = &mut Arc::make_mut(&mut entry.status).instances[index];
        let newly_failed =
            update.snapshot.phase == Phase::Failed && slot.snapshot.phase != Phase::Failed;
        let crashed = update.snapshot.crashes > slot.snapshot.crashes;
        if update.snapshot.restarts > slot.snapshot.restarts {
            self.metrics
                .program_restarted(&program, update.snapshot.restarts - slot.snapshot.restarts);
        }
        *slot = update;
        if crashed {
            self.on_member_crash(myself, &program);
        }
        if newly_failed && on_failure == OnFailure::Shutdown && self.shutdown.is_none() {
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
            let met = target.pending.is_none()
                && target.snapshots().all(|s| match condition {
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
            let entry = &self.entries[i];
            if entry.launched
                || entry.pending.is_some()
                || entry.stopped_by_user()
                || self.held_by_group(entry.name())
                || !(entry.config.autostart || entry.start_requested)
            {
                continue;
            }
            let gate = self.gate(i);
            let entry = &mut self.entries[i];
            match gate {
                Gate::Wait(reason) => entry.set_reason(Some(reason)),
                Gate::Open => {
                    entry.launched = true;
                    let (ack, cause) = match entry.launch.take() {
                        Some((seq, cause)) => (Some(seq), cause),
                        None => (None, None),
                    };
                    match &entry.identity {
                        Ok(_) => entry.start_all(&cause, ack),
                        Err(reason) => {
                            let reason = reason.clone();
                            entry.cast_all(|| ProgramMsg::Block(reason.clone()));
                            if let Some(seq) = ack {
                                entry.cast_all(|| ProgramMsg::Ack(seq));
                            }
                        }
                    }
                }
                Gate::Blocked(reason) => {
                    entry.launched = true;
                    tracing::error!(event = "program_blocked", program = %entry.config.name, reason = %reason, "{} cannot start: {reason}", entry.config.name);
                    entry.set_reason(None);
                    entry.cast_all(|| ProgramMsg::Block(reason.clone()));
                    if let Some((seq, _)) = entry.launch.take() {
                        entry.cast_all(|| ProgramMsg::Ack(seq));
                    }
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
        if let Some(systemd) = &self.systemd {
            systemd.stopping();
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
        for entry in self.entries.iter_mut().chain(self.retired.iter_mut()) {
            entry.abort_roll("kelpie is shutting down");
            entry.launch = None;
            entry.stop_queued = None;
            entry.cast_everywhere(|| ProgramMsg::Drain);
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
        for entry in self.entries.iter_mut().chain(self.retired.iter_mut()) {
            entry.stop_sent = true;
            entry.cast_everywhere(|| ProgramMsg::Kill);
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
                self.entries[i].cast_everywhere(|| ProgramMsg::Stop);
            }
        }
        // Removed by a reload: nothing in the config depends on them.
        for entry in self.retired.iter_mut().filter(|e| !e.stop_sent) {
            entry.stop_sent = true;
            entry.cast_everywhere(|| ProgramMsg::Stop);
        }
        if self.entries.iter().chain(&self.retired).all(Entry::is_down) {
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

    /// Publishes the current state for the HTTP and control endpoints (and
    /// systemd).
    fn publish(&mut self) {
        let board = Board {
            shutting_down: self.shutdown.is_some(),
            programs: self
                .entries
                .iter()
                .map(|e| e.status.clone())
                // Removed programs show as stopping until they are gone
                // (never `required`), unless the name was reused.
                .chain(
                    self.retired
                        .iter()
                        .filter(|e| !self.index.contains_key(e.name()))
                        .map(|e| e.status.clone()),
                )
                .collect(),
        };
        // Compare under the shared read lock, and only replace under the
        // write lock: HTTP readers never wait for a comparison. Unchanged
        // programs are the same `Arc`, which `Eq` compares by pointer.
        if **self.status.borrow() == board {
            return;
        }
        if let Some(systemd) = self.systemd.as_mut() {
            let autostart: Vec<bool> = self
                .entries
                .iter()
                .map(|e| e.config.autostart || e.start_requested)
                .collect();
            systemd.board_changed(&board, &autostart);
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

fn log_actor_failure(name: &str, error: &str) {
    tracing::error!(
        event = "program_actor_failed",
        actor = %name,
        error = %error,
        "BUG: the actor supervising {name} failed; its process group was killed and the actor is replaced"
    );
}

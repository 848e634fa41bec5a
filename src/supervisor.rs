//! The root actor: the shell around the fleet core (`core.rs`). It turns
//! signals, control requests, timers and instance reports into
//! `FleetEvent`s, feeds them to `Fleet::step`, and carries out the
//! `FleetAction`s it returns: creating Program actors (linked, so a
//! panicking one is seen and replaced), sending them commands, setting
//! timers, answering requests, publishing the board, and exiting. Every
//! decision lives in the core; this file only does I/O.

mod actions;
mod budget;
pub mod core;
mod entry;
mod gate;
mod groups;
mod instances;
mod memory_watch;
mod reloading;
mod rolling;
mod shutdown;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use nix::sys::signal::Signal;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::oneshot;
use tokio::time::Instant;

pub use actions::{
    default_timeout, Accepted, AcceptedProgram, ActionCommand, ActionError, ActionRequest,
    Dispatched, DispatchedProgram, Verb,
};
pub use entry::Blueprint;
pub use memory_watch::MemoryRestartDue;
pub use reloading::{Loaded, ReloadCommand, ReloadOutcome, ReloadRefused, ReloadRequest};

use self::core::{
    Answer, Command, EntryId, Fleet, FleetAction, FleetEvent, FleetTimer, Incarnation,
    MetricUpdate, SpawnInstance,
};
use crate::config::{self, Config, Host, Mode};
use crate::metrics::Metrics;
use crate::output::OutputsSender;
use crate::output::{ProgramOutput, PumpTracker, Relay};
use crate::process::Identity;
use crate::program::{ProgramActor, ProgramArgs, ProgramMsg};
use crate::reaper::Reaper;
use crate::report::{InstanceReport, Reports};
use crate::status::{ConfigSender, RunningConfig, StatusSender};

/// The control request behind an action: its id, logged with every event
/// the action causes.
pub type Cause = Option<Arc<str>>;

pub enum SupervisorMsg {
    /// An instance actor's report.
    Report(InstanceReport),
    /// SIGTERM or SIGINT.
    Terminate(Signal),
    /// SIGHUP: reload.
    Hangup,
    /// A signal listed in `forward_signals`.
    Forward(Signal),
    /// A timer the fleet core asked for.
    Timer(FleetTimer),
    /// `start`, `stop`, `restart`, `signal` from the control socket.
    Action(ActionCommand),
    /// `reload` and `diff`.
    Reload(ReloadCommand),
    /// `kelpie shutdown`.
    Shutdown { cause: Cause },
    /// A program's output, for `kelpie logs`.
    Output {
        program: String,
        reply: oneshot::Sender<Option<Arc<ProgramOutput>>>,
    },
    /// Every program's output in config order, for `kelpie logs` without a
    /// name.
    Outputs {
        reply: oneshot::Sender<Vec<Arc<ProgramOutput>>>,
    },
    /// Time to tell systemd kelpie is alive (`WATCHDOG=1`).
    Watchdog,
    /// The memory sampler found an instance over its `memory_restart`.
    MemoryRestart(MemoryRestartDue),
    /// Publish the board: queued behind the reports that changed it.
    Publish,
}

pub struct SupervisorArgs {
    pub config: Config,
    pub reaper: Reaper,
    pub relay: Relay,
    pub exit: oneshot::Sender<i32>,
    pub pumps: PumpTracker,
    pub status: StatusSender,
    pub outputs: OutputsSender,
    /// Where the running config is published: it starts out holding
    /// `config`, and the shell replaces it after every reload it applies.
    pub running_config: ConfigSender,
    pub metrics: Arc<Metrics>,
    /// The service manager to notify, when kelpie runs under one.
    pub systemd: Option<crate::service_manager::Systemd>,
    /// Where instance cgroups go, when kelpie manages some.
    pub cgroups: Option<Arc<crate::cgroup::CgroupTree>>,
}

pub struct SupervisorState {
    fleet: Fleet,
    reaper: Reaper,
    cgroups: Option<Arc<crate::cgroup::CgroupTree>>,
    relay: Relay,
    pumps: PumpTracker,
    status: StatusSender,
    running_config: ConfigSender,
    /// The config of a reload being applied, published as running once the
    /// core accepts it.
    pending_config: Option<Config>,
    metrics: Arc<Metrics>,
    exit: Option<oneshot::Sender<i32>>,
    systemd: Option<crate::service_manager::Systemd>,
    /// Every instance actor the core knows, by incarnation.
    actors: HashMap<Incarnation, ActorRef<ProgramMsg>>,
    incarnations: HashMap<ActorId, Incarnation>,
    /// Each entry's output (tail, log file, followers).
    outputs: HashMap<EntryId, Arc<ProgramOutput>>,
    /// Where `outputs` is published; `outputs_changed` says it is due.
    outputs_sender: OutputsSender,
    outputs_changed: bool,
    next_request: u64,
    action_replies: HashMap<u64, oneshot::Sender<Result<Accepted, ActionError>>>,
    reload_replies: HashMap<u64, oneshot::Sender<Result<ReloadOutcome, ReloadRefused>>>,
    roll_replies: HashMap<(u64, String), oneshot::Sender<Result<String, String>>>,
    /// Where every instance actor reports: a message to this actor.
    reports: Reports,
    /// The `memory_restart` sampler, while a program sets the key.
    memory_sampler: Option<memory_watch::Sampler>,
    /// A `Publish` is in the mailbox.
    publish_queued: bool,
}

pub struct SupervisorActor;

/// The blueprints of a config's programs: each with its identity resolved
/// (an OS lookup the core must not do).
pub fn blueprints(config: &Config) -> Vec<Blueprint> {
    config
        .programs
        .iter()
        .map(|p| Blueprint {
            config: p.clone(),
            identity: Identity::resolve(p.user.as_deref(), p.group.as_deref())
                .map(|i| i.map(Arc::new)),
        })
        .collect()
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
        let (fleet, actions) = Fleet::start(
            config.path.clone(),
            config.supervisor.clone(),
            blueprints(&config),
            config.groups.clone(),
            Instant::now(),
        );
        let mut state = SupervisorState {
            fleet,
            reaper: args.reaper,
            cgroups: args.cgroups,
            relay: args.relay,
            pumps: args.pumps,
            status: args.status,
            running_config: args.running_config,
            pending_config: None,
            metrics: args.metrics,
            exit: Some(args.exit),
            systemd: args.systemd,
            actors: HashMap::new(),
            incarnations: HashMap::new(),
            outputs: HashMap::new(),
            outputs_sender: args.outputs,
            outputs_changed: true,
            next_request: 0,
            action_replies: HashMap::new(),
            reload_replies: HashMap::new(),
            roll_replies: HashMap::new(),
            reports: {
                let me = myself.clone();
                Arc::new(move |report| {
                    let _ = me.cast(SupervisorMsg::Report(report));
                })
            },
            memory_sampler: None,
            publish_queued: false,
        };
        if let Some(interval) = state.systemd.as_ref().and_then(|s| s.watchdog_interval()) {
            myself.send_after(interval, || SupervisorMsg::Watchdog);
        }
        state.carry_out(&myself, actions).await;
        tracing::info!(
            event = "supervisor_started",
            programs = state.fleet.program_count(),
            instances = state.fleet.instance_count(),
            pid = std::process::id(),
            "kelpie {} supervising {} programs",
            env!("CARGO_PKG_VERSION"),
            state.fleet.program_count()
        );
        state.publish();
        state.watch_memory(&myself);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        message: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        // What a person or a signal asked for shows at once; what instances
        // report is published once per burst (see `publish_soon`).
        let asked = matches!(
            message,
            SupervisorMsg::Action(_)
                | SupervisorMsg::Reload(_)
                | SupervisorMsg::Shutdown { .. }
                | SupervisorMsg::Terminate(_)
                | SupervisorMsg::Hangup
        );
        let event = match message {
            SupervisorMsg::Publish => {
                state.publish_queued = false;
                state.publish();
                return Ok(());
            }
            SupervisorMsg::Report(InstanceReport::Changed {
                from,
                status,
                events,
            }) => FleetEvent::Instance {
                program: from.program,
                index: from.index,
                incarnation: from.incarnation,
                status,
                events,
            },
            SupervisorMsg::Report(InstanceReport::RestartWanted { from }) => {
                FleetEvent::RestartWanted {
                    program: from.program,
                    incarnation: from.incarnation,
                }
            }
            SupervisorMsg::Terminate(signal) => FleetEvent::Terminate(signal),
            SupervisorMsg::Hangup => {
                tracing::info!(
                    event = "signal_received",
                    signal = "HUP",
                    "received SIGHUP; reloading the config"
                );
                state.reload_event(true, None, None, None)
            }
            SupervisorMsg::Forward(signal) => FleetEvent::Forward(signal),
            SupervisorMsg::MemoryRestart(due) => FleetEvent::MemoryRestart(due),
            SupervisorMsg::Timer(timer) => FleetEvent::Timer(timer),
            SupervisorMsg::Action(command) => {
                state.next_request += 1;
                let request = state.next_request;
                state.action_replies.insert(request, command.reply);
                FleetEvent::Action(ActionRequest {
                    request,
                    verb: command.verb,
                    programs: command.programs,
                    all: command.all,
                    rolling: command.rolling,
                    signal: command.signal,
                    cause: command.cause,
                })
            }
            SupervisorMsg::Reload(command) => {
                state.reload_event(command.apply, command.path, command.cause, command.reply)
            }
            SupervisorMsg::Shutdown { cause } => FleetEvent::Shutdown { cause },
            SupervisorMsg::Output { program, reply } => {
                let output = state
                    .fleet
                    .entry_of(&program)
                    .and_then(|id| state.outputs.get(&id).cloned());
                let _ = reply.send(output);
                return Ok(());
            }
            SupervisorMsg::Outputs { reply } => {
                let outputs = state
                    .fleet
                    .entry_ids()
                    .filter_map(|id| state.outputs.get(&id).cloned())
                    .collect();
                let _ = reply.send(outputs);
                return Ok(());
            }
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
        };
        let reloading =
            matches!(&event, FleetEvent::Reload(r) if r.apply) && !state.fleet.is_shutting_down();
        if let (true, Some(systemd)) = (reloading, &state.systemd) {
            systemd.reloading();
        }
        state.feed(&myself, event).await;
        // Refused or applied, kelpie runs on: systemd hears READY=1 again.
        if let (true, Some(systemd)) = (reloading, &state.systemd) {
            systemd.reloaded();
        }
        if asked {
            state.publish();
        } else {
            state.publish_soon(&myself);
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, error) = event {
            let Some(incarnation) = state.incarnations.remove(&cell.get_id()) else {
                return Ok(());
            };
            state.actors.remove(&incarnation);
            let event = FleetEvent::ActorFailed {
                incarnation,
                error: error.to_string(),
            };
            state.feed(&myself, event).await;
            state.publish_soon(&myself);
        }
        Ok(())
    }
}

impl SupervisorState {
    /// Reads and validates the file (the core does no I/O) and wraps it
    /// as the core's reload event.
    fn reload_event(
        &mut self,
        apply: bool,
        path: Option<PathBuf>,
        cause: Cause,
        reply: Option<oneshot::Sender<Result<ReloadOutcome, ReloadRefused>>>,
    ) -> FleetEvent {
        let request = reply.map(|reply| {
            self.next_request += 1;
            self.reload_replies.insert(self.next_request, reply);
            self.next_request
        });
        let path = path.unwrap_or_else(|| self.fleet.config_path().to_path_buf());
        self.pending_config = None;
        let loaded = if apply && self.fleet.is_shutting_down() {
            Err(Vec::new())
        } else {
            let validation = config::load(&path, Mode::Run, &Host::current());
            let errors: Vec<String> = validation.errors().map(|d| d.to_string()).collect();
            let warnings: Vec<String> = validation.warnings().map(|d| d.to_string()).collect();
            match validation.config {
                Some(config) if errors.is_empty() => {
                    if apply {
                        // Before the core starts what the new config adds;
                        // validation checked the hard limit.
                        crate::fd_budget::reserve_again(
                            config.open_files_needed(),
                            config.instance_count(),
                        );
                        self.pending_config = Some(config.clone());
                    }
                    Ok(Loaded {
                        blueprints: blueprints(&config),
                        config,
                        warnings,
                    })
                }
                _ => Err(errors),
            }
        };
        FleetEvent::Reload(ReloadRequest {
            request,
            apply,
            path,
            cause,
            loaded,
        })
    }

    /// Steps the core with `event` and carries out what it returns,
    /// feeding back what the actions report.
    async fn feed(&mut self, myself: &ActorRef<SupervisorMsg>, event: FleetEvent) {
        let actions = self.fleet.step(event, Instant::now());
        self.carry_out(myself, actions).await;
    }

    async fn carry_out(&mut self, myself: &ActorRef<SupervisorMsg>, actions: Vec<FleetAction>) {
        let mut batches = VecDeque::from([actions]);
        while let Some(batch) = batches.pop_front() {
            let mut reports = Vec::new();
            for action in batch {
                if let Some(report) = self.execute(myself, action).await {
                    reports.push(report);
                }
            }
            for report in reports {
                batches.push_back(self.fleet.step(report, Instant::now()));
            }
        }
    }

    /// Carries out one action; some report back at once.
    async fn execute(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        action: FleetAction,
    ) -> Option<FleetEvent> {
        match action {
            FleetAction::Build {
                entry,
                config,
                adopt_tail_of,
            } => {
                let output = Arc::new(ProgramOutput::new(&config, &self.relay, &self.metrics));
                if let Some(previous) = adopt_tail_of.and_then(|id| self.outputs.get(&id)) {
                    output.adopt_tail(previous);
                }
                self.outputs.insert(entry, output);
                self.outputs_changed = true;
            }
            FleetAction::Discard { entry } => {
                if let Some(output) = self.outputs.remove(&entry) {
                    output.removed();
                    self.outputs_changed = true;
                }
            }
            FleetAction::Spawn(spawn) => return self.spawn_instance(myself, spawn).await,
            FleetAction::Send { to, command } => {
                if let Some(actor) = self.actors.get(&to) {
                    let _ = actor.cast(program_message(command));
                }
            }
            FleetAction::StopActor { incarnation } => {
                if let Some(actor) = self.actors.remove(&incarnation) {
                    self.incarnations.remove(&actor.get_id());
                    actor.stop(None);
                }
            }
            FleetAction::After { delay, timer } => {
                myself.send_after(delay, move || SupervisorMsg::Timer(timer));
            }
            FleetAction::SignalEscaped { signal, report } => {
                let count = self.kill_escaped(signal);
                if report {
                    return Some(FleetEvent::EscapedSignalled { count });
                }
            }
            FleetAction::Metric(update) => match update {
                MetricUpdate::Restarted { program, count } => {
                    self.metrics.program_restarted(&program, count)
                }
                MetricUpdate::RestartDelayed { program } => self.metrics.restart_delayed(&program),
                MetricUpdate::BudgetAvailable(n) => self.metrics.set_restart_budget_available(n),
                MetricUpdate::ProgramRemoved { program } => self.metrics.remove_program(&program),
            },
            FleetAction::ServiceStopping => {
                if let Some(systemd) = &self.systemd {
                    systemd.stopping();
                }
            }
            FleetAction::Answer(Answer::Action { request, result }) => {
                let reply = self.action_replies.remove(&request);
                let result = result.map(|dispatched| self.accepted(request, dispatched));
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            FleetAction::Answer(Answer::Reload { request, result }) => {
                // Before the reply: a `kelpie config --running` right after
                // `kelpie reload` returns must see the new config.
                if let (Some(config), true) = (self.pending_config.take(), result.is_ok()) {
                    self.publish_config(config);
                    self.watch_memory(myself);
                }
                if let Some(reply) = request.and_then(|r| self.reload_replies.remove(&r)) {
                    let _ = reply.send(result);
                }
            }
            FleetAction::RollEnded {
                request,
                program,
                result,
            } => {
                if let Some(reply) = self.roll_replies.remove(&(request, program)) {
                    let _ = reply.send(result);
                }
            }
            FleetAction::Exit { code, elapsed } => self.exit(myself, code, elapsed),
        }
        None
    }

    /// The core's answer to an action, with a receiver for each rolling
    /// restart's end.
    fn accepted(&mut self, request: u64, dispatched: Dispatched) -> Accepted {
        let programs = dispatched
            .programs
            .into_iter()
            .map(|p| {
                let roll = p.rolling.then(|| {
                    let (tx, rx) = oneshot::channel();
                    self.roll_replies.insert((request, p.name.clone()), tx);
                    rx
                });
                AcceptedProgram {
                    name: p.name,
                    instance: p.instance,
                    timeout: p.timeout,
                    outcome: p.outcome,
                    roll,
                }
            })
            .collect();
        Accepted {
            seq: dispatched.seq,
            programs,
        }
    }

    async fn spawn_instance(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        spawn: SpawnInstance,
    ) -> Option<FleetEvent> {
        let failed = Some(FleetEvent::ActorSpawnFailed {
            incarnation: spawn.incarnation,
        });
        let Some(output) = self.outputs.get(&spawn.entry).cloned() else {
            return failed;
        };
        let name = spawn.config.instance_name(spawn.index);
        let args = ProgramArgs {
            config: spawn.config,
            incarnation: spawn.incarnation,
            index: spawn.index,
            slot: spawn.slot,
            policy: spawn.policy,
            reaper: self.reaper.clone(),
            output,
            identity: spawn.identity,
            reports: self.reports.clone(),
            pumps: self.pumps.clone(),
            metrics: self.metrics.clone(),
            cgroups: self.cgroups.clone(),
        };
        // Unnamed: a reload or rolling restart has two actors for one
        // instance name at a time, and ractor's registry wants names unique.
        match Actor::spawn_linked(None, ProgramActor::default(), args, myself.get_cell()).await {
            Ok((actor, _)) => {
                self.incarnations.insert(actor.get_id(), spawn.incarnation);
                self.actors.insert(spawn.incarnation, actor);
                None
            }
            Err(err) => {
                tracing::error!(event = "program_actor_spawn_failed", actor = %name, error = %err, "cannot create the actor for {name}");
                failed
            }
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
            crate::reaper::kill_with_group(pid, signal);
        }
        escaped.len()
    }

    /// Publishes the current state for the HTTP and control endpoints (and
    /// systemd).
    /// Publishes once the messages already queued are handled. Building
    /// the board is O(programs), and the first change to a program's
    /// status after a publish copies it (O(instances)): publishing after
    /// every report made a start of 10,000 instances quadratic. A burst of
    /// reports queued together is published once, after the last of them;
    /// no timer is involved.
    fn publish_soon(&mut self, myself: &ActorRef<SupervisorMsg>) {
        if self.publish_queued {
            return;
        }
        self.publish_queued = myself.cast(SupervisorMsg::Publish).is_ok();
        if !self.publish_queued {
            self.publish();
        }
    }

    fn publish(&mut self) {
        if std::mem::take(&mut self.outputs_changed) {
            let outputs: Vec<Arc<ProgramOutput>> = self
                .fleet
                .entry_ids()
                .filter_map(|id| self.outputs.get(&id).cloned())
                .collect();
            self.outputs_sender.send_replace(outputs.into());
        }
        let board = self.fleet.board();
        // Compare under the shared read lock, and only replace under the
        // write lock: HTTP readers never wait for a comparison. Unchanged
        // programs are the same `Arc`, which `Eq` compares by pointer.
        if **self.status.borrow() == board {
            return;
        }
        if let Some(systemd) = self.systemd.as_mut() {
            systemd.board_changed(&board, &self.fleet.autostart());
        }
        self.status.send_replace(Arc::new(board));
    }

    /// Publishes `config`, just applied by a reload, as the running one.
    fn publish_config(&mut self, mut config: Config) {
        let running = self.running_config.borrow().config.supervisor.clone();
        config.supervisor = crate::reload::applied_supervisor(&running, &config.supervisor);
        self.running_config.send_replace(Arc::new(RunningConfig {
            config,
            loaded_at: std::time::SystemTime::now(),
        }));
    }

    /// Starts the `memory_restart` sampler when the running config has a
    /// program that sets the key, and ends it when none does.
    fn watch_memory(&mut self, myself: &ActorRef<SupervisorMsg>) {
        let interval = {
            let running = self.running_config.borrow();
            memory_watch::sampling_interval(
                running
                    .config
                    .programs
                    .iter()
                    .filter_map(|p| p.limits.memory_restart.as_ref()),
            )
        };
        match (interval, self.memory_sampler.is_some()) {
            (Some(interval), false) => {
                tracing::debug!(
                    event = "memory_sampler_started",
                    interval_ms = interval.as_millis() as u64,
                    "sampling memory for memory_restart every {}",
                    humantime::format_duration(interval)
                );
                self.memory_sampler = Some(memory_watch::Sampler::spawn(
                    self.running_config.subscribe(),
                    self.status.subscribe(),
                    myself.clone(),
                ));
            }
            (None, true) => {
                tracing::debug!(
                    event = "memory_sampler_stopped",
                    "no program sets memory_restart; memory sampling stopped"
                );
                self.memory_sampler = None;
            }
            _ => {}
        }
    }

    fn exit(&mut self, myself: &ActorRef<SupervisorMsg>, code: i32, elapsed: std::time::Duration) {
        let Some(exit) = self.exit.take() else { return };
        self.memory_sampler = None;
        tracing::info!(
            event = "shutdown_complete",
            exit_code = code,
            elapsed_ms = elapsed.as_millis() as u64,
            orphans_reaped = self.reaper.orphans_reaped(),
            "shutdown complete"
        );
        crate::notify_socket::remove_socket_dir();
        // The board's last state (every program down) goes out first.
        self.publish();
        let _ = exit.send(code);
        myself.stop(None);
    }
}

fn program_message(command: Command) -> ProgramMsg {
    match command {
        Command::Start => ProgramMsg::Start,
        Command::Stop => ProgramMsg::Stop,
        Command::Kill => ProgramMsg::Kill,
        Command::Drain => ProgramMsg::Drain,
        Command::Block(reason) => ProgramMsg::Block(reason),
        Command::Signal(signal) => ProgramMsg::Signal(signal),
        Command::Relaunch => ProgramMsg::Relaunch,
        Command::Cause(cause) => ProgramMsg::Cause(cause),
        Command::Ack(seq) => ProgramMsg::Ack(seq),
        Command::RestartGranted => ProgramMsg::RestartGranted,
        Command::BudgetExhausted => ProgramMsg::BudgetExhausted,
    }
}

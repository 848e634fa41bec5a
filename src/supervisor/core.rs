//! The fleet core: every supervision decision above a single instance, as
//! a pure state machine. `Fleet::step(event, now)` takes what happened (an
//! instance's report, a signal, a control request, a timer) and returns
//! what to do (`FleetAction`s: create an actor, send it a command, set a
//! timer, answer a request, exit). It owns dependency gating, stop
//! ordering, shutdown, supervision groups, reload rebuilds, rolling
//! restarts and the restart budget.
//!
//! It reads no clock (`now` is passed in), touches no OS resource and
//! holds no actor or channel: actors are named by their incarnation, and
//! replies by request numbers the shell hands in. So every scenario is a
//! table test without ractor or processes (`core/tests.rs`). The Supervisor
//! actor (`supervisor.rs`) is the shell that carries the actions out.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::Instant;

use super::actions::{ActionError, ActionRequest, Dispatched};
use super::budget::Budget;
use super::entry::{Blueprint, Entry, Slot};
use super::groups::Group;
use super::reloading::{ReloadOutcome, ReloadRefused, ReloadRequest};
use super::{rolling, Cause};
use crate::config::{DependencyCondition, GroupConfig, OnFailure, ProgramConfig, SupervisorConfig};
use crate::process::Identity;
use crate::report::InstanceEvent;
use crate::state::{ExitKind, Phase, Policy};
use crate::status::{Board, InstanceStatus};

/// Unique per instance actor ever asked for.
pub type Incarnation = u64;
/// Unique per program entry ever built (a reload's rebuild is a new one).
pub type EntryId = u64;

/// What happened, as the core learns it.
pub enum FleetEvent {
    /// An instance actor published its state.
    Instance {
        program: String,
        index: u32,
        incarnation: Incarnation,
        status: InstanceStatus,
        /// What the core reacts to; `status` is only shown.
        events: Vec<InstanceEvent>,
    },
    /// SIGTERM, SIGINT or SIGQUIT.
    Terminate(Signal),
    /// A signal listed in `forward_signals`.
    Forward(Signal),
    Timer(FleetTimer),
    Action(ActionRequest),
    Reload(ReloadRequest),
    /// `kelpie shutdown`.
    Shutdown {
        cause: Cause,
    },
    /// An instance's backoff is over and a global restart budget applies.
    RestartWanted {
        program: String,
        incarnation: Incarnation,
    },
    /// An instance actor panicked (a bug): its process group was killed.
    ActorFailed {
        incarnation: Incarnation,
        error: String,
    },
    /// `FleetAction::Spawn` could not create the actor.
    ActorSpawnFailed {
        incarnation: Incarnation,
    },
    /// How many escaped processes `FleetAction::SignalEscaped` signalled.
    EscapedSignalled {
        count: usize,
    },
}

/// Timers the core asks for; each comes back as `FleetEvent::Timer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetTimer {
    DrainElapsed,
    ShutdownDeadline,
    KillGraceElapsed,
    /// Escaped descendants had their grace after SIGTERM.
    SweepElapsed,
    /// A rolling restart's replacement had its time to become ready.
    RollDeadline {
        program: String,
        incarnation: Incarnation,
    },
    /// The oldest restart left the budget's window.
    BudgetRefill,
}

/// A message to one instance actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Start,
    Stop,
    Kill,
    Drain,
    Block(String),
    Signal(Signal),
    /// Start again as part of a group restart (keeps backoff and intensity).
    Relaunch,
    /// The control request behind the commands that follow.
    Cause(Cause),
    /// Every command before this one has been processed.
    Ack(u64),
    RestartGranted,
    BudgetExhausted,
}

/// Everything an instance actor is created from.
#[derive(Clone)]
pub struct SpawnInstance {
    pub entry: EntryId,
    pub config: Arc<ProgramConfig>,
    pub policy: Arc<Policy>,
    pub identity: Option<Arc<Identity>>,
    pub index: u32,
    pub incarnation: Incarnation,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricUpdate {
    Restarted { program: String, count: u64 },
    RestartDelayed { program: String },
    BudgetAvailable(Option<u64>),
    ProgramRemoved { program: String },
}

pub enum Answer {
    Action {
        request: u64,
        result: Result<Dispatched, ActionError>,
    },
    Reload {
        request: Option<u64>,
        result: Result<ReloadOutcome, ReloadRefused>,
    },
}

/// What to do, in order.
pub enum FleetAction {
    /// Create the program's resources (output, log files), taking over the
    /// recent output of the entry it replaces.
    Build {
        entry: EntryId,
        config: Arc<ProgramConfig>,
        adopt_tail_of: Option<EntryId>,
    },
    /// The entry is gone; its resources can go.
    Discard {
        entry: EntryId,
    },
    Spawn(SpawnInstance),
    Send {
        to: Incarnation,
        command: Command,
    },
    /// End an actor whose processes are gone.
    StopActor {
        incarnation: Incarnation,
    },
    After {
        delay: Duration,
        timer: FleetTimer,
    },
    /// Signal every process that left its program's process group; the
    /// shell answers with `FleetEvent::EscapedSignalled` when `report`.
    SignalEscaped {
        signal: Signal,
        report: bool,
    },
    Metric(MetricUpdate),
    /// Tell the service manager kelpie is stopping.
    ServiceStopping,
    Answer(Answer),
    RollEnded {
        request: u64,
        program: String,
        result: Result<String, String>,
    },
    /// Done: exit with `code`.
    Exit {
        code: i32,
        elapsed: Duration,
    },
}

/// After a forced shutdown (SIGKILL to every group), how long to wait for
/// the kernel to deliver the exits before giving up on stragglers (a
/// process in uninterruptible sleep cannot be killed any faster).
pub(super) const KILL_GRACE: Duration = Duration::from_secs(5);

/// How long descendants that escaped their process group get between
/// SIGTERM and SIGKILL at the end of a shutdown.
pub(super) const ESCAPED_GRACE: Duration = Duration::from_secs(1);

pub(super) struct Shutdown {
    pub code: i32,
    pub started: Instant,
    pub draining: bool,
    pub forced: bool,
    pub sweeping: bool,
}

pub struct Fleet {
    pub(super) settings: SupervisorConfig,
    pub(super) entries: Vec<Entry>,
    /// Programs removed by a reload, until they are down.
    pub(super) retired: Vec<Entry>,
    pub(super) index: HashMap<String, usize>,
    pub(super) shutdown: Option<Shutdown>,
    pub(super) finished: bool,
    next_incarnation: Incarnation,
    next_entry: EntryId,
    pub(super) next_seq: u64,
    pub(super) budget: Option<Budget>,
    pub(super) groups: Vec<Group>,
    /// When the pending budget refill timer fires, if one is set.
    pub(super) refill_armed: Option<Instant>,
    /// The time of the step in progress.
    pub(super) now: Instant,
    pub(super) out: Vec<FleetAction>,
    pub(super) config_path: PathBuf,
}

enum Gate {
    Open,
    Wait(String),
    Blocked(String),
}

impl Fleet {
    /// The fleet for a validated config, and what to do to start it.
    pub fn start(
        config_path: PathBuf,
        settings: SupervisorConfig,
        blueprints: Vec<Blueprint>,
        groups: Vec<GroupConfig>,
        now: Instant,
    ) -> (Self, Vec<FleetAction>) {
        let budget = settings.restart_budget;
        let mut fleet = Self {
            settings,
            entries: Vec::new(),
            retired: Vec::new(),
            index: HashMap::new(),
            shutdown: None,
            finished: false,
            next_incarnation: 0,
            next_entry: 0,
            next_seq: 0,
            budget: None,
            groups: groups.into_iter().map(Group::new).collect(),
            refill_armed: None,
            now,
            out: Vec::new(),
            config_path,
        };
        fleet.set_budget(budget);
        let mut entries: Vec<Entry> = blueprints
            .into_iter()
            .map(|b| fleet.build_entry(b, None))
            .collect();
        for entry in &mut entries {
            fleet.spawn_slots(entry);
        }
        fleet.entries = entries;
        fleet.reindex();
        fleet.launch_ready_programs();
        let actions = std::mem::take(&mut fleet.out);
        (fleet, actions)
    }

    pub fn step(&mut self, event: FleetEvent, now: Instant) -> Vec<FleetAction> {
        if self.finished {
            return Vec::new();
        }
        self.now = now;
        let advance = self.handle(event);
        if self.finished {
            return std::mem::take(&mut self.out);
        }
        match advance {
            Advance::All if self.shutdown.is_some() => self.advance_shutdown(),
            Advance::All => {
                self.advance_requested_stops();
                self.settle_reload();
                self.advance_group_restarts();
                self.launch_ready_programs();
                self.advance_rolls();
            }
            Advance::ShutdownOnly => {
                if self.shutdown.is_some() {
                    self.advance_shutdown();
                }
            }
        }
        std::mem::take(&mut self.out)
    }

    fn handle(&mut self, event: FleetEvent) -> Advance {
        match event {
            FleetEvent::Instance {
                program,
                index,
                incarnation,
                status,
                events,
            } => self.on_instance_changed(&program, index, incarnation, status, &events),
            FleetEvent::Terminate(signal) => self.on_terminate(signal),
            FleetEvent::Forward(signal) => {
                for entry in self.entries.iter().chain(&self.retired) {
                    entry.cast_everywhere(&mut self.out, &Command::Signal(signal));
                }
            }
            FleetEvent::Timer(timer) => self.on_timer(timer),
            FleetEvent::Action(request) => self.on_action(request),
            FleetEvent::Reload(request) => self.on_reload(request),
            FleetEvent::Shutdown { cause } => {
                tracing::info!(
                    event = "shutdown_requested",
                    request_id = cause.as_deref(),
                    "shutdown requested over the control socket"
                );
                self.begin_shutdown(0);
            }
            FleetEvent::RestartWanted {
                program,
                incarnation,
            } => self.on_restart_wanted(program, incarnation),
            FleetEvent::ActorFailed { incarnation, error } => {
                self.on_actor_failed(incarnation, &error);
                return Advance::ShutdownOnly;
            }
            FleetEvent::ActorSpawnFailed { incarnation } => self.on_spawn_failed(incarnation),
            FleetEvent::EscapedSignalled { count } => self.on_escaped_signalled(count),
        }
        Advance::All
    }

    fn on_timer(&mut self, timer: FleetTimer) {
        match timer {
            FleetTimer::DrainElapsed => {
                if let Some(shutdown) = self.shutdown.as_mut() {
                    shutdown.draining = false;
                }
            }
            FleetTimer::ShutdownDeadline => {
                if self.shutdown.as_ref().is_some_and(|s| !s.forced) {
                    tracing::warn!(
                        event = "shutdown_timeout",
                        timeout_ms = self.settings.shutdown_timeout.as_millis() as u64,
                        "shutdown_timeout reached; killing every remaining process group"
                    );
                    self.force();
                }
            }
            FleetTimer::KillGraceElapsed => self.on_kill_grace_elapsed(),
            FleetTimer::SweepElapsed => {
                self.out.push(FleetAction::SignalEscaped {
                    signal: Signal::SIGKILL,
                    report: false,
                });
                self.finish();
            }
            FleetTimer::RollDeadline {
                program,
                incarnation,
            } => self.on_roll_deadline(&program, incarnation),
            FleetTimer::BudgetRefill => self.on_budget_refill(),
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_some()
    }

    pub fn config_path(&self) -> &std::path::Path {
        &self.config_path
    }

    /// The current entry of `program`, for its output.
    pub fn entry_of(&self, program: &str) -> Option<EntryId> {
        self.index.get(program).map(|&i| self.entries[i].id)
    }

    pub fn program_count(&self) -> usize {
        self.entries.len()
    }

    pub fn instance_count(&self) -> usize {
        self.entries.iter().map(|e| e.status.instances.len()).sum()
    }

    /// What the outside world sees now.
    pub fn board(&self) -> Board {
        Board {
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
        }
    }

    /// Per program on the board (in order): whether it is meant to run.
    pub fn autostart(&self) -> Vec<bool> {
        self.entries
            .iter()
            .map(|e| e.config.autostart || e.start_requested)
            .collect()
    }

    pub(super) fn next_incarnation(&mut self) -> Incarnation {
        self.next_incarnation += 1;
        self.next_incarnation
    }

    /// A new entry and the action that creates its resources.
    pub(super) fn build_entry(
        &mut self,
        blueprint: Blueprint,
        adopt_tail_of: Option<EntryId>,
    ) -> Entry {
        self.next_entry += 1;
        let entry = Entry::new(self.next_entry, blueprint, self.budget.is_some());
        self.out.push(FleetAction::Build {
            entry: entry.id,
            config: entry.config.clone(),
            adopt_tail_of,
        });
        entry
    }

    pub(super) fn spawn_slots(&mut self, entry: &mut Entry) {
        entry.slots.clear();
        for n in 0..entry.config.instances {
            let incarnation = self.next_incarnation();
            self.out.push(spawn_of(entry, n, incarnation));
            entry.slots.push(Slot::new(incarnation));
        }
    }

    /// Asks for an actor for instance `index` of entry `i`.
    pub(super) fn spawn_instance(&mut self, i: usize, index: u32, incarnation: Incarnation) {
        let action = spawn_of(&self.entries[i], index, incarnation);
        self.out.push(action);
    }

    /// An actor could not be created: a slot stays without one (its
    /// instance stays stopped), a roll's replacement aborts the roll.
    fn on_spawn_failed(&mut self, incarnation: Incarnation) {
        if self.replacement_lost(incarnation, "cannot create the replacement's actor") {
            return;
        }
        for entry in self.entries.iter_mut().chain(self.retired.iter_mut()) {
            for slot in &mut entry.slots {
                if slot.incarnation == incarnation {
                    slot.live = false;
                }
            }
        }
    }

    /// An instance actor panicked (a bug in kelpie): its state's `Drop`
    /// killed its process group. A slot actor is replaced (and restarted if
    /// it was meant to run); a roll replacement aborts the roll; a retiring
    /// actor is simply gone.
    fn on_actor_failed(&mut self, incarnation: Incarnation, error: &str) {
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
                if let Some(position) = entry
                    .retiring
                    .iter()
                    .position(|r| r.incarnation == incarnation)
                {
                    entry.retiring.remove(position);
                    log_actor_failure(entry.name(), error);
                    return;
                }
                if entry.roll.as_ref().and_then(rolling::Roll::replacement) == Some(incarnation) {
                    log_actor_failure(entry.name(), error);
                    self.replacement_lost(incarnation, "the replacement's actor failed");
                    return;
                }
                let Some(n) = entry
                    .slots
                    .iter()
                    .position(|s| s.live && s.incarnation == incarnation)
                else {
                    continue;
                };
                log_actor_failure(&entry.config.instance_name(n as u32), error);
                let restart = !retired
                    && self.shutdown.is_none()
                    && entry.launched
                    && !entry.stopped_by_user()
                    && entry.pending.is_none();
                let fresh = self.next_incarnation();
                let entry = if retired {
                    &mut self.retired[i]
                } else {
                    &mut self.entries[i]
                };
                self.out.push(spawn_of(entry, n as u32, fresh));
                Arc::make_mut(&mut entry.status).instances[n] = InstanceStatus::new();
                if restart {
                    self.out.push(FleetAction::Send {
                        to: fresh,
                        command: Command::Start,
                    });
                }
                entry.slots[n] = Slot {
                    expect_up: Some(restart),
                    ..Slot::new(fresh)
                };
                return;
            }
        }
    }

    fn on_instance_changed(
        &mut self,
        program: &str,
        index: u32,
        incarnation: Incarnation,
        update: InstanceStatus,
        events: &[InstanceEvent],
    ) {
        let is_slot_of = |entry: &Entry| {
            entry
                .slots
                .get(index as usize)
                .is_some_and(|s| s.live && s.incarnation == incarnation)
        };
        if let Some(&i) = self.index.get(program) {
            let entry = &mut self.entries[i];
            if is_slot_of(entry) {
                self.slot_changed(i, index as usize, update, events);
                return;
            }
            if entry.replacement_changed(&mut self.out, incarnation, &update)
                || entry.retiring_changed(&mut self.out, incarnation, &update)
            {
                return;
            }
        }
        for entry in self.retired.iter_mut().filter(|e| e.name() == program) {
            if is_slot_of(entry) {
                entry.slots[index as usize].expect_up = None;
                Arc::make_mut(&mut entry.status).instances[index as usize] = update;
                return;
            }
            if entry.retiring_changed(&mut self.out, incarnation, &update) {
                return;
            }
        }
    }

    fn slot_changed(
        &mut self,
        i: usize,
        index: usize,
        update: InstanceStatus,
        events: &[InstanceEvent],
    ) {
        let entry = &mut self.entries[i];
        let program = entry.config.name.clone();
        let on_failure = entry.config.on_failure;
        // Its own word replaces what the core expected of it.
        entry.slots[index].expect_up = None;
        Arc::make_mut(&mut entry.status).instances[index] = update;
        for event in events {
            match *event {
                InstanceEvent::Restarted { count } => {
                    self.out.push(FleetAction::Metric(MetricUpdate::Restarted {
                        program: program.clone(),
                        count,
                    }))
                }
                InstanceEvent::Crashed => self.on_member_crash(&program),
                InstanceEvent::Failed
                    if on_failure == OnFailure::Shutdown && self.shutdown.is_none() =>
                {
                    tracing::error!(
                        event = "shutdown_on_failure",
                        program,
                        "{program} failed and has on_failure = \"shutdown\"; shutting down"
                    );
                    self.begin_shutdown(1);
                }
                InstanceEvent::Failed => {}
            }
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
                        Ok(_) => entry.start_all(&mut self.out, &cause, ack),
                        Err(reason) => {
                            let block = Command::Block(reason.clone());
                            entry.cast_all(&mut self.out, &block);
                            if let Some(seq) = ack {
                                entry.cast_all(&mut self.out, &Command::Ack(seq));
                            }
                        }
                    }
                }
                Gate::Blocked(reason) => {
                    entry.launched = true;
                    tracing::error!(event = "program_blocked", program = %entry.config.name, reason = %reason, "{} cannot start: {reason}", entry.config.name);
                    entry.set_reason(None);
                    entry.cast_all(&mut self.out, &Command::Block(reason.clone()));
                    if let Some((seq, _)) = entry.launch.take() {
                        entry.cast_all(&mut self.out, &Command::Ack(seq));
                    }
                }
            }
        }
    }

    /// Name → position and dependents, after the entries changed.
    pub(super) fn reindex(&mut self) {
        self.index = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name().to_string(), i))
            .collect();
        for entry in &mut self.entries {
            entry.dependents.clear();
        }
        for i in 0..self.entries.len() {
            let deps: Vec<usize> = self.entries[i]
                .config
                .depends_on
                .iter()
                .filter_map(|(dep, _)| self.index.get(dep).copied())
                .collect();
            for d in deps {
                self.entries[d].dependents.push(i);
            }
        }
    }
}

/// Which passes follow an event.
enum Advance {
    /// Queued stops, reload rebuilds, group restarts, the gate, rolls (or
    /// the shutdown sequence).
    All,
    /// Only the shutdown sequence, if one runs (after an actor failure).
    ShutdownOnly,
}

fn spawn_of(entry: &Entry, index: u32, incarnation: Incarnation) -> FleetAction {
    FleetAction::Spawn(SpawnInstance {
        entry: entry.id,
        config: entry.config.clone(),
        policy: entry.policy.clone(),
        identity: entry.identity.clone().ok().flatten(),
        index,
        incarnation,
    })
}

fn log_actor_failure(name: &str, error: &str) {
    tracing::error!(
        event = "program_actor_failed",
        actor = %name,
        error = %error,
        "BUG: the actor supervising {name} failed; its process group was killed and the actor is replaced"
    );
}

#[cfg(test)]
mod tests;

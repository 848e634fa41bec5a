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
use super::entry::{Blueprint, Entry};
use super::groups::Group;
use super::memory_watch::MemoryRestartDue;
use super::reloading::{ReloadOutcome, ReloadRefused, ReloadRequest};
use super::Cause;
use crate::config::{GroupConfig, ProgramConfig, SupervisorConfig};
use crate::process::Identity;
use crate::report::InstanceEvent;
use crate::state::Policy;
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
    /// An instance has been above its `memory_restart` for its `after`.
    MemoryRestart(MemoryRestartDue),
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
    /// Start again as part of a group restart or after a memory restart's
    /// stop (keeps backoff and intensity; counts as a restart).
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
    /// `KELPIE_SLOT`: the instance's own, or for a rolling replacement the
    /// one it switches to (see `rolling::replacement_slot`).
    pub slot: u32,
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
            FleetEvent::MemoryRestart(due) => self.on_memory_restart(due),
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

    /// The current programs' entries, in config order.
    pub fn entry_ids(&self) -> impl Iterator<Item = EntryId> + '_ {
        self.entries.iter().map(|e| e.id)
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
        self.entries.iter().map(Entry::wanted).collect()
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

#[cfg(test)]
mod tests;

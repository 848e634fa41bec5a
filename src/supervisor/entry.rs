//! One configured program as the Supervisor sees it: its shared parts
//! (config, policy, output), one actor slot per instance, what it shows to
//! the outside world, and what has been asked of it.

use std::sync::Arc;

use ractor::ActorRef;

use super::rolling::Roll;
use super::Cause;
use crate::config::ProgramConfig;
use crate::metrics::Metrics;
use crate::output::{ProgramOutput, Relay};
use crate::process::Identity;
use crate::program::ProgramMsg;
use crate::state::{Policy, Snapshot};
use crate::status::ProgramStatus;

pub(super) struct Slot {
    pub actor: Option<ActorRef<ProgramMsg>>,
    /// Unique per actor ever spawned; status updates carry it, so one from
    /// an actor that no longer holds the slot is never mistaken for the
    /// slot's.
    pub incarnation: u64,
}

/// An instance actor on its way out (replaced by a rolling restart, or an
/// aborted replacement): told to stop, and ended once its process group is
/// gone.
pub(super) struct Retiring {
    pub actor: ActorRef<ProgramMsg>,
    pub incarnation: u64,
    pub snapshot: Snapshot,
}

impl Retiring {
    pub fn is_down(&self) -> bool {
        self.snapshot.phase.is_down() && self.snapshot.pid.is_none() && !self.snapshot.want_up
    }
}

pub(super) struct Entry {
    pub config: Arc<ProgramConfig>,
    pub policy: Arc<Policy>,
    pub output: Arc<ProgramOutput>,
    pub identity: Result<Option<Arc<Identity>>, String>,
    pub slots: Vec<Slot>,
    /// What the outside world sees; shared with published boards.
    pub status: Arc<ProgramStatus>,
    pub launched: bool,
    /// Shutdown sent this program its stop.
    pub stop_sent: bool,
    /// Programs that depend on this one (indices into the entries).
    pub dependents: Vec<usize>,
    /// A control `start`/`restart` waiting for the dependency gate: its
    /// sequence number and cause, sent along with the start.
    pub launch: Option<(u64, Cause)>,
    /// Started by request although `autostart = false`.
    pub start_requested: bool,
    /// A requested stop (control `stop`, reload) not sent yet: it goes out
    /// once every program being stopped that depends on this one is down.
    pub stop_queued: Option<(u64, Cause)>,
    /// A requested stop went out and the program is not down yet.
    pub stopping: bool,
    /// A reload changed this program: it is rebuilt from this config once
    /// it is down.
    pub pending: Option<Arc<ProgramConfig>>,
    pub roll: Option<Roll>,
    pub retiring: Vec<Retiring>,
    /// The next launch is a group restart's: `Relaunch`, not `Start`.
    pub relaunch: bool,
}

impl Entry {
    /// The shared parts of a program, without actors yet.
    /// `budgeted`: a global restart budget applies to its restarts.
    pub fn new(
        config: Arc<ProgramConfig>,
        relay: &Relay,
        metrics: &Metrics,
        budgeted: bool,
    ) -> Self {
        Self {
            policy: Arc::new(Policy {
                budgeted,
                ..Policy::from(config.as_ref())
            }),
            output: Arc::new(ProgramOutput::new(&config, relay, metrics)),
            identity: Identity::resolve(config.user.as_deref(), config.group.as_deref())
                .map(|i| i.map(Arc::new)),
            slots: Vec::new(),
            status: Arc::new(ProgramStatus::new(
                &config.name,
                config.required,
                config.kind == crate::restart_policy::ProgramKind::Oneshot,
                config.instances as usize,
            )),
            launched: false,
            stop_sent: false,
            dependents: Vec::new(),
            launch: None,
            start_requested: false,
            stop_queued: None,
            stopping: false,
            pending: None,
            roll: None,
            retiring: Vec::new(),
            relaunch: false,
            config,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// No process, none wanted, and nothing in flight: an instance told to
    /// start counts as up until it reports otherwise, so a stop right after
    /// a start never mistakes it for stopped.
    pub fn is_down(&self) -> bool {
        self.snapshots()
            .all(|s| s.phase.is_down() && s.pid.is_none() && !s.want_up)
            && self.roll.as_ref().is_none_or(|r| !r.has_replacement())
            && self.retiring.is_empty()
    }

    pub fn snapshots(&self) -> impl Iterator<Item = &Snapshot> {
        self.status.instances.iter().map(|i| &i.snapshot)
    }

    pub fn stopped_by_user(&self) -> bool {
        self.status.stopped_by_user
    }

    pub fn set_stopped_by_user(&mut self, stopped: bool) {
        if self.status.stopped_by_user != stopped {
            Arc::make_mut(&mut self.status).stopped_by_user = stopped;
        }
    }

    /// Starts every instance and records that in the snapshots at once.
    pub fn start_all(&mut self, cause: &Cause, ack: Option<u64>) {
        let relaunch = std::mem::take(&mut self.relaunch);
        let status = Arc::make_mut(&mut self.status);
        for instance in &mut status.instances {
            // A relaunch leaves a failed instance failed.
            if !(relaunch && instance.snapshot.phase == crate::state::Phase::Failed) {
                instance.snapshot.want_up = true;
            }
        }
        status.reason = None;
        if relaunch {
            self.command(cause, &[|| ProgramMsg::Relaunch], ack);
        } else {
            self.command(cause, &[|| ProgramMsg::Start], ack);
        }
    }

    pub fn set_reason(&mut self, reason: Option<String>) {
        if self.status.reason != reason {
            Arc::make_mut(&mut self.status).reason = reason;
        }
    }

    /// Messages to every slot actor.
    pub fn cast_all(&self, make: impl Fn() -> ProgramMsg) {
        for actor in self.slots.iter().filter_map(|s| s.actor.as_ref()) {
            let _ = actor.cast(make());
        }
    }

    /// Messages to every actor of the program, including a rolling
    /// restart's replacement and retiring instances (shutdown, signals).
    pub fn cast_everywhere(&self, make: impl Fn() -> ProgramMsg) {
        self.cast_all(&make);
        if let Some(actor) = self.roll.as_ref().and_then(Roll::replacement_actor) {
            let _ = actor.cast(make());
        }
        for retiring in &self.retiring {
            let _ = retiring.actor.cast(make());
        }
    }

    /// A control command to every slot: the cause first (so the events it
    /// causes carry its request id), then the commands, then the ack that
    /// tells a waiting request its outcome is visible.
    pub fn command(&self, cause: &Cause, messages: &[fn() -> ProgramMsg], ack: Option<u64>) {
        for actor in self.slots.iter().filter_map(|s| s.actor.as_ref()) {
            if cause.is_some() {
                let _ = actor.cast(ProgramMsg::Cause(cause.clone()));
            }
            for make in messages {
                let _ = actor.cast(make());
            }
            if let Some(seq) = ack {
                let _ = actor.cast(ProgramMsg::Ack(seq));
            }
        }
    }

    /// Ends every actor of the program (its processes are gone).
    pub fn stop_actors(&mut self) {
        for slot in &mut self.slots {
            if let Some(actor) = slot.actor.take() {
                actor.stop(None);
            }
        }
        for retiring in self.retiring.drain(..) {
            retiring.actor.stop(None);
        }
    }
}

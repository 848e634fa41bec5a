//! `kelpie restart --rolling`: the instances of a program are replaced one
//! at a time. For each: start a replacement beside the old instance (same
//! `KELPIE_INSTANCE`, for servers sharing a port with SO_REUSEPORT, but
//! another `KELPIE_SLOT`, so that an address of its own, such as a health
//! port, is not the old one's), wait until it is ready, then stop the old
//! one, and only when that is gone move to the next. So at least
//! `instances` copies are ready throughout, and at most one extra runs. A replacement that fails, exits, or is not
//! ready in time aborts the roll: it is stopped and every instance not yet
//! replaced keeps running untouched.
//!
//! A reload of a program with `reload = "rolling"` is the same roll with a
//! `Renewal`: replacements are built from the new config, which the
//! program takes over once the last instance is replaced. An aborted
//! renewal leaves the program on its old config (the instances already
//! replaced keep the new one), so `kelpie diff` still shows the change and
//! the next reload rolls again.

use std::sync::Arc;
use std::time::Duration;

use super::core::{Command, Fleet, FleetAction, FleetTimer, Incarnation};
use super::entry::{Entry, Retiring};
use super::Cause;
use crate::config::ProgramConfig;
use crate::process::Identity;
use crate::state::{Phase, Policy};
use crate::status::InstanceStatus;

pub(super) enum Step {
    /// A replacement for instance `index` is to be spawned.
    Spawn,
    AwaitReady {
        incarnation: Incarnation,
        /// The replacement's `KELPIE_SLOT`, the instance's once promoted.
        kelpie_slot: u32,
        status: InstanceStatus,
        /// Told to start and not heard from yet.
        expect_up: Option<bool>,
    },
    /// The replaced actor is stopping.
    AwaitOldDown { incarnation: Incarnation },
}

pub(super) struct Roll {
    pub index: u32,
    pub step: Step,
    pub cause: Cause,
    /// The control request that asked for it: its end is reported there
    /// (0 for a reload's: nobody waits for it).
    pub request: u64,
    pub program: String,
    pub renewal: Option<Renewal>,
}

/// What a reload's roll builds replacements from.
pub(super) struct Renewal {
    pub config: Arc<ProgramConfig>,
    pub policy: Arc<Policy>,
    pub identity: Option<Arc<Identity>>,
}

impl Roll {
    pub fn new(program: &str, cause: Cause, request: u64) -> Self {
        Self {
            index: 0,
            step: Step::Spawn,
            cause,
            request,
            program: program.to_string(),
            renewal: None,
        }
    }

    /// A reload's roll onto `renewal`.
    pub fn renew(program: &str, cause: Cause, renewal: Renewal) -> Self {
        Self {
            renewal: Some(renewal),
            ..Self::new(program, cause, 0)
        }
    }

    pub fn has_replacement(&self) -> bool {
        matches!(self.step, Step::AwaitReady { .. })
    }

    pub fn replacement(&self) -> Option<Incarnation> {
        match &self.step {
            Step::AwaitReady { incarnation, .. } => Some(*incarnation),
            _ => None,
        }
    }

    fn finish(&self, out: &mut Vec<FleetAction>, result: Result<String, String>) {
        out.push(FleetAction::RollEnded {
            request: self.request,
            program: self.program.clone(),
            result,
        });
    }
}

/// The `KELPIE_SLOT` of the replacement for an instance in `slot`, of a
/// program with `instances` instances: the other half of 0..2 × instances,
/// so the two never share a slot, and a second roll switches back.
pub(super) fn replacement_slot(slot: u32, instances: u32) -> u32 {
    if slot < instances {
        slot + instances
    } else {
        slot - instances
    }
}

/// How long a replacement may take to become ready before the roll is
/// aborted: the program's own start budget and a little slack.
pub(super) fn ready_deadline(entry: &Entry) -> Duration {
    let config = entry
        .roll
        .as_ref()
        .and_then(|r| r.renewal.as_ref())
        .map_or(&entry.config, |r| &r.config);
    config.start_seconds + config.start_timeout + Duration::from_secs(1)
}

impl Entry {
    /// Ends a roll in progress: a replacement not yet ready is stopped and
    /// the instances not yet replaced are left as they are.
    pub(super) fn abort_roll(&mut self, out: &mut Vec<FleetAction>, reason: &str) {
        let Some(mut roll) = self.roll.take() else {
            return;
        };
        let name = self.config.instance_name(roll.index);
        if let Step::AwaitReady {
            incarnation,
            status,
            ..
        } = std::mem::replace(&mut roll.step, Step::Spawn)
        {
            out.push(FleetAction::Send {
                to: incarnation,
                command: Command::Stop,
            });
            self.retiring.push(Retiring {
                incarnation,
                snapshot: status.snapshot,
            });
        }
        tracing::warn!(
            event = "rolling_restart_aborted",
            program = %self.config.name,
            instance = roll.index,
            request_id = roll.cause.as_deref(),
            reason,
            "rolling restart of {} aborted at {name}: {reason}; instances not yet replaced keep running",
            self.config.name
        );
        roll.finish(out, Err(format!(
            "rolling restart aborted at {name}: {reason}; {} of {} instances replaced, the others keep running",
            roll.index, self.config.instances
        )));
    }

    /// A status update from the roll's replacement. Returns whether
    /// `incarnation` was the replacement.
    pub(super) fn replacement_changed(
        &mut self,
        out: &mut Vec<FleetAction>,
        incarnation: Incarnation,
        update: &InstanceStatus,
    ) -> bool {
        let Some(roll) = self.roll.as_mut() else {
            return false;
        };
        let Step::AwaitReady {
            incarnation: current,
            status,
            expect_up,
            ..
        } = &mut roll.step
        else {
            return false;
        };
        if *current != incarnation {
            return false;
        }
        *status = update.clone();
        *expect_up = None;
        let snapshot = &update.snapshot;
        if snapshot.ready && snapshot.pid.is_some() {
            self.promote_replacement(out);
        } else if snapshot.run >= 1 && !matches!(snapshot.phase, Phase::Starting | Phase::Running) {
            let reason = match (&snapshot.reason, snapshot.last_exit) {
                (Some(reason), _) => {
                    format!("the replacement is {}: {reason}", snapshot.phase.as_str())
                }
                (None, Some(exit)) => format!("the replacement exited with {exit}"),
                (None, None) => format!("the replacement is {}", snapshot.phase.as_str()),
            };
            self.abort_roll(out, &reason);
        }
        true
    }

    /// The replacement is ready: it takes the slot, and the instance it
    /// replaces is stopped.
    fn promote_replacement(&mut self, out: &mut Vec<FleetAction>) {
        let Some(roll) = self.roll.as_mut() else {
            return;
        };
        let Step::AwaitReady {
            incarnation,
            kelpie_slot,
            status,
            expect_up,
        } = std::mem::replace(&mut roll.step, Step::Spawn)
        else {
            return;
        };
        let index = roll.index as usize;
        let cause = roll.cause.clone();
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        let old_incarnation = slot.incarnation;
        let old_live = std::mem::replace(&mut slot.live, true);
        slot.expect_up = expect_up;
        // A memory restart of the old process is moot.
        slot.relaunch = None;
        slot.incarnation = incarnation;
        slot.kelpie_slot = kelpie_slot;
        let old_snapshot = std::mem::replace(
            &mut std::sync::Arc::make_mut(&mut self.status).instances[index],
            status,
        )
        .snapshot;
        tracing::info!(
            event = "rolling_restart_replaced",
            program = %self.config.name,
            instance = index,
            request_id = cause.as_deref(),
            "{} is ready in its replacement; stopping the old process",
            self.config.instance_name(index as u32)
        );
        if old_live {
            out.push(FleetAction::Send {
                to: old_incarnation,
                command: Command::Cause(cause),
            });
            out.push(FleetAction::Send {
                to: old_incarnation,
                command: Command::Stop,
            });
            self.retiring.push(Retiring {
                incarnation: old_incarnation,
                snapshot: old_snapshot,
            });
            if let Some(roll) = self.roll.as_mut() {
                roll.step = Step::AwaitOldDown {
                    incarnation: old_incarnation,
                };
            }
        } else {
            self.roll_next(out);
        }
    }

    /// A status update from a retiring actor; ends it once it is down.
    /// Returns whether `incarnation` was retiring.
    pub(super) fn retiring_changed(
        &mut self,
        out: &mut Vec<FleetAction>,
        incarnation: Incarnation,
        update: &InstanceStatus,
    ) -> bool {
        let Some(position) = self
            .retiring
            .iter()
            .position(|r| r.incarnation == incarnation)
        else {
            return false;
        };
        self.retiring[position].snapshot = update.snapshot.clone();
        if self.retiring[position].is_down() {
            self.retiring.remove(position);
            out.push(FleetAction::StopActor { incarnation });
            let awaited = matches!(
                self.roll.as_ref().map(|r| &r.step),
                Some(Step::AwaitOldDown { incarnation: i }) if *i == incarnation
            );
            if awaited {
                self.roll_next(out);
            }
        }
        true
    }

    /// On to the next instance, or done.
    fn roll_next(&mut self, out: &mut Vec<FleetAction>) {
        let instances = self.config.instances;
        let Some(roll) = self.roll.as_mut() else {
            return;
        };
        roll.index += 1;
        roll.step = Step::Spawn;
        if roll.index < instances {
            return;
        }
        let Some(roll) = self.roll.take() else {
            return;
        };
        if let Some(renewal) = roll.renewal.as_ref() {
            self.config = renewal.config.clone();
            self.policy = renewal.policy.clone();
            self.identity = Ok(renewal.identity.clone());
            if self.status.required != self.config.required {
                Arc::make_mut(&mut self.status).required = self.config.required;
            }
            // `autostart` may have changed with it.
            self.set_want(self.want());
            tracing::info!(
                event = "program_reconfigured",
                program = %self.config.name,
                request_id = roll.cause.as_deref(),
                "{} runs its new config in every instance",
                self.config.name
            );
        }
        tracing::info!(
            event = "rolling_restart_complete",
            program = %self.config.name,
            instances,
            request_id = roll.cause.as_deref(),
            "rolling restart of {} complete",
            self.config.name
        );
        roll.finish(
            out,
            Ok(format!(
                "replaced {instances} instance{} one at a time",
                if instances == 1 { "" } else { "s" }
            )),
        );
    }
}

impl Fleet {
    /// Spawns the replacement of every roll that is waiting for one.
    pub(super) fn advance_rolls(&mut self) {
        for i in 0..self.entries.len() {
            let wants_spawn = matches!(
                self.entries[i].roll.as_ref().map(|r| &r.step),
                Some(Step::Spawn)
            );
            if !wants_spawn {
                continue;
            }
            let incarnation = self.next_incarnation();
            let Some(index) = self.entries[i].roll.as_ref().map(|r| r.index) else {
                continue;
            };
            let kelpie_slot = self.spawn_replacement(i, index, incarnation);
            let entry = &mut self.entries[i];
            let Some(roll) = entry.roll.as_mut() else {
                continue;
            };
            if roll.cause.is_some() {
                self.out.push(FleetAction::Send {
                    to: incarnation,
                    command: Command::Cause(roll.cause.clone()),
                });
            }
            self.out.push(FleetAction::Send {
                to: incarnation,
                command: Command::Start,
            });
            roll.step = Step::AwaitReady {
                incarnation,
                kelpie_slot,
                status: InstanceStatus::in_slot(kelpie_slot),
                expect_up: Some(true),
            };
            tracing::info!(
                event = "rolling_restart_step",
                program = %entry.config.name,
                instance = index,
                request_id = roll.cause.as_deref(),
                "starting a replacement for {}",
                entry.config.instance_name(index)
            );
            self.out.push(FleetAction::After {
                delay: ready_deadline(entry),
                timer: FleetTimer::RollDeadline {
                    program: entry.config.name.clone(),
                    incarnation,
                },
            });
        }
    }

    pub(super) fn on_roll_deadline(&mut self, program: &str, incarnation: Incarnation) {
        let Some(&i) = self.index.get(program) else {
            return;
        };
        let entry = &mut self.entries[i];
        let waiting = matches!(
            entry.roll.as_ref().map(|r| &r.step),
            Some(Step::AwaitReady { incarnation: current, .. }) if *current == incarnation
        );
        if waiting {
            let limit = humantime::format_duration(ready_deadline(entry));
            entry.abort_roll(
                &mut self.out,
                &format!("the replacement was not ready within {limit}"),
            );
        }
    }

    /// The actor for a roll's replacement could not be created.
    pub(super) fn replacement_lost(&mut self, incarnation: Incarnation, reason: &str) -> bool {
        for entry in &mut self.entries {
            if entry.roll.as_ref().and_then(Roll::replacement) == Some(incarnation) {
                if let Some(roll) = entry.roll.as_mut() {
                    roll.step = Step::Spawn;
                }
                entry.abort_roll(&mut self.out, reason);
                return true;
            }
        }
        false
    }
}

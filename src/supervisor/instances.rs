//! The fleet core's side of its instance actors: asking for them, and
//! what their reports and failures change.

use std::sync::Arc;

use super::core::{Command, Fleet, FleetAction, Incarnation, MetricUpdate, SpawnInstance};
use super::entry::{Entry, Slot, Stage};
use super::rolling;
use crate::config::OnFailure;
use crate::report::InstanceEvent;
use crate::status::InstanceStatus;

impl Fleet {
    pub(super) fn spawn_slots(&mut self, entry: &mut Entry) {
        entry.slots.clear();
        for n in 0..entry.config.instances {
            let incarnation = self.next_incarnation();
            self.out.push(spawn_of(entry, n, n, incarnation));
            entry.slots.push(Slot::new(incarnation, n));
        }
    }

    /// Asks for the actor of a roll's replacement for instance `index` of
    /// entry `i`: from the new config when a reload's roll renews it, in a
    /// `KELPIE_SLOT` other than the instance's (returned).
    pub(super) fn spawn_replacement(
        &mut self,
        i: usize,
        index: u32,
        incarnation: Incarnation,
    ) -> u32 {
        let entry = &self.entries[i];
        let current = entry
            .slots
            .get(index as usize)
            .map_or(index, |s| s.kelpie_slot);
        let slot = rolling::replacement_slot(current, entry.config.instances);
        let action = match entry.roll.as_ref().and_then(|r| r.renewal.as_ref()) {
            Some(renewal) => FleetAction::Spawn(SpawnInstance {
                entry: entry.id,
                config: renewal.config.clone(),
                policy: renewal.policy.clone(),
                identity: renewal.identity.clone(),
                index,
                slot,
                incarnation,
            }),
            None => spawn_of(entry, index, slot, incarnation),
        };
        self.out.push(action);
        slot
    }

    /// An actor could not be created: a slot stays without one (its
    /// instance stays stopped), a roll's replacement aborts the roll.
    pub(super) fn on_spawn_failed(&mut self, incarnation: Incarnation) {
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
    pub(super) fn on_actor_failed(&mut self, incarnation: Incarnation, error: &str) {
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
                    && matches!(entry.stage, Stage::Launched)
                    && !entry.stopped_by_user();
                let fresh = self.next_incarnation();
                let entry = if retired {
                    &mut self.retired[i]
                } else {
                    &mut self.entries[i]
                };
                // A new actor for the same instance: it keeps its slot.
                let slot = entry.slots[n].kelpie_slot;
                self.out.push(spawn_of(entry, n as u32, slot, fresh));
                Arc::make_mut(&mut entry.status).instances[n] = InstanceStatus::in_slot(slot);
                if restart {
                    self.out.push(FleetAction::Send {
                        to: fresh,
                        command: Command::Start,
                    });
                }
                entry.slots[n] = Slot {
                    expect_up: Some(restart),
                    ..Slot::new(fresh, slot)
                };
                return;
            }
        }
    }

    pub(super) fn on_instance_changed(
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
        entry.show_hold(index);
        self.settle_memory_restart(i, index);
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
}

fn spawn_of(entry: &Entry, index: u32, slot: u32, incarnation: Incarnation) -> FleetAction {
    FleetAction::Spawn(SpawnInstance {
        entry: entry.id,
        config: entry.config.clone(),
        policy: entry.policy.clone(),
        identity: entry.identity.clone().ok().flatten(),
        index,
        slot,
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

//! Applying a reload (SIGHUP, `kelpie reload`) and answering `kelpie diff`.
//!
//! The new file is validated exactly like at `run`; any error keeps the
//! running config and every program untouched. Otherwise, per
//! `reload::plan`: added programs start (through the dependency gate),
//! removed ones stop (dependents first) and are dropped once down, changed
//! ones stop and are rebuilt from the new config once down (a changed
//! dependency before its changed dependents), unchanged ones are not
//! touched at all. `kelpie stop` stays in force across all of it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::core::{Answer, Command, Fleet, FleetAction, MetricUpdate};
use super::entry::{AfterStop, Blueprint, Entry, Stage};
use super::rolling::{Renewal, Roll};
use super::Cause;
use crate::config::{Config, ProgramConfig};
use crate::reload::{self, Change, PlanItem};
use crate::state::Policy;

/// `reload` or `diff` as the control API sends it to the Supervisor actor.
pub struct ReloadCommand {
    /// False for `diff`: report the plan, change nothing.
    pub apply: bool,
    /// `diff` against another file than the running config's.
    pub path: Option<PathBuf>,
    pub cause: Cause,
    pub reply: Option<oneshot::Sender<Result<ReloadOutcome, ReloadRefused>>>,
}

/// A reload as the fleet core takes it: the file was already read and
/// validated by the shell (the core does no I/O).
pub struct ReloadRequest {
    /// Where `Answer::Reload` goes; `None` for SIGHUP.
    pub request: Option<u64>,
    pub apply: bool,
    pub path: PathBuf,
    pub cause: Cause,
    pub loaded: Result<Loaded, Vec<String>>,
}

/// A valid config with its programs' blueprints (in config order) and the
/// validator's warnings.
pub struct Loaded {
    pub config: Config,
    pub blueprints: Vec<Blueprint>,
    pub warnings: Vec<String>,
}

#[derive(Debug)]
pub struct ReloadOutcome {
    pub path: PathBuf,
    pub plan: Vec<PlanItem>,
    pub warnings: Vec<String>,
}

#[derive(Debug)]
pub struct ReloadRefused {
    pub path: PathBuf,
    /// One line each (`file:line:col: key: message` for config errors).
    pub errors: Vec<String>,
    /// The config is invalid (as opposed to: kelpie is shutting down).
    pub invalid: bool,
}

impl Fleet {
    pub(super) fn on_reload(&mut self, command: ReloadRequest) {
        let result = self.reload(command.apply, command.path, &command.cause, command.loaded);
        self.out.push(FleetAction::Answer(Answer::Reload {
            request: command.request,
            result,
        }));
    }

    fn reload(
        &mut self,
        apply: bool,
        path: PathBuf,
        cause_id: &Cause,
        loaded: Result<Loaded, Vec<String>>,
    ) -> Result<ReloadOutcome, ReloadRefused> {
        let cause = cause_id.as_deref();
        if apply && self.shutdown.is_some() {
            return Err(ReloadRefused {
                path,
                errors: vec!["kelpie is shutting down; nothing to reload".into()],
                invalid: false,
            });
        }
        let Loaded {
            config: new,
            blueprints,
            mut warnings,
        } = match loaded {
            Ok(loaded) => loaded,
            Err(errors) => {
                if apply {
                    for error in &errors {
                        tracing::error!(
                            event = "config_reload_failed",
                            request_id = cause,
                            "{error}"
                        );
                    }
                    tracing::error!(
                        event = "config_reload_refused",
                        path = %path.display(),
                        errors = errors.len(),
                        request_id = cause,
                        "{}: invalid config; still running the previous one",
                        path.display()
                    );
                }
                return Err(ReloadRefused {
                    path,
                    errors,
                    invalid: true,
                });
            }
        };
        // Compared with what each program is (or is about to be) run with.
        let current: Vec<Arc<ProgramConfig>> = self
            .entries
            .iter()
            .map(|e| e.target_config().clone())
            .collect();
        let mut plan = reload::plan(&current, &new.programs);
        // A roll needs every instance up to keep serving; otherwise the
        // change restarts the program (as `restart --rolling` does).
        for item in plan.iter_mut().filter(|i| i.change == Change::Roll) {
            let rollable = self
                .index
                .get(item.program.as_str())
                .is_some_and(|&i| self.entries[i].can_roll());
            let resolvable = blueprints
                .iter()
                .any(|b| b.config.name == item.program && b.identity.is_ok());
            if !(rollable && resolvable) {
                item.change = Change::Restart;
            }
        }
        let (live, later) = reload::supervisor_changes(&self.settings, &new.supervisor);
        warnings.extend(later);
        if !apply {
            return Ok(ReloadOutcome {
                path,
                plan,
                warnings,
            });
        }

        for key in &live {
            tracing::info!(
                event = "config_setting_applied",
                key,
                request_id = cause,
                "supervisor.{key} applied"
            );
        }
        self.settings.shutdown_timeout = new.supervisor.shutdown_timeout;
        self.settings.drain_delay = new.supervisor.drain_delay;
        self.settings.restart_budget = new.supervisor.restart_budget;
        self.set_budget(new.supervisor.restart_budget);
        for warning in &warnings {
            tracing::warn!(event = "config_warning", request_id = cause, "{warning}");
        }

        let mut old: HashMap<String, Entry> = self
            .entries
            .drain(..)
            .map(|e| (e.name().to_string(), e))
            .collect();
        let mut entries = Vec::with_capacity(new.programs.len());
        for (blueprint, item) in blueprints.into_iter().zip(&plan) {
            match (item.change, old.remove(&blueprint.config.name)) {
                (Change::Restart, Some(mut entry)) => {
                    entry.abort_roll(&mut self.out, "the program changed in a reload");
                    entry.rebuild_from(blueprint, cause_id);
                    entries.push(entry);
                }
                (Change::Roll, Some(mut entry)) => {
                    entry.abort_roll(&mut self.out, "the program changed in a reload");
                    let renewal = Renewal {
                        policy: Arc::new(Policy {
                            budgeted: self.budget.is_some(),
                            ..Policy::from(blueprint.config.as_ref())
                        }),
                        identity: blueprint.identity.clone().ok().flatten(),
                        config: blueprint.config,
                    };
                    entry.roll = Some(Roll::renew(entry.name(), cause_id.clone(), renewal));
                    entries.push(entry);
                }
                (_, Some(mut entry)) => {
                    // Equal in everything that affects how it runs; keys
                    // like `reload` are taken over in place.
                    entry.refresh_config(blueprint.config);
                    entries.push(entry);
                }
                (_, None) => {
                    let mut entry = self.build_entry(blueprint, None);
                    self.spawn_slots(&mut entry);
                    entries.push(entry);
                }
            }
        }
        for (_, mut entry) in old {
            entry.abort_roll(&mut self.out, "the program was removed in a reload");
            entry.lift_stop();
            Arc::make_mut(&mut entry.status).required = false;
            entry.stage = Stage::StopQueued {
                request: (0, cause_id.clone()),
                then: AfterStop::Stay,
            };
            self.retired.push(entry);
        }
        self.entries = entries;
        self.reindex();
        self.set_groups(new.groups.clone());

        let count = |change: Change| plan.iter().filter(|i| i.change == change).count();
        tracing::info!(
            event = "config_reloaded",
            path = %path.display(),
            started = count(Change::Start),
            stopped = count(Change::Stop),
            restarted = count(Change::Restart),
            rolled = count(Change::Roll),
            unchanged = count(Change::Unchanged),
            request_id = cause,
            "config reloaded: {} to start, {} to stop, {} to restart, {} to roll, {} unchanged",
            count(Change::Start),
            count(Change::Stop),
            count(Change::Restart),
            count(Change::Roll),
            count(Change::Unchanged)
        );
        Ok(ReloadOutcome {
            path,
            plan,
            warnings,
        })
    }

    /// Rebuilds changed programs that are down now, a changed dependency
    /// before its changed dependents; drops removed programs that are down.
    pub(super) fn settle_reload(&mut self) {
        let mut rebuilt = false;
        for i in 0..self.entries.len() {
            let entry = &self.entries[i];
            let Stage::Rebuilding { blueprint, .. } = &entry.stage else {
                continue;
            };
            if !entry.is_down() {
                continue;
            }
            let dependency_pending = blueprint.config.depends_on.iter().any(|(dep, _)| {
                self.index
                    .get(dep)
                    .is_some_and(|&d| d != i && self.entries[d].stage.pending().is_some())
            });
            if dependency_pending {
                continue;
            }
            let Stage::Rebuilding { blueprint, start } =
                std::mem::replace(&mut self.entries[i].stage, Stage::Stopped)
            else {
                continue;
            };
            let old_id = self.entries[i].id;
            let mut fresh = self.build_entry(blueprint, Some(old_id));
            let old = &mut self.entries[i];
            old.stop_actors(&mut self.out);
            fresh.set_want(old.want());
            fresh.dependents = std::mem::take(&mut old.dependents);
            let acknowledged_by_launch = start.is_some();
            fresh.stage = if fresh.stopped_by_user() {
                Stage::Stopped
            } else {
                Stage::Gated {
                    request: start,
                    relaunch: false,
                }
            };
            self.out.push(FleetAction::Discard { entry: old_id });
            tracing::info!(
                event = "program_reconfigured",
                program = %fresh.name(),
                "{} restarts with its new config",
                fresh.name()
            );
            self.spawn_slots(&mut fresh);
            // The new actors stand for every command given so far (a stop
            // waiting on the old ones sees its outcome here) unless a start
            // is about to be acknowledged by the launch itself.
            if !acknowledged_by_launch {
                let seq = self.next_seq;
                fresh.cast_all(&mut self.out, &Command::Ack(seq));
            }
            self.entries[i] = fresh;
            rebuilt = true;
        }
        if rebuilt {
            // The new configs may depend on other programs than the old.
            self.reindex();
        }
        if self.retired.is_empty() {
            return;
        }
        // Runs after every event: a copy of every name per event made a
        // start of 10,000 programs allocate 10⁸ strings.
        let index = &self.index;
        let out = &mut self.out;
        self.retired.retain_mut(|entry| {
            if matches!(entry.stage, Stage::StopQueued { .. }) || !entry.is_down() {
                return true;
            }
            entry.stop_actors(out);
            out.push(FleetAction::Discard { entry: entry.id });
            if !index.contains_key(entry.name()) {
                out.push(FleetAction::Metric(MetricUpdate::ProgramRemoved {
                    program: entry.name().to_string(),
                }));
            }
            tracing::info!(event = "program_removed", program = %entry.name(), "{} removed", entry.name());
            false
        });
    }
}

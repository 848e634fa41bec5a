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

use ractor::ActorRef;
use tokio::sync::oneshot;

use super::entry::Entry;
use super::{Cause, SupervisorMsg, SupervisorState};
use crate::config::{self, Host, Mode, ProgramConfig};
use crate::reload::{self, Change, PlanItem};

pub struct ReloadCommand {
    /// False for `diff`: report the plan, change nothing.
    pub apply: bool,
    /// `diff` against another file than the running config's.
    pub path: Option<PathBuf>,
    pub cause: Cause,
    pub reply: Option<oneshot::Sender<Result<ReloadOutcome, ReloadRefused>>>,
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

impl SupervisorState {
    pub(super) async fn on_reload(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        command: ReloadCommand,
    ) {
        let notify = command.apply && self.shutdown.is_none();
        if let (true, Some(systemd)) = (notify, &self.systemd) {
            systemd.reloading();
        }
        let result = self.reload(myself, &command).await;
        // Refused or applied, kelpie runs on: systemd hears READY=1 again.
        if let (true, Some(systemd)) = (notify, &self.systemd) {
            systemd.reloaded();
        }
        if let Some(reply) = command.reply {
            let _ = reply.send(result);
        }
    }

    async fn reload(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        command: &ReloadCommand,
    ) -> Result<ReloadOutcome, ReloadRefused> {
        let path = command
            .path
            .clone()
            .unwrap_or_else(|| self.config_path.clone());
        let cause = command.cause.as_deref();
        if command.apply && self.shutdown.is_some() {
            return Err(ReloadRefused {
                path,
                errors: vec!["kelpie is shutting down; nothing to reload".into()],
                invalid: false,
            });
        }
        let validation = config::load(&path, Mode::Run, &Host::current());
        let errors: Vec<String> = validation.errors().map(|d| d.to_string()).collect();
        let mut warnings: Vec<String> = validation.warnings().map(|d| d.to_string()).collect();
        let new = match validation.config {
            Some(config) if errors.is_empty() => config,
            _ => {
                if command.apply {
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
            .map(|e| e.pending.clone().unwrap_or_else(|| e.config.clone()))
            .collect();
        let plan = reload::plan(&current, &new.programs);
        let (live, later) = reload::supervisor_changes(&self.settings, &new.supervisor);
        warnings.extend(later);
        if !command.apply {
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
        self.set_budget(myself, new.supervisor.restart_budget);
        for warning in &warnings {
            tracing::warn!(event = "config_warning", request_id = cause, "{warning}");
        }

        let mut old: HashMap<String, Entry> = self
            .entries
            .drain(..)
            .map(|e| (e.name().to_string(), e))
            .collect();
        let mut entries = Vec::with_capacity(new.programs.len());
        for (program, item) in new.programs.iter().zip(&plan) {
            match (item.change, old.remove(&program.name)) {
                (Change::Restart, Some(mut entry)) => {
                    entry.abort_roll("the program changed in a reload");
                    entry.pending = Some(program.clone());
                    entry.launch = None;
                    if !entry.is_down() {
                        entry.stop_queued = Some((0, command.cause.clone()));
                    }
                    entries.push(entry);
                }
                (_, Some(entry)) => entries.push(entry),
                (_, None) => {
                    let mut entry = Entry::new(
                        program.clone(),
                        &self.relay,
                        &self.metrics,
                        self.budget.is_some(),
                    );
                    self.spawn_slots(myself, &mut entry).await;
                    entries.push(entry);
                }
            }
        }
        for (_, mut entry) in old {
            entry.abort_roll("the program was removed in a reload");
            entry.pending = None;
            entry.launch = None;
            entry.set_stopped_by_user(false);
            Arc::make_mut(&mut entry.status).required = false;
            entry.stop_queued = Some((0, command.cause.clone()));
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
            unchanged = count(Change::Unchanged),
            request_id = cause,
            "config reloaded: {} to start, {} to stop, {} to restart, {} unchanged",
            count(Change::Start),
            count(Change::Stop),
            count(Change::Restart),
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
    pub(super) async fn settle_reload(&mut self, myself: &ActorRef<SupervisorMsg>) {
        let mut rebuilt = false;
        for i in 0..self.entries.len() {
            let entry = &self.entries[i];
            let Some(config) = entry.pending.clone() else {
                continue;
            };
            if !entry.is_down() || entry.stop_queued.is_some() {
                continue;
            }
            let dependency_pending = config.depends_on.iter().any(|(dep, _)| {
                self.index
                    .get(dep)
                    .is_some_and(|&d| d != i && self.entries[d].pending.is_some())
            });
            if dependency_pending {
                continue;
            }
            let mut fresh = Entry::new(config, &self.relay, &self.metrics, self.budget.is_some());
            let old = &mut self.entries[i];
            old.stop_actors();
            fresh.set_stopped_by_user(old.stopped_by_user());
            fresh.start_requested = old.start_requested;
            fresh.dependents = std::mem::take(&mut old.dependents);
            fresh.output.adopt_tail(&old.output);
            fresh.launch = old.launch.take();
            tracing::info!(
                event = "program_reconfigured",
                program = %fresh.name(),
                "{} restarts with its new config",
                fresh.name()
            );
            self.spawn_slots(myself, &mut fresh).await;
            // The new actors stand for every command given so far (a stop
            // waiting on the old ones sees its outcome here) unless a start
            // is about to be acknowledged by the launch itself.
            if fresh.launch.is_none() {
                let seq = self.next_seq;
                fresh.cast_all(|| crate::program::ProgramMsg::Ack(seq));
            }
            self.entries[i] = fresh;
            rebuilt = true;
        }
        if rebuilt {
            // The new configs may depend on other programs than the old.
            self.reindex();
        }
        let names: Vec<String> = self.entries.iter().map(|e| e.name().to_string()).collect();
        let metrics = self.metrics.clone();
        self.retired.retain_mut(|entry| {
            if entry.stop_queued.is_some() || !entry.is_down() {
                return true;
            }
            entry.stop_actors();
            if !names.iter().any(|n| n == entry.name()) {
                metrics.remove_program(entry.name());
            }
            tracing::info!(event = "program_removed", program = %entry.name(), "{} removed", entry.name());
            false
        });
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

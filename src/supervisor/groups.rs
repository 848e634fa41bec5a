//! Supervision groups (`[group.NAME]`): OTP-style restart strategies for
//! OS processes.
//!
//! - `one_for_one` (default): a crash restarts only the crashed program,
//!   by its own policy.
//! - `one_for_all`: a crash of any member stops every member (in reverse
//!   order) and then starts them all again (in order).
//! - `rest_for_one`: the crashed member and every member listed after it.
//!
//! A crash is an unplanned exit (`Snapshot::crashes`); `kelpie stop` and
//! `kelpie restart` of a member never trigger the strategy. Stops and starts
//! go one program at a time and respect `depends_on` as well as the listed
//! order: a member stops only once its dependents among the affected are
//! down, and starts through the usual dependency gate. The group's own
//! intensity (`max_restarts` in `restart_window`) counts group-level
//! restarts; exceeding it fails the group: every member is stopped, and
//! `on_failure = "shutdown"` shuts kelpie down with exit 1.

use super::core::{Command, Fleet};
use super::entry::Stage;
use crate::backoff::RestartWindow;
use crate::config::{GroupConfig, GroupStrategy, OnFailure};
use crate::state::Phase;

pub(super) struct Group {
    pub config: GroupConfig,
    window: RestartWindow,
    failed: bool,
    restart: Option<GroupRestart>,
}

/// A group restart in progress.
struct GroupRestart {
    /// The members to restart, in the group's listed order.
    affected: Vec<String>,
    stopping: bool,
    /// Members told to stop, or (while starting) let through the gate.
    done: Vec<String>,
}

impl Group {
    pub fn new(config: GroupConfig) -> Self {
        Self {
            config,
            window: RestartWindow::default(),
            failed: false,
            restart: None,
        }
    }

    fn strategy_name(&self) -> &'static str {
        match self.config.strategy {
            GroupStrategy::OneForOne => "one_for_one",
            GroupStrategy::OneForAll => "one_for_all",
            GroupStrategy::RestForOne => "rest_for_one",
        }
    }

    /// The members a crash of `program` restarts, in listed order.
    fn affected_by(&self, program: &str) -> Vec<String> {
        let members = &self.config.programs;
        match self.config.strategy {
            GroupStrategy::OneForOne => Vec::new(),
            GroupStrategy::OneForAll => members.clone(),
            GroupStrategy::RestForOne => match members.iter().position(|m| m == program) {
                Some(at) => members[at..].to_vec(),
                None => Vec::new(),
            },
        }
    }

    /// Whether `program` is held down by a group restart in progress.
    pub fn holds(&self, program: &str) -> bool {
        self.restart.as_ref().is_some_and(|r| {
            r.affected.iter().any(|a| a == program)
                && (r.stopping || !r.done.iter().any(|d| d == program))
        })
    }
}

impl Fleet {
    /// A member crashed: apply its group's strategy and intensity.
    pub(super) fn on_member_crash(&mut self, program: &str) {
        if self.shutdown.is_some() {
            return;
        }
        let Some(g) = self
            .groups
            .iter()
            .position(|g| g.config.programs.iter().any(|p| p == program))
        else {
            return;
        };
        let now = self.now;
        let group = &mut self.groups[g];
        if group.failed {
            return;
        }
        if let Some(max) = group.config.max_restarts {
            if !group.window.allows(now, max, group.config.restart_window) {
                let reason = format!(
                    "group \"{}\" failed: more than {max} restarts within {}",
                    group.config.name,
                    humantime::format_duration(group.config.restart_window)
                );
                self.fail_group(g, &reason);
                return;
            }
            group.window.record(now);
        }
        let mut affected = group.affected_by(program);
        if affected.is_empty() {
            return;
        }
        // A crash during a group restart widens it: members the first one
        // had not yet brought back are not dropped.
        if let Some(previous) = &group.restart {
            let members = &group.config.programs;
            affected = members
                .iter()
                .filter(|m| affected.contains(m) || previous.affected.contains(m))
                .cloned()
                .collect();
        }
        tracing::warn!(
            event = "group_restart",
            group = %group.config.name,
            program,
            strategy = group.strategy_name(),
            programs = %affected.join(","),
            "{program} crashed; {} restarts {}",
            group.config.name,
            affected.join(", ")
        );
        group.restart = Some(GroupRestart {
            affected,
            stopping: true,
            // The crashed member has no process to stop in order, and its
            // own restart must not run ahead of the group's.
            done: vec![program.to_string()],
        });
        if let Some(&i) = self.index.get(program) {
            let entry = &mut self.entries[i];
            entry.expect_up(false);
            entry.command(&mut self.out, &None, &[Command::Stop], None);
        }
        self.advance_group_restarts();
    }

    /// After a reload: groups are rebuilt from the new config; members a
    /// group restart in progress held down are let through the gate.
    pub(super) fn set_groups(&mut self, configs: Vec<GroupConfig>) {
        let held: Vec<String> = self
            .groups
            .iter()
            .filter_map(|g| g.restart.as_ref())
            .flat_map(|r| r.affected.clone())
            .collect();
        let mut old = std::mem::take(&mut self.groups);
        self.groups = configs
            .into_iter()
            .map(|config| {
                let mut group = Group::new(config);
                if let Some(previous) = old.iter_mut().find(|g| g.config.name == group.config.name)
                {
                    group.window = std::mem::take(&mut previous.window);
                    group.failed = previous.failed;
                }
                group
            })
            .collect();
        for member in held {
            if let Some(&i) = self.index.get(member.as_str()) {
                let entry = &mut self.entries[i];
                if !entry.stopped_by_user() && matches!(entry.stage, Stage::Launched) {
                    entry.stage = Stage::Gated {
                        request: None,
                        relaunch: false,
                    };
                }
            }
        }
    }

    /// The group's intensity is exceeded: every member is stopped.
    fn fail_group(&mut self, g: usize, reason: &str) {
        let group = &mut self.groups[g];
        group.failed = true;
        group.restart = None;
        let name = group.config.name.clone();
        let members = group.config.programs.clone();
        let shutdown = group.config.on_failure == OnFailure::Shutdown;
        tracing::error!(event = "group_failed", group = %name, reason, "{reason}; stopping its programs");
        for member in &members {
            if let Some(&i) = self.index.get(member.as_str()) {
                let entry = &mut self.entries[i];
                entry.queue_stop((0, None));
                entry.set_reason(Some(reason.to_string()));
            }
        }
        if shutdown {
            tracing::error!(
                event = "shutdown_on_failure",
                group = %name,
                "group {name} failed and has on_failure = \"shutdown\"; shutting down"
            );
            self.begin_shutdown(1);
        }
    }

    /// A `kelpie start` of a member of a failed group gives the group a
    /// fresh start.
    pub(super) fn revive_group_of(&mut self, program: &str) {
        for group in &mut self.groups {
            if group.failed && group.config.programs.iter().any(|p| p == program) {
                group.failed = false;
                group.window.clear();
            }
        }
    }

    /// Moves every group restart one step: one member stopping at a time
    /// (last listed first, dependents first), then one starting at a time
    /// (first listed first, through the dependency gate).
    pub(super) fn advance_group_restarts(&mut self) {
        for g in 0..self.groups.len() {
            while let Some(restart) = self.groups[g].restart.as_ref() {
                let in_flight = restart.done.iter().any(|d| {
                    self.index.get(d.as_str()).is_some_and(|&i| {
                        let entry = &self.entries[i];
                        // A member that would not start by itself (stopped
                        // by `kelpie stop`, or autostart = false and never
                        // started) is not waited for.
                        let dormant = !entry.should_run();
                        if restart.stopping {
                            !entry.is_down()
                        } else if dormant {
                            false
                        } else {
                            // Started (or settled: a oneshot that ran, a
                            // member that failed again) once launched.
                            !entry.launched()
                                || !entry.snapshots().all(|s| {
                                    s.pid.is_some()
                                        || matches!(
                                            s.phase,
                                            Phase::Exited | Phase::Failed | Phase::Backoff
                                        )
                                })
                        }
                    })
                });
                if in_flight {
                    break;
                }
                let next = if restart.stopping {
                    restart
                        .affected
                        .iter()
                        .rev()
                        .find(|m| {
                            !restart.done.contains(m)
                                && !restart.affected.iter().any(|other| {
                                    !restart.done.contains(other) && self.depends_on(other, m)
                                })
                        })
                        .cloned()
                } else {
                    restart
                        .affected
                        .iter()
                        .find(|m| {
                            !restart.done.contains(m)
                                && !restart.affected.iter().any(|other| {
                                    !restart.done.contains(other) && self.depends_on(m, other)
                                })
                        })
                        .cloned()
                };
                let stopping = restart.stopping;
                match next {
                    Some(member) => {
                        if let Some(restart) = self.groups[g].restart.as_mut() {
                            restart.done.push(member.clone());
                        }
                        let Some(&i) = self.index.get(member.as_str()) else {
                            continue;
                        };
                        let entry = &mut self.entries[i];
                        if stopping {
                            entry.expect_up(false);
                            entry.command(&mut self.out, &None, &[Command::Stop], None);
                        } else if entry.should_run() && entry.stage.pending().is_none() {
                            // Through the gate, like a first start, but
                            // keeping each instance's backoff and intensity.
                            // (A program a reload rebuilds goes through the
                            // gate anyway.)
                            entry.stage = Stage::Gated {
                                request: None,
                                relaunch: true,
                            };
                        }
                    }
                    None if stopping => {
                        if let Some(restart) = self.groups[g].restart.as_mut() {
                            restart.stopping = false;
                            restart.done.clear();
                        }
                    }
                    None => {
                        let group = &mut self.groups[g];
                        tracing::info!(
                            event = "group_restart_complete",
                            group = %group.config.name,
                            "group {} restarted",
                            group.config.name
                        );
                        group.restart = None;
                    }
                }
            }
        }
    }

    /// `a` depends on `b` (directly).
    fn depends_on(&self, a: &str, b: &str) -> bool {
        self.index.get(a).is_some_and(|&i| {
            self.entries[i]
                .config
                .depends_on
                .iter()
                .any(|(d, _)| d == b)
        })
    }

    /// Whether a group restart holds `program` down right now.
    pub(super) fn held_by_group(&self, program: &str) -> bool {
        self.groups.iter().any(|g| g.holds(program))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn group(strategy: GroupStrategy) -> Group {
        Group::new(GroupConfig {
            name: "g".into(),
            programs: vec!["db".into(), "api".into(), "worker".into()],
            strategy,
            max_restarts: None,
            restart_window: Duration::from_secs(60),
            on_failure: OnFailure::KeepRunning,
        })
    }

    #[test]
    fn each_strategy_picks_its_members_in_listed_order() {
        assert!(group(GroupStrategy::OneForOne)
            .affected_by("api")
            .is_empty());
        assert_eq!(
            group(GroupStrategy::OneForAll).affected_by("worker"),
            ["db", "api", "worker"]
        );
        assert_eq!(
            group(GroupStrategy::RestForOne).affected_by("api"),
            ["api", "worker"]
        );
        assert_eq!(
            group(GroupStrategy::RestForOne).affected_by("worker"),
            ["worker"]
        );
    }

    #[test]
    fn a_restart_holds_members_until_their_turn_to_start() {
        let mut g = group(GroupStrategy::RestForOne);
        g.restart = Some(GroupRestart {
            affected: vec!["api".into(), "worker".into()],
            stopping: true,
            done: vec!["api".into()],
        });
        assert!(g.holds("api") && g.holds("worker") && !g.holds("db"));
        if let Some(r) = g.restart.as_mut() {
            r.stopping = false;
            r.done = vec!["api".into()];
        }
        assert!(!g.holds("api"), "let through the gate");
        assert!(g.holds("worker"), "waits for api to start");
    }
}

//! The shutdown sequence: no new starts, `drain_delay`, stops in reverse
//! dependency order (independent programs in parallel), a sweep of
//! descendants that escaped their process group, all bounded by
//! `shutdown_timeout`; a second signal (or the deadline) kills every group
//! at once.

use nix::sys::signal::Signal;

use super::core::{Command, Fleet, FleetAction, FleetTimer, Shutdown, ESCAPED_GRACE, KILL_GRACE};
use super::entry::{Entry, Stage};

impl Fleet {
    pub(super) fn on_terminate(&mut self, signal: Signal) {
        let name = crate::signals::short_name(signal);
        match &self.shutdown {
            None => {
                tracing::info!(
                    event = "signal_received",
                    signal = name,
                    "received SIG{name}"
                );
                self.begin_shutdown(0);
            }
            Some(shutdown) if !shutdown.forced => {
                tracing::warn!(
                    event = "shutdown_forced",
                    signal = name,
                    "second SIG{name}: killing every process group now"
                );
                self.force();
            }
            Some(_) => {}
        }
    }

    pub(super) fn begin_shutdown(&mut self, code: i32) {
        if self.shutdown.is_some() {
            return;
        }
        self.out.push(FleetAction::ServiceStopping);
        tracing::info!(
            event = "shutdown_started",
            drain_delay_ms = self.settings.drain_delay.as_millis() as u64,
            timeout_ms = self.settings.shutdown_timeout.as_millis() as u64,
            "shutting down"
        );
        self.shutdown = Some(Shutdown {
            code,
            started: self.now,
            draining: !self.settings.drain_delay.is_zero(),
            forced: false,
            sweeping: false,
        });
        for entry in self.entries.iter_mut().chain(self.retired.iter_mut()) {
            entry.abort_roll(&mut self.out, "kelpie is shutting down");
            entry.stage = Stage::ShuttingDown { stop_sent: false };
            entry.cast_everywhere(&mut self.out, &Command::Drain);
        }
        if !self.settings.drain_delay.is_zero() {
            self.out.push(FleetAction::After {
                delay: self.settings.drain_delay,
                timer: FleetTimer::DrainElapsed,
            });
        }
        self.out.push(FleetAction::After {
            delay: self.settings.shutdown_timeout,
            timer: FleetTimer::ShutdownDeadline,
        });
    }

    pub(super) fn force(&mut self) {
        let Some(shutdown) = self.shutdown.as_mut() else {
            return;
        };
        shutdown.forced = true;
        shutdown.draining = false;
        for entry in self.entries.iter_mut().chain(self.retired.iter_mut()) {
            entry.stage = Stage::ShuttingDown { stop_sent: true };
            entry.cast_everywhere(&mut self.out, &Command::Kill);
        }
        self.out.push(FleetAction::After {
            delay: KILL_GRACE,
            timer: FleetTimer::KillGraceElapsed,
        });
    }

    pub(super) fn on_kill_grace_elapsed(&mut self) {
        let left: Vec<&str> = self
            .entries
            .iter()
            .chain(&self.retired)
            .filter(|e| !e.is_down())
            .map(|e| e.name())
            .collect();
        tracing::error!(
            event = "shutdown_incomplete",
            programs = %left.join(","),
            "processes survived SIGKILL (uninterruptible sleep?); exiting anyway"
        );
        if let Some(shutdown) = self.shutdown.as_mut() {
            shutdown.code = 1;
        }
        self.finish();
    }

    pub(super) fn advance_shutdown(&mut self) {
        let Some(shutdown) = &self.shutdown else {
            return;
        };
        if shutdown.draining {
            return;
        }
        for i in 0..self.entries.len() {
            if !self.entries[i].awaits_shutdown_stop() {
                continue;
            }
            let dependents_down = self.entries[i]
                .dependents
                .iter()
                .all(|&d| self.entries[d].is_down());
            if dependents_down {
                self.entries[i].stage = Stage::ShuttingDown { stop_sent: true };
                self.entries[i].cast_everywhere(&mut self.out, &Command::Stop);
            }
        }
        // Removed by a reload: nothing in the config depends on them.
        for entry in self.retired.iter_mut().filter(|e| e.awaits_shutdown_stop()) {
            entry.stage = Stage::ShuttingDown { stop_sent: true };
            entry.cast_everywhere(&mut self.out, &Command::Stop);
        }
        if self.entries.iter().chain(&self.retired).all(Entry::is_down) {
            self.sweep_escaped();
        }
    }

    /// Every program is down; anything still parented to kelpie left its
    /// program's process group (double fork, setsid) and would otherwise
    /// outlive kelpie. TERM it, give it a moment, then KILL.
    fn sweep_escaped(&mut self) {
        let Some(shutdown) = self.shutdown.as_mut() else {
            return;
        };
        if shutdown.sweeping || self.finished {
            return;
        }
        shutdown.sweeping = true;
        let signal = if shutdown.forced {
            Signal::SIGKILL
        } else {
            Signal::SIGTERM
        };
        self.out.push(FleetAction::SignalEscaped {
            signal,
            report: true,
        });
    }

    /// The sweep's first signal went out to `count` processes.
    pub(super) fn on_escaped_signalled(&mut self, count: usize) {
        let Some(shutdown) = &self.shutdown else {
            return;
        };
        if count == 0 || shutdown.forced {
            self.finish();
        } else {
            self.out.push(FleetAction::After {
                delay: ESCAPED_GRACE,
                timer: FleetTimer::SweepElapsed,
            });
        }
    }

    pub(super) fn finish(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let (code, elapsed) = self
            .shutdown
            .as_ref()
            .map(|s| (s.code, self.now.saturating_duration_since(s.started)))
            .unwrap_or((0, std::time::Duration::ZERO));
        self.out.push(FleetAction::Exit { code, elapsed });
    }
}

//! Control actions on programs: `start`, `stop`, `restart` (plain or
//! rolling) and `signal`. The Supervisor only records and dispatches them;
//! the caller waits for the outcome on the status board, where every
//! instance's `ack` tells it when the action's effect is visible.

use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::oneshot;

use super::rolling::Roll;
use super::{Cause, SupervisorState};
use crate::config::ProgramConfig;
use crate::program::ProgramMsg;

/// Beyond a program's own timeouts, how long a waiting caller allows for
/// the rest (a SIGKILL to take effect, a dependency to come up).
const WAIT_SLACK: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Start,
    Stop,
    Restart,
    Signal,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
            Verb::Signal => "signal",
        }
    }

    pub fn parse(text: &str) -> Option<Verb> {
        match text {
            "start" => Some(Verb::Start),
            "stop" => Some(Verb::Stop),
            "restart" => Some(Verb::Restart),
            "signal" => Some(Verb::Signal),
            _ => None,
        }
    }
}

pub struct ActionCommand {
    pub verb: Verb,
    pub programs: Vec<String>,
    pub all: bool,
    pub rolling: bool,
    pub signal: Option<Signal>,
    pub cause: Cause,
    pub reply: oneshot::Sender<Result<Accepted, ActionError>>,
}

/// The action was dispatched; the caller waits for its outcome.
pub struct Accepted {
    /// Instances whose `ack` reached this number show the outcome.
    pub seq: u64,
    pub programs: Vec<AcceptedProgram>,
}

pub struct AcceptedProgram {
    pub name: String,
    /// How long a caller waits for the outcome unless told otherwise.
    pub timeout: Duration,
    /// Known at once (a signal was sent, or there was nothing to signal).
    pub outcome: Option<Result<String, String>>,
    /// A rolling restart reports its end here.
    pub roll: Option<oneshot::Receiver<Result<String, String>>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionError {
    NoSuchProgram(Vec<String>),
    ShuttingDown,
}

impl std::fmt::Display for ActionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActionError::NoSuchProgram(names) if names.len() == 1 => {
                write!(f, "no such program: {}", names[0])
            }
            ActionError::NoSuchProgram(names) => {
                write!(f, "no such programs: {}", names.join(", "))
            }
            ActionError::ShuttingDown => write!(f, "kelpie is shutting down"),
        }
    }
}

/// The default wait for an action's outcome.
pub fn default_timeout(verb: Verb, rolling: bool, config: &ProgramConfig) -> Duration {
    let start = config.start_seconds + WAIT_SLACK * 3;
    let stop = config.stop_timeout + WAIT_SLACK;
    match verb {
        Verb::Start => start,
        Verb::Stop => stop,
        Verb::Restart if rolling => {
            (config.start_seconds + config.start_timeout + stop) * config.instances.max(1)
                + WAIT_SLACK
        }
        Verb::Restart => start + stop,
        Verb::Signal => Duration::ZERO,
    }
}

impl SupervisorState {
    pub(super) fn on_action(&mut self, command: ActionCommand) {
        let result = self.dispatch_action(&command);
        let _ = command.reply.send(result);
    }

    fn dispatch_action(&mut self, command: &ActionCommand) -> Result<Accepted, ActionError> {
        if self.shutdown.is_some() {
            return Err(ActionError::ShuttingDown);
        }
        let mut targets: Vec<usize> = Vec::new();
        if command.all {
            targets.extend(0..self.entries.len());
        } else {
            let unknown: Vec<String> = command
                .programs
                .iter()
                .filter(|name| !self.index.contains_key(name.as_str()))
                .cloned()
                .collect();
            if !unknown.is_empty() {
                return Err(ActionError::NoSuchProgram(unknown));
            }
            for name in &command.programs {
                if let Some(&i) = self.index.get(name.as_str()) {
                    if !targets.contains(&i) {
                        targets.push(i);
                    }
                }
            }
        }
        self.next_seq += 1;
        let seq = self.next_seq;
        let cause = &command.cause;
        let names: Vec<&str> = targets.iter().map(|&i| self.entries[i].name()).collect();
        tracing::info!(
            event = "control_action",
            action = command.verb.as_str(),
            rolling = command.rolling,
            programs = %names.join(","),
            request_id = cause.as_deref(),
            "{}{} requested for {}",
            command.verb.as_str(),
            if command.rolling { " --rolling" } else { "" },
            names.join(", ")
        );
        let mut programs = Vec::new();
        for i in targets {
            let mut accepted = AcceptedProgram {
                name: self.entries[i].name().to_string(),
                timeout: default_timeout(command.verb, command.rolling, &self.entries[i].config),
                outcome: None,
                roll: None,
            };
            match command.verb {
                Verb::Start => self.request_start(i, seq, cause),
                Verb::Stop => self.request_stop(i, seq, cause),
                Verb::Restart if command.rolling => {
                    let entry = &mut self.entries[i];
                    let all_up =
                        entry.snapshots().all(|s| s.pid.is_some()) && entry.pending.is_none();
                    if entry.roll.is_some() {
                        accepted.outcome = Some(Err(format!(
                            "a rolling restart of {} is already in progress",
                            entry.name()
                        )));
                    } else if all_up {
                        let (tx, rx) = oneshot::channel();
                        entry.set_stopped_by_user(false);
                        entry.roll = Some(Roll::new(cause.clone(), tx));
                        accepted.roll = Some(rx);
                    } else {
                        // Nothing running to keep serving: a plain restart.
                        self.request_restart(i, seq, cause);
                    }
                }
                Verb::Restart => self.request_restart(i, seq, cause),
                Verb::Signal => {
                    let signal = command.signal.unwrap_or(Signal::SIGTERM);
                    accepted.outcome = Some(self.signal_program(i, signal, cause));
                }
            }
            programs.push(accepted);
        }
        Ok(Accepted { seq, programs })
    }

    fn request_start(&mut self, i: usize, seq: u64, cause: &Cause) {
        let name = self.entries[i].name().to_string();
        self.revive_group_of(&name);
        let entry = &mut self.entries[i];
        entry.set_stopped_by_user(false);
        entry.start_requested = true;
        entry.stop_queued = None;
        if entry.pending.is_some() || entry.is_down() {
            // Through the dependency gate, like a first start; `start`
            // clears `failed` and the backoff there too.
            entry.launched = false;
            entry.launch = Some((seq, cause.clone()));
        } else {
            entry.start_all(cause, Some(seq));
        }
    }

    fn request_restart(&mut self, i: usize, seq: u64, cause: &Cause) {
        let entry = &mut self.entries[i];
        entry.abort_roll("a plain restart was requested");
        if entry.pending.is_some() || entry.is_down() {
            self.request_start(i, seq, cause);
            return;
        }
        entry.set_stopped_by_user(false);
        entry.start_requested = true;
        entry.stop_queued = None;
        let status = std::sync::Arc::make_mut(&mut entry.status);
        for instance in &mut status.instances {
            instance.snapshot.want_up = true;
        }
        entry.command(
            cause,
            &[|| ProgramMsg::Stop, || ProgramMsg::Start],
            Some(seq),
        );
    }

    pub(super) fn request_stop(&mut self, i: usize, seq: u64, cause: &Cause) {
        let entry = &mut self.entries[i];
        entry.abort_roll("the program is being stopped");
        entry.set_stopped_by_user(true);
        entry.start_requested = false;
        entry.launch = None;
        entry.stop_queued = Some((seq, cause.clone()));
    }

    fn signal_program(
        &mut self,
        i: usize,
        signal: Signal,
        cause: &Cause,
    ) -> Result<String, String> {
        let entry = &self.entries[i];
        let running = entry.snapshots().filter(|s| s.pid.is_some()).count()
            + entry
                .retiring
                .iter()
                .filter(|r| r.snapshot.pid.is_some())
                .count();
        let name = crate::signals::short_name(signal);
        if running == 0 {
            return Err(format!("{} is not running", entry.name()));
        }
        tracing::info!(
            event = "program_signalled",
            program = %entry.name(),
            signal = name,
            request_id = cause.as_deref(),
            "sending SIG{name} to {}",
            entry.name()
        );
        entry.cast_everywhere(|| ProgramMsg::Signal(signal));
        Ok(format!(
            "sent SIG{name} to {running} process group{}",
            if running == 1 { "" } else { "s" }
        ))
    }

    /// Sends the queued stops whose time has come: a program stops only
    /// after every program being stopped that depends on it is down.
    pub(super) fn advance_requested_stops(&mut self) {
        let holds = |dependency: &str, entries: &[super::entry::Entry]| {
            entries.iter().any(|other| {
                (other.stop_queued.is_some() || other.stopping)
                    && !other.is_down()
                    && other.config.depends_on.iter().any(|(d, _)| d == dependency)
            })
        };
        let mut ready: Vec<(bool, usize)> = Vec::new();
        for (retired, list) in [(false, &self.entries), (true, &self.retired)] {
            for (i, entry) in list.iter().enumerate() {
                if entry.stop_queued.is_some()
                    && !holds(entry.name(), &self.entries)
                    && !holds(entry.name(), &self.retired)
                {
                    ready.push((retired, i));
                }
            }
        }
        for (retired, i) in ready {
            let entry = if retired {
                &mut self.retired[i]
            } else {
                &mut self.entries[i]
            };
            if let Some((seq, cause)) = entry.stop_queued.take() {
                entry.stopping = true;
                let status = std::sync::Arc::make_mut(&mut entry.status);
                for instance in &mut status.instances {
                    instance.snapshot.want_up = false;
                }
                entry.command(&cause, &[|| ProgramMsg::Stop], Some(seq));
            }
        }
        for entry in self.entries.iter_mut().chain(self.retired.iter_mut()) {
            if entry.stopping && entry.is_down() {
                entry.stopping = false;
            }
        }
    }

    pub(super) fn next_incarnation(&mut self) -> u64 {
        self.next_incarnation += 1;
        self.next_incarnation
    }

    /// The program's output, for `kelpie logs`.
    pub(super) fn output_of(
        &self,
        program: &str,
    ) -> Option<std::sync::Arc<crate::output::ProgramOutput>> {
        self.index
            .get(program)
            .map(|&i| self.entries[i].output.clone())
    }
}

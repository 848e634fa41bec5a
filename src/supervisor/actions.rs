//! Control actions on programs: `start`, `stop`, `restart` (plain or
//! rolling) and `signal`. The Supervisor only records and dispatches them;
//! the caller waits for the outcome on the status board, where every
//! instance's `ack` tells it when the action's effect is visible.

use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::oneshot;

use super::core::{Answer, Command, Fleet};
use super::entry::{AfterStop, Entry, Stage, Want};
use super::rolling::Roll;
use super::Cause;
use crate::config::ProgramConfig;

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

/// A control action as the control API sends it to the Supervisor actor.
pub struct ActionCommand {
    pub verb: Verb,
    /// Programs (`web`), instances (`web:1`) or groups (`backend`), as
    /// given; the core resolves them.
    pub programs: Vec<String>,
    pub all: bool,
    pub rolling: bool,
    pub signal: Option<Signal>,
    pub cause: Cause,
    pub reply: oneshot::Sender<Result<Accepted, ActionError>>,
}

/// A control action as the fleet core takes it: the reply goes out as
/// `Answer::Action` with the same `request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRequest {
    pub request: u64,
    pub verb: Verb,
    /// Programs, instances (`web:1`) or groups, as given.
    pub programs: Vec<String>,
    pub all: bool,
    pub rolling: bool,
    pub signal: Option<Signal>,
    pub cause: Cause,
}

/// What the core accepted: per program, the default wait and what is
/// known at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatched {
    pub seq: u64,
    pub programs: Vec<DispatchedProgram>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchedProgram {
    pub name: String,
    /// The one instance addressed (`web:1`); `None`: every instance.
    pub instance: Option<u32>,
    pub timeout: Duration,
    pub outcome: Option<Result<String, String>>,
    /// A rolling restart started: its end comes as `FleetAction::RollEnded`.
    pub rolling: bool,
}

/// The action was dispatched; the caller waits for its outcome.
pub struct Accepted {
    /// Instances whose `ack` reached this number show the outcome.
    pub seq: u64,
    pub programs: Vec<AcceptedProgram>,
}

pub struct AcceptedProgram {
    pub name: String,
    /// The one instance addressed; `None`: the whole program.
    pub instance: Option<u32>,
    /// How long a caller waits for the outcome unless told otherwise.
    pub timeout: Duration,
    /// Known at once (a signal was sent, or there was nothing to signal).
    pub outcome: Option<Result<String, String>>,
    /// A rolling restart reports its end here.
    pub roll: Option<oneshot::Receiver<Result<String, String>>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionError {
    /// Names that are neither a program, an instance nor a group.
    NoSuchProgram(Vec<String>),
    /// `web:5` of a program with fewer instances.
    NoSuchInstance {
        name: String,
        program: String,
        instances: u32,
    },
    /// `restart --rolling web:1`: a roll replaces every instance.
    RollingInstance {
        name: String,
        program: String,
    },
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
            ActionError::NoSuchInstance {
                name,
                program,
                instances,
            } => write!(
                f,
                "no such instance: {name} ({program} has {instances} instance{})",
                if *instances == 1 { "" } else { "s" }
            ),
            ActionError::RollingInstance { name, program } => write!(
                f,
                "cannot restart {name} with --rolling: --rolling replaces every instance of \
                 {program} one at a time; use `restart {name}` (or `restart --rolling {program}`)"
            ),
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

impl Fleet {
    pub(super) fn on_action(&mut self, command: ActionRequest) {
        let result = self.dispatch_action(&command);
        self.out
            .push(super::core::FleetAction::Answer(Answer::Action {
                request: command.request,
                result,
            }));
    }

    /// Programs, instances (`web:1`) and groups (every member, in the
    /// group's order) to what they address, in the order given. A program
    /// named as a whole takes the place of its instances named elsewhere.
    pub(super) fn resolve(
        &self,
        names: &[String],
        rolling: bool,
    ) -> Result<Vec<(usize, Option<u32>)>, ActionError> {
        let mut unknown = Vec::new();
        let mut out_of_range = None;
        let mut targets: Vec<(usize, Option<u32>)> = Vec::new();
        fn add(target: (usize, Option<u32>), targets: &mut Vec<(usize, Option<u32>)>) {
            let (program, instance) = target;
            if targets.contains(&(program, None)) || targets.contains(&target) {
                return;
            }
            if instance.is_some() {
                targets.push(target);
                return;
            }
            let mut placed = false;
            targets.retain_mut(|t| {
                if t.0 != program {
                    return true;
                }
                if placed {
                    return false;
                }
                *t = target;
                placed = true;
                true
            });
            if !placed {
                targets.push(target);
            }
        }
        for name in names {
            if let Some(&i) = self.index.get(name.as_str()) {
                add((i, None), &mut targets);
                continue;
            }
            if let Some(group) = self.groups.iter().find(|g| g.config.name == *name) {
                for member in &group.config.programs {
                    if let Some(&i) = self.index.get(member.as_str()) {
                        add((i, None), &mut targets);
                    }
                }
                continue;
            }
            let instance = name.rsplit_once(':').and_then(|(program, n)| {
                let i = *self.index.get(program)?;
                Some((i, n.parse::<u32>().ok()?))
            });
            let Some((i, n)) = instance else {
                unknown.push(name.clone());
                continue;
            };
            let instances = self.entries[i].status.instances.len() as u32;
            if n >= instances {
                out_of_range.get_or_insert_with(|| ActionError::NoSuchInstance {
                    name: name.clone(),
                    program: self.entries[i].name().to_string(),
                    instances,
                });
                continue;
            }
            if rolling {
                return Err(ActionError::RollingInstance {
                    name: name.clone(),
                    program: self.entries[i].name().to_string(),
                });
            }
            add((i, Some(n)), &mut targets);
        }
        if !unknown.is_empty() {
            return Err(ActionError::NoSuchProgram(unknown));
        }
        match out_of_range {
            Some(error) => Err(error),
            None => Ok(targets),
        }
    }

    fn dispatch_action(&mut self, command: &ActionRequest) -> Result<Dispatched, ActionError> {
        if self.shutdown.is_some() {
            return Err(ActionError::ShuttingDown);
        }
        let targets: Vec<(usize, Option<u32>)> = if command.all {
            (0..self.entries.len()).map(|i| (i, None)).collect()
        } else {
            self.resolve(&command.programs, command.rolling)?
        };
        self.next_seq += 1;
        let seq = self.next_seq;
        let cause = &command.cause;
        let names: Vec<String> = targets
            .iter()
            .map(|&(i, n)| match n {
                Some(n) => self.entries[i].config.instance_name(n),
                None => self.entries[i].name().to_string(),
            })
            .collect();
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
        for (i, instance) in targets {
            let mut accepted = DispatchedProgram {
                name: self.entries[i].name().to_string(),
                instance,
                timeout: default_timeout(command.verb, command.rolling, &self.entries[i].config),
                outcome: None,
                rolling: false,
            };
            if let Some(n) = instance {
                let signal = command.signal.unwrap_or(Signal::SIGTERM);
                accepted.outcome =
                    self.act_on_instance(command.verb, i, n as usize, seq, cause, signal);
                programs.push(accepted);
                continue;
            }
            match command.verb {
                Verb::Start => self.request_start(i, seq, cause),
                Verb::Stop => self.request_stop(i, seq, cause),
                Verb::Restart if command.rolling => {
                    let entry = &mut self.entries[i];
                    let all_up = entry.snapshots().all(|s| s.pid.is_some())
                        && entry.stage.pending().is_none();
                    if entry.roll.is_some() {
                        accepted.outcome = Some(Err(format!(
                            "a rolling restart of {} is already in progress",
                            entry.name()
                        )));
                    } else if all_up {
                        entry.lift_stop();
                        entry.roll = Some(Roll::new(entry.name(), cause.clone(), command.request));
                        accepted.rolling = true;
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
        Ok(Dispatched { seq, programs })
    }

    /// An action on instance `n` of program `i` alone. Start, stop and
    /// restart need the program launched as a whole (its other instances
    /// follow their own policies); a stopped instance is held down until
    /// it is started, without marking the program stopped. `Some`: the
    /// outcome is known at once.
    fn act_on_instance(
        &mut self,
        verb: Verb,
        i: usize,
        n: usize,
        seq: u64,
        cause: &Cause,
        signal: Signal,
    ) -> Option<Result<String, String>> {
        let entry = &mut self.entries[i];
        let name = entry.config.instance_name(n as u32);
        let snapshot = &entry.status.instances[n].snapshot;
        let down = snapshot.pid.is_none() && snapshot.phase.is_down();
        if verb == Verb::Signal {
            if snapshot.pid.is_none() {
                return Some(Err(format!("{name} is not running")));
            }
            let short = crate::signals::short_name(signal);
            tracing::info!(
                event = "program_signalled",
                program = %entry.name(),
                instance = %name,
                signal = short,
                request_id = cause.as_deref(),
                "sending SIG{short} to {name}"
            );
            entry.cast_slot(&mut self.out, n, &Command::Signal(signal));
            return Some(Ok(format!("sent SIG{short} to 1 process group")));
        }
        if entry.roll.is_some() {
            return Some(Err(format!(
                "a rolling restart of {} is in progress; act on {name} once it is done",
                entry.name()
            )));
        }
        if !matches!(entry.stage, Stage::Launched) {
            if verb == Verb::Stop && down {
                return Some(Ok("already stopped".into()));
            }
            return Some(Err(format!(
                "{} is not started as a whole (it is {}); `kelpie {} {}` acts on every instance",
                entry.name(),
                entry.status.state().as_str(),
                verb.as_str(),
                entry.name()
            )));
        }
        let commands: &[Command] = match verb {
            Verb::Start => &[Command::Start],
            Verb::Stop => &[Command::Stop],
            _ => &[Command::Stop, Command::Start],
        };
        let up = verb != Verb::Stop;
        entry.hold(n, !up);
        entry.slots[n].expect_up = Some(up);
        entry.command_slot(&mut self.out, n, cause, commands, Some(seq));
        None
    }

    fn request_start(&mut self, i: usize, seq: u64, cause: &Cause) {
        let name = self.entries[i].name().to_string();
        self.revive_group_of(&name);
        let entry = &mut self.entries[i];
        entry.set_want(Want::Started);
        if entry.start_after_rebuild((seq, cause.clone())) {
            // The rebuilt program starts (and acknowledges) it.
        } else if entry.is_down() {
            // Through the dependency gate, like a first start; `start`
            // clears `failed` and the backoff there too.
            entry.stage = Stage::Gated {
                request: Some((seq, cause.clone())),
                relaunch: false,
            };
        } else {
            entry.start_all(&mut self.out, cause, Some(seq), false);
        }
    }

    fn request_restart(&mut self, i: usize, seq: u64, cause: &Cause) {
        let entry = &mut self.entries[i];
        entry.abort_roll(&mut self.out, "a plain restart was requested");
        if entry.stage.pending().is_some() || entry.is_down() {
            self.request_start(i, seq, cause);
            return;
        }
        entry.set_want(Want::Started);
        entry.stage = Stage::Launched;
        entry.expect_up(true);
        entry.command(
            &mut self.out,
            cause,
            &[Command::Stop, Command::Start],
            Some(seq),
        );
    }

    pub(super) fn request_stop(&mut self, i: usize, seq: u64, cause: &Cause) {
        let entry = &mut self.entries[i];
        entry.abort_roll(&mut self.out, "the program is being stopped");
        entry.set_want(Want::Stopped);
        entry.queue_stop((seq, cause.clone()));
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
        entry.cast_everywhere(&mut self.out, &Command::Signal(signal));
        Ok(format!(
            "sent SIG{name} to {running} process group{}",
            if running == 1 { "" } else { "s" }
        ))
    }

    /// Sends the queued stops whose time has come: a program stops only
    /// after every program being stopped that depends on it is down. A
    /// stop that is through moves the program on to what follows it.
    pub(super) fn advance_requested_stops(&mut self) {
        let holds = |dependency: &str, entries: &[Entry]| {
            entries.iter().any(|other| {
                other.stage.stop_requested()
                    && !other.is_down()
                    && other.config.depends_on.iter().any(|(d, _)| d == dependency)
            })
        };
        let mut ready: Vec<(bool, usize)> = Vec::new();
        for (retired, list) in [(false, &self.entries), (true, &self.retired)] {
            for (i, entry) in list.iter().enumerate() {
                if matches!(entry.stage, Stage::StopQueued { .. })
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
            let stage = std::mem::replace(&mut entry.stage, Stage::Launched);
            let Stage::StopQueued {
                request: (seq, cause),
                then,
            } = stage
            else {
                entry.stage = stage;
                continue;
            };
            entry.stage = Stage::Stopping { then };
            entry.expect_up(false);
            entry.command(&mut self.out, &cause, &[Command::Stop], Some(seq));
        }
        for entry in self.entries.iter_mut().chain(self.retired.iter_mut()) {
            if !matches!(entry.stage, Stage::Stopping { .. }) || !entry.is_down() {
                continue;
            }
            entry.stage = match std::mem::replace(&mut entry.stage, Stage::Stopped) {
                Stage::Stopping {
                    then: AfterStop::Rebuild { blueprint, start },
                } => Stage::Rebuilding { blueprint, start },
                _ => Stage::Stopped,
            };
        }
    }
}

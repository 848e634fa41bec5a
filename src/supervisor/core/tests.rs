//! Fleet scenarios as tables: no ractor, no processes, a virtual clock.
//!
//! Each scenario starts a `Fleet` from a TOML config and then runs a table
//! of rows `(what happens, what the core must do)`. What happens is a
//! `Given` (an instance reports it is up, ready, down, crashed, failed; a
//! signal; a timer; a control action; a reload). What the core does is its
//! `FleetAction`s written as short lines, in order:
//!
//! | line                     | action                                   |
//! |--------------------------|------------------------------------------|
//! | `build web`              | create web's resources                   |
//! | `discard web`            | drop an entry's resources                |
//! | `spawn web:0`            | create an actor for instance web:0       |
//! | `web:0 start`            | a command to that instance's actor       |
//! | `end web:0`              | end that actor                           |
//! | `after 30s deadline`     | a timer                                  |
//! | `sweep TERM`             | signal escaped processes                 |
//! | `exit 0`                 | kelpie is done                           |
//!
//! Metric updates are left out of the lines (they are checked where they
//! matter); `web:0'` names the replacement a rolling restart spawns.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::Instant;

use super::*;
use crate::config::Config;
use crate::report::InstanceEvent;
use crate::state::{ExitKind, ExitStatus, Phase, Snapshot};
use crate::supervisor::actions::Verb;
use crate::supervisor::entry::Blueprint;
use crate::supervisor::reloading::Loaded;

fn parse(toml: &str) -> Config {
    crate::config::valid_for_test(toml)
}

fn blueprints(config: &Config) -> Vec<Blueprint> {
    config
        .programs
        .iter()
        .map(|p| Blueprint::unprivileged(p.clone()))
        .collect()
}

/// What happens, in a table row.
enum Given<'a> {
    /// The instance runs (pid, not ready yet).
    Up(&'a str),
    Ready(&'a str),
    /// Stopped on purpose: no process, none wanted.
    Down(&'a str),
    /// Exited unplanned and waits in backoff to restart.
    Crash(&'a str),
    /// A oneshot finished with exit 0.
    Completed(&'a str),
    Failed(&'a str),
    Term,
    Timer(FleetTimer),
    Escaped(usize),
    Act(Verb, &'a [&'a str]),
    Rolling(&'a [&'a str]),
    Reload(&'a str),
    RestartWanted(&'a str),
    /// Told to stop: the process is still there.
    Stopping(&'a str),
    /// The memory sampler found the instance over its `memory_restart`:
    /// its current process, or the one with this pid.
    OverMemory(&'a str, Option<i32>),
    /// The virtual clock moves on (no event).
    Wait(Duration),
}

struct World {
    fleet: Fleet,
    now: Instant,
    /// Instance name (`web:0`, or `web:0'` for a replacement) of each
    /// incarnation.
    names: HashMap<Incarnation, String>,
    /// The incarnation a name stands for now.
    current: HashMap<String, Incarnation>,
    entries: HashMap<EntryId, String>,
    snapshots: HashMap<Incarnation, Snapshot>,
    reported: HashMap<Incarnation, Snapshot>,
    next_pid: i32,
    next_request: u64,
    metrics: Vec<MetricUpdate>,
    /// Each spawned actor's name and the command it was built with.
    spawned: Vec<(String, String)>,
    /// The `KELPIE_SLOT` each actor was spawned with; its reports carry it,
    /// as a real actor's do.
    kelpie_slots: HashMap<Incarnation, u32>,
    exited: Option<i32>,
    /// What the last accepted action knew at once, per target.
    outcomes: Vec<Option<Result<String, String>>>,
}

impl World {
    fn start(toml: &str, expected: &[&str]) -> World {
        let config = parse(toml);
        let now = Instant::now();
        let (fleet, actions) = Fleet::start(
            config.path.clone(),
            config.supervisor.clone(),
            blueprints(&config),
            config.groups.clone(),
            now,
        );
        let mut world = World {
            fleet,
            now,
            names: HashMap::new(),
            current: HashMap::new(),
            entries: HashMap::new(),
            snapshots: HashMap::new(),
            reported: HashMap::new(),
            next_pid: 100,
            next_request: 0,
            metrics: Vec::new(),
            spawned: Vec::new(),
            kelpie_slots: HashMap::new(),
            exited: None,
            outcomes: Vec::new(),
        };
        let lines = world.describe_all(actions);
        assert_eq!(lines, expected, "start-up");
        world
    }

    /// Runs a table: each row's event, then its expected lines.
    fn run(&mut self, table: &[(Given, &[&str])]) {
        for (row, (given, expected)) in table.iter().enumerate() {
            let label = self.label(given);
            let lines = self.happen(given);
            assert_eq!(&lines, expected, "row {row}: {label}");
        }
    }

    fn label(&self, given: &Given) -> String {
        match given {
            Given::Up(i) => format!("{i} up"),
            Given::Ready(i) => format!("{i} ready"),
            Given::Down(i) => format!("{i} down"),
            Given::Crash(i) => format!("{i} crashed"),
            Given::Completed(i) => format!("{i} completed"),
            Given::Failed(i) => format!("{i} failed"),
            Given::Term => "SIGTERM".into(),
            Given::Timer(t) => format!("timer {}", timer_name(t)),
            Given::Escaped(n) => format!("{n} escaped signalled"),
            Given::Act(verb, names) => format!("{} {}", verb.as_str(), names.join(" ")),
            Given::Rolling(names) => format!("restart --rolling {}", names.join(" ")),
            Given::Reload(_) => "reload".into(),
            Given::RestartWanted(i) => format!("{i} wants its restart"),
            Given::Stopping(i) => format!("{i} stopping"),
            Given::OverMemory(i, pid) => format!("{i} over memory_restart (pid {pid:?})"),
            Given::Wait(d) => format!("{d:?} pass"),
        }
    }

    fn happen(&mut self, given: &Given) -> Vec<String> {
        let event = match given {
            Given::Up(name) => self.report(name, |s, pid| {
                s.phase = Phase::Running;
                s.pid = Some(pid);
                s.want_up = true;
                s.run += 1;
            }),
            Given::Ready(name) => self.report(name, |s, _| {
                s.ready = true;
            }),
            Given::Down(name) => self.report(name, |s, _| {
                s.phase = Phase::Stopped;
                s.pid = None;
                s.ready = false;
                s.want_up = false;
            }),
            Given::Crash(name) => self.report(name, |s, _| {
                s.phase = Phase::Backoff;
                s.pid = None;
                s.ready = false;
                s.crashes += 1;
                s.last_exit = Some(ExitStatus::Code(1));
                s.last_exit_kind = Some(ExitKind::Failure);
            }),
            Given::Completed(name) => self.report(name, |s, _| {
                s.phase = Phase::Exited;
                s.pid = None;
                s.want_up = false;
                s.last_exit = Some(ExitStatus::Code(0));
                s.last_exit_kind = Some(ExitKind::Success);
            }),
            Given::Failed(name) => self.report(name, |s, _| {
                s.phase = Phase::Failed;
                s.pid = None;
                s.ready = false;
                s.want_up = false;
                s.crashes += 1;
                s.reason = Some("more than 0 restarts".into());
            }),
            Given::Term => FleetEvent::Terminate(Signal::SIGTERM),
            Given::Timer(timer) => FleetEvent::Timer(timer.clone()),
            Given::Escaped(count) => FleetEvent::EscapedSignalled { count: *count },
            Given::Act(verb, names) => self.action(*verb, names, false),
            Given::Rolling(names) => self.action(Verb::Restart, names, true),
            Given::Reload(toml) => {
                let config = parse(toml);
                FleetEvent::Reload(ReloadRequest {
                    request: None,
                    apply: true,
                    path: config.path.clone(),
                    cause: None,
                    loaded: Ok(Loaded {
                        blueprints: blueprints(&config),
                        config,
                        warnings: Vec::new(),
                    }),
                })
            }
            Given::RestartWanted(name) => {
                let incarnation = self.incarnation(name);
                FleetEvent::RestartWanted {
                    program: program_of(name).to_string(),
                    incarnation,
                }
            }
            Given::Stopping(name) => self.report(name, |s, _| {
                s.phase = Phase::Stopping;
                s.want_up = false;
            }),
            Given::OverMemory(name, pid) => {
                let current = self
                    .snapshots
                    .get(&self.incarnation(name))
                    .and_then(|s| s.pid);
                let index = name
                    .rsplit_once(':')
                    .and_then(|(_, n)| n.parse().ok())
                    .unwrap_or_else(|| panic!("{name} is not program:index"));
                FleetEvent::MemoryRestart(crate::supervisor::MemoryRestartDue {
                    program: program_of(name).to_string(),
                    index,
                    pid: pid.or(current).unwrap_or(1),
                    rss_bytes: 200_000_000,
                    threshold: 100_000_000,
                    after: Duration::from_secs(30),
                })
            }
            Given::Wait(d) => {
                self.now += *d;
                return Vec::new();
            }
        };
        let actions = self.fleet.step(event, self.now);
        self.describe_all(actions)
    }

    fn action(&mut self, verb: Verb, names: &[&str], rolling: bool) -> FleetEvent {
        self.next_request += 1;
        FleetEvent::Action(ActionRequest {
            request: self.next_request,
            verb,
            programs: names.iter().map(|n| n.to_string()).collect(),
            all: false,
            rolling,
            signal: None,
            cause: None,
        })
    }

    fn incarnation(&self, name: &str) -> Incarnation {
        *self
            .current
            .get(name)
            .unwrap_or_else(|| panic!("no actor named {name} was spawned"))
    }

    /// A report from the named instance, its snapshot changed by `change`.
    fn report(&mut self, name: &str, change: impl FnOnce(&mut Snapshot, i32)) -> FleetEvent {
        let incarnation = self.incarnation(name);
        self.next_pid += 1;
        let snapshot = self
            .snapshots
            .entry(incarnation)
            .or_insert_with(Snapshot::initial);
        change(snapshot, self.next_pid);
        let events = InstanceEvent::between(self.reported.get(&incarnation), snapshot);
        self.reported.insert(incarnation, snapshot.clone());
        let index = name
            .trim_end_matches('\'')
            .rsplit_once(':')
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or_else(|| panic!("{name} is not program:index"));
        FleetEvent::Instance {
            program: program_of(name).to_string(),
            index,
            incarnation,
            status: InstanceStatus {
                snapshot: snapshot.clone(),
                started_at: None,
                ack: u64::MAX,
                held: false,
                slot: self.kelpie_slots[&incarnation],
            },
            events,
        }
    }

    fn describe_all(&mut self, actions: Vec<FleetAction>) -> Vec<String> {
        actions
            .into_iter()
            .filter_map(|a| self.describe(a))
            .collect()
    }

    fn describe(&mut self, action: FleetAction) -> Option<String> {
        Some(match action {
            FleetAction::Build { entry, config, .. } => {
                self.entries.insert(entry, config.name.clone());
                format!("build {}", config.name)
            }
            FleetAction::Discard { entry } => format!("discard {}", self.entries[&entry]),
            FleetAction::Spawn(spawn) => {
                let mut name = spawn.config.instance_name(spawn.index);
                // A second live actor for one instance is a replacement.
                if let Some(&old) = self.current.get(&name) {
                    if self.fleet_holds(old) {
                        name.push('\'');
                    }
                }
                self.names.insert(spawn.incarnation, name.clone());
                self.kelpie_slots.insert(spawn.incarnation, spawn.slot);
                self.current.insert(name.clone(), spawn.incarnation);
                self.spawned
                    .push((name.clone(), spawn.config.command.join(" ")));
                format!("spawn {name}")
            }
            FleetAction::Send { to, command } => {
                format!("{} {}", self.names[&to], command_name(&command))
            }
            FleetAction::StopActor { incarnation } => format!("end {}", self.names[&incarnation]),
            FleetAction::After { delay, timer } => {
                format!("after {delay:?} {}", timer_name(&timer))
            }
            FleetAction::SignalEscaped { signal, .. } => {
                format!("sweep {}", crate::signals::short_name(signal))
            }
            FleetAction::Metric(update) => {
                self.metrics.push(update);
                return None;
            }
            FleetAction::ServiceStopping => "service stopping".into(),
            FleetAction::Answer(Answer::Action { result, .. }) => match result {
                Ok(d) => {
                    self.outcomes = d.programs.iter().map(|p| p.outcome.clone()).collect();
                    format!(
                        "accepted {}",
                        d.programs
                            .iter()
                            .map(|p| match p.instance {
                                Some(n) => format!("{}:{n}", p.name),
                                None => p.name.clone(),
                            })
                            .collect::<Vec<_>>()
                            .join(" ")
                    )
                }
                Err(e) => format!("refused: {e}"),
            },
            FleetAction::Answer(Answer::Reload { result, .. }) => match result {
                Ok(outcome) => format!(
                    "reloaded: {}",
                    outcome
                        .plan
                        .iter()
                        .map(|i| format!("{} {:?}", i.program, i.change).to_lowercase())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Err(refused) => format!("reload refused: {}", refused.errors.join("; ")),
            },
            FleetAction::RollEnded {
                program, result, ..
            } => match result {
                Ok(text) => format!("roll {program} done: {text}"),
                Err(text) => format!("roll {program} aborted: {text}"),
            },
            FleetAction::Exit { code, .. } => {
                self.exited = Some(code);
                format!("exit {code}")
            }
        })
    }

    fn fleet_holds(&self, incarnation: Incarnation) -> bool {
        self.fleet
            .entries
            .iter()
            .chain(&self.fleet.retired)
            .any(|e| e.holds(incarnation))
    }

    /// The `KELPIE_SLOT` the named actor was spawned with.
    fn kelpie_slot(&self, name: &str) -> u32 {
        self.kelpie_slots[&self.incarnation(name)]
    }

    /// Each instance's `KELPIE_SLOT`, as the board shows it.
    fn board_slots(&self, program: &str) -> Vec<u32> {
        self.program(program)
            .instances
            .iter()
            .map(|i| i.slot)
            .collect()
    }

    /// The current reported state of a program, as the board shows it.
    fn program(&self, name: &str) -> Arc<crate::status::ProgramStatus> {
        self.fleet
            .board()
            .programs
            .into_iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("{name} is not on the board"))
    }
}

fn program_of(name: &str) -> &str {
    name.split(':').next().unwrap_or(name)
}

fn command_name(command: &Command) -> String {
    match command {
        Command::Start => "start".into(),
        Command::Stop => "stop".into(),
        Command::Kill => "kill".into(),
        Command::Drain => "drain".into(),
        Command::Block(reason) => format!("block: {reason}"),
        Command::Signal(s) => format!("signal {}", crate::signals::short_name(*s)),
        Command::Relaunch => "relaunch".into(),
        Command::Cause(_) => "cause".into(),
        Command::Ack(seq) => format!("ack {seq}"),
        Command::RestartGranted => "restart granted".into(),
        Command::BudgetExhausted => "budget exhausted".into(),
    }
}

fn timer_name(timer: &FleetTimer) -> String {
    match timer {
        FleetTimer::DrainElapsed => "drain".into(),
        FleetTimer::ShutdownDeadline => "deadline".into(),
        FleetTimer::KillGraceElapsed => "kill grace".into(),
        FleetTimer::SweepElapsed => "sweep grace".into(),
        FleetTimer::RollDeadline { program, .. } => format!("roll deadline {program}"),
        FleetTimer::BudgetRefill => "budget refill".into(),
    }
}

use Given::*;

const CHAIN: &str = r#"
[supervisor]
shutdown_timeout = "30s"

[program.db]
command = ["sleep", "1000"]

[program.api]
command = ["sleep", "1000"]
depends_on = { db = "ready" }

[program.web]
command = ["sleep", "1000"]
instances = 2
depends_on = { api = "started" }
"#;

#[test]
fn a_dependency_chain_starts_in_order_and_stops_in_reverse() {
    let mut w = World::start(
        CHAIN,
        &[
            "build db",
            "build api",
            "build web",
            "spawn db:0",
            "spawn api:0",
            "spawn web:0",
            "spawn web:1",
            "db:0 start",
        ],
    );
    w.run(&[
        // api waits for db to be ready, not merely running.
        (Up("db:0"), &[]),
        (Ready("db:0"), &["api:0 start"]),
        // web needs api started: both instances at once.
        (Up("api:0"), &["web:0 start", "web:1 start"]),
        (Up("web:0"), &[]),
        (Up("web:1"), &[]),
        // Shutdown: every instance drains, then only the leaves stop.
        (
            Term,
            &[
                "service stopping",
                "db:0 drain",
                "api:0 drain",
                "web:0 drain",
                "web:1 drain",
                "after 30s deadline",
                "web:0 stop",
                "web:1 stop",
            ],
        ),
        // api stops only once both web instances are down.
        (Down("web:0"), &[]),
        (Down("web:1"), &["api:0 stop"]),
        (Down("api:0"), &["db:0 stop"]),
        // All down: escaped processes get TERM; none were found.
        (Down("db:0"), &["sweep TERM"]),
        (Escaped(0), &["exit 0"]),
    ]);
    // A finished fleet takes no more events.
    w.run(&[(Term, &[])]);
}

#[test]
fn a_dependency_that_waits_shows_why_and_a_failed_one_blocks() {
    let mut w = World::start(
        CHAIN,
        &[
            "build db",
            "build api",
            "build web",
            "spawn db:0",
            "spawn api:0",
            "spawn web:0",
            "spawn web:1",
            "db:0 start",
        ],
    );
    assert_eq!(
        w.program("api").reason.as_deref(),
        Some("waiting for dependency \"db\" to be ready")
    );
    w.run(&[(Failed("db:0"), &["api:0 block: dependency \"db\" failed"])]);
    // web waits on api, which will never start: it keeps waiting, and
    // says for what.
    assert_eq!(
        w.program("web").reason.as_deref(),
        Some("waiting for dependency \"api\" to be started")
    );

    // The blocked program reports itself failed; its own dependents are
    // blocked in turn.
    w.run(&[(
        Failed("api:0"),
        &[
            "web:0 block: dependency \"api\" failed",
            "web:1 block: dependency \"api\" failed",
        ],
    )]);
    // db fixed and started by hand: once it is ready, api starts without
    // being asked, and web once api runs.
    w.run(&[
        (
            Act(Verb::Start, &["db"]),
            &["accepted db", "db:0 start", "db:0 ack 1"],
        ),
        (Up("db:0"), &[]),
        (Ready("db:0"), &["api:0 start"]),
        (Up("api:0"), &["web:0 start", "web:1 start"]),
    ]);
    assert_eq!(w.stage("web"), "launched");
}

#[test]
fn escaped_processes_get_their_grace_then_sigkill() {
    let mut w = World::start(
        "[program.a]\ncommand = [\"sleep\", \"1000\"]\n",
        &["build a", "spawn a:0", "a:0 start"],
    );
    w.run(&[
        (Up("a:0"), &[]),
        (
            Term,
            &[
                "service stopping",
                "a:0 drain",
                "after 30s deadline",
                "a:0 stop",
            ],
        ),
        (Down("a:0"), &["sweep TERM"]),
        (Escaped(2), &["after 1s sweep grace"]),
        (Timer(FleetTimer::SweepElapsed), &["sweep KILL", "exit 0"]),
    ]);
}

#[test]
fn the_shutdown_deadline_kills_everything_and_gives_up_after_the_grace() {
    let mut w = World::start(
        "[supervisor]\nshutdown_timeout = \"2s\"\ndrain_delay = \"1s\"\n[program.a]\ncommand = [\"sleep\", \"1000\"]\n",
        &["build a", "spawn a:0", "a:0 start"],
    );
    w.run(&[
        (Up("a:0"), &[]),
        // drain_delay: nothing stops until it is over.
        (
            Term,
            &[
                "service stopping",
                "a:0 drain",
                "after 1s drain",
                "after 2s deadline",
            ],
        ),
        (Timer(FleetTimer::DrainElapsed), &["a:0 stop"]),
        (
            Timer(FleetTimer::ShutdownDeadline),
            &["a:0 kill", "after 5s kill grace"],
        ),
        // The process never reports down (uninterruptible sleep).
        (Timer(FleetTimer::KillGraceElapsed), &["exit 1"]),
    ]);
}

const GROUP: &str = r#"
[program.db]
command = ["sleep", "1000"]

[program.api]
command = ["sleep", "1000"]

[program.worker]
command = ["sleep", "1000"]

[group.backend]
programs = ["db", "api", "worker"]
strategy = "STRATEGY"
max_restarts = 1
restart_window = "60s"
"#;

fn group_world(strategy: &str) -> World {
    let mut w = World::start(
        &GROUP.replace("STRATEGY", strategy),
        &[
            "build db",
            "build api",
            "build worker",
            "spawn db:0",
            "spawn api:0",
            "spawn worker:0",
            "db:0 start",
            "api:0 start",
            "worker:0 start",
        ],
    );
    w.run(&[(Up("db:0"), &[]), (Up("api:0"), &[]), (Up("worker:0"), &[])]);
    w
}

#[test]
fn one_for_all_stops_the_others_last_first_then_starts_all_in_order() {
    let mut w = group_world("one_for_all");
    w.run(&[
        // The crashed member's own restart is held back (it is told to
        // stop); then the others stop one at a time, last listed first.
        (Crash("api:0"), &["api:0 stop"]),
        (Down("api:0"), &["worker:0 stop"]),
        (Down("worker:0"), &["db:0 stop"]),
        // All down: they start again one at a time, in listed order, each
        // once the previous one has a process.
        (Down("db:0"), &["db:0 relaunch"]),
        (Up("db:0"), &["api:0 relaunch"]),
        (Up("api:0"), &["worker:0 relaunch"]),
        (Up("worker:0"), &[]),
        // A second group restart within the window exceeds max_restarts = 1:
        // the group fails and every member is stopped.
        (
            Crash("db:0"),
            &[
                "db:0 stop",
                "db:0 ack 0",
                "api:0 stop",
                "api:0 ack 0",
                "worker:0 stop",
                "worker:0 ack 0",
            ],
        ),
    ]);
    assert!(w
        .program("worker")
        .reason
        .as_deref()
        .is_some_and(|r| r.starts_with("group \"backend\" failed")));
    // The failed group's members stay down: nothing relaunches them.
    w.run(&[
        (Down("db:0"), &[]),
        (Down("api:0"), &[]),
        (Down("worker:0"), &[]),
    ]);
    for member in ["db", "api", "worker"] {
        assert_eq!(w.stage(member), "stopped", "{member}");
    }
}

#[test]
fn rest_for_one_restarts_the_crashed_member_and_those_after_it() {
    let mut w = group_world("rest_for_one");
    w.run(&[
        (Crash("api:0"), &["api:0 stop"]),
        (Down("api:0"), &["worker:0 stop"]),
        // db, listed before api, is never touched.
        (Down("worker:0"), &["api:0 relaunch"]),
        (Up("api:0"), &["worker:0 relaunch"]),
        (Up("worker:0"), &[]),
    ]);
    // After the restart window the group may restart again.
    w.run(&[
        (Wait(Duration::from_secs(61)), &[]),
        (Crash("worker:0"), &["worker:0 stop"]),
        (Down("worker:0"), &["worker:0 relaunch"]),
    ]);
}

#[test]
fn one_for_one_leaves_the_others_alone() {
    let mut w = group_world("one_for_one");
    w.run(&[(Crash("api:0"), &[]), (Up("api:0"), &[])]);
}

const BUDGET: &str = r#"
[supervisor]
restart_budget = { max = 2, per = "10s" }

[program.a]
command = ["sleep", "1000"]
instances = 3
"#;

#[test]
fn the_restart_budget_grants_max_per_window_and_queues_the_rest_in_order() {
    let mut w = World::start(
        BUDGET,
        &[
            "build a",
            "spawn a:0",
            "spawn a:1",
            "spawn a:2",
            "a:0 start",
            "a:1 start",
            "a:2 start",
        ],
    );
    w.run(&[
        (
            RestartWanted("a:0"),
            &["a:0 restart granted", "after 10s budget refill"],
        ),
        (RestartWanted("a:1"), &["a:1 restart granted"]),
        (RestartWanted("a:2"), &["a:2 budget exhausted"]),
        (RestartWanted("a:0"), &["a:0 budget exhausted"]),
        (Wait(Duration::from_secs(10)), &[]),
        // Both grants left the window: both waiters, in the order they asked.
        (
            Timer(FleetTimer::BudgetRefill),
            &[
                "a:2 restart granted",
                "a:0 restart granted",
                "after 10s budget refill",
            ],
        ),
    ]);
    let delayed = w
        .metrics
        .iter()
        .filter(|m| matches!(m, MetricUpdate::RestartDelayed { .. }))
        .count();
    assert_eq!(
        delayed, 2,
        "each wait counts in kelpie_restarts_delayed_total"
    );
    assert_eq!(
        w.metrics.last(),
        Some(&MetricUpdate::BudgetAvailable(Some(0)))
    );
}

const BEFORE_RELOAD: &str = r#"
[program.db]
command = ["sleep", "1000"]

[program.api]
command = ["sleep", "1000"]
depends_on = { db = "started" }

[program.cron]
command = ["sleep", "1000"]

[program.old]
command = ["sleep", "1000"]
"#;

const AFTER_RELOAD: &str = r#"
[program.db]
command = ["sleep", "2000"]

[program.api]
command = ["sleep", "1000"]
depends_on = { db = "started" }

[program.cron]
command = ["sleep", "1000"]

[program.new]
command = ["sleep", "1000"]
"#;

#[test]
fn a_reload_applies_exactly_the_difference() {
    let mut w = World::start(
        BEFORE_RELOAD,
        &[
            "build db",
            "build api",
            "build cron",
            "build old",
            "spawn db:0",
            "spawn api:0",
            "spawn cron:0",
            "spawn old:0",
            "db:0 start",
            "cron:0 start",
            "old:0 start",
        ],
    );
    w.run(&[
        (Up("db:0"), &["api:0 start"]),
        (Up("api:0"), &[]),
        (Up("cron:0"), &[]),
        (Up("old:0"), &[]),
        // db changed: it stops (and is rebuilt once down); old is removed;
        // new starts; api and cron keep their processes. api depends on
        // db, so it is not touched.
        (
            Reload(AFTER_RELOAD),
            &[
                "build new",
                "spawn new:0",
                "reloaded: db restart, api unchanged, cron unchanged, new start, old stop",
                // A reload's stop answers no control request: ack 0.
                "db:0 stop",
                "db:0 ack 0",
                "old:0 stop",
                "old:0 ack 0",
                "new:0 start",
            ],
        ),
        (Up("new:0"), &[]),
        // The removed program is dropped once down.
        (Down("old:0"), &["end old:0", "discard old"]),
        // The changed one is rebuilt from its new config, new actor and all,
        // keeping its recent output; then it starts through the gate.
        (
            Down("db:0"),
            &[
                "build db",
                "end db:0",
                "discard db",
                "spawn db:0",
                // The new actor stands for every command given so far.
                "db:0 ack 0",
                "db:0 start",
            ],
        ),
    ]);
    assert!(
        w.metrics.contains(&MetricUpdate::ProgramRemoved {
            program: "old".into()
        }),
        "a removed program leaves /metrics"
    );
    assert!(!w.fleet.board().programs.iter().any(|p| p.name == "old"));
}

const ROLLING: &str = r#"
[program.web]
command = ["sleep", "1000"]
instances = 2
start_seconds = "1s"
start_timeout = "5s"
"#;

/// Two instances of web from `config`, both up.
fn rolling_world_from(config: &str) -> World {
    let mut w = World::start(
        config,
        &[
            "build web",
            "spawn web:0",
            "spawn web:1",
            "web:0 start",
            "web:1 start",
        ],
    );
    w.run(&[(Up("web:0"), &[]), (Up("web:1"), &[])]);
    w
}

#[test]
fn a_rolling_restart_replaces_one_instance_at_a_time() {
    let mut w = rolling_world_from(ROLLING);
    w.run(&[
        (
            Rolling(&["web"]),
            &[
                "accepted web",
                "spawn web:0'",
                "web:0' start",
                "after 7s roll deadline web",
            ],
        ),
        (Up("web:0'"), &[]),
        // Ready: the replacement takes the slot; the old one stops.
        (Ready("web:0'"), &["web:0 cause", "web:0 stop"]),
        // Only once the old one is gone does the next instance roll.
        (
            Down("web:0"),
            &[
                "end web:0",
                "spawn web:1'",
                "web:1' start",
                "after 7s roll deadline web",
            ],
        ),
        (Up("web:1'"), &[]),
        (Ready("web:1'"), &["web:1 cause", "web:1 stop"]),
        (
            Down("web:1"),
            &[
                "end web:1",
                "roll web done: replaced 2 instances one at a time",
            ],
        ),
    ]);
}

#[test]
fn a_rolling_replacement_switches_slot_and_other_restarts_keep_it() {
    let mut w = rolling_world_from(ROLLING);
    assert_eq!(w.board_slots("web"), [0, 1]);
    // First roll: each replacement takes the slot `instances` above.
    w.run(&[
        (
            Rolling(&["web"]),
            &[
                "accepted web",
                "spawn web:0'",
                "web:0' start",
                "after 7s roll deadline web",
            ],
        ),
        (Up("web:0'"), &[]),
    ]);
    assert_eq!(w.kelpie_slot("web:0'"), 2);
    // Beside it, the old instance is still in its own slot.
    assert_eq!(w.board_slots("web"), [0, 1]);
    w.run(&[
        (Ready("web:0'"), &["web:0 cause", "web:0 stop"]),
        (
            Down("web:0"),
            &[
                "end web:0",
                "spawn web:1'",
                "web:1' start",
                "after 7s roll deadline web",
            ],
        ),
        (Up("web:1'"), &[]),
        (Ready("web:1'"), &["web:1 cause", "web:1 stop"]),
        (
            Down("web:1"),
            &[
                "end web:1",
                "roll web done: replaced 2 instances one at a time",
            ],
        ),
    ]);
    assert_eq!(w.kelpie_slot("web:1'"), 3);
    assert_eq!(w.board_slots("web"), [2, 3]);

    // A crash restart is the same actor: the slot stays.
    w.run(&[(Crash("web:0'"), &[]), (Up("web:0'"), &[])]);
    assert_eq!(w.board_slots("web"), [2, 3]);
    // So does the new actor that replaces a failed one (named web:1 in
    // these lines, as the original web:1 is gone).
    let failed = w.incarnation("web:1'");
    let actions = w.fleet.step(
        FleetEvent::ActorFailed {
            incarnation: failed,
            error: "panic".into(),
        },
        w.now,
    );
    assert_eq!(w.describe_all(actions), ["spawn web:1", "web:1 start"]);
    assert_eq!(w.kelpie_slot("web:1"), 3);
    assert_eq!(w.board_slots("web"), [2, 3]);
    w.run(&[(Up("web:1"), &[])]);
    assert_eq!(w.board_slots("web"), [2, 3]);

    // The second roll switches back: a program only uses slots 0..4.
    w.run(&[
        (
            Rolling(&["web"]),
            &[
                "accepted web",
                "spawn web:0",
                "web:0 start",
                "after 7s roll deadline web",
            ],
        ),
        (Up("web:0"), &[]),
        (Ready("web:0"), &["web:0' cause", "web:0' stop"]),
        (
            Down("web:0'"),
            &[
                "end web:0'",
                "spawn web:1'",
                "web:1' start",
                "after 7s roll deadline web",
            ],
        ),
        (Up("web:1'"), &[]),
        (Ready("web:1'"), &["web:1 cause", "web:1 stop"]),
        (
            Down("web:1"),
            &[
                "end web:1",
                "roll web done: replaced 2 instances one at a time",
            ],
        ),
    ]);
    assert_eq!(w.kelpie_slot("web:0"), 0);
    assert_eq!(w.kelpie_slot("web:1'"), 1);
    assert_eq!(w.board_slots("web"), [0, 1]);
}

#[test]
fn a_rolling_restart_aborts_when_the_replacement_crashes_and_keeps_the_rest() {
    let mut w = rolling_world_from(ROLLING);
    w.run(&[
        (
            Rolling(&["web"]),
            &[
                "accepted web",
                "spawn web:0'",
                "web:0' start",
                "after 7s roll deadline web",
            ],
        ),
        (Up("web:0'"), &[]),
        (
            Crash("web:0'"),
            &[
                "web:0' stop",
                "roll web aborted: rolling restart aborted at web:0: the replacement exited with exit code 1; 0 of 2 instances replaced, the others keep running",
            ],
        ),
        // The replacement retires once down; the old instances were never
        // touched.
        (Down("web:0'"), &["end web:0'"]),
    ]);
    assert_eq!(w.program("web").running(), 2);
}

#[test]
fn a_rolling_restart_aborts_when_the_replacement_is_not_ready_in_time() {
    let mut w = rolling_world_from(ROLLING);
    w.run(&[
        (
            Rolling(&["web"]),
            &[
                "accepted web",
                "spawn web:0'",
                "web:0' start",
                "after 7s roll deadline web",
            ],
        ),
        (Up("web:0'"), &[]),
    ]);
    let replacement = w.incarnation("web:0'");
    w.run(&[(
        Timer(FleetTimer::RollDeadline {
            program: "web".into(),
            incarnation: replacement,
        }),
        &[
            "web:0' stop",
            "roll web aborted: rolling restart aborted at web:0: the replacement was not ready within 7s; 0 of 2 instances replaced, the others keep running",
        ],
    )]);
}

#[test]
fn stop_is_sticky_and_waits_for_dependents() {
    let mut w = World::start(
        CHAIN,
        &[
            "build db",
            "build api",
            "build web",
            "spawn db:0",
            "spawn api:0",
            "spawn web:0",
            "spawn web:1",
            "db:0 start",
        ],
    );
    w.run(&[
        (Up("db:0"), &[]),
        (Ready("db:0"), &["api:0 start"]),
        (Up("api:0"), &["web:0 start", "web:1 start"]),
        (Up("web:0"), &[]),
        (Up("web:1"), &[]),
        // Stopping api and web together: web first, api once web is down.
        (
            Act(Verb::Stop, &["api", "web"]),
            &[
                "accepted api web",
                "web:0 stop",
                "web:0 ack 1",
                "web:1 stop",
                "web:1 ack 1",
            ],
        ),
        (Down("web:0"), &[]),
        (Down("web:1"), &["api:0 stop", "api:0 ack 1"]),
        (Down("api:0"), &[]),
        // A stopped program stays down when its dependency changes.
        (Crash("db:0"), &[]),
        (Up("db:0"), &[]),
        // `start` brings it back through the gate: db must be ready again.
        (Act(Verb::Start, &["api"]), &["accepted api"]),
        (Ready("db:0"), &["api:0 start", "api:0 ack 2"]),
        (
            Act(Verb::Start, &["nope"]),
            &["refused: no such program: nope"],
        ),
    ]);
}

#[test]
fn a_completed_oneshot_opens_its_dependents_gate() {
    let mut w = World::start(
        r#"
[program.migrate]
type = "oneshot"
command = ["true"]

[program.web]
command = ["sleep", "1000"]
depends_on = { migrate = "completed" }
"#,
        &[
            "build migrate",
            "build web",
            "spawn migrate:0",
            "spawn web:0",
            "migrate:0 start",
        ],
    );
    w.run(&[
        (Up("migrate:0"), &[]),
        (Completed("migrate:0"), &["web:0 start"]),
    ]);
}

#[test]
fn a_failed_program_with_on_failure_shutdown_shuts_kelpie_down_with_1() {
    let mut w = World::start(
        "[program.a]\ncommand = [\"sleep\", \"1000\"]\non_failure = \"shutdown\"\n",
        &["build a", "spawn a:0", "a:0 start"],
    );
    w.run(&[
        (
            Failed("a:0"),
            &[
                "service stopping",
                "a:0 drain",
                "after 30s deadline",
                "a:0 stop",
                "sweep TERM",
            ],
        ),
        (Escaped(0), &["exit 1"]),
    ]);
}

#[test]
fn an_instance_told_to_start_counts_as_up_until_it_reports() {
    let mut w = World::start(
        "[program.a]\ncommand = [\"sleep\", \"1000\"]\n",
        &["build a", "spawn a:0", "a:0 start"],
    );
    // The board shows only what the actor reported (nothing yet); the
    // core's own expectation is kept apart.
    assert!(!w.program("a").instances[0].snapshot.want_up);
    w.run(&[
        // SIGTERM before a:0 said anything: it must be stopped and heard
        // from, not taken for already down (which would exit at once and
        // leave the process it is about to spawn behind).
        (
            Term,
            &[
                "service stopping",
                "a:0 drain",
                "after 30s deadline",
                "a:0 stop",
            ],
        ),
        (Up("a:0"), &[]),
        (Down("a:0"), &["sweep TERM"]),
        (Escaped(0), &["exit 0"]),
    ]);
}

const PAIR: &str = r#"
[program.db]
command = ["sleep", "1000"]

[program.api]
command = ["sleep", "1000"]
depends_on = { db = "started" }
"#;

const PAIR_CHANGED: &str = r#"
[program.db]
command = ["sleep", "2000"]

[program.api]
command = ["sleep", "2000"]
depends_on = { db = "started" }
"#;

#[test]
fn a_start_while_a_reload_waits_keeps_the_rebuild_and_starts_the_new_config() {
    let mut w = World::start(
        PAIR,
        &[
            "build db",
            "build api",
            "spawn db:0",
            "spawn api:0",
            "db:0 start",
        ],
    );
    w.run(&[
        (Up("db:0"), &["api:0 start"]),
        (Up("api:0"), &[]),
        // Both changed: api stops first; db's stop waits for api to be down.
        (
            Reload(PAIR_CHANGED),
            &[
                "reloaded: db restart, api restart",
                "api:0 stop",
                "api:0 ack 0",
            ],
        ),
        // A start of db now must not cancel the reload's queued stop (db
        // would keep running its old config, and the reload would never
        // finish); the rebuilt db acknowledges it.
        (Act(Verb::Start, &["db"]), &["accepted db"]),
        (Down("api:0"), &["db:0 stop", "db:0 ack 0"]),
        (
            Down("db:0"),
            &[
                "build db",
                "end db:0",
                "discard db",
                "spawn db:0",
                "build api",
                "end api:0",
                "discard api",
                "spawn api:0",
                "api:0 ack 1",
                "db:0 start",
                "db:0 ack 1",
            ],
        ),
        (Up("db:0"), &["api:0 start"]),
    ]);
}

impl World {
    fn stage(&self, program: &str) -> &'static str {
        self.fleet
            .entries
            .iter()
            .chain(&self.fleet.retired)
            .find(|e| e.name() == program)
            .map_or("absent", |e| e.stage.name())
    }

    /// Runs a table whose rows also name the stage `program` is in after
    /// each one.
    fn run_stages(&mut self, program: &str, table: &[(Given, &[&str], &str)]) {
        for (row, (given, expected, stage)) in table.iter().enumerate() {
            let label = self.label(given);
            let lines = self.happen(given);
            assert_eq!(&lines, expected, "row {row}: {label}");
            assert_eq!(self.stage(program), *stage, "row {row}: {label}: stage");
        }
    }
}

#[test]
fn requests_move_a_program_through_its_stages() {
    let mut w = World::start(
        PAIR,
        &[
            "build db",
            "build api",
            "spawn db:0",
            "spawn api:0",
            "db:0 start",
        ],
    );
    assert_eq!(w.stage("api"), "gated");
    w.run_stages(
        "db",
        &[
            (Up("db:0"), &["api:0 start"], "launched"),
            (Up("api:0"), &[], "launched"),
            // db's stop waits for its dependent api, stopped with it.
            (
                Act(Verb::Stop, &["db", "api"]),
                &["accepted db api", "api:0 stop", "api:0 ack 1"],
                "stop queued",
            ),
            (Down("api:0"), &["db:0 stop", "db:0 ack 1"], "stopping"),
            (Down("db:0"), &[], "stopped"),
            // Stopped is sticky: only a request starts it again, through
            // the gate, which acknowledges the start.
            (
                Act(Verb::Start, &["db"]),
                &["accepted db", "db:0 start", "db:0 ack 2"],
                "launched",
            ),
            (Up("db:0"), &[], "launched"),
            (
                Reload(PAIR_CHANGED),
                &[
                    "reloaded: db restart, api restart",
                    "db:0 stop",
                    "db:0 ack 0",
                ],
                "stopping (then rebuild)",
            ),
            (
                Act(Verb::Start, &["db"]),
                &["accepted db"],
                "stopping (then rebuild)",
            ),
            // A stop now drops that start but keeps the rebuild.
            (
                Act(Verb::Stop, &["db"]),
                &["accepted db", "db:0 stop", "db:0 ack 4"],
                "stopping (then rebuild)",
            ),
            (
                Down("db:0"),
                &[
                    "build db",
                    "end db:0",
                    "discard db",
                    "spawn db:0",
                    "db:0 ack 4",
                    "build api",
                    "end api:0",
                    "discard api",
                    "spawn api:0",
                    "api:0 ack 4",
                ],
                "stopped",
            ),
            // Both are down: each gets its stop at once, then the sweep.
            (
                Term,
                &[
                    "service stopping",
                    "db:0 drain",
                    "api:0 drain",
                    "after 30s deadline",
                    "db:0 stop",
                    "api:0 stop",
                    "sweep TERM",
                ],
                "shutting down (stop sent)",
            ),
        ],
    );
}

const ROLLING_RELOAD: &str = r#"
[program.web]
command = ["sleep", "1000"]
instances = 2
start_seconds = "1s"
start_timeout = "5s"
reload = "rolling"
"#;

const ROLLING_RELOAD_CHANGED: &str = r#"
[program.web]
command = ["sleep", "2000"]
instances = 2
start_seconds = "2s"
start_timeout = "5s"
reload = "rolling"
"#;

#[test]
fn a_rolling_reload_replaces_instances_one_at_a_time_with_the_new_config() {
    let mut w = rolling_world_from(ROLLING_RELOAD);
    w.run(&[
        // No stop of the whole program: a replacement built from the new
        // config starts beside web:0 (deadline from the new start_seconds).
        (
            Reload(ROLLING_RELOAD_CHANGED),
            &[
                "reloaded: web roll",
                "spawn web:0'",
                "web:0' start",
                "after 8s roll deadline web",
            ],
        ),
        (Up("web:0'"), &[]),
        (Ready("web:0'"), &["web:0 cause", "web:0 stop"]),
        (
            Down("web:0"),
            &[
                "end web:0",
                "spawn web:1'",
                "web:1' start",
                "after 8s roll deadline web",
            ],
        ),
        // The same file again mid-roll is compared with the config being
        // rolled out: nothing changes, the roll goes on.
        (Reload(ROLLING_RELOAD_CHANGED), &["reloaded: web unchanged"]),
        (Up("web:1'"), &[]),
        (Ready("web:1'"), &["web:1 cause", "web:1 stop"]),
        (
            Down("web:1"),
            &[
                "end web:1",
                "roll web done: replaced 2 instances one at a time",
            ],
        ),
    ]);
    let replacements: Vec<&(String, String)> = w
        .spawned
        .iter()
        .filter(|(n, _)| n.ends_with('\''))
        .collect();
    assert_eq!(
        replacements,
        [
            &("web:0'".to_string(), "sleep 2000".to_string()),
            &("web:1'".to_string(), "sleep 2000".to_string())
        ]
    );
    // Beside the instances they replace, in the other slots.
    assert_eq!(w.board_slots("web"), [2, 3]);
    // The program took the new config over: the same file again changes
    // nothing.
    w.run(&[(Reload(ROLLING_RELOAD_CHANGED), &["reloaded: web unchanged"])]);
}

#[test]
fn a_rolling_reload_restarts_what_cannot_roll() {
    // Not every instance is up: nothing to keep serving, so a restart.
    let mut w = World::start(
        ROLLING_RELOAD,
        &[
            "build web",
            "spawn web:0",
            "spawn web:1",
            "web:0 start",
            "web:1 start",
        ],
    );
    w.run(&[
        (Up("web:0"), &[]),
        (
            Reload(ROLLING_RELOAD_CHANGED),
            &[
                "reloaded: web restart",
                "web:0 stop",
                "web:0 ack 0",
                "web:1 stop",
                "web:1 ack 0",
            ],
        ),
    ]);
    // A changed instance count cannot be rolled one for one.
    let mut w = rolling_world_from(ROLLING_RELOAD);
    let three = ROLLING_RELOAD_CHANGED.replace("instances = 2", "instances = 3");
    w.run(&[(
        Reload(&three),
        &[
            "reloaded: web restart",
            "web:0 stop",
            "web:0 ack 0",
            "web:1 stop",
            "web:1 ack 0",
        ],
    )]);
}

#[test]
fn an_aborted_rolling_reload_leaves_the_old_config_in_place() {
    let mut w = rolling_world_from(ROLLING_RELOAD);
    w.run(&[
        (
            Reload(ROLLING_RELOAD_CHANGED),
            &[
                "reloaded: web roll",
                "spawn web:0'",
                "web:0' start",
                "after 8s roll deadline web",
            ],
        ),
        (Up("web:0'"), &[]),
        (
            Crash("web:0'"),
            &[
                "web:0' stop",
                "roll web aborted: rolling restart aborted at web:0: the replacement exited with exit code 1; 0 of 2 instances replaced, the others keep running",
            ],
        ),
        (Down("web:0'"), &["end web:0'"]),
        // Still on the old config: the next reload rolls again.
        (
            Reload(ROLLING_RELOAD_CHANGED),
            &[
                "reloaded: web roll",
                "spawn web:0'",
                "web:0' start",
                "after 8s roll deadline web",
            ],
        ),
    ]);
}

const TWO_WEBS: &str = r#"
[program.web]
command = ["sleep", "1000"]
instances = 2

[program.db]
command = ["sleep", "1000"]

[program.api]
command = ["sleep", "1000"]

[group.backend]
programs = ["api", "db"]
"#;

fn two_webs() -> World {
    let mut w = World::start(
        TWO_WEBS,
        &[
            "build web",
            "build db",
            "build api",
            "spawn web:0",
            "spawn web:1",
            "spawn db:0",
            "spawn api:0",
            "web:0 start",
            "web:1 start",
            "db:0 start",
            "api:0 start",
        ],
    );
    w.run(&[
        (Up("web:0"), &[]),
        (Ready("web:0"), &[]),
        (Up("web:1"), &[]),
        (Ready("web:1"), &[]),
        (Up("db:0"), &[]),
        (Up("api:0"), &[]),
    ]);
    w
}

#[test]
fn an_instance_is_stopped_started_restarted_and_signalled_alone() {
    let mut w = two_webs();
    w.run(&[
        (
            Act(Verb::Stop, &["web:1"]),
            &["web:1 stop", "web:1 ack 1", "accepted web:1"],
        ),
        (Down("web:1"), &[]),
    ]);
    let web = w.program("web");
    // The instance is held down; the program as a whole is not stopped
    // and still counts as ready with the instance it has left.
    assert!(web.instances[1].stopped_by_user(), "{web:?}");
    assert!(!web.instances[0].stopped_by_user());
    assert!(!web.stopped_by_user && web.enabled);
    assert!(web.ready(), "{:?}", web.reason());
    assert_eq!(
        web.instance_reason(1).as_deref(),
        Some("web:1 was stopped by `kelpie stop`")
    );
    w.run(&[
        // A reload that leaves web alone leaves the instance down.
        (
            Reload(TWO_WEBS),
            &["reloaded: web unchanged, db unchanged, api unchanged"],
        ),
        (
            Act(Verb::Start, &["web:1"]),
            &["web:1 start", "web:1 ack 2", "accepted web:1"],
        ),
    ]);
    assert!(!w.program("web").instances[1].stopped_by_user());
    w.run(&[
        (Up("web:1"), &[]),
        (
            Act(Verb::Restart, &["web:0"]),
            &["web:0 stop", "web:0 start", "web:0 ack 3", "accepted web:0"],
        ),
        (
            Act(Verb::Signal, &["web:1"]),
            &["web:1 signal TERM", "accepted web:1"],
        ),
    ]);
    assert_eq!(
        w.outcomes,
        [Some(Ok("sent SIGTERM to 1 process group".to_string()))]
    );
}

#[test]
fn every_instance_held_down_makes_the_program_not_meant_to_run() {
    let mut w = two_webs();
    w.run(&[
        (
            Act(Verb::Stop, &["web:0", "web:1"]),
            &[
                "web:0 stop",
                "web:0 ack 1",
                "web:1 stop",
                "web:1 ack 1",
                "accepted web:0 web:1",
            ],
        ),
        (Down("web:0"), &[]),
        (Down("web:1"), &[]),
    ]);
    let web = w.program("web");
    assert!(!web.enabled, "not counted against kelpie's readiness");
    assert_eq!(
        web.reason().as_deref(),
        Some("every instance of web was stopped by `kelpie stop`")
    );
    // Starting the program as a whole lets every instance go.
    w.run(&[(
        Act(Verb::Start, &["web"]),
        // Down as a whole: through the dependency gate, like a first start.
        &[
            "accepted web",
            "web:0 start",
            "web:0 ack 2",
            "web:1 start",
            "web:1 ack 2",
        ],
    )]);
    let web = w.program("web");
    assert!(web.enabled && !web.instances.iter().any(|i| i.stopped_by_user()));
}

#[test]
fn names_resolve_to_programs_instances_and_groups() {
    let mut w = two_webs();
    w.run(&[
        // A group: every member, in the group's order.
        (
            Act(Verb::Restart, &["backend"]),
            &[
                "api:0 stop",
                "api:0 start",
                "api:0 ack 1",
                "db:0 stop",
                "db:0 start",
                "db:0 ack 1",
                "accepted api db",
            ],
        ),
        // The program named as a whole takes its instance's place.
        (
            Act(Verb::Signal, &["web:1", "db", "web", "web:0"]),
            &[
                "web:0 signal TERM",
                "web:1 signal TERM",
                "db:0 signal TERM",
                "accepted web db",
            ],
        ),
        (
            Act(Verb::Stop, &["web:2", "web:9"]),
            &["refused: no such instance: web:2 (web has 2 instances)"],
        ),
        // Unknown names first, all of them on one line.
        (
            Act(Verb::Stop, &["web:2", "nope", "web:x", "db:0:0"]),
            &["refused: no such programs: nope, web:x, db:0:0"],
        ),
        (
            Rolling(&["web", "web:1"]),
            &["refused: cannot restart web:1 with --rolling: --rolling replaces every instance of web one at a time; use `restart web:1` (or `restart --rolling web`)"],
        ),
    ]);
}

#[test]
fn an_instance_of_a_program_not_started_as_a_whole_is_refused() {
    let mut w = two_webs();
    w.run(&[
        (
            Act(Verb::Stop, &["web"]),
            &[
                "accepted web",
                "web:0 stop",
                "web:0 ack 1",
                "web:1 stop",
                "web:1 ack 1",
            ],
        ),
        (Down("web:0"), &[]),
        (Down("web:1"), &[]),
        (Act(Verb::Start, &["web:0"]), &["accepted web:0"]),
    ]);
    assert_eq!(
        w.outcomes,
        [Some(Err(
            "web is not started as a whole (it is stopped); `kelpie start web` acts on every instance"
                .to_string()
        ))]
    );
    w.run(&[(Act(Verb::Stop, &["web:1"]), &["accepted web:1"])]);
    assert_eq!(w.outcomes, [Some(Ok("already stopped".to_string()))]);
}

const WATCHED: &str = r#"
[program.web]
command = ["sleep", "1000"]
instances = 2
memory_restart = "100MB"

[program.plain]
command = ["sleep", "1000"]
"#;

fn watched() -> World {
    let mut w = World::start(
        WATCHED,
        &[
            "build web",
            "build plain",
            "spawn web:0",
            "spawn web:1",
            "spawn plain:0",
            "web:0 start",
            "web:1 start",
            "plain:0 start",
        ],
    );
    w.run(&[(Up("web:0"), &[]), (Up("web:1"), &[]), (Up("plain:0"), &[])]);
    w
}

#[test]
fn a_memory_restart_stops_the_instance_then_relaunches_it_once_down() {
    let mut w = watched();
    w.run(&[
        (OverMemory("web:0", None), &["web:0 stop", "web:0 ack 1"]),
        // The sampler's next word while the restart is under way changes
        // nothing.
        (OverMemory("web:0", None), &[]),
        (Stopping("web:0"), &[]),
    ]);
    assert!(
        !w.fleet.entries[0].is_down(),
        "an instance being restarted does not count as down"
    );
    w.run(&[
        (Down("web:0"), &["web:0 relaunch"]),
        (Up("web:0"), &[]),
        // The new process is watched like the old one.
        (OverMemory("web:0", None), &["web:0 stop", "web:0 ack 2"]),
    ]);
}

#[test]
fn a_memory_restart_applies_only_to_the_running_process_measured() {
    let mut w = watched();
    let old = w.program("web").instances[1].snapshot.pid;
    w.run(&[
        // web:1 was restarted meanwhile: the measurement is stale.
        (Up("web:1"), &[]),
        (OverMemory("web:1", old), &[]),
        // A program without memory_restart is never restarted for it.
        (OverMemory("plain:0", None), &[]),
        // Nor an instance that is stopping or held down.
        (
            Act(Verb::Stop, &["web:1"]),
            &["web:1 stop", "web:1 ack 1", "accepted web:1"],
        ),
        (Stopping("web:1"), &[]),
        (OverMemory("web:1", None), &[]),
        (Down("web:1"), &[]),
        (OverMemory("web:1", None), &[]),
    ]);
}

#[test]
fn a_stop_or_shutdown_during_a_memory_restart_keeps_the_instance_down() {
    let mut w = watched();
    w.run(&[
        (OverMemory("web:0", None), &["web:0 stop", "web:0 ack 1"]),
        (
            Act(Verb::Stop, &["web"]),
            &[
                "accepted web",
                "web:0 stop",
                "web:0 ack 2",
                "web:1 stop",
                "web:1 ack 2",
            ],
        ),
        (Down("web:0"), &[]),
        (Down("web:1"), &[]),
    ]);
    assert!(w.fleet.entries[0].is_down());
    let mut w = watched();
    w.run(&[
        (OverMemory("web:1", None), &["web:1 stop", "web:1 ack 1"]),
        (
            Term,
            &[
                "service stopping",
                "web:0 drain",
                "web:1 drain",
                "plain:0 drain",
                "after 30s deadline",
                "web:0 stop",
                "web:1 stop",
                "plain:0 stop",
            ],
        ),
        (Down("web:1"), &[]),
        (OverMemory("web:0", None), &[]),
    ]);
}

//! `kelpie exec -- CMD [ARG…]`: one command, no config file. A tini /
//! dumb-init replacement for containers and scripts:
//!
//! - CMD runs as one child in its own process group, with kelpie's own
//!   stdin/stdout/stderr (no relay), a clean signal mask and dispositions,
//!   and no inherited fd above 2;
//! - every catchable asynchronous signal kelpie receives is forwarded to
//!   the child's process group (see [`forwarded`]);
//! - every zombie is reaped by the central [`Reaper`], which owns every wait
//!   so the child's status is never stolen; kelpie is a child subreaper
//!   when it is not PID 1, so orphaned grandchildren come to it;
//! - SIGTERM / SIGINT stop the child (forwarded, then SIGKILL to the group
//!   after `--stop-timeout`); when the child exits, whatever it left behind
//!   (its group, descendants reparented to kelpie) gets SIGTERM, then
//!   SIGKILL after the stop timeout, so nothing it started survives;
//! - kelpie exits with the child's code, `128+N` if it died of signal N,
//!   127 / 126 if CMD is not found / not executable (like a shell).
//!
//! Everything runs on one thread (a current-thread runtime): the reaper's
//! passes, signal forwarding and spawning are sequential, so the phase seen
//! here always matches the reaper's table (no pid can be reaped between
//! "the child is running" and "signal its group"), and the child's
//! parent-death signal is tied to the main thread, which lives as long as
//! kelpie.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{kill, killpg, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
use nix::unistd::{getpid, tcsetpgrp, Pid};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc as async_mpsc;
use tokio::time::Instant;

use crate::backoff::{BackoffConfig, Jitter};
use crate::reaper::Reaper;
use crate::state::ExitStatus;

mod exit_codes;
mod terminal;

use exit_codes::{classify_spawn_error, SpawnFailure};
pub use exit_codes::{exit_code, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND};
use terminal::{prepare_child, stdin_fd, Terminal};

/// After SIGKILL, how long to wait for the processes to be gone before
/// giving up on them (only a process stuck in the kernel outlives this).
const KILL_GRACE: Duration = Duration::from_secs(5);

/// A run at least this long resets the restart backoff to its first step
/// (the default `start_seconds` of `kelpie run`).
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(1);

/// `--restart`: the same policy as a program's `restart`, for a command
/// that is a service (exit code 0 is its only success).
pub use crate::restart_policy::RestartPolicy;

fn restarts(policy: RestartPolicy, status: ExitStatus) -> bool {
    policy.restarts(
        crate::restart_policy::ProgramKind::Service,
        status == ExitStatus::Code(0),
    )
}

/// Signals kelpie receives and passes on to the child's process group.
///
/// Not forwarded:
/// - SIGKILL, SIGSTOP: cannot be caught;
/// - SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT: synchronous
///   faults of kelpie itself (they keep their default action, so a kelpie
///   bug dumps core rather than being passed on);
/// - SIGPIPE: raised by kelpie's own writes to a closed pipe (ignored);
/// - SIGCHLD: drives reaping;
/// - SIGTTIN, SIGTTOU: raised when *kelpie itself* touches the terminal
///   from the background; kelpie ignores them (it hands the terminal over
///   with tcsetpgrp, which raises SIGTTOU from the background).
///
/// Everything else is forwarded, SIGTSTP and SIGCONT included (like tini),
/// and so are real-time signals.
pub fn forwarded(signal: Signal) -> bool {
    !matches!(
        signal,
        Signal::SIGKILL
            | Signal::SIGSTOP
            | Signal::SIGSEGV
            | Signal::SIGBUS
            | Signal::SIGFPE
            | Signal::SIGILL
            | Signal::SIGTRAP
            | Signal::SIGSYS
            | Signal::SIGABRT
            | Signal::SIGPIPE
            | Signal::SIGCHLD
            | Signal::SIGTTIN
            | Signal::SIGTTOU
    )
}

/// One line on stderr. A failed write (stderr closed) must never take
/// the init process down, so errors are ignored.
fn say(line: &str) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

/// `kelpie exec`. Returns the exit code.
pub fn run(policy: RestartPolicy, stop_timeout: Duration, argv: Vec<OsString>) -> i32 {
    if argv.is_empty() {
        say("kelpie: exec: no command given");
        return 2;
    }
    if let Err(message) = prepare_self() {
        say(&message);
        return 1;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            say(&format!("kelpie: cannot start the async runtime: {err}"));
            return 1;
        }
    };
    runtime.block_on(async move {
        // Handlers first, child second: as PID 1 a signal without a handler
        // is dropped by the kernel, and an exit before SIGCHLD is watched
        // would go unnoticed.
        let sigchld = match signal(SignalKind::child()) {
            Ok(stream) => stream,
            Err(err) => {
                say(&format!("kelpie: cannot watch SIGCHLD: {err}"));
                return 1;
            }
        };
        let signals = match watch_signals() {
            Ok(rx) => rx,
            Err(message) => {
                say(&message);
                return 1;
            }
        };
        Exec::new(policy, stop_timeout, argv)
            .supervise(sigchld, signals)
            .await
    })
}

/// Process-wide setup, before any thread exists.
fn prepare_self() -> Result<(), String> {
    // Fds kelpie inherited must not reach the child.
    crate::process::seal_inherited_fds();
    // A parent may have blocked signals (the mask is inherited): kelpie
    // would then never see the SIGTERM it is meant to forward.
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|err| format!("kelpie: cannot reset the signal mask: {err}"))?;
    for terminal_stop in [Signal::SIGTTIN, Signal::SIGTTOU] {
        // SAFETY: SIG_IGN installs no handler code; called before any
        // thread exists. Children get the default back in `prepare_child`.
        unsafe { nix::sys::signal::signal(terminal_stop, SigHandler::SigIgn) }
            .map_err(|err| format!("kelpie: cannot ignore {terminal_stop}: {err}"))?;
    }
    #[cfg(target_os = "linux")]
    if getpid().as_raw() != 1 {
        // As PID 1 orphans come to kelpie anyway; otherwise they would go
        // to the host's init and escape both reaping and the final kill.
        if let Err(err) = nix::sys::prctl::set_child_subreaper(true) {
            say(&format!(
                "kelpie: warning: cannot become a child subreaper ({err}); orphaned grandchildren will not be reaped or stopped by kelpie"
            ));
        }
    }
    Ok(())
}

/// Registers a handler for every forwarded signal and merges them into one
/// channel of raw signal numbers (real-time signals have no `Signal`).
fn watch_signals() -> Result<async_mpsc::UnboundedReceiver<i32>, String> {
    let (tx, rx) = async_mpsc::unbounded_channel();
    let standard = Signal::iterator()
        .filter(|s| forwarded(*s))
        .map(|s| s as i32);
    for raw in standard.chain(libc::SIGRTMIN()..=libc::SIGRTMAX()) {
        let mut stream = signal(SignalKind::from_raw(raw))
            .map_err(|err| format!("kelpie: cannot handle signal {raw}: {err}"))?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(raw).is_err() {
                    break;
                }
            }
        });
    }
    Ok(rx)
}

/// What the reaper reports; delivered synchronously inside its calls and
/// drained right after each one.
enum ReaperEvent {
    Exited {
        pid: i32,
        status: ExitStatus,
        group_alive: bool,
    },
    GroupGone {
        pgid: i32,
    },
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Running {
        pid: i32,
        started: Instant,
    },
    /// The child exited; what it left behind is being stopped.
    Draining {
        pgid: i32,
        status: ExitStatus,
        ran: Duration,
        group_gone: bool,
        /// It died of Ctrl-C / Ctrl-\ on the terminal kelpie gave it.
        interrupted: bool,
    },
    /// Waiting for the backoff delay before the next start.
    Backoff,
}

struct Exec {
    argv: Vec<OsString>,
    name: String,
    policy: RestartPolicy,
    stop_timeout: Duration,
    reaper: Reaper,
    events_tx: mpsc::Sender<ReaperEvent>,
    events: mpsc::Receiver<ReaperEvent>,
    terminal: Option<Terminal>,
    phase: Phase,
    /// A SIGTERM/SIGINT asked kelpie to stop: no more restarts.
    stopping: bool,
    /// SIGKILL was sent; `deadline` is then when to give up waiting.
    killed: bool,
    /// In Running/Draining: when to SIGKILL (or give up, once killed). In
    /// Backoff: when to start again.
    deadline: Option<Instant>,
    /// Reparented descendants already sent SIGTERM in this drain.
    termed: HashSet<i32>,
    /// The exit code of the last run, reported when a stop arrives while
    /// waiting to restart.
    last_code: i32,
    attempt: u32,
    jitter: Jitter,
    /// The process group the terminal was last given to.
    handed_to: Option<Pid>,
    done: Option<i32>,
}

impl Exec {
    fn new(policy: RestartPolicy, stop_timeout: Duration, argv: Vec<OsString>) -> Self {
        let name = argv
            .first()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (events_tx, events) = mpsc::channel();
        Self {
            jitter: Jitter::new(Jitter::seed_from(&name)),
            argv,
            name,
            policy,
            stop_timeout,
            reaper: Reaper::new(),
            events_tx,
            events,
            terminal: Terminal::detect(),
            phase: Phase::Backoff,
            stopping: false,
            killed: false,
            deadline: None,
            termed: HashSet::new(),
            last_code: 0,
            attempt: 0,
            handed_to: None,
            done: None,
        }
    }

    async fn supervise(
        mut self,
        mut sigchld: tokio::signal::unix::Signal,
        mut signals: async_mpsc::UnboundedReceiver<i32>,
    ) -> i32 {
        self.spawn();
        loop {
            if let Some(code) = self.done {
                return code;
            }
            let deadline = self.deadline;
            tokio::select! {
                Some(()) = sigchld.recv() => {
                    self.reaper.reap();
                    self.settle();
                    self.check_suspended();
                }
                Some(raw) = signals.recv() => self.on_signal(raw),
                () = until(deadline) => self.on_deadline(),
            }
        }
    }

    // ---- starting -------------------------------------------------------

    fn spawn(&mut self) {
        let foreground = self.terminal.as_ref().is_some_and(|t| {
            let fg = t.foreground();
            fg == Some(t.own_pgrp) || (fg.is_some() && fg == self.handed_to)
        });
        let mut command = Command::new(&self.argv[0]);
        command.args(&self.argv[1..]);
        // setpgid(0, 0) runs in the child before the pre_exec hook.
        command.process_group(0);
        let parent = getpid().as_raw();
        // SAFETY: `prepare_child` runs between fork and exec and makes only
        // async-signal-safe system calls on values copied before the fork;
        // it neither allocates nor locks.
        unsafe {
            command.pre_exec(move || prepare_child(parent, foreground));
        }
        let tx = self.events_tx.clone();
        let spawned = self.reaper.spawn(
            &mut command.into(),
            Box::new(move |pid, status, group_alive| {
                let _ = tx.send(ReaperEvent::Exited {
                    pid,
                    status,
                    group_alive,
                });
            }),
        );
        match spawned {
            Ok(child) => {
                let pid = child.pid;
                // Dropping it neither waits nor kills: the reaper owns the
                // exit status.
                drop(child);
                if foreground {
                    self.handed_to = Some(Pid::from_raw(pid));
                }
                self.phase = Phase::Running {
                    pid,
                    started: Instant::now(),
                };
                self.deadline = None;
            }
            Err(err) => match classify_spawn_error(&self.name, &err) {
                SpawnFailure::Final(code, message) => {
                    say(&message);
                    self.finish(code);
                }
                SpawnFailure::Transient(message) => {
                    self.last_code = 1;
                    if restarts(self.policy, ExitStatus::Code(1)) {
                        self.schedule_restart(Duration::ZERO, &message);
                    } else {
                        say(&message);
                        self.finish(1);
                    }
                }
            },
        }
    }

    /// `why`: what ended the last attempt, for the one line kelpie prints.
    fn schedule_restart(&mut self, ran: Duration, why: &str) {
        if ran >= BACKOFF_RESET_AFTER {
            self.attempt = 0;
        }
        let delay = BackoffConfig::default().delay(self.attempt, self.jitter.unit());
        self.attempt = self.attempt.saturating_add(1);
        self.phase = Phase::Backoff;
        self.deadline = Some(Instant::now() + delay);
        say(&format!("{why}; restarting in {:.1}s", delay.as_secs_f64()));
    }

    // ---- reaper events --------------------------------------------------

    /// Applies what the reaper reported in its last call, then looks at
    /// what a drain is waiting for.
    fn settle(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            match event {
                ReaperEvent::Exited {
                    pid,
                    status,
                    group_alive,
                } => self.on_exit(pid, status, group_alive),
                ReaperEvent::GroupGone { pgid } => {
                    if let Phase::Draining {
                        pgid: draining,
                        ref mut group_gone,
                        ..
                    } = self.phase
                    {
                        if draining == pgid {
                            *group_gone = true;
                        }
                    }
                }
            }
        }
        if let Phase::Draining { group_gone, .. } = self.phase {
            // Descendants that left the group (setsid, double fork) were
            // reparented to kelpie: stop them too.
            let escaped = self.reaper.escaped_children();
            for &pid in &escaped {
                if self.killed {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                } else if self.termed.insert(pid) {
                    terminate(pid);
                }
            }
            if group_gone && escaped.is_empty() {
                self.drained();
            }
        }
    }

    fn on_exit(&mut self, pid: i32, status: ExitStatus, group_alive: bool) {
        let Phase::Running {
            pid: running,
            started,
        } = self.phase
        else {
            return;
        };
        if running != pid {
            return;
        }
        self.last_code = exit_code(status);
        let interrupted = matches!(
            status,
            ExitStatus::Signal(libc::SIGINT) | ExitStatus::Signal(libc::SIGQUIT)
        ) && self
            .terminal
            .as_ref()
            .is_some_and(|t| t.foreground() == Some(Pid::from_raw(pid)));
        self.phase = Phase::Draining {
            pgid: pid,
            status,
            ran: started.elapsed(),
            group_gone: !group_alive,
            interrupted,
        };
        if self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.stop_timeout);
        }
        if group_alive {
            if self.killed {
                self.reaper.signal_group(pid, Signal::SIGKILL);
            } else {
                // SIGCONT too: a stopped process acts on SIGTERM only once
                // continued.
                self.reaper.signal_group(pid, Signal::SIGTERM);
                self.reaper.signal_group(pid, Signal::SIGCONT);
            }
            let tx = self.events_tx.clone();
            self.reaper.watch_group(
                pid,
                Box::new(move || {
                    let _ = tx.send(ReaperEvent::GroupGone { pgid: pid });
                }),
            );
        }
    }

    /// Nothing of the last run is left: exit or restart.
    fn drained(&mut self) {
        let Phase::Draining {
            status,
            ran,
            interrupted,
            ..
        } = self.phase
        else {
            return;
        };
        self.killed = false;
        self.deadline = None;
        self.termed.clear();
        if self.stopping || interrupted || !restarts(self.policy, status) {
            self.finish(exit_code(status));
        } else {
            let why = format!("kelpie: {} exited ({status})", self.name);
            self.schedule_restart(ran, &why);
        }
    }

    fn finish(&mut self, code: i32) {
        self.restore_terminal();
        self.done = Some(code);
    }

    // ---- signals and deadlines ------------------------------------------

    fn on_signal(&mut self, raw: i32) {
        match Signal::try_from(raw) {
            Ok(Signal::SIGTERM | Signal::SIGINT) => self.stop(raw),
            Ok(Signal::SIGCONT) => {
                self.give_terminal_back();
                self.forward(raw);
            }
            _ => self.forward(raw),
        }
    }

    /// SIGTERM / SIGINT: pass it on, no more restarts, and SIGKILL after
    /// the stop timeout. A second one kills at once.
    fn stop(&mut self, raw: i32) {
        if self.stopping {
            if !self.killed && !matches!(self.phase, Phase::Backoff) {
                self.kill_now();
            }
            return;
        }
        self.stopping = true;
        match self.phase {
            Phase::Running { .. } => {
                self.forward(raw);
                self.deadline = Some(Instant::now() + self.stop_timeout);
            }
            // What is left is already being stopped; it just will not be
            // restarted.
            Phase::Draining { .. } => {}
            Phase::Backoff => self.finish(self.last_code),
        }
    }

    /// Passes a signal to the running child's process group. Between runs
    /// there is nobody to pass it to.
    fn forward(&mut self, raw: i32) {
        let Phase::Running { pid, .. } = self.phase else {
            return;
        };
        match Signal::try_from(raw) {
            Ok(signal) => {
                self.reaper.signal_group(pid, signal);
            }
            Err(_) => {
                // A real-time signal, which nix cannot name. The leader is
                // not reaped yet (this thread does all reaping, and the
                // phase is still Running), so its pid, which is the group's
                // id, cannot have been recycled.
                // SAFETY: kill(2) with a negative pid and a valid signal
                // number only sends a signal.
                unsafe {
                    libc::kill(-pid, raw);
                }
            }
        }
    }

    fn on_deadline(&mut self) {
        match self.phase {
            Phase::Backoff => self.spawn(),
            Phase::Running { .. } | Phase::Draining { .. } if !self.killed => self.kill_now(),
            Phase::Running { pid, .. } => {
                // A member of the group whose parent is not kelpie dies
                // without a SIGCHLD here: look once more.
                self.reaper.recheck();
                self.settle();
                if matches!(self.phase, Phase::Running { .. }) {
                    say(&format!(
                        "kelpie: {} (pid {pid}) did not exit after SIGKILL; giving up",
                        self.name
                    ));
                    self.finish(exit_code(ExitStatus::Signal(libc::SIGKILL)));
                }
            }
            Phase::Draining { pgid, status, .. } => {
                self.reaper.recheck();
                self.settle();
                if matches!(self.phase, Phase::Draining { .. }) {
                    say(&format!(
                        "kelpie: processes started by {} (group {pgid}) survived SIGKILL; giving up on them",
                        self.name
                    ));
                    self.finish(exit_code(status));
                }
            }
        }
    }

    /// SIGKILL to the group and to every reparented descendant; then wait
    /// (bounded) for them to be gone.
    fn kill_now(&mut self) {
        self.killed = true;
        self.deadline = Some(Instant::now() + KILL_GRACE);
        match self.phase {
            Phase::Running { pid, .. }
            | Phase::Draining {
                pgid: pid,
                group_gone: false,
                ..
            } => {
                self.reaper.signal_group(pid, Signal::SIGKILL);
            }
            _ => {}
        }
        for pid in self.reaper.escaped_children() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }

    // ---- the terminal ---------------------------------------------------

    /// Job control. The child owns the terminal, so Ctrl-Z stops *its*
    /// group and kelpie's shell never hears of it. When the child stops,
    /// kelpie takes the terminal back and stops its own group, which is
    /// what the shell waits on; `fg` then continues kelpie, which hands the
    /// terminal to the child again and continues it (`bg`: continues it
    /// without the terminal). Without a job-control shell to resume kelpie
    /// (kelpie is PID 1 or in the session leader's group), nothing is done:
    /// the child stays stopped until it gets SIGCONT.
    fn check_suspended(&mut self) {
        let Some(terminal) = &self.terminal else {
            return;
        };
        let Phase::Running { pid, .. } = self.phase else {
            return;
        };
        if !terminal.job_control
            || crate::procfs::read_stat(pid).map(|stat| stat.state) != Some('T')
        {
            return;
        }
        let own = terminal.own_pgrp;
        if terminal.foreground() == Some(Pid::from_raw(pid)) {
            let _ = tcsetpgrp(stdin_fd(), own);
        }
        // Execution stops here until the shell continues kelpie's group.
        let _ = killpg(own, Signal::SIGSTOP);
        self.give_terminal_back();
        self.reaper.signal_group(pid, Signal::SIGCONT);
    }

    /// kelpie was continued: if it is in the foreground (`fg`), the child
    /// gets the terminal again.
    fn give_terminal_back(&mut self) {
        let Some(terminal) = &self.terminal else {
            return;
        };
        let Phase::Running { pid, .. } = self.phase else {
            return;
        };
        if terminal.foreground() == Some(terminal.own_pgrp) {
            let child = Pid::from_raw(pid);
            if tcsetpgrp(stdin_fd(), child).is_ok() {
                self.handed_to = Some(child);
            }
        }
    }

    /// On exit, the terminal goes back to kelpie's group (where the shell
    /// or script that started kelpie expects it), unless someone else has
    /// taken it since.
    fn restore_terminal(&mut self) {
        let Some(terminal) = &self.terminal else {
            return;
        };
        if self.handed_to.is_some() && terminal.foreground() == self.handed_to {
            let _ = tcsetpgrp(stdin_fd(), terminal.own_pgrp);
        }
    }
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// SIGTERM, then SIGCONT so that a stopped process acts on it. Only for
/// unreaped children of kelpie: their pids cannot be recycled meanwhile.
fn terminate(pid: i32) {
    let pid = Pid::from_raw(pid);
    let _ = kill(pid, Signal::SIGTERM);
    let _ = kill(pid, Signal::SIGCONT);
}

#[cfg(test)]
mod tests;

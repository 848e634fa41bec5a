//! The lifecycle as a table: every phase × every event, in the manner of
//! s6-supervise's `actions[state][event]`.
//!
//! How to read `MATRIX`: one row per cell, `(state, event, phase after,
//! actions)`, grouped by starting state.
//! - `state` is reached from a fresh `Instance` by real events (see
//!   `State::script`), all under `matrix_policy()`. Phases with materially
//!   different insides have several states (e.g. `StoppingOrphans`: the
//!   leader is gone but its group lives on).
//! - `event` is one `Ev`: an `Event` bound to the instance at the time it is
//!   fed: `ExitOk`/`ExitFail*` carry the current leader's pid (without
//!   one: the last leader's, so a repeated exit), probes and timers the
//!   current run and generation (a sweep's SIGKILL timer: the sequence
//!   number of the oldest pending sweep); `Stale*` is an exit of a pid it
//!   never had, a probe of the previous run, a timer of the previous
//!   generation or a sweep timer never started.
//! - `actions` is what `step` returns, written by `describe`; `&[]` with
//!   the starting phase means nothing happens. Such a quiet cell also
//!   leaves the instance exactly as it was, unless `SILENT` lists it
//!   together with what it changes.
//!
//! After every cell, each stale event is fed once more and must change
//! nothing at all.

use super::*;
use crate::backoff::BackoffConfig;
use crate::restart_policy::{ProgramKind, RestartPolicy};

use Ev::*;
use Phase as P;
use State::*;

/// The first pid the fake launcher hands out.
const FIRST_PID: i32 = 100;
/// A pid this instance never had.
const STALE_PID: i32 = 99;
/// The daemon a sweep finds.
const ESCAPED_PID: i32 = 200;

/// Every state uses this policy, the `budgeted` ones with `budgeted = true`.
/// `on-failure` makes `exited` reachable, a single allowed restart makes
/// `failed` two crashes away, and threshold-1 probes act on one result.
fn matrix_policy(budgeted: bool) -> Policy {
    Policy {
        kind: ProgramKind::Service,
        restart: RestartPolicy::OnFailure,
        success_codes: vec![0],
        start_seconds: Duration::from_secs(1),
        start_timeout: Duration::from_secs(10),
        backoff: BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: 0.0,
        },
        max_restarts: 1,
        restart_window: Duration::from_secs(60),
        stop_signal: Signal::SIGTERM,
        stop_timeout: Duration::from_secs(5),
        readiness: Some(Thresholds {
            success: 1,
            failure: 1,
        }),
        liveness: Some(Thresholds {
            success: 1,
            failure: 1,
        }),
        budgeted,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Stopped,
    Spawning,
    Starting,
    StartingReady,
    Running,
    RunningReady,
    Stopping,
    StoppingOrphans,
    StoppingKilled,
    StoppingRestart,
    CrashCleanup,
    LivenessStop,
    Backoff,
    BackoffAsked,
    Exited,
    /// Exited, and the sweep that followed found an escaped daemon: its
    /// SIGKILL is due.
    ExitedSweeping,
    Failed,
}

impl State {
    const ALL: [State; 17] = [
        Stopped,
        Spawning,
        Starting,
        StartingReady,
        Running,
        RunningReady,
        Stopping,
        StoppingOrphans,
        StoppingKilled,
        StoppingRestart,
        CrashCleanup,
        LivenessStop,
        Backoff,
        BackoffAsked,
        Exited,
        ExitedSweeping,
        Failed,
    ];

    /// The events that lead here from a fresh instance.
    fn script(self) -> &'static [Ev] {
        const UP: &[Ev] = &[Start, Spawned, TStartSeconds];
        match self {
            Stopped => &[],
            Spawning => &[Start],
            Starting => &[Start, Spawned],
            StartingReady => &[Start, Spawned, ReadyOk],
            Running => UP,
            RunningReady => &[Start, Spawned, TStartSeconds, ReadyOk],
            Stopping => &[Start, Spawned, TStartSeconds, Stop],
            StoppingOrphans => &[Start, Spawned, TStartSeconds, Stop, ExitFailAlive],
            StoppingKilled => &[Start, Spawned, TStartSeconds, Stop, TStopTimeout],
            StoppingRestart => &[Start, Spawned, TStartSeconds, Stop, Start],
            CrashCleanup => &[Start, Spawned, TStartSeconds, ExitFailAlive],
            LivenessStop => &[Start, Spawned, TStartSeconds, LiveFail],
            Backoff => &[Start, Spawned, TStartSeconds, ExitFail],
            BackoffAsked => &[Start, Spawned, TStartSeconds, ExitFail, TBackoff],
            Exited => &[Start, Spawned, TStartSeconds, ExitOk],
            ExitedSweeping => &[Start, Spawned, TStartSeconds, ExitOk, Escaped],
            Failed => &[
                Start,
                Spawned,
                TStartSeconds,
                ExitFail,
                TBackoff,
                Spawned,
                ExitFail,
            ],
        }
    }

    fn phase(self) -> Phase {
        match self {
            Stopped => P::Stopped,
            Spawning | Starting | StartingReady => P::Starting,
            Running | RunningReady => P::Running,
            Stopping | StoppingOrphans | StoppingKilled | StoppingRestart | CrashCleanup
            | LivenessStop => P::Stopping,
            Backoff | BackoffAsked => P::Backoff,
            Exited | ExitedSweeping => P::Exited,
            Failed => P::Failed,
        }
    }

    fn budgeted(self) -> bool {
        self == BackoffAsked
    }
}

/// An `Event` with its pid, run or generation left to be filled in from the
/// instance it is fed to (`Driver::bind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ev {
    Start,
    Stop,
    Kill,
    Drain,
    Block,
    Spawned,
    SpawnFailed,
    /// The leader exits with code 0 (success), its group gone.
    ExitOk,
    /// The leader exits with code 1, its group gone.
    ExitFail,
    /// The leader exits with code 1, other members of its group remain.
    ExitFailAlive,
    StaleExit,
    StaleExitAlive,
    GroupGone,
    ReadyOk,
    ReadyFail,
    LiveOk,
    LiveFail,
    StaleReadyOk,
    StaleReadyFail,
    StaleLiveOk,
    StaleLiveFail,
    Announced,
    StatusText,
    TStartSeconds,
    TStartTimeout,
    TBackoff,
    TStopTimeout,
    StaleTStartSeconds,
    StaleTStartTimeout,
    StaleTBackoff,
    StaleTStopTimeout,
    TKillRecheck,
    StaleTKillRecheck,
    Relaunch,
    Granted,
    Exhausted,
    /// The actor answers a sweep: it sent the stop signal to one escaped
    /// daemon (`ESCAPED_PID`). Accepted in any state.
    Escaped,
    /// The SIGKILL timer of the oldest pending sweep (without one: of the
    /// last sweep, long done).
    TSweepKill,
    /// A sweep timer that was never started (sequence 0 is never issued).
    StaleTSweepKill,
}

impl Ev {
    const ALL: [Ev; 39] = [
        Start,
        Stop,
        Kill,
        Drain,
        Block,
        Spawned,
        SpawnFailed,
        ExitOk,
        ExitFail,
        ExitFailAlive,
        StaleExit,
        StaleExitAlive,
        GroupGone,
        ReadyOk,
        ReadyFail,
        LiveOk,
        LiveFail,
        StaleReadyOk,
        StaleReadyFail,
        StaleLiveOk,
        StaleLiveFail,
        Announced,
        StatusText,
        TStartSeconds,
        TStartTimeout,
        TBackoff,
        TStopTimeout,
        StaleTStartSeconds,
        StaleTStartTimeout,
        StaleTBackoff,
        StaleTStopTimeout,
        TKillRecheck,
        StaleTKillRecheck,
        Relaunch,
        Granted,
        Exhausted,
        Escaped,
        TSweepKill,
        StaleTSweepKill,
    ];

    const STALE: [Ev; 12] = [
        StaleExit,
        StaleExitAlive,
        StaleReadyOk,
        StaleReadyFail,
        StaleLiveOk,
        StaleLiveFail,
        StaleTStartSeconds,
        StaleTStartTimeout,
        StaleTBackoff,
        StaleTStopTimeout,
        StaleTKillRecheck,
        StaleTSweepKill,
    ];
}

type Row = (State, Ev, Phase, &'static [&'static str]);

#[rustfmt::skip]
const MATRIX: &[Row] = &[
    // Stopped: a fresh instance, never started.
    (Stopped,         Start,              P::Starting, &["spawn"]),
    (Stopped,         Stop,               P::Stopped,  &[]),
    (Stopped,         Kill,               P::Stopped,  &[]),
    (Stopped,         Drain,              P::Stopped,  &[]),
    (Stopped,         Block,              P::Failed,   &["note failed"]),
    (Stopped,         Spawned,            P::Stopped,  &[]),
    (Stopped,         SpawnFailed,        P::Stopped,  &[]),
    (Stopped,         ExitOk,             P::Stopped,  &[]),
    (Stopped,         ExitFail,           P::Stopped,  &[]),
    (Stopped,         ExitFailAlive,      P::Stopped,  &[]),
    (Stopped,         StaleExit,          P::Stopped,  &[]),
    (Stopped,         StaleExitAlive,     P::Stopped,  &[]),
    (Stopped,         GroupGone,          P::Stopped,  &[]),
    (Stopped,         ReadyOk,            P::Stopped,  &[]),
    (Stopped,         ReadyFail,          P::Stopped,  &[]),
    (Stopped,         LiveOk,             P::Stopped,  &[]),
    (Stopped,         LiveFail,           P::Stopped,  &[]),
    (Stopped,         StaleReadyOk,       P::Stopped,  &[]),
    (Stopped,         StaleReadyFail,     P::Stopped,  &[]),
    (Stopped,         StaleLiveOk,        P::Stopped,  &[]),
    (Stopped,         StaleLiveFail,      P::Stopped,  &[]),
    (Stopped,         Announced,          P::Stopped,  &[]),
    (Stopped,         StatusText,         P::Stopped,  &[]),
    (Stopped,         TStartSeconds,      P::Stopped,  &[]),
    (Stopped,         TStartTimeout,      P::Stopped,  &[]),
    (Stopped,         TBackoff,           P::Stopped,  &[]),
    (Stopped,         TStopTimeout,       P::Stopped,  &[]),
    (Stopped,         StaleTStartSeconds, P::Stopped,  &[]),
    (Stopped,         StaleTStartTimeout, P::Stopped,  &[]),
    (Stopped,         StaleTBackoff,      P::Stopped,  &[]),
    (Stopped,         StaleTStopTimeout,  P::Stopped,  &[]),
    (Stopped,         TKillRecheck,       P::Stopped,  &[]),
    (Stopped,         StaleTKillRecheck,  P::Stopped,  &[]),
    (Stopped,         Relaunch,           P::Starting, &["spawn"]),
    (Stopped,         Granted,            P::Stopped,  &[]),
    (Stopped,         Exhausted,          P::Stopped,  &[]),
    (Stopped,         Escaped,            P::Stopped,  &["timer sweep_kill 5s"]),
    (Stopped,         TSweepKill,         P::Stopped,  &[]),
    (Stopped,         StaleTSweepKill,    P::Stopped,  &[]),

    // Spawning: `Start` asked for a spawn and its answer has not come yet. The
    // actor answers `Spawn` within the same step, so in practice only
    // `Spawned` / `SpawnFailed` meet this state.
    (Spawning,        Start,              P::Starting, &[]),
    (Spawning,        Stop,               P::Stopping, &["note stopping", "signal TERM", "signal CONT", "timer stop_timeout 5s"]),
    (Spawning,        Kill,               P::Stopping, &["signal KILL", "timer kill_recheck 50ms"]),
    (Spawning,        Drain,              P::Starting, &[]),
    (Spawning,        Block,              P::Starting, &[]),
    (Spawning,        Spawned,            P::Starting, &["note started", "start probes", "timer start_timeout 10s", "timer start_seconds 1s"]),
    (Spawning,        SpawnFailed,        P::Backoff,  &["note spawn_failed", "note restart_scheduled 100ms", "timer backoff 100ms"]),
    (Spawning,        ExitOk,             P::Starting, &[]),
    (Spawning,        ExitFail,           P::Starting, &[]),
    (Spawning,        ExitFailAlive,      P::Starting, &[]),
    (Spawning,        StaleExit,          P::Starting, &[]),
    (Spawning,        StaleExitAlive,     P::Starting, &[]),
    (Spawning,        GroupGone,          P::Starting, &[]),
    (Spawning,        ReadyOk,            P::Starting, &[]),
    (Spawning,        ReadyFail,          P::Starting, &[]),
    (Spawning,        LiveOk,             P::Starting, &[]),
    (Spawning,        LiveFail,           P::Starting, &[]),
    (Spawning,        StaleReadyOk,       P::Starting, &[]),
    (Spawning,        StaleReadyFail,     P::Starting, &[]),
    (Spawning,        StaleLiveOk,        P::Starting, &[]),
    (Spawning,        StaleLiveFail,      P::Starting, &[]),
    (Spawning,        Announced,          P::Starting, &[]),
    (Spawning,        StatusText,         P::Starting, &[]),
    (Spawning,        TStartSeconds,      P::Starting, &[]),
    (Spawning,        TStartTimeout,      P::Starting, &[]),
    (Spawning,        TBackoff,           P::Starting, &[]),
    (Spawning,        TStopTimeout,       P::Starting, &[]),
    (Spawning,        StaleTStartSeconds, P::Starting, &[]),
    (Spawning,        StaleTStartTimeout, P::Starting, &[]),
    (Spawning,        StaleTBackoff,      P::Starting, &[]),
    (Spawning,        StaleTStopTimeout,  P::Starting, &[]),
    (Spawning,        TKillRecheck,       P::Starting, &[]),
    (Spawning,        StaleTKillRecheck,  P::Starting, &[]),
    (Spawning,        Relaunch,           P::Starting, &[]),
    (Spawning,        Granted,            P::Starting, &[]),
    (Spawning,        Exhausted,          P::Starting, &[]),
    (Spawning,        Escaped,            P::Starting, &["timer sweep_kill 5s"]),
    (Spawning,        TSweepKill,         P::Starting, &[]),
    (Spawning,        StaleTSweepKill,    P::Starting, &[]),

    // Starting: the process is up, for less than start_seconds, not ready.
    (Starting,        Start,              P::Starting, &[]),
    (Starting,        Stop,               P::Stopping, &["note stopping", "signal TERM", "signal CONT", "timer stop_timeout 5s", "stop probes"]),
    (Starting,        Kill,               P::Stopping, &["signal KILL", "timer kill_recheck 50ms", "stop probes"]),
    (Starting,        Drain,              P::Starting, &[]),
    (Starting,        Block,              P::Starting, &[]),
    (Starting,        Spawned,            P::Starting, &[]),
    (Starting,        SpawnFailed,        P::Starting, &[]),
    (Starting,        ExitOk,             P::Exited,   &["note exited success", "stop probes", "sweep escaped TERM"]),
    (Starting,        ExitFail,           P::Backoff,  &["note exited failure", "note restart_scheduled 100ms", "timer backoff 100ms", "stop probes", "sweep escaped TERM"]),
    (Starting,        ExitFailAlive,      P::Stopping, &["note exited failure", "watch group", "signal TERM", "signal CONT", "timer stop_timeout 5s", "stop probes"]),
    (Starting,        StaleExit,          P::Starting, &[]),
    (Starting,        StaleExitAlive,     P::Starting, &[]),
    (Starting,        GroupGone,          P::Starting, &[]),
    (Starting,        ReadyOk,            P::Starting, &["note ready"]),
    (Starting,        ReadyFail,          P::Starting, &["note probe_failed readiness"]),
    (Starting,        LiveOk,             P::Starting, &[]),
    (Starting,        LiveFail,           P::Stopping, &["note probe_failed liveness", "note liveness_failed", "note stopping", "signal TERM", "signal CONT", "timer stop_timeout 5s", "stop probes"]),
    (Starting,        StaleReadyOk,       P::Starting, &[]),
    (Starting,        StaleReadyFail,     P::Starting, &[]),
    (Starting,        StaleLiveOk,        P::Starting, &[]),
    (Starting,        StaleLiveFail,      P::Starting, &[]),
    (Starting,        Announced,          P::Starting, &["note ready"]),
    (Starting,        StatusText,         P::Starting, &[]),
    (Starting,        TStartSeconds,      P::Running,  &["note running"]),
    (Starting,        TStartTimeout,      P::Stopping, &["note start_timeout", "note stopping", "signal TERM", "signal CONT", "timer stop_timeout 5s", "stop probes"]),
    (Starting,        TBackoff,           P::Starting, &[]),
    (Starting,        TStopTimeout,       P::Starting, &[]),
    (Starting,        StaleTStartSeconds, P::Starting, &[]),
    (Starting,        StaleTStartTimeout, P::Starting, &[]),
    (Starting,        StaleTBackoff,      P::Starting, &[]),
    (Starting,        StaleTStopTimeout,  P::Starting, &[]),
    (Starting,        TKillRecheck,       P::Starting, &[]),
    (Starting,        StaleTKillRecheck,  P::Starting, &[]),
    (Starting,        Relaunch,           P::Starting, &[]),
    (Starting,        Granted,            P::Starting, &[]),
    (Starting,        Exhausted,          P::Starting, &[]),
    (Starting,        Escaped,            P::Starting, &["timer sweep_kill 5s"]),
    (Starting,        TSweepKill,         P::Starting, &[]),
    (Starting,        StaleTSweepKill,    P::Starting, &[]),

    // StartingReady: up for less than start_seconds, the readiness probe passed.
    (StartingReady,   Start,              P::Starting, &[]),
    (StartingReady,   Stop,               P::Stopping, &["note stopping", "signal TERM", "signal CONT", "timer stop_timeout 5s", "stop probes"]),
    (StartingReady,   Kill,               P::Stopping, &["signal KILL", "timer kill_recheck 50ms", "stop probes"]),
    (StartingReady,   Drain,              P::Starting, &[]),
    (StartingReady,   Block,              P::Starting, &[]),
    (StartingReady,   Spawned,            P::Starting, &[]),
    (StartingReady,   SpawnFailed,        P::Starting, &[]),
    (StartingReady,   ExitOk,             P::Exited,   &["note exited success", "stop probes", "sweep escaped TERM"]),
    (StartingReady,   ExitFail,           P::Backoff,  &["note exited failure", "note restart_scheduled 100ms", "timer backoff 100ms", "stop probes", "sweep escaped TERM"]),
    (StartingReady,   ExitFailAlive,      P::Stopping, &["note exited failure", "watch group", "signal TERM", "signal CONT", "timer stop_timeout 5s", "stop probes"]),
    (StartingReady,   StaleExit,          P::Starting, &[]),
    (StartingReady,   StaleExitAlive,     P::Starting, &[]),
    (StartingReady,   GroupGone,          P::Starting, &[]),
    (StartingReady,   ReadyOk,            P::Starting, &[]),
    (StartingReady,   ReadyFail,          P::Starting, &["note probe_failed readiness", "note not_ready"]),
    (StartingReady,   LiveOk,             P::Starting, &[]),
    (StartingReady,   LiveFail,           P::Stopping, &["note probe_failed liveness", "note liveness_failed", "note stopping", "signal TERM", "signal CONT", "timer stop_timeout 5s", "stop probes"]),
    (StartingReady,   StaleReadyOk,       P::Starting, &[]),
    (StartingReady,   StaleReadyFail,     P::Starting, &[]),
    (StartingReady,   StaleLiveOk,        P::Starting, &[]),
    (StartingReady,   StaleLiveFail,      P::Starting, &[]),
    (StartingReady,   Announced,          P::Starting, &[]),
    (StartingReady,   StatusText,         P::Starting, &[]),
    (StartingReady,   TStartSeconds,      P::Running,  &["note running"]),
    (StartingReady,   TStartTimeout,      P::Starting, &[]),
    (StartingReady,   TBackoff,           P::Starting, &[]),
    (StartingReady,   TStopTimeout,       P::Starting, &[]),
    (StartingReady,   StaleTStartSeconds, P::Starting, &[]),
    (StartingReady,   StaleTStartTimeout, P::Starting, &[]),
    (StartingReady,   StaleTBackoff,      P::Starting, &[]),
    (StartingReady,   StaleTStopTimeout,  P::Starting, &[]),
    (StartingReady,   TKillRecheck,       P::Starting, &[]),
    (StartingReady,   StaleTKillRecheck,  P::Starting, &[]),
    (StartingReady,   Relaunch,           P::Starting, &[]),
    (StartingReady,   Granted,            P::Starting, &[]),
    (StartingReady,   Exhausted,          P::Starting, &[]),
    (StartingReady,   Escaped,            P::Starting, &["timer sweep_kill 5s"]),
    (StartingReady,   TSweepKill,         P::Starting, &[]),
    (StartingReady,   StaleTSweepKill,    P::Starting, &[]),

    // Running: up for start_seconds, the readiness probe has not passed yet.
    (Running,         Start,              P::Running,  &[]),
    (Running,         Stop,               P::Stopping, &["note stopping", "signal TERM", "signal CONT", "timer stop_timeout 5s", "stop probes"]),
    (Running,         Kill,               P::Stopping, &["signal KILL", "timer kill_recheck 50ms", "stop probes"]),
    (Running,         Drain,              P::Running,  &[]),
    (Running,         Block,              P::Running,  &[]),
    (Running,         Spawned,            P::Running,  &[]),
    (Running,         SpawnFailed,        P::Running,  &[]),
    (Running,         ExitOk,             P::Exited,   &["note exited success", "stop probes", "sweep escaped TERM"]),
    (Running,         ExitFail,           P::Backoff,  &["note exited failure", "note restart_scheduled 100ms", "timer backoff 100ms", "stop probes", "sweep escaped TERM"]),
    (Running,         ExitFailAlive,      P::Stopping, &["note exited failure", "watch group", "signal TERM", "signal CONT", "timer stop_timeout 5s", "stop probes"]),
    (Running,         StaleExit,          P::Running,  &[]),
    (Running,         StaleExitAlive,     P::Running,  &[]),
    (Running,         GroupGone,          P::Running,  &[]),
    (Running,         ReadyOk,            P::Running,  &["note ready"]),
    (Running,         ReadyFail,          P::Running,  &["note probe_failed readiness"]),
    (Running,         LiveOk,             P::Running,  &[]),
    (Running,         LiveFail,           P::Stopping, &["note probe_failed liveness", "note liveness_failed", "note stopping", "signal TERM", "signal CONT", "timer stop_timeout 5s", "stop probes"]),
    (Running,         StaleReadyOk,       P::Running,  &[]),
    (Running,         StaleReadyFail,     P::Running,  &[]),
    (Running,         StaleLiveOk,        P::Running,  &[]),
    (Running,         StaleLiveFail,      P::Running,  &[]),
    (Running,         Announced,          P::Running,  &["note ready"]),
    (Running,         StatusText,         P::Running,  &[]),
    (Running,         TStartSeconds,      P::Running,  &[]),
    (Running,         TStartTimeout,      P::Stopping, &["note start_timeout", "note stopping", "signal TERM", "signal CONT", "timer stop_timeout 5s", "stop probes"]),
    (Running,         TBackoff,           P::Running,  &[]),
    (Running,         TStopTimeout,       P::Running,  &[]),
    (Running,         StaleTStartSeconds, P::Running,  &[]),
    (Running,         StaleTStartTimeout, P::Running,  &[]),
    (Running,         StaleTBackoff,      P::Running,  &[]),
    (Running,         StaleTStopTimeout,  P::Running,  &[]),
    (Running,         TKillRecheck,       P::Running,  &[]),
    (Running,         StaleTKillRecheck,  P::Running,  &[]),
    (Running,         Relaunch,           P::Running,  &[]),
    (Running,         Granted,            P::Running,  &[]),
    (Running,         Exhausted,          P::Running,  &[]),
    (Running,         Escaped,            P::Running,  &["timer sweep_kill 5s"]),
    (Running,         TSweepKill,         P::Running,  &[]),
    (Running,         StaleTSweepKill,    P::Running,  &[]),

    // RunningReady: up for start_seconds and ready.
    (RunningReady,    Start,              P::Running,  &[]),
    (RunningReady,    Stop,               P::Stopping, &["note stopping", "signal TERM", "signal CONT", "timer stop_timeout 5s", "stop probes"]),
    (RunningReady,    Kill,               P::Stopping, &["signal KILL", "timer kill_recheck 50ms", "stop probes"]),
    (RunningReady,    Drain,              P::Running,  &[]),
    (RunningReady,    Block,              P::Running,  &[]),
    (RunningReady,    Spawned,            P::Running,  &[]),
    (RunningReady,    SpawnFailed,        P::Running,  &[]),
    (RunningReady,    ExitOk,             P::Exited,   &["note exited success", "stop probes", "sweep escaped TERM"]),
    (RunningReady,    ExitFail,           P::Backoff,  &["note exited failure", "note restart_scheduled 100ms", "timer backoff 100ms", "stop probes", "sweep escaped TERM"]),
    (RunningReady,    ExitFailAlive,      P::Stopping, &["note exited failure", "watch group", "signal TERM", "signal CONT", "timer stop_timeout 5s", "stop probes"]),
    (RunningReady,    StaleExit,          P::Running,  &[]),
    (RunningReady,    StaleExitAlive,     P::Running,  &[]),
    (RunningReady,    GroupGone,          P::Running,  &[]),
    (RunningReady,    ReadyOk,            P::Running,  &[]),
    (RunningReady,    ReadyFail,          P::Running,  &["note probe_failed readiness", "note not_ready"]),
    (RunningReady,    LiveOk,             P::Running,  &[]),
    (RunningReady,    LiveFail,           P::Stopping, &["note probe_failed liveness", "note liveness_failed", "note stopping", "signal TERM", "signal CONT", "timer stop_timeout 5s", "stop probes"]),
    (RunningReady,    StaleReadyOk,       P::Running,  &[]),
    (RunningReady,    StaleReadyFail,     P::Running,  &[]),
    (RunningReady,    StaleLiveOk,        P::Running,  &[]),
    (RunningReady,    StaleLiveFail,      P::Running,  &[]),
    (RunningReady,    Announced,          P::Running,  &[]),
    (RunningReady,    StatusText,         P::Running,  &[]),
    (RunningReady,    TStartSeconds,      P::Running,  &[]),
    (RunningReady,    TStartTimeout,      P::Running,  &[]),
    (RunningReady,    TBackoff,           P::Running,  &[]),
    (RunningReady,    TStopTimeout,       P::Running,  &[]),
    (RunningReady,    StaleTStartSeconds, P::Running,  &[]),
    (RunningReady,    StaleTStartTimeout, P::Running,  &[]),
    (RunningReady,    StaleTBackoff,      P::Running,  &[]),
    (RunningReady,    StaleTStopTimeout,  P::Running,  &[]),
    (RunningReady,    TKillRecheck,       P::Running,  &[]),
    (RunningReady,    StaleTKillRecheck,  P::Running,  &[]),
    (RunningReady,    Relaunch,           P::Running,  &[]),
    (RunningReady,    Granted,            P::Running,  &[]),
    (RunningReady,    Exhausted,          P::Running,  &[]),
    (RunningReady,    Escaped,            P::Running,  &["timer sweep_kill 5s"]),
    (RunningReady,    TSweepKill,         P::Running,  &[]),
    (RunningReady,    StaleTSweepKill,    P::Running,  &[]),

    // Stopping: `Stop` signalled a running leader; it has not exited yet.
    (Stopping,        Start,              P::Stopping, &[]),
    (Stopping,        Stop,               P::Stopping, &[]),
    (Stopping,        Kill,               P::Stopping, &["signal KILL", "timer kill_recheck 50ms"]),
    (Stopping,        Drain,              P::Stopping, &[]),
    (Stopping,        Block,              P::Stopping, &[]),
    (Stopping,        Spawned,            P::Stopping, &[]),
    (Stopping,        SpawnFailed,        P::Stopping, &[]),
    (Stopping,        ExitOk,             P::Stopped,  &["note exited success", "note stopped", "sweep escaped TERM"]),
    (Stopping,        ExitFail,           P::Stopped,  &["note exited failure", "note stopped", "sweep escaped TERM"]),
    (Stopping,        ExitFailAlive,      P::Stopping, &["note exited failure", "watch group"]),
    (Stopping,        StaleExit,          P::Stopping, &[]),
    (Stopping,        StaleExitAlive,     P::Stopping, &[]),
    (Stopping,        GroupGone,          P::Stopping, &[]),
    (Stopping,        ReadyOk,            P::Stopping, &[]),
    (Stopping,        ReadyFail,          P::Stopping, &[]),
    (Stopping,        LiveOk,             P::Stopping, &[]),
    (Stopping,        LiveFail,           P::Stopping, &[]),
    (Stopping,        StaleReadyOk,       P::Stopping, &[]),
    (Stopping,        StaleReadyFail,     P::Stopping, &[]),
    (Stopping,        StaleLiveOk,        P::Stopping, &[]),
    (Stopping,        StaleLiveFail,      P::Stopping, &[]),
    (Stopping,        Announced,          P::Stopping, &[]),
    (Stopping,        StatusText,         P::Stopping, &[]),
    (Stopping,        TStartSeconds,      P::Stopping, &[]),
    (Stopping,        TStartTimeout,      P::Stopping, &[]),
    (Stopping,        TBackoff,           P::Stopping, &[]),
    (Stopping,        TStopTimeout,       P::Stopping, &["note stop_timeout", "signal KILL", "timer kill_recheck 50ms"]),
    (Stopping,        StaleTStartSeconds, P::Stopping, &[]),
    (Stopping,        StaleTStartTimeout, P::Stopping, &[]),
    (Stopping,        StaleTBackoff,      P::Stopping, &[]),
    (Stopping,        StaleTStopTimeout,  P::Stopping, &[]),
    (Stopping,        TKillRecheck,       P::Stopping, &[]),
    (Stopping,        StaleTKillRecheck,  P::Stopping, &[]),
    (Stopping,        Relaunch,           P::Stopping, &[]),
    (Stopping,        Granted,            P::Stopping, &[]),
    (Stopping,        Exhausted,          P::Stopping, &[]),
    (Stopping,        Escaped,            P::Stopping, &["timer sweep_kill 5s"]),
    (Stopping,        TSweepKill,         P::Stopping, &[]),
    (Stopping,        StaleTSweepKill,    P::Stopping, &[]),

    // StoppingOrphans: stopping; the leader exited, other members of its
    // group remain.
    (StoppingOrphans, Start,              P::Stopping, &[]),
    (StoppingOrphans, Stop,               P::Stopping, &[]),
    (StoppingOrphans, Kill,               P::Stopping, &["signal KILL", "timer kill_recheck 50ms"]),
    (StoppingOrphans, Drain,              P::Stopping, &[]),
    (StoppingOrphans, Block,              P::Stopping, &[]),
    (StoppingOrphans, Spawned,            P::Stopping, &[]),
    (StoppingOrphans, SpawnFailed,        P::Stopping, &[]),
    (StoppingOrphans, ExitOk,             P::Stopping, &[]),
    (StoppingOrphans, ExitFail,           P::Stopping, &[]),
    (StoppingOrphans, ExitFailAlive,      P::Stopping, &[]),
    (StoppingOrphans, StaleExit,          P::Stopping, &[]),
    (StoppingOrphans, StaleExitAlive,     P::Stopping, &[]),
    (StoppingOrphans, GroupGone,          P::Stopped,  &["note stopped", "sweep escaped TERM"]),
    (StoppingOrphans, ReadyOk,            P::Stopping, &[]),
    (StoppingOrphans, ReadyFail,          P::Stopping, &[]),
    (StoppingOrphans, LiveOk,             P::Stopping, &[]),
    (StoppingOrphans, LiveFail,           P::Stopping, &[]),
    (StoppingOrphans, StaleReadyOk,       P::Stopping, &[]),
    (StoppingOrphans, StaleReadyFail,     P::Stopping, &[]),
    (StoppingOrphans, StaleLiveOk,        P::Stopping, &[]),
    (StoppingOrphans, StaleLiveFail,      P::Stopping, &[]),
    (StoppingOrphans, Announced,          P::Stopping, &[]),
    (StoppingOrphans, StatusText,         P::Stopping, &[]),
    (StoppingOrphans, TStartSeconds,      P::Stopping, &[]),
    (StoppingOrphans, TStartTimeout,      P::Stopping, &[]),
    (StoppingOrphans, TBackoff,           P::Stopping, &[]),
    (StoppingOrphans, TStopTimeout,       P::Stopping, &["note stop_timeout", "signal KILL", "timer kill_recheck 50ms"]),
    (StoppingOrphans, StaleTStartSeconds, P::Stopping, &[]),
    (StoppingOrphans, StaleTStartTimeout, P::Stopping, &[]),
    (StoppingOrphans, StaleTBackoff,      P::Stopping, &[]),
    (StoppingOrphans, StaleTStopTimeout,  P::Stopping, &[]),
    (StoppingOrphans, TKillRecheck,       P::Stopping, &[]),
    (StoppingOrphans, StaleTKillRecheck,  P::Stopping, &[]),
    (StoppingOrphans, Relaunch,           P::Stopping, &[]),
    (StoppingOrphans, Granted,            P::Stopping, &[]),
    (StoppingOrphans, Exhausted,          P::Stopping, &[]),
    (StoppingOrphans, Escaped,            P::Stopping, &["timer sweep_kill 5s"]),
    (StoppingOrphans, TSweepKill,         P::Stopping, &[]),
    (StoppingOrphans, StaleTSweepKill,    P::Stopping, &[]),

    // StoppingKilled: stopping; stop_timeout passed and the group was
    // SIGKILLed, the leader has not exited yet.
    (StoppingKilled,  Start,              P::Stopping, &[]),
    (StoppingKilled,  Stop,               P::Stopping, &[]),
    (StoppingKilled,  Kill,               P::Stopping, &[]),
    (StoppingKilled,  Drain,              P::Stopping, &[]),
    (StoppingKilled,  Block,              P::Stopping, &[]),
    (StoppingKilled,  Spawned,            P::Stopping, &[]),
    (StoppingKilled,  SpawnFailed,        P::Stopping, &[]),
    (StoppingKilled,  ExitOk,             P::Stopped,  &["note exited success", "note stopped", "sweep escaped TERM"]),
    (StoppingKilled,  ExitFail,           P::Stopped,  &["note exited failure", "note stopped", "sweep escaped TERM"]),
    (StoppingKilled,  ExitFailAlive,      P::Stopping, &["note exited failure", "watch group", "signal KILL", "timer kill_recheck 50ms"]),
    (StoppingKilled,  StaleExit,          P::Stopping, &[]),
    (StoppingKilled,  StaleExitAlive,     P::Stopping, &[]),
    (StoppingKilled,  GroupGone,          P::Stopping, &[]),
    (StoppingKilled,  ReadyOk,            P::Stopping, &[]),
    (StoppingKilled,  ReadyFail,          P::Stopping, &[]),
    (StoppingKilled,  LiveOk,             P::Stopping, &[]),
    (StoppingKilled,  LiveFail,           P::Stopping, &[]),
    (StoppingKilled,  StaleReadyOk,       P::Stopping, &[]),
    (StoppingKilled,  StaleReadyFail,     P::Stopping, &[]),
    (StoppingKilled,  StaleLiveOk,        P::Stopping, &[]),
    (StoppingKilled,  StaleLiveFail,      P::Stopping, &[]),
    (StoppingKilled,  Announced,          P::Stopping, &[]),
    (StoppingKilled,  StatusText,         P::Stopping, &[]),
    (StoppingKilled,  TStartSeconds,      P::Stopping, &[]),
    (StoppingKilled,  TStartTimeout,      P::Stopping, &[]),
    (StoppingKilled,  TBackoff,           P::Stopping, &[]),
    (StoppingKilled,  TStopTimeout,       P::Stopping, &[]),
    (StoppingKilled,  StaleTStartSeconds, P::Stopping, &[]),
    (StoppingKilled,  StaleTStartTimeout, P::Stopping, &[]),
    (StoppingKilled,  StaleTBackoff,      P::Stopping, &[]),
    (StoppingKilled,  StaleTStopTimeout,  P::Stopping, &[]),
    (StoppingKilled,  TKillRecheck,       P::Stopping, &["recheck group", "timer kill_recheck 100ms"]),
    (StoppingKilled,  StaleTKillRecheck,  P::Stopping, &[]),
    (StoppingKilled,  Relaunch,           P::Stopping, &[]),
    (StoppingKilled,  Granted,            P::Stopping, &[]),
    (StoppingKilled,  Exhausted,          P::Stopping, &[]),
    (StoppingKilled,  Escaped,            P::Stopping, &["timer sweep_kill 5s"]),
    (StoppingKilled,  TSweepKill,         P::Stopping, &[]),
    (StoppingKilled,  StaleTSweepKill,    P::Stopping, &[]),

    // StoppingRestart: `Stop`, then `Start` before the leader exited (what
    // `kelpie restart` does): wanted up again once the group is gone.
    (StoppingRestart, Start,              P::Stopping, &[]),
    (StoppingRestart, Stop,               P::Stopping, &[]),
    (StoppingRestart, Kill,               P::Stopping, &["signal KILL", "timer kill_recheck 50ms"]),
    (StoppingRestart, Drain,              P::Stopping, &[]),
    (StoppingRestart, Block,              P::Stopping, &[]),
    (StoppingRestart, Spawned,            P::Stopping, &[]),
    (StoppingRestart, SpawnFailed,        P::Stopping, &[]),
    (StoppingRestart, ExitOk,             P::Starting, &["note exited success", "note stopped", "sweep escaped TERM", "spawn"]),
    (StoppingRestart, ExitFail,           P::Starting, &["note exited failure", "note stopped", "sweep escaped TERM", "spawn"]),
    (StoppingRestart, ExitFailAlive,      P::Stopping, &["note exited failure", "watch group"]),
    (StoppingRestart, StaleExit,          P::Stopping, &[]),
    (StoppingRestart, StaleExitAlive,     P::Stopping, &[]),
    (StoppingRestart, GroupGone,          P::Stopping, &[]),
    (StoppingRestart, ReadyOk,            P::Stopping, &[]),
    (StoppingRestart, ReadyFail,          P::Stopping, &[]),
    (StoppingRestart, LiveOk,             P::Stopping, &[]),
    (StoppingRestart, LiveFail,           P::Stopping, &[]),
    (StoppingRestart, StaleReadyOk,       P::Stopping, &[]),
    (StoppingRestart, StaleReadyFail,     P::Stopping, &[]),
    (StoppingRestart, StaleLiveOk,        P::Stopping, &[]),
    (StoppingRestart, StaleLiveFail,      P::Stopping, &[]),
    (StoppingRestart, Announced,          P::Stopping, &[]),
    (StoppingRestart, StatusText,         P::Stopping, &[]),
    (StoppingRestart, TStartSeconds,      P::Stopping, &[]),
    (StoppingRestart, TStartTimeout,      P::Stopping, &[]),
    (StoppingRestart, TBackoff,           P::Stopping, &[]),
    (StoppingRestart, TStopTimeout,       P::Stopping, &["note stop_timeout", "signal KILL", "timer kill_recheck 50ms"]),
    (StoppingRestart, StaleTStartSeconds, P::Stopping, &[]),
    (StoppingRestart, StaleTStartTimeout, P::Stopping, &[]),
    (StoppingRestart, StaleTBackoff,      P::Stopping, &[]),
    (StoppingRestart, StaleTStopTimeout,  P::Stopping, &[]),
    (StoppingRestart, TKillRecheck,       P::Stopping, &[]),
    (StoppingRestart, StaleTKillRecheck,  P::Stopping, &[]),
    (StoppingRestart, Relaunch,           P::Stopping, &[]),
    (StoppingRestart, Granted,            P::Stopping, &[]),
    (StoppingRestart, Exhausted,          P::Stopping, &[]),
    (StoppingRestart, Escaped,            P::Stopping, &["timer sweep_kill 5s"]),
    (StoppingRestart, TSweepKill,         P::Stopping, &[]),
    (StoppingRestart, StaleTSweepKill,    P::Stopping, &[]),

    // CrashCleanup: the leader crashed with members of its group alive; they
    // are being stopped, and the restart applies once the group is gone.
    (CrashCleanup,    Start,              P::Stopping, &[]),
    (CrashCleanup,    Stop,               P::Stopping, &[]),
    (CrashCleanup,    Kill,               P::Stopping, &["signal KILL", "timer kill_recheck 50ms"]),
    (CrashCleanup,    Drain,              P::Stopping, &[]),
    (CrashCleanup,    Block,              P::Stopping, &[]),
    (CrashCleanup,    Spawned,            P::Stopping, &[]),
    (CrashCleanup,    SpawnFailed,        P::Stopping, &[]),
    (CrashCleanup,    ExitOk,             P::Stopping, &[]),
    (CrashCleanup,    ExitFail,           P::Stopping, &[]),
    (CrashCleanup,    ExitFailAlive,      P::Stopping, &[]),
    (CrashCleanup,    StaleExit,          P::Stopping, &[]),
    (CrashCleanup,    StaleExitAlive,     P::Stopping, &[]),
    (CrashCleanup,    GroupGone,          P::Backoff,  &["note restart_scheduled 100ms", "timer backoff 100ms", "sweep escaped TERM"]),
    (CrashCleanup,    ReadyOk,            P::Stopping, &[]),
    (CrashCleanup,    ReadyFail,          P::Stopping, &[]),
    (CrashCleanup,    LiveOk,             P::Stopping, &[]),
    (CrashCleanup,    LiveFail,           P::Stopping, &[]),
    (CrashCleanup,    StaleReadyOk,       P::Stopping, &[]),
    (CrashCleanup,    StaleReadyFail,     P::Stopping, &[]),
    (CrashCleanup,    StaleLiveOk,        P::Stopping, &[]),
    (CrashCleanup,    StaleLiveFail,      P::Stopping, &[]),
    (CrashCleanup,    Announced,          P::Stopping, &[]),
    (CrashCleanup,    StatusText,         P::Stopping, &[]),
    (CrashCleanup,    TStartSeconds,      P::Stopping, &[]),
    (CrashCleanup,    TStartTimeout,      P::Stopping, &[]),
    (CrashCleanup,    TBackoff,           P::Stopping, &[]),
    (CrashCleanup,    TStopTimeout,       P::Stopping, &["note stop_timeout", "signal KILL", "timer kill_recheck 50ms"]),
    (CrashCleanup,    StaleTStartSeconds, P::Stopping, &[]),
    (CrashCleanup,    StaleTStartTimeout, P::Stopping, &[]),
    (CrashCleanup,    StaleTBackoff,      P::Stopping, &[]),
    (CrashCleanup,    StaleTStopTimeout,  P::Stopping, &[]),
    (CrashCleanup,    TKillRecheck,       P::Stopping, &[]),
    (CrashCleanup,    StaleTKillRecheck,  P::Stopping, &[]),
    (CrashCleanup,    Relaunch,           P::Stopping, &[]),
    (CrashCleanup,    Granted,            P::Stopping, &[]),
    (CrashCleanup,    Exhausted,          P::Stopping, &[]),
    (CrashCleanup,    Escaped,            P::Stopping, &["timer sweep_kill 5s"]),
    (CrashCleanup,    TSweepKill,         P::Stopping, &[]),
    (CrashCleanup,    StaleTSweepKill,    P::Stopping, &[]),

    // LivenessStop: the liveness probe failed; the live leader is being
    // stopped, and the restart applies once the group is gone.
    (LivenessStop,    Start,              P::Stopping, &[]),
    (LivenessStop,    Stop,               P::Stopping, &[]),
    (LivenessStop,    Kill,               P::Stopping, &["signal KILL", "timer kill_recheck 50ms"]),
    (LivenessStop,    Drain,              P::Stopping, &[]),
    (LivenessStop,    Block,              P::Stopping, &[]),
    (LivenessStop,    Spawned,            P::Stopping, &[]),
    (LivenessStop,    SpawnFailed,        P::Stopping, &[]),
    (LivenessStop,    ExitOk,             P::Backoff,  &["note exited success", "note restart_scheduled 100ms", "timer backoff 100ms", "sweep escaped TERM"]),
    (LivenessStop,    ExitFail,           P::Backoff,  &["note exited failure", "note restart_scheduled 100ms", "timer backoff 100ms", "sweep escaped TERM"]),
    (LivenessStop,    ExitFailAlive,      P::Stopping, &["note exited failure", "watch group"]),
    (LivenessStop,    StaleExit,          P::Stopping, &[]),
    (LivenessStop,    StaleExitAlive,     P::Stopping, &[]),
    (LivenessStop,    GroupGone,          P::Stopping, &[]),
    (LivenessStop,    ReadyOk,            P::Stopping, &[]),
    (LivenessStop,    ReadyFail,          P::Stopping, &[]),
    (LivenessStop,    LiveOk,             P::Stopping, &[]),
    (LivenessStop,    LiveFail,           P::Stopping, &[]),
    (LivenessStop,    StaleReadyOk,       P::Stopping, &[]),
    (LivenessStop,    StaleReadyFail,     P::Stopping, &[]),
    (LivenessStop,    StaleLiveOk,        P::Stopping, &[]),
    (LivenessStop,    StaleLiveFail,      P::Stopping, &[]),
    (LivenessStop,    Announced,          P::Stopping, &[]),
    (LivenessStop,    StatusText,         P::Stopping, &[]),
    (LivenessStop,    TStartSeconds,      P::Stopping, &[]),
    (LivenessStop,    TStartTimeout,      P::Stopping, &[]),
    (LivenessStop,    TBackoff,           P::Stopping, &[]),
    (LivenessStop,    TStopTimeout,       P::Stopping, &["note stop_timeout", "signal KILL", "timer kill_recheck 50ms"]),
    (LivenessStop,    StaleTStartSeconds, P::Stopping, &[]),
    (LivenessStop,    StaleTStartTimeout, P::Stopping, &[]),
    (LivenessStop,    StaleTBackoff,      P::Stopping, &[]),
    (LivenessStop,    StaleTStopTimeout,  P::Stopping, &[]),
    (LivenessStop,    TKillRecheck,       P::Stopping, &[]),
    (LivenessStop,    StaleTKillRecheck,  P::Stopping, &[]),
    (LivenessStop,    Relaunch,           P::Stopping, &[]),
    (LivenessStop,    Granted,            P::Stopping, &[]),
    (LivenessStop,    Exhausted,          P::Stopping, &[]),
    (LivenessStop,    Escaped,            P::Stopping, &["timer sweep_kill 5s"]),
    (LivenessStop,    TSweepKill,         P::Stopping, &[]),
    (LivenessStop,    StaleTSweepKill,    P::Stopping, &[]),

    // Backoff: after a crash, waiting for the backoff timer.
    (Backoff,         Start,              P::Starting, &["spawn"]),
    (Backoff,         Stop,               P::Stopped,  &["note stopped"]),
    (Backoff,         Kill,               P::Stopped,  &["note stopped"]),
    (Backoff,         Drain,              P::Stopped,  &["note stopped"]),
    (Backoff,         Block,              P::Backoff,  &[]),
    (Backoff,         Spawned,            P::Backoff,  &[]),
    (Backoff,         SpawnFailed,        P::Backoff,  &[]),
    (Backoff,         ExitOk,             P::Backoff,  &[]),
    (Backoff,         ExitFail,           P::Backoff,  &[]),
    (Backoff,         ExitFailAlive,      P::Backoff,  &[]),
    (Backoff,         StaleExit,          P::Backoff,  &[]),
    (Backoff,         StaleExitAlive,     P::Backoff,  &[]),
    (Backoff,         GroupGone,          P::Backoff,  &[]),
    (Backoff,         ReadyOk,            P::Backoff,  &[]),
    (Backoff,         ReadyFail,          P::Backoff,  &[]),
    (Backoff,         LiveOk,             P::Backoff,  &[]),
    (Backoff,         LiveFail,           P::Backoff,  &[]),
    (Backoff,         StaleReadyOk,       P::Backoff,  &[]),
    (Backoff,         StaleReadyFail,     P::Backoff,  &[]),
    (Backoff,         StaleLiveOk,        P::Backoff,  &[]),
    (Backoff,         StaleLiveFail,      P::Backoff,  &[]),
    (Backoff,         Announced,          P::Backoff,  &[]),
    (Backoff,         StatusText,         P::Backoff,  &[]),
    (Backoff,         TStartSeconds,      P::Backoff,  &[]),
    (Backoff,         TStartTimeout,      P::Backoff,  &[]),
    (Backoff,         TBackoff,           P::Starting, &["spawn"]),
    (Backoff,         TStopTimeout,       P::Backoff,  &[]),
    (Backoff,         StaleTStartSeconds, P::Backoff,  &[]),
    (Backoff,         StaleTStartTimeout, P::Backoff,  &[]),
    (Backoff,         StaleTBackoff,      P::Backoff,  &[]),
    (Backoff,         StaleTStopTimeout,  P::Backoff,  &[]),
    (Backoff,         TKillRecheck,       P::Backoff,  &[]),
    (Backoff,         StaleTKillRecheck,  P::Backoff,  &[]),
    (Backoff,         Relaunch,           P::Starting, &["spawn"]),
    (Backoff,         Granted,            P::Starting, &["spawn"]),
    (Backoff,         Exhausted,          P::Backoff,  &[]),
    (Backoff,         Escaped,            P::Backoff,  &["timer sweep_kill 5s"]),
    (Backoff,         TSweepKill,         P::Backoff,  &[]),
    (Backoff,         StaleTSweepKill,    P::Backoff,  &[]),

    // BackoffAsked (budgeted): the backoff delay is over and the restart was
    // asked for under the global restart budget; waiting for the grant.
    (BackoffAsked,    Start,              P::Starting, &["spawn"]),
    (BackoffAsked,    Stop,               P::Stopped,  &["note stopped"]),
    (BackoffAsked,    Kill,               P::Stopped,  &["note stopped"]),
    (BackoffAsked,    Drain,              P::Stopped,  &["note stopped"]),
    (BackoffAsked,    Block,              P::Backoff,  &[]),
    (BackoffAsked,    Spawned,            P::Backoff,  &[]),
    (BackoffAsked,    SpawnFailed,        P::Backoff,  &[]),
    (BackoffAsked,    ExitOk,             P::Backoff,  &[]),
    (BackoffAsked,    ExitFail,           P::Backoff,  &[]),
    (BackoffAsked,    ExitFailAlive,      P::Backoff,  &[]),
    (BackoffAsked,    StaleExit,          P::Backoff,  &[]),
    (BackoffAsked,    StaleExitAlive,     P::Backoff,  &[]),
    (BackoffAsked,    GroupGone,          P::Backoff,  &[]),
    (BackoffAsked,    ReadyOk,            P::Backoff,  &[]),
    (BackoffAsked,    ReadyFail,          P::Backoff,  &[]),
    (BackoffAsked,    LiveOk,             P::Backoff,  &[]),
    (BackoffAsked,    LiveFail,           P::Backoff,  &[]),
    (BackoffAsked,    StaleReadyOk,       P::Backoff,  &[]),
    (BackoffAsked,    StaleReadyFail,     P::Backoff,  &[]),
    (BackoffAsked,    StaleLiveOk,        P::Backoff,  &[]),
    (BackoffAsked,    StaleLiveFail,      P::Backoff,  &[]),
    (BackoffAsked,    Announced,          P::Backoff,  &[]),
    (BackoffAsked,    StatusText,         P::Backoff,  &[]),
    (BackoffAsked,    TStartSeconds,      P::Backoff,  &[]),
    (BackoffAsked,    TStartTimeout,      P::Backoff,  &[]),
    (BackoffAsked,    TBackoff,           P::Backoff,  &["ask restart"]),
    (BackoffAsked,    TStopTimeout,       P::Backoff,  &[]),
    (BackoffAsked,    StaleTStartSeconds, P::Backoff,  &[]),
    (BackoffAsked,    StaleTStartTimeout, P::Backoff,  &[]),
    (BackoffAsked,    StaleTBackoff,      P::Backoff,  &[]),
    (BackoffAsked,    StaleTStopTimeout,  P::Backoff,  &[]),
    (BackoffAsked,    TKillRecheck,       P::Backoff,  &[]),
    (BackoffAsked,    StaleTKillRecheck,  P::Backoff,  &[]),
    (BackoffAsked,    Relaunch,           P::Starting, &["spawn"]),
    (BackoffAsked,    Granted,            P::Starting, &["spawn"]),
    (BackoffAsked,    Exhausted,          P::Backoff,  &[]),
    (BackoffAsked,    Escaped,            P::Backoff,  &["timer sweep_kill 5s"]),
    (BackoffAsked,    TSweepKill,         P::Backoff,  &[]),
    (BackoffAsked,    StaleTSweepKill,    P::Backoff,  &[]),

    // Exited: the service exited with a success code; on-failure does not
    // restart it.
    (Exited,          Start,              P::Starting, &["spawn"]),
    (Exited,          Stop,               P::Exited,   &[]),
    (Exited,          Kill,               P::Exited,   &[]),
    (Exited,          Drain,              P::Exited,   &[]),
    (Exited,          Block,              P::Failed,   &["note failed"]),
    (Exited,          Spawned,            P::Exited,   &[]),
    (Exited,          SpawnFailed,        P::Exited,   &[]),
    (Exited,          ExitOk,             P::Exited,   &[]),
    (Exited,          ExitFail,           P::Exited,   &[]),
    (Exited,          ExitFailAlive,      P::Exited,   &[]),
    (Exited,          StaleExit,          P::Exited,   &[]),
    (Exited,          StaleExitAlive,     P::Exited,   &[]),
    (Exited,          GroupGone,          P::Exited,   &[]),
    (Exited,          ReadyOk,            P::Exited,   &[]),
    (Exited,          ReadyFail,          P::Exited,   &[]),
    (Exited,          LiveOk,             P::Exited,   &[]),
    (Exited,          LiveFail,           P::Exited,   &[]),
    (Exited,          StaleReadyOk,       P::Exited,   &[]),
    (Exited,          StaleReadyFail,     P::Exited,   &[]),
    (Exited,          StaleLiveOk,        P::Exited,   &[]),
    (Exited,          StaleLiveFail,      P::Exited,   &[]),
    (Exited,          Announced,          P::Exited,   &[]),
    (Exited,          StatusText,         P::Exited,   &[]),
    (Exited,          TStartSeconds,      P::Exited,   &[]),
    (Exited,          TStartTimeout,      P::Exited,   &[]),
    (Exited,          TBackoff,           P::Exited,   &[]),
    (Exited,          TStopTimeout,       P::Exited,   &[]),
    (Exited,          StaleTStartSeconds, P::Exited,   &[]),
    (Exited,          StaleTStartTimeout, P::Exited,   &[]),
    (Exited,          StaleTBackoff,      P::Exited,   &[]),
    (Exited,          StaleTStopTimeout,  P::Exited,   &[]),
    (Exited,          TKillRecheck,       P::Exited,   &[]),
    (Exited,          StaleTKillRecheck,  P::Exited,   &[]),
    (Exited,          Relaunch,           P::Starting, &["spawn"]),
    (Exited,          Granted,            P::Exited,   &[]),
    (Exited,          Exhausted,          P::Exited,   &[]),
    (Exited,          Escaped,            P::Exited,   &["timer sweep_kill 5s"]),
    (Exited,          TSweepKill,         P::Exited,   &[]),
    (Exited,          StaleTSweepKill,    P::Exited,   &[]),

    // ExitedSweeping: exited, and the sweep after it found an escaped daemon
    // and sent it the stop signal; its SIGKILL is due in stop_timeout, and
    // nothing the instance does meanwhile (a start included) cancels it.
    (ExitedSweeping,  Start,              P::Starting, &["spawn"]),
    (ExitedSweeping,  Stop,               P::Exited,   &[]),
    (ExitedSweeping,  Kill,               P::Exited,   &[]),
    (ExitedSweeping,  Drain,              P::Exited,   &[]),
    (ExitedSweeping,  Block,              P::Failed,   &["note failed"]),
    (ExitedSweeping,  Spawned,            P::Exited,   &[]),
    (ExitedSweeping,  SpawnFailed,        P::Exited,   &[]),
    (ExitedSweeping,  ExitOk,             P::Exited,   &[]),
    (ExitedSweeping,  ExitFail,           P::Exited,   &[]),
    (ExitedSweeping,  ExitFailAlive,      P::Exited,   &[]),
    (ExitedSweeping,  StaleExit,          P::Exited,   &[]),
    (ExitedSweeping,  StaleExitAlive,     P::Exited,   &[]),
    (ExitedSweeping,  GroupGone,          P::Exited,   &[]),
    (ExitedSweeping,  ReadyOk,            P::Exited,   &[]),
    (ExitedSweeping,  ReadyFail,          P::Exited,   &[]),
    (ExitedSweeping,  LiveOk,             P::Exited,   &[]),
    (ExitedSweeping,  LiveFail,           P::Exited,   &[]),
    (ExitedSweeping,  StaleReadyOk,       P::Exited,   &[]),
    (ExitedSweeping,  StaleReadyFail,     P::Exited,   &[]),
    (ExitedSweeping,  StaleLiveOk,        P::Exited,   &[]),
    (ExitedSweeping,  StaleLiveFail,      P::Exited,   &[]),
    (ExitedSweeping,  Announced,          P::Exited,   &[]),
    (ExitedSweeping,  StatusText,         P::Exited,   &[]),
    (ExitedSweeping,  TStartSeconds,      P::Exited,   &[]),
    (ExitedSweeping,  TStartTimeout,      P::Exited,   &[]),
    (ExitedSweeping,  TBackoff,           P::Exited,   &[]),
    (ExitedSweeping,  TStopTimeout,       P::Exited,   &[]),
    (ExitedSweeping,  StaleTStartSeconds, P::Exited,   &[]),
    (ExitedSweeping,  StaleTStartTimeout, P::Exited,   &[]),
    (ExitedSweeping,  StaleTBackoff,      P::Exited,   &[]),
    (ExitedSweeping,  StaleTStopTimeout,  P::Exited,   &[]),
    (ExitedSweeping,  TKillRecheck,       P::Exited,   &[]),
    (ExitedSweeping,  StaleTKillRecheck,  P::Exited,   &[]),
    (ExitedSweeping,  Relaunch,           P::Starting, &["spawn"]),
    (ExitedSweeping,  Granted,            P::Exited,   &[]),
    (ExitedSweeping,  Exhausted,          P::Exited,   &[]),
    (ExitedSweeping,  Escaped,            P::Exited,   &["timer sweep_kill 5s"]),
    (ExitedSweeping,  TSweepKill,         P::Exited,   &["kill escaped [200]"]),
    (ExitedSweeping,  StaleTSweepKill,    P::Exited,   &[]),

    // Failed: a second crash within restart_window exceeded max_restarts = 1.
    (Failed,          Start,              P::Starting, &["spawn"]),
    (Failed,          Stop,               P::Failed,   &[]),
    (Failed,          Kill,               P::Failed,   &[]),
    (Failed,          Drain,              P::Failed,   &[]),
    (Failed,          Block,              P::Failed,   &["note failed"]),
    (Failed,          Spawned,            P::Failed,   &[]),
    (Failed,          SpawnFailed,        P::Failed,   &[]),
    (Failed,          ExitOk,             P::Failed,   &[]),
    (Failed,          ExitFail,           P::Failed,   &[]),
    (Failed,          ExitFailAlive,      P::Failed,   &[]),
    (Failed,          StaleExit,          P::Failed,   &[]),
    (Failed,          StaleExitAlive,     P::Failed,   &[]),
    (Failed,          GroupGone,          P::Failed,   &[]),
    (Failed,          ReadyOk,            P::Failed,   &[]),
    (Failed,          ReadyFail,          P::Failed,   &[]),
    (Failed,          LiveOk,             P::Failed,   &[]),
    (Failed,          LiveFail,           P::Failed,   &[]),
    (Failed,          StaleReadyOk,       P::Failed,   &[]),
    (Failed,          StaleReadyFail,     P::Failed,   &[]),
    (Failed,          StaleLiveOk,        P::Failed,   &[]),
    (Failed,          StaleLiveFail,      P::Failed,   &[]),
    (Failed,          Announced,          P::Failed,   &[]),
    (Failed,          StatusText,         P::Failed,   &[]),
    (Failed,          TStartSeconds,      P::Failed,   &[]),
    (Failed,          TStartTimeout,      P::Failed,   &[]),
    (Failed,          TBackoff,           P::Failed,   &[]),
    (Failed,          TStopTimeout,       P::Failed,   &[]),
    (Failed,          StaleTStartSeconds, P::Failed,   &[]),
    (Failed,          StaleTStartTimeout, P::Failed,   &[]),
    (Failed,          StaleTBackoff,      P::Failed,   &[]),
    (Failed,          StaleTStopTimeout,  P::Failed,   &[]),
    (Failed,          TKillRecheck,       P::Failed,   &[]),
    (Failed,          StaleTKillRecheck,  P::Failed,   &[]),
    (Failed,          Relaunch,           P::Failed,   &[]),
    (Failed,          Granted,            P::Failed,   &[]),
    (Failed,          Exhausted,          P::Failed,   &[]),
    (Failed,          Escaped,            P::Failed,   &["timer sweep_kill 5s"]),
    (Failed,          TSweepKill,         P::Failed,   &[]),
    (Failed,          StaleTSweepKill,    P::Failed,   &[]),
];

/// Quiet cells (same phase, no actions) that still change the instance,
/// with what they change. Every other quiet cell changes nothing.
#[rustfmt::skip]
const SILENT: &[(State, Ev, &str)] = &[
    (Spawning, Drain, "want_up = false: the start is not retried after a crash"),
    (Starting, Drain, "want_up = false"),
    (Starting, StatusText, "status_text"),
    (StartingReady, Drain, "want_up = false"),
    (StartingReady, ReadyOk, "ready_streak + 1"),
    (StartingReady, StatusText, "status_text"),
    (Running, Drain, "want_up = false"),
    (Running, StatusText, "status_text"),
    (RunningReady, Drain, "want_up = false"),
    (RunningReady, ReadyOk, "ready_streak + 1"),
    (RunningReady, StatusText, "status_text"),
    (Stopping, Start, "want_up = true: spawns once the group is gone"),
    (Stopping, Relaunch, "want_up = true: spawns once the group is gone"),
    (StoppingOrphans, Start, "want_up = true"),
    (StoppingOrphans, Relaunch, "want_up = true"),
    (StoppingKilled, Start, "want_up = true"),
    (StoppingKilled, Relaunch, "want_up = true"),
    (StoppingRestart, Stop, "want_up = false"),
    (StoppingRestart, Drain, "want_up = false"),
    (CrashCleanup, Start, "the pending restart becomes a fresh start: no backoff, window cleared"),
    (CrashCleanup, Stop, "want_up = false, the pending restart dropped: ends stopped"),
    (CrashCleanup, Drain, "want_up = false, the pending restart dropped: ends stopped"),
    (LivenessStop, Start, "the pending restart becomes a fresh start: no backoff, window cleared"),
    (LivenessStop, Stop, "want_up = false, the pending restart dropped: ends stopped"),
    (LivenessStop, Drain, "want_up = false, the pending restart dropped: ends stopped"),
    (Backoff, Exhausted, "reason = restart budget exhausted"),
    (BackoffAsked, Exhausted, "reason = restart budget exhausted"),
    (Exited, Stop, "want_up = false"),
    (Exited, Kill, "want_up = false"),
    (Exited, Drain, "want_up = false"),
    (ExitedSweeping, Stop, "want_up = false"),
    (ExitedSweeping, Kill, "want_up = false"),
    (ExitedSweeping, Drain, "want_up = false"),
];

/// Feeds events to one instance with a fixed clock and a fake launcher.
#[derive(Clone)]
struct Driver {
    inst: Instance,
    now: Instant,
    next_pid: i32,
    last_pid: i32,
}

impl Driver {
    fn reach(state: State) -> Self {
        let mut driver = Self {
            inst: Instance::new(Arc::new(matrix_policy(state.budgeted())), 1),
            now: Instant::now(),
            next_pid: FIRST_PID,
            last_pid: FIRST_PID,
        };
        for &ev in state.script() {
            driver.feed(ev);
        }
        assert_eq!(driver.inst.phase(), state.phase(), "{state:?}: script");
        driver
    }

    fn bind(&mut self, ev: Ev) -> Event {
        let pid = self.inst.pid().unwrap_or(self.last_pid);
        let run = self.inst.snapshot().run;
        let generation = self.inst.generation();
        let exit = |pid, code, group_alive| Event::Exited {
            pid,
            status: ExitStatus::Code(code),
            group_alive,
        };
        let probe = |role, run, ok| Event::Probe {
            role,
            run,
            ok,
            detail: if ok { String::new() } else { "refused".into() },
        };
        let timer = |kind, generation| Event::Timer { kind, generation };
        let stale_run = run.wrapping_sub(1);
        let stale_generation = generation.wrapping_sub(1);
        let sweep = match self.inst.sweeps.first() {
            Some(&(seq, _)) => seq,
            None => self.inst.sweep_seq,
        };
        match ev {
            Start => Event::Start,
            Stop => Event::Stop,
            Kill => Event::Kill,
            Drain => Event::Drain,
            Block => Event::Block("dependency failed".into()),
            Spawned => {
                let pid = self.next_pid;
                self.next_pid += 1;
                self.last_pid = pid;
                Event::Spawned { pid }
            }
            SpawnFailed => Event::SpawnFailed {
                error: "command not found".into(),
            },
            ExitOk => exit(pid, 0, false),
            ExitFail => exit(pid, 1, false),
            ExitFailAlive => exit(pid, 1, true),
            StaleExit => exit(STALE_PID, 1, false),
            StaleExitAlive => exit(STALE_PID, 1, true),
            GroupGone => Event::GroupGone,
            ReadyOk => probe(ProbeRole::Readiness, run, true),
            ReadyFail => probe(ProbeRole::Readiness, run, false),
            LiveOk => probe(ProbeRole::Liveness, run, true),
            LiveFail => probe(ProbeRole::Liveness, run, false),
            StaleReadyOk => probe(ProbeRole::Readiness, stale_run, true),
            StaleReadyFail => probe(ProbeRole::Readiness, stale_run, false),
            StaleLiveOk => probe(ProbeRole::Liveness, stale_run, true),
            StaleLiveFail => probe(ProbeRole::Liveness, stale_run, false),
            Announced => Event::Announced { run },
            StatusText => Event::StatusText {
                run,
                text: "serving".into(),
            },
            TStartSeconds => timer(TimerKind::StartSeconds, generation),
            TStartTimeout => timer(TimerKind::StartTimeout, generation),
            TBackoff => timer(TimerKind::Backoff, generation),
            TStopTimeout => timer(TimerKind::StopTimeout, generation),
            StaleTStartSeconds => timer(TimerKind::StartSeconds, stale_generation),
            StaleTStartTimeout => timer(TimerKind::StartTimeout, stale_generation),
            StaleTBackoff => timer(TimerKind::Backoff, stale_generation),
            StaleTStopTimeout => timer(TimerKind::StopTimeout, stale_generation),
            TKillRecheck => timer(TimerKind::KillRecheck, generation),
            StaleTKillRecheck => timer(TimerKind::KillRecheck, stale_generation),
            Relaunch => Event::Relaunch,
            Granted => Event::RestartGranted,
            Exhausted => Event::BudgetExhausted,
            Escaped => Event::EscapedSignalled {
                pids: vec![ESCAPED_PID],
            },
            TSweepKill => timer(TimerKind::SweepKill, sweep),
            StaleTSweepKill => timer(TimerKind::SweepKill, 0),
        }
    }

    fn feed(&mut self, ev: Ev) -> Vec<Action> {
        let event = self.bind(ev);
        self.inst.step(event, self.now)
    }
}

fn timer_name(kind: TimerKind) -> &'static str {
    match kind {
        TimerKind::StartSeconds => "start_seconds",
        TimerKind::Backoff => "backoff",
        TimerKind::StopTimeout => "stop_timeout",
        TimerKind::StartTimeout => "start_timeout",
        TimerKind::KillRecheck => "kill_recheck",
        TimerKind::SweepKill => "sweep_kill",
    }
}

/// One action as a short phrase: `spawn`, `signal TERM`, `timer backoff
/// 100ms`, `note exited failure` (a note by its log event without
/// `program_`, plus the one detail that tells cells apart).
fn describe(action: &Action) -> String {
    match action {
        Action::Spawn => "spawn".into(),
        Action::SignalGroup(signal) => format!("signal {}", crate::signals::short_name(*signal)),
        Action::WatchGroup => "watch group".into(),
        Action::StartTimer { kind, after, .. } => format!(
            "timer {} {}",
            timer_name(*kind),
            humantime::format_duration(*after)
        ),
        Action::AskRestart => "ask restart".into(),
        Action::RecheckGroup => "recheck group".into(),
        Action::StartProbes { .. } => "start probes".into(),
        Action::StopProbes => "stop probes".into(),
        Action::SweepEscaped(signal) => {
            format!("sweep escaped {}", crate::signals::short_name(*signal))
        }
        Action::KillEscaped { pids } => format!("kill escaped {pids:?}"),
        Action::Emit(note) => {
            let event = note.event_name();
            let name = event.strip_prefix("program_").unwrap_or(event);
            match note {
                Note::Exited { kind, .. } => format!("note {name} {}", kind.as_str()),
                Note::RestartScheduled { delay, .. } => {
                    format!("note {name} {}", humantime::format_duration(*delay))
                }
                Note::ProbeFailed { role, .. } => format!("note {name} {}", role.as_str()),
                _ => format!("note {name}"),
            }
        }
    }
}

/// The whole instance, private fields included: what "changes nothing"
/// compares.
fn fingerprint(inst: &Instance) -> String {
    format!("{inst:?}")
}

#[test]
fn the_matrix_has_one_row_per_cell_in_order() {
    let expected: Vec<(State, Ev)> = State::ALL
        .iter()
        .flat_map(|&state| Ev::ALL.iter().map(move |&ev| (state, ev)))
        .collect();
    let actual: Vec<(State, Ev)> = MATRIX.iter().map(|&(s, e, _, _)| (s, e)).collect();
    assert_eq!(actual, expected);
    for &(state, ev, what) in SILENT {
        let quiet = MATRIX
            .iter()
            .any(|&(s, e, p, a)| s == state && e == ev && p == state.phase() && a.is_empty());
        assert!(
            quiet,
            "SILENT lists {state:?} × {ev:?} ({what}), not a quiet cell"
        );
    }
}

#[test]
fn phase_event_matrix() {
    let mut wrong = Vec::new();
    for &(state, ev, phase, expected) in MATRIX {
        let mut driver = Driver::reach(state);
        let before = fingerprint(&driver.inst);
        let actions = driver.feed(ev);
        let got: Vec<String> = actions.iter().map(describe).collect();
        let cell = format!("{state:?} × {ev:?}");
        if driver.inst.phase() != phase || got != expected {
            wrong.push(format!(
                "{cell}: expected {phase:?} {expected:?}, got {:?} {got:?}",
                driver.inst.phase()
            ));
            continue;
        }
        // A timer born stale would never fire.
        for action in &actions {
            if let Action::StartTimer {
                kind, generation, ..
            } = action
            {
                if !driver.inst.timer_is_live(*kind, *generation) {
                    wrong.push(format!("{cell}: {action:?} is stale at birth"));
                }
            }
        }
        if phase == state.phase() && expected.is_empty() {
            let changed = fingerprint(&driver.inst) != before;
            let silent = SILENT.iter().any(|&(s, e, _)| s == state && e == ev);
            if changed != silent {
                wrong.push(format!(
                    "{cell}: quiet cell {} the instance, SILENT says otherwise",
                    if changed { "changed" } else { "did not change" }
                ));
            }
        }
        for stale in Ev::STALE {
            let mut probe = driver.clone();
            let settled = fingerprint(&probe.inst);
            let actions = probe.feed(stale);
            if !actions.is_empty() || fingerprint(&probe.inst) != settled {
                wrong.push(format!("{cell}, then {stale:?}: acted {actions:?}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cells differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

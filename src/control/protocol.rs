//! The control API's request and response bodies, shared by the server (in
//! `kelpie run`) and the client (every control command). JSON over
//! HTTP/1.1 on the control socket; every path starts with `/v1`.
//!
//! | method | path | body → reply |
//! |---|---|---|
//! | GET  | `/v1/programs` | → [`ProgramsReply`] |
//! | GET  | `/v1/programs/{name}` | → [`ProgramInfo`] |
//! | POST | `/v1/programs/{name}/{verb}` | [`ActionRequest`] → [`ActionReply`] (verb: start, stop, restart, signal) |
//! | POST | `/v1/actions/{verb}` | [`ActionRequest`] with `programs` or `all` → [`ActionReply`] |
//! | GET  | `/v1/programs/{name}/logs?lines=N&follow=true` | → NDJSON of [`LogEvent`] (`{name}` may be one instance: `web:1`) |
//! | GET  | `/v1/logs?lines=N&follow=true` | → NDJSON of [`LogEvent`], every program |
//! | GET  | `/v1/programs/{name}/history` | → [`HistoryReply`] (`{name}` may be one instance: `web:1`) |
//! | POST | `/v1/reload` | → [`ReloadReply`] (422 + [`ErrorReply`] when the config is invalid) |
//! | POST | `/v1/diff` | [`DiffRequest`] → [`ReloadReply`] with `applied = false` |
//! | POST | `/v1/shutdown` | → NDJSON of [`ShutdownEvent`], the last one when kelpie is done |
//! | GET  | `/v1/ready`, `/v1/ready/{name}`, `/v1/ready/{name}:{index}` | → [`ReadyReply`] |
//! | GET  | `/v1/health` | → [`HealthReply`] |
//! | GET  | `/v1/config` | → [`ConfigReply`] |
//! | GET  | `/v1/usage` | → [`UsageReply`] (CPU and memory, read from `/proc` when asked) |
//!
//! Field names are part of the contract (docs/control.md): add fields, never
//! rename or remove them.

use serde::{Deserialize, Serialize};

pub const API_PREFIX: &str = "/v1";

/// Largest request body the server reads.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Stable `code` values of [`ErrorReply`].
pub mod code {
    pub const BAD_REQUEST: &str = "bad_request";
    pub const BAD_JSON: &str = "bad_json";
    pub const BODY_TOO_LARGE: &str = "body_too_large";
    pub const HEADERS_TOO_LARGE: &str = "headers_too_large";
    pub const NOT_FOUND: &str = "not_found";
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    pub const FORBIDDEN: &str = "forbidden";
    pub const NO_SUCH_PROGRAM: &str = "no_such_program";
    pub const CONFIG_INVALID: &str = "config_invalid";
    pub const SHUTTING_DOWN: &str = "shutting_down";
    pub const BUSY: &str = "busy";
    pub const INTERNAL: &str = "internal";
}

/// Every non-2xx reply (and nothing else).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// One line for a human.
    pub error: String,
    /// One of [`code`]; scripts match on this.
    pub code: String,
    pub request_id: String,
    /// Further lines, e.g. every config error of a refused reload as
    /// `file:line:col: key: message`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgramsReply {
    pub shutting_down: bool,
    /// In dependency order (the order `run` starts them).
    pub programs: Vec<ProgramInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgramInfo {
    pub name: String,
    /// The program's most pressing instance state: `stopped`, `starting`,
    /// `running`, `stopping`, `backoff`, `exited` or `failed`.
    pub state: String,
    pub ready: bool,
    pub required: bool,
    /// `service` or `oneshot`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Restarts of all instances since kelpie started (or since the program
    /// was last changed by a reload).
    pub restarts: u64,
    /// Why it is not ready / not running, when there is something to say.
    pub reason: Option<String>,
    /// Stopped by `kelpie stop`: not started again by a crash or reload
    /// until `kelpie start`.
    pub stopped_by_user: bool,
    /// Meant to run (`autostart`, or started by request, and not stopped
    /// by `kelpie stop`); only these count against the aggregated `ready`.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    pub instances: Vec<InstanceInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// `web:0`.
    pub name: String,
    pub index: u32,
    /// `KELPIE_SLOT` of its process: the index at first, switched by each
    /// rolling replacement (0 to 2 × instances − 1).
    #[serde(default)]
    pub slot: u32,
    pub state: String,
    pub pid: Option<i32>,
    pub ready: bool,
    /// Seconds the current process has run; absent without a process.
    pub uptime_seconds: Option<u64>,
    /// Unix time the current process started.
    pub started_at: Option<f64>,
    pub restarts: u64,
    pub last_exit: Option<LastExit>,
    pub reason: Option<String>,
    /// The delay of the restart being waited for (state `backoff`).
    pub backoff_seconds: Option<f64>,
    /// The program's own status line (sd_notify `STATUS=`).
    pub status_text: Option<String>,
    /// Held down by `kelpie stop NAME:N` (the program is not marked):
    /// down until `kelpie start NAME:N` or a start of the whole program.
    #[serde(default)]
    pub stopped_by_user: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastExit {
    /// Exit code, when it exited.
    pub code: Option<i32>,
    /// Signal name without `SIG` (`KILL`), when a signal ended it.
    pub signal: Option<String>,
    /// `success`, `failure`, `signal` or `killed`.
    pub kind: String,
    /// `exit code 1`, `signal KILL`.
    pub text: String,
}

/// Body of every action. All fields are optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// `/v1/actions/{verb}` only: the programs to act on.
    #[serde(default)]
    pub programs: Vec<String>,
    /// `/v1/actions/{verb}` only: act on every program.
    #[serde(default)]
    pub all: bool,
    /// Wait until the state is reached or has failed (default true).
    #[serde(default = "default_true")]
    pub wait: bool,
    /// Give up waiting after this long (default: derived from each
    /// program's start/stop timeouts).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// restart only: one instance at a time, each replacement ready before
    /// the old one stops.
    #[serde(default)]
    pub rolling: bool,
    /// signal only: `TERM`, `SIGTERM` or `15`.
    #[serde(default)]
    pub signal: Option<String>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionReply {
    /// Every program reached the requested state.
    pub ok: bool,
    pub results: Vec<ActionOutcome>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionOutcome {
    pub program: String,
    pub ok: bool,
    /// The program's state when the action finished (or was given up on).
    pub state: String,
    /// `running`, `completed`, `stopped`, `accepted` (`wait: false`),
    /// `sent SIGHUP to 3 process groups`, or on failure why:
    /// `web:0 exited with exit code 1; restarting in 100ms`.
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffRequest {
    /// Compare against this file instead of the running config's file.
    #[serde(default)]
    pub path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReply {
    /// False for `diff`; true once a reload was accepted (programs may
    /// still be stopping and starting).
    pub applied: bool,
    pub path: String,
    /// One entry per program of the old and the new config.
    pub plan: Vec<PlanEntry>,
    /// Config warnings and `[supervisor]` changes that need a restart of
    /// kelpie to apply.
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanEntry {
    pub program: String,
    /// `start`, `stop`, `restart` or `unchanged`.
    pub action: String,
    /// For `restart`: the keys that differ (`command`, `environment`, …).
    #[serde(default)]
    pub changes: Vec<String>,
}

/// One line of `GET /v1/programs/{name}/logs` and `GET /v1/logs` (NDJSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LogEvent {
    Line {
        /// Empty only from a supervisor older than the field.
        #[serde(default)]
        program: String,
        instance: u32,
        /// `stdout` or `stderr`.
        stream: String,
        /// When kelpie read the line: RFC 3339, UTC, milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        time: Option<String>,
        line: String,
    },
    /// The follower fell behind and this many lines (of `program`, when
    /// following every program) were not sent to it.
    Skipped {
        skipped: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        program: Option<String>,
    },
    /// Something that happened in the stream rather than a line the
    /// program wrote: `restarted` (a new process of `instance` took over
    /// from `previous_pid`; its lines follow) or `removed` (a reload removed
    /// the program; the last event of its stream).
    Event {
        event: String,
        program: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        time: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous_pid: Option<i32>,
    },
}

/// `LogEvent::Event`'s `event` values.
pub mod log_event {
    pub const RESTARTED: &str = "restarted";
    pub const REMOVED: &str = "removed";
}

/// `GET /v1/programs/{name}/history`: a program's (or one instance's) last
/// exits and what they add up to (`kelpie why`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryReply {
    pub program: String,
    /// The instance asked about (`web:1` → 1); `null` for every instance.
    pub instance: Option<u32>,
    /// The program's (or the instance's) state now.
    pub state: String,
    /// One line: `crash-looping: 7 exits in 12s, all SIGSEGV after ~0.2s;
    /// restarting after 1.6s`, `stopped by kelpie (…)`, ….
    pub verdict: String,
    /// Newest first; at most 20 per program.
    pub exits: Vec<ExitInfo>,
}

/// One exit of a process, as kept in the crash history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// When kelpie learnt of it: RFC 3339, UTC, milliseconds.
    pub time: String,
    pub instance: u32,
    pub pid: i32,
    /// Exit code, when it exited.
    pub code: Option<i32>,
    /// Signal name without `SIG` (`SEGV`), when a signal ended it.
    pub signal: Option<String>,
    /// `success`, `failure`, `signal` or `killed`.
    pub kind: String,
    /// `exit code 3`, `signal SEGV`.
    pub text: String,
    /// kelpie had asked it to end (stop, restart, reload, shutdown, a
    /// failed liveness probe or start_timeout), or it died of a signal
    /// kelpie relayed (`kelpie signal`, forward_signals).
    pub by_kelpie: bool,
    /// Why kelpie ended it when no stop was asked for (`liveness probe
    /// failed 3 times: …`, a relayed signal), else `null`.
    pub kelpie_reason: Option<String>,
    /// The kernel's OOM killer sent the SIGKILL.
    pub oom: bool,
    /// How that is known: `kernel_log` or `cgroup_counter`; `null` unless
    /// `oom`.
    pub oom_evidence: Option<String>,
    /// The memory cgroup whose limit was reached, when the kernel says.
    pub oom_memcg: Option<String>,
    /// How long the process ran.
    pub ran_seconds: f64,
    pub decision: ExitDecision,
    /// The last lines (at most 20, each at most 512 bytes) the process
    /// wrote, oldest first.
    pub output: Vec<ExitLine>,
}

/// What kelpie did after an exit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitDecision {
    /// `restart`, `budget_wait`, `failed`, `stopped`, `restarted`,
    /// `exited` or `pending`.
    pub action: String,
    /// The backoff delay of `restart` and `budget_wait`.
    pub delay_seconds: Option<f64>,
    /// Why it `failed`.
    pub reason: Option<String>,
    /// `restart after 1.6s`, `failed: …`, `none: stopped on purpose`.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitLine {
    /// `stdout` or `stderr`.
    pub stream: String,
    pub line: String,
}

/// One line of `POST /v1/shutdown` (NDJSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShutdownEvent {
    /// `shutting_down`, then `stopped` when every program is down.
    pub status: String,
    pub exit_code: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyReply {
    pub ready: bool,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReply {
    pub status: String,
    pub version: String,
    pub pid: u32,
    pub uptime_seconds: u64,
    pub config: String,
}

/// The config the supervisor runs (`kelpie config --running`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigReply {
    /// The file it was read from.
    pub path: String,
    /// Unix time it was loaded: kelpie's start, or the last applied reload.
    pub loaded_at: f64,
    /// The effective config as TOML, like `kelpie config` prints a file
    /// (without the header line).
    pub toml: String,
}

/// `GET /v1/usage`: the CPU and memory of every program and instance, in
/// the order of [`ProgramsReply`]. Read from `/proc` for the request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageReply {
    pub programs: Vec<ProgramUsage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgramUsage {
    pub name: String,
    /// The sum of its instances' figures.
    #[serde(flatten)]
    pub usage: ProcessUsage,
    pub instances: Vec<InstanceUsage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceUsage {
    /// `web:0`.
    pub name: String,
    pub index: u32,
    pub pid: Option<i32>,
    #[serde(flatten)]
    pub usage: ProcessUsage,
}

/// What the processes of one program or instance use: the main process,
/// its group and every descendant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessUsage {
    /// CPU time (user + system) in seconds: a counter that only grows
    /// while the instance exists (processes that exited keep theirs), so
    /// the difference between two replies over the time between them is
    /// the CPU share.
    pub cpu_seconds: f64,
    /// Resident memory of the processes, summed.
    pub rss_bytes: u64,
    /// How many processes were counted.
    pub processes: u32,
}

/// A supervisor from before `enabled` existed counted every program.
fn enabled_by_default() -> bool {
    true
}

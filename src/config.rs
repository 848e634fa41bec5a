//! `supervisor.toml`: the typed configuration, validated from TOML with
//! every problem reported at its `file:line:col`.
//!
//! This file holds the configuration's types, which the rest of kelpie
//! reads, and where the file is found. Reading it is split by concern:
//!
//! - `validate`: `load` / `validate`, the order of the passes
//! - `decode`: one key at a time with serde, the shared value grammars
//! - `diagnostics`: the messages and their positions
//! - `supervisor_section`, `program_section`, `probe_section`,
//!   `log_section`, `group_section`: one module per kind of table
//! - `references`: dependencies and group members across tables
//! - `env_file`: the `env_file` format
//! - `template`: `${KELPIE_INSTANCE}` in environment values and probe targets
//! - `print`: `kelpie config`, the effective config back as TOML
//!
//! Users, groups and executables are looked up in `crate::os_lookup`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::backoff::BackoffConfig;
use crate::logging::LogFormat;
use crate::restart_policy::{ProgramKind, RestartPolicy};

mod decode;
mod diagnostics;
mod env_file;
mod group_section;
mod limits_section;
mod log_section;
pub mod open_files;
pub mod print;
mod probe_section;
mod program_section;
mod references;
mod supervisor_section;
pub mod template;
mod validate;

pub use decode::{parse_duration, parse_size};
pub use diagnostics::{Diagnostic, Severity};
pub use env_file::parse_env_file;
pub use supervisor_section::{control_socket_of, default_control_socket};
pub use validate::{load, validate, Validation};

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub supervisor: SupervisorConfig,
    /// Programs in dependency order: every program comes after the programs it
    /// depends on; ties keep file order.
    pub programs: Vec<Arc<ProgramConfig>>,
    pub groups: Vec<GroupConfig>,
}

impl Config {
    pub fn instance_count(&self) -> usize {
        self.programs.iter().map(|p| p.instances as usize).sum()
    }

    /// Descriptors kelpie holds with every instance running.
    pub fn open_files_needed(&self) -> u64 {
        open_files::needed(self.programs.iter().map(|p| p.as_ref()))
    }

    pub fn program(&self, name: &str) -> Option<&Arc<ProgramConfig>> {
        self.programs.iter().find(|p| p.name == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartBudget {
    pub max: u32,
    pub per: Duration,
}

#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// `None` when `http_listen = "off"`.
    pub http_listen: Option<String>,
    pub control_socket: PathBuf,
    pub socket_mode: u32,
    pub shutdown_timeout: Duration,
    pub drain_delay: Duration,
    pub restart_budget: Option<RestartBudget>,
    pub log_format: LogFormat,
    pub log_level: String,
    pub forward_signals: Vec<Signal>,
    /// Serve the web dashboard at `/` of `http_listen`.
    pub dashboard: bool,
    /// `control_token_file`: its path and the token read from it; the
    /// dashboard's actions exist only when set.
    pub control_token: Option<ControlToken>,
    /// Where program cgroups go (`cgroup_root`).
    pub cgroup_root: CgroupRoot,
}

/// `supervisor.cgroup_root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupRoot {
    /// kelpie's own cgroup, when it is delegated to kelpie alone.
    Auto,
    Off,
    Path(PathBuf),
}

/// The dashboard's bearer token, read from `control_token_file`. Its
/// `Debug` never shows the token, so no log or `kelpie config` can leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct ControlToken {
    pub path: PathBuf,
    pub token: String,
}

impl std::fmt::Debug for ControlToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlToken")
            .field("path", &self.path)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// How a reload applies a change to a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadMode {
    /// Stop every instance, then start them with the new config.
    Restart,
    /// Replace the instances one at a time, each ready before the next
    /// (like `kelpie restart --rolling`), when the program runs.
    Rolling,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    KeepRunning,
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DependencyCondition {
    Started,
    Ready,
    Completed,
}

impl DependencyCondition {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Ready => "ready",
            Self::Completed => "completed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeKind {
    Http(String),
    Tcp(String),
    Exec(Vec<String>),
    Notify,
    Log(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeConfig {
    pub kind: ProbeKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub initial_delay: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogMode {
    Inherit,
    File {
        path: PathBuf,
        max_size: u64,
        keep: u32,
    },
    Discard,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone)]
pub struct ProgramConfig {
    pub name: String,
    pub command: Vec<String>,
    pub directory: Option<PathBuf>,
    /// `env_file` merged with `environment` (which wins). Values are never
    /// logged.
    pub environment: BTreeMap<String, String>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub umask: Option<u32>,
    pub instances: u32,
    pub autostart: bool,
    pub kind: ProgramKind,
    pub restart: RestartPolicy,
    pub success_codes: Vec<i32>,
    pub start_seconds: Duration,
    pub start_timeout: Duration,
    pub backoff: BackoffConfig,
    pub max_restarts: u32,
    pub restart_window: Duration,
    pub on_failure: OnFailure,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    pub reload: ReloadMode,
    pub depends_on: Vec<(String, DependencyCondition)>,
    pub required: bool,
    pub readiness: Option<ProbeConfig>,
    pub liveness: Option<ProbeConfig>,
    pub log: LogMode,
    /// What the program may consume (`rlimits`).
    pub limits: crate::limits::Limits,
}

impl ProgramConfig {
    pub fn instance_name(&self, index: u32) -> String {
        format!("{}:{}", self.name, index)
    }

    pub fn is_success(&self, code: i32) -> bool {
        self.success_codes.contains(&code)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupStrategy {
    OneForOne,
    OneForAll,
    RestForOne,
}

#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub name: String,
    pub programs: Vec<String>,
    pub strategy: GroupStrategy,
    pub max_restarts: Option<u32>,
    pub restart_window: Duration,
    pub on_failure: OnFailure,
}

/// When the config is validated: `check` only warns about things that are
/// fatal at `run` (a missing binary stays a warning in both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Check,
    Run,
}

/// Environment the validation depends on, passed in so tests are hermetic.
#[derive(Debug, Clone)]
pub struct Host {
    pub is_root: bool,
    pub path_var: Option<String>,
    pub runtime_dir: Option<PathBuf>,
    /// The hard `RLIMIT_NOFILE`, which the config's open files must fit
    /// under (`None`: unknown, not checked).
    pub open_files_limit: Option<u64>,
}

impl Host {
    pub fn current() -> Self {
        Self {
            is_root: nix::unistd::geteuid().is_root(),
            path_var: std::env::var("PATH").ok(),
            runtime_dir: std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
            open_files_limit: nix::sys::resource::getrlimit(
                nix::sys::resource::Resource::RLIMIT_NOFILE,
            )
            .ok()
            .map(|(_, hard)| hard),
        }
    }
}

/// `-c FILE`, else `$KELPIE_CONFIG`, else `./supervisor.toml`, else
/// `/etc/kelpie/supervisor.toml`.
pub fn find_config(explicit: Option<&Path>) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_path_buf();
    }
    if let Some(path) = std::env::var_os("KELPIE_CONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let local = PathBuf::from("supervisor.toml");
    if local.exists() {
        return local;
    }
    let system = PathBuf::from("/etc/kelpie/supervisor.toml");
    if system.exists() {
        return system;
    }
    local
}

/// A non-root host with a fixed PATH and no open-file limit, and a config
/// text validated on it as `/fleet/kelpie.toml` that must have no errors:
/// for tests of the layers above config.
#[cfg(test)]
impl Host {
    pub(crate) fn hermetic() -> Self {
        Self {
            is_root: false,
            path_var: Some("/usr/bin:/bin".into()),
            runtime_dir: None,
            open_files_limit: None,
        }
    }
}

#[cfg(test)]
pub(crate) fn valid_for_test(toml: &str) -> Config {
    let validation = validate(
        toml,
        Path::new("/fleet/kelpie.toml"),
        Mode::Run,
        &Host::hermetic(),
    );
    let errors: Vec<String> = validation.errors().map(|d| d.to_string()).collect();
    assert!(errors.is_empty(), "test config invalid: {errors:?}");
    validation.config.expect("a valid config")
}

#[cfg(test)]
mod tests;

//! What a program may consume: the cgroup v2 limits of its instances'
//! cgroups, the rlimits set before exec, and the memory ceiling above which
//! kelpie restarts it (docs/configuration.md, "Resource limits").
//!
//! Only the values live here; `config/limits_section.rs` parses them and
//! `process.rs` sets the rlimits in the child. The cgroup and
//! `memory_restart` fields are not read from the config yet (always unset):
//! they are the shape the cgroup work (issue 17) fills in.

use std::time::Duration;

/// `memory_restart_after` when unset.
pub const DEFAULT_MEMORY_RESTART_AFTER: Duration = Duration::from_secs(30);

/// The cgroup v2 period kelpie writes to `cpu.max` (the kernel's default).
pub const CPU_PERIOD_USEC: u64 = 100_000;

/// One program's limits; `Limits::default()` limits nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `memory.max`, bytes.
    pub memory_max: Option<u64>,
    /// `memory.high`, bytes.
    pub memory_high: Option<u64>,
    /// `cpu.max`, as a quota of `CPU_PERIOD_USEC`.
    pub cpu_max: Option<CpuMax>,
    /// `pids.max`.
    pub pids_max: Option<u64>,
    /// `io.weight`, 1 to 10000.
    pub io_weight: Option<u16>,
    /// Set in the child before exec, in this order.
    pub rlimits: Vec<Rlimit>,
    /// Restart an instance whose processes' RSS stays above this many bytes
    /// for `memory_restart_after`.
    pub memory_restart: Option<u64>,
    pub memory_restart_after: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_max: None,
            memory_high: None,
            cpu_max: None,
            pids_max: None,
            io_weight: None,
            rlimits: Vec::new(),
            memory_restart: None,
            memory_restart_after: DEFAULT_MEMORY_RESTART_AFTER,
        }
    }
}

impl Limits {
    /// The configured keys that need a cgroup, by their config names.
    pub fn cgroup_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.memory_max.is_some() {
            keys.push("memory_max");
        }
        if self.memory_high.is_some() {
            keys.push("memory_high");
        }
        if self.cpu_max.is_some() {
            keys.push("cpu_max");
        }
        if self.pids_max.is_some() {
            keys.push("pids_max");
        }
        if self.io_weight.is_some() {
            keys.push("io_weight");
        }
        keys
    }
}

/// A CPU quota: `quota_usec` of CPU time per `CPU_PERIOD_USEC` of wall
/// time, summed over all CPUs ("50%" is 50_000, "2.0" is 200_000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuMax {
    pub quota_usec: u64,
}

impl CpuMax {
    /// The line `cpu.max` takes.
    pub fn cgroup_value(self) -> String {
        format!("{} {}", self.quota_usec, CPU_PERIOD_USEC)
    }
}

/// `RLIM_INFINITY` as kelpie stores it ("unlimited" in the config).
pub const UNLIMITED: u64 = u64::MAX;

/// One `setrlimit` call: soft and hard limits (`UNLIMITED` for infinity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: RlimitResource,
    pub soft: u64,
    pub hard: u64,
}

/// The rlimits the config can set, by their config names (`ulimit`'s and
/// prlimit(1)'s lower-case names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RlimitResource {
    As,
    Core,
    Cpu,
    Data,
    Fsize,
    Memlock,
    Msgqueue,
    Nice,
    Nofile,
    Nproc,
    Rss,
    Rtprio,
    Rttime,
    Sigpending,
    Stack,
}

impl RlimitResource {
    pub const ALL: [RlimitResource; 15] = [
        Self::As,
        Self::Core,
        Self::Cpu,
        Self::Data,
        Self::Fsize,
        Self::Memlock,
        Self::Msgqueue,
        Self::Nice,
        Self::Nofile,
        Self::Nproc,
        Self::Rss,
        Self::Rtprio,
        Self::Rttime,
        Self::Sigpending,
        Self::Stack,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::As => "as",
            Self::Core => "core",
            Self::Cpu => "cpu",
            Self::Data => "data",
            Self::Fsize => "fsize",
            Self::Memlock => "memlock",
            Self::Msgqueue => "msgqueue",
            Self::Nice => "nice",
            Self::Nofile => "nofile",
            Self::Nproc => "nproc",
            Self::Rss => "rss",
            Self::Rtprio => "rtprio",
            Self::Rttime => "rttime",
            Self::Sigpending => "sigpending",
            Self::Stack => "stack",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }
}

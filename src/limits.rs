//! What a program may consume (docs/configuration.md): rlimits set before
//! exec, cgroup v2 limits of each instance's cgroup, and the RSS above
//! which it is restarted.
//!
//! Only the values live here; `config/limits_section.rs` parses them,
//! `process.rs` sets the rlimits in the child, `cgroup.rs` writes the cgroup
//! limits and the metrics sampler watches `memory_restart`.

use std::time::Duration;

/// One program's limits; `Limits::default()` limits nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Set in the child before exec, in this order.
    pub rlimits: Vec<Rlimit>,
    pub cgroup: CgroupLimits,
    pub memory_restart: Option<MemoryRestart>,
}

/// The limits written into an instance's cgroup before its process starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupLimits {
    /// `memory.max`, bytes: above it the kernel's OOM killer ends the
    /// program.
    pub memory_max: Option<u64>,
    /// `memory.high`, bytes: above it the kernel throttles and reclaims.
    pub memory_high: Option<u64>,
    /// `cpu.max` quota in microseconds per `CPU_PERIOD_MICROS`.
    pub cpu_max: Option<u32>,
    /// `pids.max`: processes and threads together.
    pub pids_max: Option<u32>,
    /// `io.weight`, 1 to 10000 (the kernel's default is 100).
    pub io_weight: Option<u16>,
}

/// The `cpu.max` period kelpie writes: 100 ms, the kernel's default.
pub const CPU_PERIOD_MICROS: u32 = 100_000;

impl CgroupLimits {
    /// The keys that are set, by config name, with the controller each
    /// needs.
    pub fn keys(&self) -> Vec<(&'static str, &'static str)> {
        let mut keys = Vec::new();
        if self.memory_max.is_some() {
            keys.push(("memory_max", "memory"));
        }
        if self.memory_high.is_some() {
            keys.push(("memory_high", "memory"));
        }
        if self.cpu_max.is_some() {
            keys.push(("cpu_max", "cpu"));
        }
        if self.pids_max.is_some() {
            keys.push(("pids_max", "pids"));
        }
        if self.io_weight.is_some() {
            keys.push(("io_weight", "io"));
        }
        keys
    }

    pub fn is_empty(&self) -> bool {
        self.keys().is_empty()
    }
}

/// `memory_restart`: restart gracefully once the instance's memory has
/// stayed above `threshold` bytes for `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRestart {
    pub threshold: u64,
    pub after: Duration,
}

/// How long memory must stay above `memory_restart` when
/// `memory_restart_after` is not set.
pub const MEMORY_RESTART_AFTER: Duration = Duration::from_secs(30);

/// `cpu_max` as the config spells it back: a percentage of one CPU.
pub fn cpu_percent(quota_micros: u32) -> String {
    let tenths = u64::from(quota_micros) * 1000 / u64::from(CPU_PERIOD_MICROS);
    if tenths % 10 == 0 {
        format!("{}%", tenths / 10)
    } else {
        format!("{}.{}%", tenths / 10, tenths % 10)
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

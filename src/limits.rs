//! What a program may consume: so far the rlimits set before exec
//! (docs/configuration.md, `rlimits`).
//!
//! Only the values live here; `config/limits_section.rs` parses them and
//! `process.rs` sets the rlimits in the child.

/// One program's limits; `Limits::default()` limits nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Set in the child before exec, in this order.
    pub rlimits: Vec<Rlimit>,
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

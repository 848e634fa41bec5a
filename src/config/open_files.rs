//! How many file descriptors kelpie holds for a config: checked against
//! the hard `RLIMIT_NOFILE` by validation, and reserved by `fd_budget` at
//! start and on reload.
//!
//! Every running instance pins descriptors in kelpie for its whole life:
//! the read ends of its stdout and stderr pipes (none with `log.mode =
//! "discard"`), its notify socket, and a socket while an http/tcp probe
//! runs.

use super::{LogMode, ProbeConfig, ProbeKind, ProgramConfig};

/// kelpie's own descriptors whatever the config: the runtime and its
/// epoll/eventfds, signal pipes, the relay, the control socket and its
/// connections, the inotify instance, a spawn's transient pipe and cgroup
/// ends, stdio.
pub const BASE: u64 = 64;

/// Descriptors one instance of `program` holds while it runs.
pub fn per_instance(program: &ProgramConfig) -> u64 {
    // A discarded output goes to /dev/null: kelpie reads no pipe.
    let pipes = if matches!(program.log, LogMode::Discard) {
        0
    } else {
        2
    };
    let socket_probe = |probe: &Option<ProbeConfig>| {
        u64::from(matches!(
            probe.as_ref().map(|p| &p.kind),
            Some(ProbeKind::Http(_) | ProbeKind::Tcp(_))
        ))
    };
    let notify = u64::from(matches!(
        program.readiness.as_ref().map(|p| &p.kind),
        Some(ProbeKind::Notify)
    ));
    pipes + notify + socket_probe(&program.readiness) + socket_probe(&program.liveness)
}

/// Descriptors `program` holds with all its instances running: theirs, and
/// its log file.
pub fn for_program(program: &ProgramConfig) -> u64 {
    let log_file = u64::from(matches!(program.log, LogMode::File { .. }));
    u64::from(program.instances) * per_instance(program) + log_file
}

/// Descriptors kelpie cannot run `programs` without.
pub fn needed<'a>(programs: impl IntoIterator<Item = &'a ProgramConfig>) -> u64 {
    BASE + programs.into_iter().map(for_program).sum::<u64>()
}

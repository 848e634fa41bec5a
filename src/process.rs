//! The OS boundary for starting a program instance: the command line,
//! environment, working directory, credentials and the clean-up a child
//! needs between fork and exec.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use nix::unistd::{Gid, Uid};

use crate::config::template::{self, Values};
use crate::config::ProgramConfig;
use crate::limits::{Rlimit, RlimitResource, UNLIMITED};
use crate::spawn;

/// Variables kelpie's own service manager gave kelpie; a child must not
/// answer systemd (or inherit sockets) on kelpie's behalf.
const PRIVATE_VARIABLES: &[&str] = &[
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
];

/// Resolved identity to switch to in the child. Looked up in the parent:
/// NSS lookups allocate and take locks, which is not allowed after fork.
#[derive(Debug, Clone)]
pub struct Identity {
    pub uid: Uid,
    pub gid: Gid,
    pub groups: Vec<Gid>,
    pub name: String,
    pub home: std::path::PathBuf,
}

impl Identity {
    pub fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Option<Self>, String> {
        if user.is_none() && group.is_none() {
            return Ok(None);
        }
        let current = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten();
        let account = match user {
            Some(name) => Some(
                crate::os_lookup::resolve_user(name)
                    .ok_or_else(|| format!("unknown user \"{name}\""))?,
            ),
            None => current,
        };
        let gid = match group {
            Some(name) => {
                crate::os_lookup::resolve_group(name)
                    .ok_or_else(|| format!("unknown group \"{name}\""))?
                    .gid
            }
            None => account
                .as_ref()
                .map(|a| a.gid)
                .unwrap_or_else(nix::unistd::getegid),
        };
        let (uid, name, home) = match &account {
            Some(a) => (a.uid, a.name.clone(), a.dir.clone()),
            None => (nix::unistd::geteuid(), String::new(), "/".into()),
        };
        let groups = match (&account, user) {
            (Some(a), Some(_)) => {
                let cname = std::ffi::CString::new(a.name.as_str())
                    .map_err(|_| "user name contains NUL".to_string())?;
                nix::unistd::getgrouplist(&cname, gid)
                    .map_err(|e| format!("cannot list groups of \"{}\": {e}", a.name))?
            }
            _ => vec![gid],
        };
        Ok(Some(Self {
            uid,
            gid,
            groups,
            name,
            home,
        }))
    }
}

/// Set in every process kelpie starts: `<kelpie pid>.<actor incarnation>`.
/// Descendants inherit it even when they leave the process group, so a
/// stopped instance's escaped daemons (and, if kelpie dies, everything it
/// started) can be found in /proc.
pub const RUN_ID_VARIABLE: &str = "KELPIE_RUN_ID";

/// The `KELPIE_RUN_ID` of an instance actor's processes.
pub fn run_id(incarnation: u64) -> String {
    format!("{}.{incarnation}", std::process::id())
}

/// Everything needed to exec one instance.
pub struct Launch<'a> {
    pub program: &'a ProgramConfig,
    /// The program's command, or an exec probe's.
    pub argv: &'a [String],
    pub index: u32,
    /// `KELPIE_SLOT`: differs from the instance a rolling replacement
    /// replaces (see `config::template::Values`).
    pub slot: u32,
    /// `$NOTIFY_SOCKET` for programs using the notify readiness probe.
    pub notify_socket: Option<&'a Path>,
    pub identity: Option<&'a Identity>,
    /// `KELPIE_RUN_ID` (see `run_id`).
    pub run_id: &'a str,
    pub stdout: spawn::Stdio,
    pub stderr: spawn::Stdio,
    /// The `cgroup.procs` of the instance's cgroup, which the child enters
    /// before exec (see `crate::cgroup`).
    pub cgroup_procs: Option<std::os::fd::RawFd>,
}

impl Launch<'_> {
    /// What `${KELPIE_INSTANCE}` and `${KELPIE_SLOT}` stand for in this
    /// instance's environment values.
    fn values(&self) -> Values {
        Values {
            instance: self.index,
            slot: self.slot,
        }
    }
}

/// Builds the command. The child gets its own process group, an empty
/// signal mask, default signal dispositions, the configured umask and
/// credentials, and no file descriptors beyond 0/1/2.
pub fn command(launch: Launch<'_>) -> spawn::Command {
    let program = launch.program;
    // Resolving the path here, once, spares the child a failed execve per
    // PATH entry and lets it be spawned without a PATH search, whatever PATH
    // the program's environment sets.
    let path_var = program
        .environment
        .get("PATH")
        .map(|path| template::expand(path, launch.values()))
        .or_else(|| std::env::var("PATH").ok());
    let argv = launch.argv;
    let resolved = crate::os_lookup::find_executable(
        &argv[0],
        program.directory.as_deref(),
        path_var.as_deref(),
    );
    let env = environment(&launch);

    // A child that needs no code between fork and exec is started by
    // `posix_spawn` (vfork semantics: no page-table copy of kelpie), which
    // matters when hundreds of programs start at once. It cannot run code
    // before exec, so what it needs is prepared in kelpie: inherited fds are
    // made close-on-exec at startup (`seal_inherited_fds`), and the spawn
    // itself clears the signal mask and resets every disposition (see
    // `crate::spawn`). Only umask, rlimits, entering a cgroup and
    // credentials need the fork path's hook. An executable that did not
    // resolve goes through std, whose PATH search gives the same error exec
    // would.
    let needs_hook = program.umask.is_some()
        || launch.identity.is_some()
        || !program.limits.rlimits.is_empty()
        || launch.cgroup_procs.is_some();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if !needs_hook {
        if let Ok(executable) = resolved {
            return spawn::Command::Direct(spawn::Direct {
                executable,
                argv: argv.to_vec(),
                env,
                directory: program.directory.clone(),
                stdout: launch.stdout,
                stderr: launch.stderr,
            });
        }
    }

    let executable = resolved.unwrap_or_else(|_| std::path::PathBuf::from(&argv[0]));
    let mut cmd = Command::new(executable);
    cmd.arg0(&argv[0]);
    cmd.args(&argv[1..]);
    for (key, value) in env {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    if let Some(dir) = &program.directory {
        cmd.current_dir(dir);
    }
    cmd.stdin(Stdio::null());
    cmd.stdout(launch.stdout.to_std());
    cmd.stderr(launch.stderr.to_std());
    // setpgid(0, 0) runs in the child before any pre_exec hook.
    cmd.process_group(0);

    if !needs_hook {
        // std's posix_spawn: clears the mask but leaves glibc's signals 32
        // and 33 ignored; only on non-glibc targets or for an executable
        // that did not resolve.
        return cmd.into();
    }
    let umask = program.umask;
    let rlimits: Vec<(libc::__rlimit_resource_t, libc::rlimit)> = program
        .limits
        .rlimits
        .iter()
        .map(|limit| (rlimit_resource(limit.resource), rlimit_value(limit)))
        .collect();
    let identity = launch.identity.map(|i| (i.uid, i.gid, i.groups.clone()));
    let cgroup_procs = launch.cgroup_procs;
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed. It uses only raw syscalls
    // (write, sigprocmask, umask, setrlimit, setgroups/setgid/setuid,
    // close_range, fcntl) on data prepared before the fork; nothing
    // allocates, locks or touches the environment. nix converts errors to
    // io::Error without allocating.
    unsafe {
        cmd.pre_exec(move || {
            // First, while the child is still kelpie's copy with kelpie's
            // credentials: everything it forks from here on is contained.
            // "0" means the writing process; the fd was opened by kelpie,
            // whose credentials the kernel checks for the move.
            if let Some(fd) = cgroup_procs {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            // tokio's signal handling never blocks signals, but a parent of
            // kelpie may have; the child must start with a clean mask.
            sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
            reset_signal_dispositions();
            if let Some(mask) = umask {
                nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
                    mask as libc::mode_t,
                ));
            }
            // Before the credentials change: raising a hard limit needs
            // root, and the program must not be able to raise it back.
            for (resource, value) in &rlimits {
                // `value` was prepared before the fork (covered by the
                // SAFETY note above: setrlimit is a raw syscall).
                if libc::setrlimit(*resource, value) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some((uid, gid, groups)) = &identity {
                // Order matters: supplementary groups and gid can only be
                // changed while still root.
                nix::unistd::setgroups(groups)?;
                nix::unistd::setgid(*gid)?;
                nix::unistd::setuid(*uid)?;
            }
            close_inherited_fds();
            Ok(())
        });
    }
    cmd.into()
}

fn rlimit_resource(resource: RlimitResource) -> libc::__rlimit_resource_t {
    match resource {
        RlimitResource::As => libc::RLIMIT_AS,
        RlimitResource::Core => libc::RLIMIT_CORE,
        RlimitResource::Cpu => libc::RLIMIT_CPU,
        RlimitResource::Data => libc::RLIMIT_DATA,
        RlimitResource::Fsize => libc::RLIMIT_FSIZE,
        RlimitResource::Memlock => libc::RLIMIT_MEMLOCK,
        RlimitResource::Msgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitResource::Nice => libc::RLIMIT_NICE,
        RlimitResource::Nofile => libc::RLIMIT_NOFILE,
        RlimitResource::Nproc => libc::RLIMIT_NPROC,
        RlimitResource::Rss => libc::RLIMIT_RSS,
        RlimitResource::Rtprio => libc::RLIMIT_RTPRIO,
        RlimitResource::Rttime => libc::RLIMIT_RTTIME,
        RlimitResource::Sigpending => libc::RLIMIT_SIGPENDING,
        RlimitResource::Stack => libc::RLIMIT_STACK,
    }
}

fn rlimit_value(limit: &Rlimit) -> libc::rlimit {
    let kernel = |amount: u64| {
        if amount == UNLIMITED {
            libc::RLIM_INFINITY
        } else {
            amount as libc::rlim_t
        }
    };
    libc::rlimit {
        rlim_cur: kernel(limit.soft),
        rlim_max: kernel(limit.hard),
    }
}

/// The changes to kelpie's environment a program gets, in order (`None`
/// removes): both spawn paths apply the same list.
fn environment(launch: &Launch<'_>) -> Vec<(OsString, Option<OsString>)> {
    let program = launch.program;
    let mut env: Vec<(OsString, Option<OsString>)> = PRIVATE_VARIABLES
        .iter()
        .map(|name| (OsString::from(name), None))
        .collect();
    let mut set = |key: &str, value: OsString| env.push((key.into(), Some(value)));
    if let Some(identity) = launch.identity {
        if !identity.name.is_empty() {
            set("USER", identity.name.as_str().into());
            set("LOGNAME", identity.name.as_str().into());
            set("HOME", identity.home.clone().into_os_string());
        }
    }
    for (key, value) in &program.environment {
        set(key, template::expand(value, launch.values()).into());
    }
    set("KELPIE_PROGRAM", program.name.as_str().into());
    set("KELPIE_INSTANCE", launch.index.to_string().into());
    set("KELPIE_SLOT", launch.slot.to_string().into());
    set(RUN_ID_VARIABLE, launch.run_id.into());
    if let Some(socket) = launch.notify_socket {
        set("NOTIFY_SOCKET", socket.as_os_str().to_owned());
    }
    env
}

/// Handled signals revert to their default on exec, but ignored ones stay
/// ignored: a SIGQUIT or SIGHUP that kelpie's own parent chose to ignore
/// (`nohup`, a shell's background job) must not be ignored by programs.
///
/// glibc reserves the first two real-time signals for itself and refuses to
/// change them; every other signal, real-time ones included, is reset.
pub fn reset_signal_dispositions() {
    for signal in 1..=libc::SIGRTMAX() {
        let reserved = signal == libc::SIGRTMIN() - 2 || signal == libc::SIGRTMIN() - 1;
        if signal == libc::SIGKILL || signal == libc::SIGSTOP || reserved {
            continue;
        }
        // SAFETY: signal(2) with SIG_DFL is async-signal-safe and only
        // changes this (child) process's disposition table.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
        }
    }
}

/// Marks every inherited fd above 2 close-on-exec in kelpie itself, once at
/// startup before any thread exists: fds a parent leaked to kelpie must not
/// reach programs spawned without a pre_exec hook.
pub fn seal_inherited_fds() {
    close_inherited_fds();
}

/// Marks every fd above 2 close-on-exec. kelpie opens its own fds with
/// CLOEXEC, but it may have inherited open fds from whoever started it, and
/// those must not leak into programs. Closing is wrong here: std reports
/// exec failures to the parent through a CLOEXEC pipe that must stay open
/// until exec.
fn close_inherited_fds() {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes fd flags of this (child) process.
    let done = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    } == 0;
    if !done {
        // Kernels before 5.11: walk a bounded range.
        for fd in 3..4096 {
            // SAFETY: F_SETFD on a possibly-closed fd just fails with EBADF.
            unsafe {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
    }
}

/// The error a user sees when an instance cannot be started.
pub fn spawn_error(program: &str, err: &io::Error, directory: Option<&Path>) -> String {
    let reason = crate::os_lookup::io_reason(err);
    match err.kind() {
        io::ErrorKind::NotFound => match directory {
            Some(dir) if !dir.is_dir() => format!(
                "cannot start: directory \"{}\" does not exist",
                dir.display()
            ),
            _ => format!("cannot start \"{program}\": command not found"),
        },
        io::ErrorKind::PermissionDenied => {
            format!("cannot start \"{program}\": permission denied (not executable?)")
        }
        _ => format!("cannot start \"{program}\": {reason}"),
    }
}

/// Environment variable names (never values) for logs.
pub fn env_names(env: &BTreeMap<String, String>) -> String {
    env.keys().cloned().collect::<Vec<_>>().join(",")
}

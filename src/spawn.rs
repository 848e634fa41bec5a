//! Starting one child process, by std's `Command` or, on glibc, by calling
//! `posix_spawn` directly.
//!
//! Why not std for everything: a child that needs no code between fork and
//! exec is spawned with `posix_spawn` (glibc: `clone(CLONE_VM|CLONE_VFORK)`,
//! no copy of kelpie's page tables), and glibc's `posix_spawn` child sets
//! glibc's internal signals 32 and 33 (SIGCANCEL, SIGSETXID) to SIG_IGN
//! unless they are in the `POSIX_SPAWN_SETSIGDEF` set. Exec keeps SIG_IGN,
//! and std puts only SIGPIPE in that set, with no way to add more. The
//! direct call here puts every signal in it, so the child starts with every
//! disposition at its default, including SIGTTIN/SIGTTOU/SIGTSTP that a
//! parent of kelpie may have ignored.
//!
//! Either way the caller gets a `Spawned`: the pid to register with the
//! reaper and the read ends of the output pipes. Nothing here waits.

use std::io;
use std::os::fd::OwnedFd;

/// What a child's stdout or stderr is connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdio {
    /// `/dev/null`.
    Null,
    /// A pipe whose read end is returned in `Spawned`.
    Piped,
}

impl Stdio {
    pub fn null() -> Self {
        Self::Null
    }

    pub fn piped() -> Self {
        Self::Piped
    }

    pub(crate) fn to_std(self) -> std::process::Stdio {
        match self {
            Self::Null => std::process::Stdio::null(),
            Self::Piped => std::process::Stdio::piped(),
        }
    }
}

/// A started child. Dropping it neither waits nor kills: the exit status
/// belongs to the reaper.
#[derive(Debug)]
pub struct Spawned {
    pub pid: i32,
    /// The read end of the child's stdout, when it was `Stdio::Piped`.
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// How to start one child.
pub enum Command {
    /// std's spawn: the fork path when a `pre_exec` hook is set, otherwise
    /// std's own `posix_spawn` (with 32 and 33 left ignored).
    Std(std::process::Command),
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    Direct(Direct),
}

impl From<std::process::Command> for Command {
    fn from(command: std::process::Command) -> Self {
        Self::Std(command)
    }
}

impl Command {
    pub fn spawn(&mut self) -> io::Result<Spawned> {
        match self {
            Self::Std(command) => {
                let mut child = command.spawn()?;
                Ok(Spawned {
                    // pid_max is at most 2^22: a pid always fits.
                    pid: child.id() as i32,
                    stdout: child.stdout.take().map(OwnedFd::from),
                    stderr: child.stderr.take().map(OwnedFd::from),
                })
            }
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            Self::Direct(direct) => direct.spawn(),
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub use direct::Direct;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod direct {
    use std::ffi::{CString, OsString};
    use std::io;
    use std::mem::MaybeUninit;
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::PathBuf;

    use super::{Spawned, Stdio};

    /// A child started by `posix_spawn` itself: stdin on `/dev/null`, its
    /// own process group, an empty signal mask, every signal at its default
    /// disposition, and the environment std would have built from the same
    /// changes.
    pub struct Direct {
        /// Resolved already: a path, never searched in PATH.
        pub executable: PathBuf,
        /// `argv[0]` included.
        pub argv: Vec<String>,
        /// Changes to kelpie's environment, applied in order (`None`
        /// removes), read when the child is spawned as std does.
        pub env: Vec<(OsString, Option<OsString>)>,
        pub directory: Option<PathBuf>,
        pub stdout: Stdio,
        pub stderr: Stdio,
    }

    impl Direct {
        pub(super) fn spawn(&self) -> io::Result<Spawned> {
            let executable = c_string(self.executable.as_os_str().as_bytes())?;
            let argv = self
                .argv
                .iter()
                .map(|arg| c_string(arg.as_bytes()))
                .collect::<io::Result<Vec<_>>>()?;
            let envp = environment(&self.env)?;
            let directory = self
                .directory
                .as_ref()
                .map(|dir| c_string(dir.as_os_str().as_bytes()))
                .transpose()?;
            // CLOEXEC: the other end must not leak into children spawned
            // concurrently; the dup2 onto 1/2 clears the flag in this child.
            let stdout = pipe_if(self.stdout)?;
            let stderr = pipe_if(self.stderr)?;

            let mut actions = FileActions::new()?;
            if let Some(dir) = &directory {
                actions.chdir(dir)?;
            }
            actions.open(0, c"/dev/null", libc::O_RDONLY)?;
            for (target, pipe) in [(1, &stdout), (2, &stderr)] {
                match pipe {
                    Some((_, write)) => actions.dup2(write, target)?,
                    None => actions.open(target, c"/dev/null", libc::O_WRONLY)?,
                }
            }
            let attributes = Attributes::new()?;

            let argv_ptrs = null_terminated(&argv);
            let envp_ptrs = null_terminated(&envp);
            let mut pid: libc::pid_t = 0;
            // SAFETY: every pointer is valid for the call: the CStrings and
            // pointer arrays (NULL-terminated) live until it returns, and the
            // attributes and file actions were initialised. glibc's child
            // shares kelpie's memory until exec but runs only glibc's own
            // code (the file actions, signal resets, execve); a failed exec
            // or file action comes back as the return value, and glibc
            // reaps that child itself before returning, which is why the
            // caller must hold the reaper's gate.
            let rc = unsafe {
                libc::posix_spawn(
                    &mut pid,
                    executable.as_ptr(),
                    actions.as_ptr(),
                    attributes.as_ptr(),
                    argv_ptrs.as_ptr(),
                    envp_ptrs.as_ptr(),
                )
            };
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            // The write ends close here: the child holds its own copies, and
            // end-of-file on the read end must mean the child (and whatever
            // inherited them) is done.
            Ok(Spawned {
                pid,
                stdout: stdout.map(|(read, _)| read),
                stderr: stderr.map(|(read, _)| read),
            })
        }
    }

    fn c_string(bytes: &[u8]) -> io::Result<CString> {
        // The same error std's Command reports for a NUL in its input.
        CString::new(bytes).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "nul byte found in provided data",
            )
        })
    }

    /// kelpie's environment with `changes` applied, as `KEY=VALUE` strings:
    /// the variables std would pass (std also sorts them by key, which
    /// nothing needs and which costs code that every spawn would touch).
    fn environment(changes: &[(OsString, Option<OsString>)]) -> io::Result<Vec<CString>> {
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        for (key, value) in changes {
            env.retain(|(name, _)| name != key);
            if let Some(value) = value {
                env.push((key.clone(), value.clone()));
            }
        }
        env.into_iter()
            .map(|(key, value)| {
                let mut entry = key.into_vec();
                entry.push(b'=');
                entry.extend_from_slice(value.as_bytes());
                c_string(&entry)
            })
            .collect()
    }

    fn null_terminated(strings: &[CString]) -> Vec<*mut libc::c_char> {
        strings
            .iter()
            .map(|s| s.as_ptr().cast_mut())
            .chain(std::iter::once(std::ptr::null_mut()))
            .collect()
    }

    /// `(read end, write end)` of a close-on-exec pipe, for `Stdio::Piped`.
    fn pipe_if(stdio: Stdio) -> io::Result<Option<(OwnedFd, OwnedFd)>> {
        match stdio {
            Stdio::Null => Ok(None),
            Stdio::Piped => nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map(Some)
                .map_err(io::Error::from),
        }
    }

    /// posix_spawn functions return the error number instead of setting
    /// errno.
    fn check(rc: libc::c_int) -> io::Result<()> {
        match rc {
            0 => Ok(()),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }

    struct FileActions(libc::posix_spawn_file_actions_t);

    impl FileActions {
        fn new() -> io::Result<Self> {
            let mut actions = MaybeUninit::uninit();
            // SAFETY: init writes the whole object; it is only used (and
            // destroyed) after init succeeded.
            unsafe {
                check(libc::posix_spawn_file_actions_init(actions.as_mut_ptr()))?;
                Ok(Self(actions.assume_init()))
            }
        }

        fn as_ptr(&self) -> *const libc::posix_spawn_file_actions_t {
            &self.0
        }

        fn chdir(&mut self, dir: &CString) -> io::Result<()> {
            // SAFETY: initialised actions; glibc copies the path.
            check(unsafe { libc::posix_spawn_file_actions_addchdir_np(&mut self.0, dir.as_ptr()) })
        }

        fn open(
            &mut self,
            fd: libc::c_int,
            path: &std::ffi::CStr,
            flags: libc::c_int,
        ) -> io::Result<()> {
            // SAFETY: initialised actions; glibc copies the path.
            check(unsafe {
                libc::posix_spawn_file_actions_addopen(&mut self.0, fd, path.as_ptr(), flags, 0)
            })
        }

        fn dup2(&mut self, from: &OwnedFd, to: libc::c_int) -> io::Result<()> {
            // SAFETY: initialised actions; `from` stays open until the spawn
            // returns (the caller owns it).
            check(unsafe {
                libc::posix_spawn_file_actions_adddup2(&mut self.0, from.as_raw_fd(), to)
            })
        }
    }

    impl Drop for FileActions {
        fn drop(&mut self) {
            // SAFETY: initialised in `new`, destroyed once.
            unsafe {
                libc::posix_spawn_file_actions_destroy(&mut self.0);
            }
        }
    }

    struct Attributes(libc::posix_spawnattr_t);

    impl Attributes {
        /// Own process group (pgid = the child's pid, as std's
        /// `process_group(0)`), an empty signal mask, every signal at its
        /// default disposition.
        fn new() -> io::Result<Self> {
            let mut attributes = MaybeUninit::uninit();
            // SAFETY: init writes the whole object; it is only used (and
            // destroyed) after init succeeded.
            let mut attributes = unsafe {
                check(libc::posix_spawnattr_init(attributes.as_mut_ptr()))?;
                Self(attributes.assume_init())
            };
            let flags = libc::POSIX_SPAWN_SETPGROUP
                | libc::POSIX_SPAWN_SETSIGMASK
                | libc::POSIX_SPAWN_SETSIGDEF;
            let empty = empty_set();
            let every = every_signal();
            // SAFETY: initialised attributes; the sets are copied.
            unsafe {
                check(libc::posix_spawnattr_setflags(
                    &mut attributes.0,
                    flags as libc::c_short,
                ))?;
                check(libc::posix_spawnattr_setpgroup(&mut attributes.0, 0))?;
                check(libc::posix_spawnattr_setsigmask(&mut attributes.0, &empty))?;
                check(libc::posix_spawnattr_setsigdefault(
                    &mut attributes.0,
                    &every,
                ))?;
            }
            Ok(attributes)
        }

        fn as_ptr(&self) -> *const libc::posix_spawnattr_t {
            &self.0
        }
    }

    impl Drop for Attributes {
        fn drop(&mut self) {
            // SAFETY: initialised in `new`, destroyed once.
            unsafe {
                libc::posix_spawnattr_destroy(&mut self.0);
            }
        }
    }

    fn empty_set() -> libc::sigset_t {
        // SAFETY: an all-zero sigset_t is the empty set in glibc's layout
        // (an array of unsigned long bit words).
        unsafe { std::mem::zeroed() }
    }

    /// Signals 1..=SIGRTMAX, glibc's internal 32 and 33 included.
    /// `sigaddset` and `sigfillset` refuse or skip those two, so the bits are
    /// set directly; glibc's `posix_spawn` child tests them with its
    /// internal `__sigismember`, which does not. SIGKILL and SIGSTOP are in
    /// the set too: resetting them fails in the child, which glibc ignores.
    pub(super) fn every_signal() -> libc::sigset_t {
        const WORD_BITS: usize = libc::c_ulong::BITS as usize;
        const WORDS: usize =
            std::mem::size_of::<libc::sigset_t>() / std::mem::size_of::<libc::c_ulong>();
        let mut set = empty_set();
        // SAFETY: glibc defines sigset_t as `unsigned long __val[WORDS]`,
        // signal n being bit (n-1) % WORD_BITS of word (n-1) / WORD_BITS
        // (its __sigmask/__sigword); the cast views exactly that array.
        let words = unsafe { &mut *std::ptr::addr_of_mut!(set).cast::<[libc::c_ulong; WORDS]>() };
        for signal in 1..=libc::SIGRTMAX() {
            let bit = (signal - 1) as usize;
            words[bit / WORD_BITS] |= 1 << (bit % WORD_BITS);
        }
        set
    }
}

#[cfg(test)]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod tests {
    use std::io::Read;
    use std::path::{Path, PathBuf};

    use super::direct::every_signal;
    use super::*;

    #[test]
    fn every_signal_includes_the_reserved_and_real_time_ones() {
        let set = every_signal();
        for signal in 1..=libc::SIGRTMAX() {
            // SAFETY: sigismember only reads the set.
            let member = unsafe { libc::sigismember(&set, signal) };
            assert_eq!(member, 1, "signal {signal} missing from the set");
        }
    }

    fn sh(script: &str, directory: Option<&Path>) -> Direct {
        Direct {
            executable: PathBuf::from("/bin/sh"),
            argv: vec!["kelpie-test-sh".into(), "-c".into(), script.into()],
            env: vec![
                ("KELPIE_SPAWN_TEST".into(), Some("set".into())),
                ("HOME".into(), None),
            ],
            directory: directory.map(Path::to_path_buf),
            stdout: Stdio::Piped,
            stderr: Stdio::Null,
        }
    }

    /// argv[0], the environment changes, the directory and the stdout pipe
    /// reach the child; end-of-file on the pipe means the child is done.
    #[test]
    fn a_direct_spawn_runs_with_what_it_was_given() {
        let dir = tempfile::tempdir().unwrap();
        let script = "echo \"$0 ${KELPIE_SPAWN_TEST-unset} ${HOME-unset} $(pwd)\"; cat";
        let mut command = Command::Direct(sh(script, Some(dir.path())));
        let mut child = command.spawn().unwrap();
        assert!(child.stderr.is_none());
        let mut out = String::new();
        std::fs::File::from(child.stdout.take().unwrap())
            .read_to_string(&mut out)
            .unwrap();
        let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child.pid), None);
        assert_eq!(
            status.unwrap(),
            nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(child.pid), 0),
            "`cat` on stdin must see /dev/null's end-of-file"
        );
        let canonical = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(
            out,
            format!("kelpie-test-sh set unset {}\n", canonical.display())
        );
    }

    /// A failed exec or chdir comes back as the errno std would report, so
    /// `process::spawn_error` words it the same.
    #[test]
    fn failures_are_the_errors_exec_and_chdir_give() {
        let dir = tempfile::tempdir().unwrap();
        let spawn = |direct: Direct| Command::Direct(direct).spawn();

        let mut missing = sh("", None);
        missing.executable = dir.path().join("no-such-binary");
        let err = spawn(missing).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");

        let gone = dir.path().join("gone");
        let err = spawn(sh("true", Some(&gone))).unwrap_err();
        assert_eq!(
            crate::process::spawn_error("sh", &err, Some(&gone)),
            format!(
                "cannot start: directory \"{}\" does not exist",
                gone.display()
            )
        );

        let data = dir.path().join("data.txt");
        std::fs::write(&data, "not a program").unwrap();
        let mut not_executable = sh("", None);
        not_executable.executable = data;
        let err = spawn(not_executable).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");

        let mut nul = sh("", None);
        nul.argv.push("a\0b".into());
        let err = spawn(nul).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    }
}

use super::*;

#[test]
fn synchronous_and_reserved_signals_are_not_forwarded() {
    for signal in [
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGFPE,
        Signal::SIGILL,
        Signal::SIGTRAP,
        Signal::SIGSYS,
        Signal::SIGABRT,
        Signal::SIGCHLD,
        Signal::SIGKILL,
        Signal::SIGSTOP,
        Signal::SIGPIPE,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
    ] {
        assert!(!forwarded(signal), "{signal}");
    }
    for signal in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGCONT,
        Signal::SIGTSTP,
        Signal::SIGALRM,
    ] {
        assert!(forwarded(signal), "{signal}");
    }
}

#[test]
fn exit_codes_are_a_shells() {
    assert_eq!(exit_code(ExitStatus::Code(0)), 0);
    assert_eq!(exit_code(ExitStatus::Code(255)), 255);
    assert_eq!(exit_code(ExitStatus::Signal(libc::SIGTERM)), 143);
    assert_eq!(exit_code(ExitStatus::Signal(libc::SIGKILL)), 137);
}

#[test]
fn restart_policies() {
    use RestartPolicy::*;
    let ok = ExitStatus::Code(0);
    let failed = ExitStatus::Code(1);
    let killed = ExitStatus::Signal(libc::SIGKILL);
    let r = restarts;
    assert!(!r(Never, ok) && !r(Never, failed) && !r(Never, killed));
    assert!(!r(OnFailure, ok) && r(OnFailure, failed) && r(OnFailure, killed));
    assert!(r(Always, ok) && r(Always, failed) && r(Always, killed));
}

#[test]
fn spawn_errors_map_to_shell_codes() {
    let not_found = io::Error::from_raw_os_error(libc::ENOENT);
    assert_eq!(
        classify_spawn_error("nope", &not_found),
        SpawnFailure::Final(127, "kelpie: nope: command not found".into())
    );
    assert_eq!(
        classify_spawn_error("/no/such/file", &not_found),
        SpawnFailure::Final(
            127,
            "kelpie: /no/such/file: no such file or directory".into()
        )
    );
    let denied = io::Error::from_raw_os_error(libc::EACCES);
    assert_eq!(
        classify_spawn_error("./data.txt", &denied),
        SpawnFailure::Final(126, "kelpie: ./data.txt: permission denied".into())
    );
    let format = io::Error::from_raw_os_error(libc::ENOEXEC);
    assert!(matches!(
        classify_spawn_error("./blob", &format),
        SpawnFailure::Final(126, _)
    ));
    let again = io::Error::from_raw_os_error(libc::EAGAIN);
    assert!(matches!(
        classify_spawn_error("sh", &again),
        SpawnFailure::Transient(message) if message.starts_with("kelpie: cannot start sh: ")
    ));
}

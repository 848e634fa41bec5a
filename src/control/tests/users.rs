//! Only the socket's owner is served: other users get 403 or cannot connect at all.

use super::*;

#[test]
#[ignore = "helper run by other_users_are_refused (as another uid)"]
fn other_user_helper() {
    let Some(path) = std::env::var_os(HELPER_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let line = runtime.block_on(async {
        match Client::new(PathBuf::from(path))
            .request(Method::GET, "/echo", None)
            .await
        {
            Ok(reply) => match reply.json::<serde_json::Value>() {
                Err(ApiError::Api { status, error }) => {
                    format!("status={status} code={}", error.code)
                }
                other => format!("unexpected={other:?}"),
            },
            Err(err) => format!("exit={} error={err}", err.exit_code()),
        }
    });
    println!("HELPER-RESULT {line}");
}

/// Why the cross-user tests cannot run here, if they cannot.
fn cannot_switch_users() -> Option<&'static str> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not running as root, cannot run a client as another uid");
    }
    let found = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("setpriv").is_file())
    });
    if !found {
        return Some("setpriv (util-linux) is not on PATH");
    }
    None
}

/// Runs [`other_user_helper`] as uid/gid 65534 against `socket` and returns
/// its result line.
async fn as_nobody(socket: &Path) -> String {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args([
            "--exact",
            "control::tests::users::other_user_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run setpriv");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let read = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        let mut err = String::new();
        let _ = stdout.read_to_string(&mut out);
        let _ = stderr.read_to_string(&mut err);
        (out, err)
    });
    let (out, err) = match tokio::time::timeout(Duration::from_secs(60), read).await {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
            panic!("timed out after 60 s waiting for the helper client (uid 65534) to finish");
        }
    };
    let _ = nix::sys::wait::waitpid(pid, None);
    out.lines()
        // libtest prints the test's name on the same line.
        .find_map(|line| line.split_once("HELPER-RESULT "))
        .map(|(_, result)| result.to_string())
        .unwrap_or_else(|| {
            panic!("the helper client did not report (can uid 65534 run {exe:?}?)\nstdout:\n{out}\nstderr:\n{err}")
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_users_are_refused_with_403() {
    if let Some(reason) = cannot_switch_users() {
        println!("SKIPPED: {reason}");
        return;
    }
    // The socket must let uid 65534 connect, so the refusal is kelpie's.
    let fixture = Fixture::start_with(Limits::control(), 0o666).await;
    let dir = fixture.path.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let result = as_nobody(&fixture.path).await;
    assert_eq!(result, "status=403 code=forbidden");
    // The owner is still served.
    fixture.echo().await;
    fixture.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_of_another_user_is_permission_denied() {
    if let Some(reason) = cannot_switch_users() {
        println!("SKIPPED: {reason}");
        return;
    }
    let fixture = Fixture::start_with(Limits::control(), 0o600).await;
    let dir = fixture.path.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let result = as_nobody(&fixture.path).await;
    assert_eq!(
        result,
        format!(
            "exit=1 error=permission denied connecting to {}; the control socket belongs to another user (run as that user or root)",
            fixture.path.display()
        )
    );
    fixture.stop().await;
}

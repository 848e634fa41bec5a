//! The control socket's security (docs/security.md) against a running `kelpie run`:
//! its file mode and owner, other uids refused (by the file mode, and by
//! SO_PEERCRED when the mode lets them connect), planted symlinks and live
//! sockets never taken over, malformed and oversized requests answered with
//! JSON errors without harming supervision, and no control action on the
//! TCP `http_listen` port.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{
    alive, collect_child, http, parse_reply, secs, wait_until, Ctl, Kelpie, Options, Reply, BIN,
};

/// One long-running program; no TCP listener.
const ONE_PROGRAM: &str = r#"
[supervisor]
http_listen = "off"

[program.web]
command = ["sleep", "1000"]
start_seconds = "0s"
"#;

/// The uid (and gid) the "other user" runs as.
const NOBODY: u32 = 65534;

/// Permission bits of `path` itself (never following a symlink).
fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// `web`'s pid once it runs, as the status board shows it. (The
/// `program_running` log line can come before the board is updated.)
fn running_pid(k: &Kelpie) -> i64 {
    let event = k.wait_event("program_running", "web", secs(10.0));
    let pid = event["pid"].as_i64().expect("pid of program_running");
    wait_until(
        &format!("status to show web running as pid {pid}"),
        secs(10.0),
        || {
            (k.state("web").as_deref() == Some("running") && k.pids("web") == vec![Some(pid)])
                .then_some(())
        },
    );
    pid
}

/// `web` still runs as the same process.
#[track_caller]
fn assert_still_running(k: &Kelpie, pid: i64) {
    assert_eq!(k.state("web").as_deref(), Some("running"));
    assert_eq!(k.pids("web"), vec![Some(pid)], "web was replaced");
    assert!(alive(i32::try_from(pid).unwrap()), "web ({pid}) is gone");
    assert!(alive(k.pid()), "kelpie is gone");
}

// ---------------------------------------------------------------------------
// 1. The socket file
// ---------------------------------------------------------------------------

#[test]
fn the_socket_has_the_configured_mode_and_goes_away_with_kelpie() {
    for (setting, expected) in [("", 0o600), ("socket_mode = \"0660\"\n", 0o660)] {
        let mut k = Kelpie::start(&format!(
            "[supervisor]\nhttp_listen = \"off\"\n{setting}\n\
             [program.web]\ncommand = [\"sleep\", \"1000\"]\n"
        ));
        k.wait_control();
        let socket = k.socket();
        let meta = std::fs::symlink_metadata(&socket).unwrap();
        assert!(meta.file_type().is_socket(), "{socket:?} is not a socket");
        assert_eq!(
            meta.mode() & 0o7777,
            expected,
            "mode of {socket:?} with {setting:?}: {:o}",
            meta.mode() & 0o7777
        );
        assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw(), "owner");
        assert_eq!(meta.gid(), nix::unistd::getegid().as_raw(), "group");
        // It is the socket kelpie serves.
        k.ctl(&["status"]).expect(0);

        k.signal("TERM");
        assert!(k.wait_exit(secs(15.0)).success(), "kelpie failed on TERM");
        match std::fs::symlink_metadata(&socket) {
            Err(err) if err.kind() == ErrorKind::NotFound => {}
            other => panic!("{socket:?} is still there after kelpie exited: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// 2. Other uids
// ---------------------------------------------------------------------------

/// Why the tests that switch uids cannot run here, if they cannot.
fn cannot_switch_uids() -> Option<&'static str> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not running as root; cannot act as another uid");
    }
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("setpriv").is_file()));
    if !found {
        return Some("setpriv is not installed");
    }
    None
}

macro_rules! skip_unless_uids_switch {
    () => {
        if let Some(reason) = cannot_switch_uids() {
            println!("SKIPPED: {reason}");
            return;
        }
    };
}

/// The test's directory made traversable by everyone, and a copy of the
/// kelpie binary in it that every uid may execute (the build directory
/// might not be reachable for them).
fn binary_for_others(k: &Kelpie) -> PathBuf {
    std::fs::set_permissions(k.dir(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let copy = k.path("kelpie-for-others");
    // Copied by a process of its own: a file this (multi-threaded) test
    // process wrote itself could still be open for writing in a child
    // another test is forking, and exec would fail with ETXTBSY.
    let mut cp = Command::new("cp")
        .arg(BIN)
        .arg(&copy)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cp");
    let (_, stderr, status) = collect_child(&mut cp, secs(60.0), "cp of the kelpie binary");
    assert!(status.success(), "cp {BIN} {copy:?}: {stderr}");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

/// Runs `BIN ARGS… -s SOCKET` as `uid`:`uid` without supplementary groups.
fn ctl_as(uid: u32, bin: &Path, socket: &Path, args: &[&str]) -> Ctl {
    let mut child = Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg("--clear-groups")
        .arg(bin)
        .args(args)
        .arg("-s")
        .arg(socket)
        .current_dir("/")
        .env_remove("KELPIE_SOCKET")
        .env_remove("KELPIE_CONFIG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start setpriv");
    let (stdout, stderr, status) = collect_child(
        &mut child,
        secs(60.0),
        &format!("kelpie {args:?} as uid {uid}"),
    );
    Ctl {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

#[test]
fn another_uid_cannot_connect_to_the_default_socket() {
    skip_unless_uids_switch!();
    let k = Kelpie::start(ONE_PROGRAM);
    k.wait_control();
    let pid = running_pid(&k);
    let bin = binary_for_others(&k);
    let socket = k.socket();
    assert_eq!(mode_of(&socket), 0o600);

    let out = ctl_as(NOBODY, &bin, &socket, &["status"]).expect(1);
    assert_eq!(
        out.stderr,
        format!(
            "kelpie: permission denied connecting to {}; the control socket belongs to another user (run as that user or root)\n",
            socket.display()
        ),
        "{out:#?}"
    );
    assert_eq!(out.stdout, "");
    let out = ctl_as(NOBODY, &bin, &socket, &["stop", "web"]).expect(1);
    assert!(out.stderr.contains("permission denied"), "{out:#?}");

    // The kernel refused them; the owner is served as before.
    k.ctl(&["status"]).expect(0);
    assert_still_running(&k, pid);
}

#[test]
fn another_uid_is_forbidden_even_when_the_mode_lets_it_connect() {
    skip_unless_uids_switch!();
    let k = Kelpie::start(
        r#"
[supervisor]
http_listen = "off"
socket_mode = "0666"

[program.web]
command = ["sleep", "1000"]
start_seconds = "0s"
"#,
    );
    k.wait_control();
    let pid = running_pid(&k);
    let bin = binary_for_others(&k);
    let socket = k.socket();
    assert_eq!(mode_of(&socket), 0o666);
    let me = nix::unistd::geteuid().as_raw();
    let message =
        format!("uid {NOBODY} may not use this control socket; only uid {me} and root may");

    let out = ctl_as(NOBODY, &bin, &socket, &["status"]).expect(1);
    assert_eq!(out.stderr, format!("kelpie: {message}\n"), "{out:#?}");
    assert_eq!(out.stdout, "", "{out:#?}");
    let refused = k.wait_event("control_forbidden", "", secs(10.0));
    assert_eq!(refused["uid"], NOBODY, "{refused}");

    let out = ctl_as(NOBODY, &bin, &socket, &["status", "--json"]).expect(1);
    let reply = out.json();
    assert_eq!(reply["code"], "forbidden", "{out:#?}");
    assert_eq!(reply["error"], message.as_str(), "{out:#?}");
    assert!(
        reply["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{out:#?}"
    );

    // Actions are refused just the same, and change nothing.
    let out = ctl_as(NOBODY, &bin, &socket, &["stop", "web"]).expect(1);
    assert_eq!(out.stderr, format!("kelpie: {message}\n"), "{out:#?}");
    let out = ctl_as(NOBODY, &bin, &socket, &["shutdown"]).expect(1);
    assert_eq!(out.stderr, format!("kelpie: {message}\n"), "{out:#?}");
    assert_still_running(&k, pid);
    assert!(k.events("program_stopping", "web").is_empty());
    assert!(k.events("shutdown_requested", "").is_empty());
    assert!(k.events("shutdown_started", "").is_empty());
    k.ctl(&["status", "--json"]).expect(0);
}

#[test]
fn root_is_served_by_a_kelpie_running_as_another_uid() {
    skip_unless_uids_switch!();
    // kelpie itself runs as 65534, in a directory it owns, from a copy of
    // the binary it can execute.
    let k = Kelpie::start_with(
        r#"
[supervisor]
http_listen = "off"
socket_mode = "0666"

[program.web]
command = ["sleep", "1000"]
start_seconds = "0s"
"#,
        Options {
            wrapper: Some(
                r#"d="${1%/*}"; cp "$0" "$d/kelpie-for-others" && chmod 0755 "$d/kelpie-for-others" && chown 65534:65534 "$d" && exec setpriv --reuid=65534 --regid=65534 --clear-groups "$d/kelpie-for-others" run -c "$1""#,
            ),
            ..Options::default()
        },
    );
    k.wait_control();
    let pid = running_pid(&k);
    let socket = k.socket();
    let meta = std::fs::symlink_metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.uid(), NOBODY, "the socket belongs to kelpie's user");
    assert_eq!(meta.mode() & 0o7777, 0o666);

    // Root is not the owner but is admitted.
    let status = k.ctl(&["status", "--json"]).expect(0).json();
    assert_eq!(status["programs"][0]["name"], "web");
    // A third uid is not.
    let bin = k.path("kelpie-for-others");
    let out = ctl_as(NOBODY - 1, &bin, &socket, &["stop", "web"]).expect(1);
    assert_eq!(
        out.stderr,
        format!(
            "kelpie: uid {} may not use this control socket; only uid {NOBODY} and root may\n",
            NOBODY - 1
        ),
        "{out:#?}"
    );
    // The owner is served.
    ctl_as(NOBODY, &bin, &socket, &["status"]).expect(0);
    assert_still_running(&k, pid);
}

// ---------------------------------------------------------------------------
// 3. Taking over the socket path
// ---------------------------------------------------------------------------

/// The events of level ERROR.
fn errors(k: &Kelpie) -> Vec<serde_json::Value> {
    k.all_events()
        .into_iter()
        .filter(|e| e["level"] == "ERROR")
        .collect()
}

/// A program that leaves a trace if it is ever started.
fn config_with_socket(socket: &Path) -> String {
    format!(
        r#"
[supervisor]
http_listen = "off"
control_socket = "{}"

[program.web]
command = ["sh", "-c", "touch {{dir}}/web-started; exec sleep 1000"]
"#,
        socket.display()
    )
}

#[test]
fn a_symlink_at_the_socket_path_is_not_followed() {
    // The planted files live in a directory of their own, so they exist
    // before kelpie starts.
    let planted = tempfile::tempdir().unwrap();
    let target = planted.path().join("target");
    std::fs::write(&target, "precious\n").unwrap();
    let target_mode = mode_of(&target);
    let dangling = planted.path().join("nowhere.sock");

    for pointee in [&target, &dangling] {
        let link = planted.path().join("kelpie.sock");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(pointee, &link).unwrap();

        let mut k = Kelpie::start(&config_with_socket(&link));
        let status = k.wait_exit(secs(10.0));
        assert_eq!(status.code(), Some(1), "link to {pointee:?}");
        let errors = errors(&k);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0]["event"], "control_socket_failed");
        assert_eq!(
            errors[0]["message"],
            format!(
                "control socket {} is a symbolic link; refusing to follow it. Remove it or choose another control_socket",
                link.display()
            )
        );
        assert!(k.events("program_started", "").is_empty());
        assert!(k.events("control_listening", "").is_empty());
        assert!(!k.path("web-started").exists(), "web was started");
        assert!(k.marked_processes().is_empty());

        // The link and what it points at are untouched.
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_link(&link).unwrap(), *pointee);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
        assert_eq!(mode_of(&target), target_mode);
        assert!(
            std::fs::symlink_metadata(&dangling).is_err(),
            "a socket was created through the dangling link"
        );
    }
}

#[test]
fn a_socket_another_kelpie_serves_is_not_taken_over() {
    let first = Kelpie::start(ONE_PROGRAM);
    first.wait_control();
    let pid = running_pid(&first);
    let socket = first.socket();
    let inode = std::fs::symlink_metadata(&socket).unwrap().ino();

    let mut second = Kelpie::start(&config_with_socket(&socket));
    assert_eq!(second.wait_exit(secs(10.0)).code(), Some(1));
    let errors = errors(&second);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["event"], "control_socket_failed");
    assert_eq!(
        errors[0]["message"],
        format!(
            "another kelpie is already serving the control socket {}; stop it first or choose another control_socket",
            socket.display()
        )
    );
    assert!(second.events("program_started", "").is_empty());
    assert!(!second.path("web-started").exists(), "web was started");

    // The first one's socket is the same file and still served.
    assert_eq!(std::fs::symlink_metadata(&socket).unwrap().ino(), inode);
    first.ctl(&["status"]).expect(0);
    assert_still_running(&first, pid);
}

// ---------------------------------------------------------------------------
// 4. Bad requests
// ---------------------------------------------------------------------------

/// Sends `raw` on a new connection to the control socket (from a thread of
/// its own, so a server that answers before reading everything cannot
/// deadlock the test) and reads until the server closes the connection.
/// A reset after the reply arrived counts as the end of the reply.
fn unix_raw(socket: &Path, raw: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(secs(20.0)))?;
    stream.set_write_timeout(Some(secs(20.0)))?;
    let mut writer = stream.try_clone()?;
    let sent = std::thread::spawn(move || writer.write_all(&raw));
    let mut buf = Vec::new();
    let read = stream.read_to_end(&mut buf);
    // Writing may fail once the server has answered and closed.
    let _ = sent.join().unwrap();
    match read {
        Ok(_) => Ok(buf),
        Err(err) if err.kind() == ErrorKind::ConnectionReset && !buf.is_empty() => Ok(buf),
        Err(err) => Err(err),
    }
}

/// One request with `Connection: close`, a request id and `body`
/// (`Content-Length` unless the headers already frame the body).
fn request(
    socket: &Path,
    method: &str,
    path: &str,
    id: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Request-Id: {id}\r\n"
    );
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("transfer-encoding"))
    {
        raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("\r\n");
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(body);
    let answer = unix_raw(socket, raw).unwrap_or_else(|e| panic!("{method} {path} ({id}): {e}"));
    parse_reply(&answer)
}

/// A JSON error reply with `status` and `code` that echoes `id`.
#[track_caller]
fn assert_error(reply: &Reply, status: u16, code: &str, id: &str) {
    assert_eq!(reply.status, status, "{id}: {reply:?}");
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{id}: {reply:?}"
    );
    assert_eq!(reply.header("x-request-id"), Some(id), "{id}: {reply:?}");
    let body = reply.json();
    assert_eq!(body["code"], code, "{id}: {body}");
    assert_eq!(body["request_id"], id, "{id}: {body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{id}: {body}"
    );
}

const MAX_BODY_BYTES: usize = 1024 * 1024;

#[test]
fn bad_requests_get_json_errors_and_kelpie_keeps_serving() {
    let k = Kelpie::start(ONE_PROGRAM);
    k.wait_control();
    let pid = running_pid(&k);
    let socket = k.socket();
    let json = [("Content-Type", "application/json")];

    // (a) Oversized bodies: declared, and chunked without a length.
    let reply = request(
        &socket,
        "POST",
        "/v1/actions/stop",
        "too-large",
        &json,
        &vec![b' '; MAX_BODY_BYTES + 1],
    );
    assert_error(&reply, 413, "body_too_large", "too-large");
    let mut chunked = Vec::new();
    for _ in 0..17 {
        chunked.extend_from_slice(format!("{:x}\r\n", 64 * 1024).as_bytes());
        chunked.extend_from_slice(&[b' '; 64 * 1024]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let reply = request(
        &socket,
        "POST",
        "/v1/actions/stop",
        "too-large-chunked",
        &[("Transfer-Encoding", "chunked")],
        &chunked,
    );
    assert_error(&reply, 413, "body_too_large", "too-large-chunked");
    // Exactly the limit is read (blank means `{}`, which names nothing).
    let reply = request(
        &socket,
        "POST",
        "/v1/actions/stop",
        "at-the-limit",
        &json,
        &vec![b' '; MAX_BODY_BYTES],
    );
    assert_error(&reply, 400, "bad_request", "at-the-limit");

    // (b) Malformed JSON.
    let reply = request(
        &socket,
        "POST",
        "/v1/actions/stop",
        "malformed",
        &json,
        br#"{"programs": ["#,
    );
    assert_error(&reply, 400, "bad_json", "malformed");

    // (c) Unknown paths, inside and outside /v1.
    for (path, id) in [("/v1/nope", "unknown-path"), ("/nope", "unversioned")] {
        let reply = request(&socket, "GET", path, id, &[], b"");
        assert_error(&reply, 404, "not_found", id);
    }

    // (d) Wrong methods.
    let reply = request(&socket, "DELETE", "/v1/programs", "wrong-method", &[], b"");
    assert_error(&reply, 405, "method_not_allowed", "wrong-method");
    let reply = request(&socket, "GET", "/v1/actions/stop", "get-action", &[], b"");
    assert_error(&reply, 405, "method_not_allowed", "get-action");

    // (e) Unknown programs, in the path and in the body.
    let reply = request(
        &socket,
        "POST",
        "/v1/programs/nope/stop",
        "no-such-program",
        &[],
        b"",
    );
    assert_error(&reply, 404, "no_such_program", "no-such-program");
    let reply = request(
        &socket,
        "POST",
        "/v1/actions/stop",
        "no-such-programs",
        &json,
        br#"{"programs": ["web", "nope"]}"#,
    );
    assert_error(&reply, 404, "no_such_program", "no-such-programs");

    // (f) An unknown field: refused, not ignored (web is not stopped).
    let reply = request(
        &socket,
        "POST",
        "/v1/programs/web/stop",
        "unknown-field",
        &json,
        br#"{"wait": true, "force": true}"#,
    );
    assert_error(&reply, 400, "bad_json", "unknown-field");

    // An oversized head gets a JSON 431 too.
    let padding = "p".repeat(10 * 1024);
    let reply = request(
        &socket,
        "GET",
        "/v1/programs",
        "big-head",
        &[("X-Padding", &padding)],
        b"",
    );
    assert_error(&reply, 431, "headers_too_large", "big-head");

    // (g) Not HTTP at all: answered with a 400 or closed, never hung.
    for garbage in [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
        b"\xff\xfe\xfd\x00\x00 garbage garbage\r\n\r\n".to_vec(),
        b"GET /v1/programs HTTP/9.9\r\n\r\n".to_vec(),
    ] {
        match unix_raw(&socket, garbage.clone()) {
            Ok(answer) if answer.is_empty() => {}
            Ok(answer) => {
                let reply = parse_reply(&answer);
                assert_eq!(reply.status / 100, 4, "{garbage:?}: {reply:?}");
            }
            Err(err) => assert!(
                matches!(
                    err.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
                ),
                "{garbage:?}: {err}"
            ),
        }
    }

    // Still serving, still supervising the same process.
    let status = k.ctl(&["status", "--json"]).expect(0).json();
    assert_eq!(status["programs"][0]["name"], "web", "{status}");
    assert_still_running(&k, pid);
    assert!(k.events("program_stopping", "web").is_empty());
}

// ---------------------------------------------------------------------------
// 5. The TCP port
// ---------------------------------------------------------------------------

#[test]
fn the_http_port_exposes_no_control_action() {
    let k = Kelpie::start(
        r#"
[supervisor]
http_listen = "127.0.0.1:0"

[program.web]
command = ["sleep", "1000"]
start_seconds = "0s"
"#,
    );
    k.wait_control();
    let pid = running_pid(&k);
    let addr = k.http_addr();

    for (method, path) in [
        ("POST", "/v1/actions/stop"),
        ("POST", "/v1/programs/web/stop"),
        ("POST", "/v1/shutdown"),
        ("POST", "/v1/reload"),
        ("GET", "/v1/programs"),
        ("GET", "/v1/programs/web"),
        ("GET", "/v1/programs/web/logs"),
        ("GET", "/v1/logs"),
        ("GET", "/v1/health"),
        ("GET", "/v1/config"),
    ] {
        let reply = http(addr, method, path, &[("Content-Length", "0")]);
        assert!(
            [404, 405].contains(&reply.status),
            "{method} {path} on the TCP port: {reply:?}"
        );
        assert!(
            !reply.body.contains("\"programs\"")
                && !reply.body.contains("\"results\"")
                && !reply.body.contains("\"toml\""),
            "{method} {path} on the TCP port answered with control data: {reply:?}"
        );
    }
    // A stop with a body that the control API would accept.
    let reply = common::http_raw(
        addr,
        b"POST /v1/actions/stop HTTP/1.1\r\nHost: kelpie\r\nConnection: close\r\n\
          Content-Type: application/json\r\nContent-Length: 14\r\n\r\n{\"all\": true}\n",
        secs(10.0),
    )
    .unwrap();
    let reply = parse_reply(&reply);
    assert!([404, 405].contains(&reply.status), "{reply:?}");

    assert_still_running(&k, pid);
    assert!(k.events("program_stopping", "web").is_empty());
    assert!(k.events("shutdown_started", "").is_empty());
}

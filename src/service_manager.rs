//! kelpie as a systemd `Type=notify` service: the sd_notify protocol from
//! kelpie's side (`notify_socket.rs` is the same protocol from its programs' side).
//!
//! When `$NOTIFY_SOCKET` is set, kelpie sends
//! - `READY=1` once every autostart program is up and ready (a oneshot:
//!   completed), and again after each reload;
//! - `STATUS=<n running, n ready, n failed>` whenever those counts change;
//! - `RELOADING=1` (with `MONOTONIC_USEC`, as `Type=notify-reload` wants)
//!   when a reload begins;
//! - `STOPPING=1` when shutdown begins;
//! - `WATCHDOG=1` every half `$WATCHDOG_USEC`, from the Supervisor actor
//!   itself, so a wedged supervisor stops petting the watchdog.
//!
//! The variables are read once at startup; children never see them
//! (`process::PRIVATE_VARIABLES`). Sending is a non-blocking datagram:
//! a missing or full socket costs one ignored error, never a stall.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

use crate::status::Board;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Address {
    Path(PathBuf),
    /// `@name`: a Linux abstract socket.
    Abstract(Vec<u8>),
}

/// The connection to the service manager, when there is one.
#[derive(Debug)]
pub struct Systemd {
    socket: UnixDatagram,
    address: Address,
    watchdog: Option<Duration>,
    ready_sent: bool,
    last_status: Option<String>,
}

impl Systemd {
    /// From `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`; `None`
    /// when kelpie was not started by a service manager that asked.
    pub fn from_env() -> Option<Self> {
        Self::from_values(
            std::env::var_os("NOTIFY_SOCKET").map(|s| s.into_encoded_bytes()),
            std::env::var("WATCHDOG_USEC").ok(),
            std::env::var("WATCHDOG_PID").ok(),
            std::process::id(),
        )
    }

    fn from_values(
        socket: Option<Vec<u8>>,
        watchdog_usec: Option<String>,
        watchdog_pid: Option<String>,
        pid: u32,
    ) -> Option<Self> {
        let socket_value = socket.filter(|s| !s.is_empty())?;
        let address = match socket_value.strip_prefix(b"@") {
            Some(name) => Address::Abstract(name.to_vec()),
            None => Address::Path(PathBuf::from(
                String::from_utf8_lossy(&socket_value).into_owned(),
            )),
        };
        let for_us = watchdog_pid
            .map(|p| p.trim().parse::<u32>().ok() == Some(pid))
            .unwrap_or(true);
        let watchdog = watchdog_usec
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|usec| *usec > 0 && for_us)
            .map(Duration::from_micros);
        let socket = match UnixDatagram::unbound() {
            Ok(socket) => socket,
            Err(err) => {
                tracing::warn!(event = "systemd_notify_failed", error = %err, "cannot create a socket for sd_notify; systemd will not hear from kelpie");
                return None;
            }
        };
        let _ = socket.set_nonblocking(true);
        Some(Self {
            socket,
            address,
            watchdog,
            ready_sent: false,
            last_status: None,
        })
    }

    /// How often to send `WATCHDOG=1`: half the service's watchdog timeout.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }

    fn send(&self, message: &str) {
        let sent = match &self.address {
            Address::Path(path) => self.socket.send_to(message.as_bytes(), path),
            Address::Abstract(name) => send_abstract(&self.socket, name, message.as_bytes()),
        };
        if let Err(err) = sent {
            tracing::debug!(event = "systemd_notify_failed", error = %err, "sd_notify {message:?} not sent");
        }
    }

    /// Called with every published board: `STATUS=` on change, and the
    /// first `READY=1` once every autostart program is ready.
    pub fn board_changed(&mut self, board: &Board, autostart: &[bool]) {
        let status = status_line(board);
        let ready = !self.ready_sent && all_started(board, autostart);
        if ready {
            self.ready_sent = true;
            self.last_status = Some(status.clone());
            self.send(&format!("READY=1\nSTATUS={status}"));
            return;
        }
        if self.last_status.as_deref() != Some(status.as_str()) {
            self.send(&format!("STATUS={status}"));
            self.last_status = Some(status);
        }
    }

    pub fn reloading(&self) {
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
            .unwrap_or(0);
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={now}"));
    }

    /// A reload was applied (or refused: kelpie keeps running either way).
    pub fn reloaded(&self) {
        if self.ready_sent {
            self.send("READY=1");
        }
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }
}

#[cfg(target_os = "linux")]
fn send_abstract(socket: &UnixDatagram, name: &[u8], message: &[u8]) -> io::Result<usize> {
    use std::os::linux::net::SocketAddrExt;
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(message, &address)
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &[u8]) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets exist on Linux only",
    ))
}

/// `3 running, 2 ready, 0 failed` over every instance.
fn status_line(board: &Board) -> String {
    let instances = board.programs.iter().flat_map(|p| {
        let oneshot = p.oneshot;
        p.instances.iter().map(move |i| (i, oneshot))
    });
    let (mut running, mut ready, mut failed) = (0, 0, 0);
    for (instance, oneshot) in instances {
        if instance.snapshot.pid.is_some() {
            running += 1;
        }
        if instance.is_ready(oneshot) {
            ready += 1;
        }
        if instance.snapshot.phase == crate::state::Phase::Failed {
            failed += 1;
        }
    }
    let mut line = format!("{running} running, {ready} ready, {failed} failed");
    if board.shutting_down {
        line.push_str(", shutting down");
    }
    line
}

/// Every program with `autostart` (by position on the board) is ready.
fn all_started(board: &Board, autostart: &[bool]) -> bool {
    !board.shutting_down
        && board
            .programs
            .iter()
            .zip(autostart)
            .filter(|(_, auto)| **auto)
            .all(|(program, _)| program.ready())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ExitKind, Phase, Snapshot};
    use crate::status::{InstanceStatus, ProgramStatus};
    use std::sync::Arc;

    fn program(name: &str, phase: Phase, ready: bool, pid: Option<i32>) -> Arc<ProgramStatus> {
        let mut p = ProgramStatus::new(name, true, false, 1);
        let mut snapshot = Snapshot::initial();
        snapshot.phase = phase;
        snapshot.ready = ready;
        snapshot.pid = pid;
        p.instances[0] = InstanceStatus {
            snapshot,
            started_at: None,
            ack: 0,
            held: false,
            slot: 0,
        };
        Arc::new(p)
    }

    fn receiver() -> (tempfile::TempDir, UnixDatagram, Systemd) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("notify.sock");
        let rx = UnixDatagram::bind(&path).unwrap_or_else(|e| panic!("{e}"));
        rx.set_nonblocking(true).unwrap_or_else(|e| panic!("{e}"));
        let tx = Systemd::from_values(
            Some(path.to_string_lossy().as_bytes().to_vec()),
            Some("2000000".into()),
            None,
            1,
        )
        .unwrap_or_else(|| panic!("a notifier"));
        (dir, rx, tx)
    }

    fn received(rx: &UnixDatagram) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        while let Ok(n) = rx.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    #[test]
    fn ready_once_every_autostart_program_is_ready_and_status_on_change() {
        let (_dir, rx, mut sd) = receiver();
        let starting = Board {
            shutting_down: false,
            programs: vec![
                program("web", Phase::Starting, false, Some(10)),
                program("manual", Phase::Stopped, false, None),
            ],
        };
        sd.board_changed(&starting, &[true, false]);
        sd.board_changed(&starting, &[true, false]);
        assert_eq!(received(&rx), ["STATUS=1 running, 0 ready, 0 failed"]);
        let up = Board {
            shutting_down: false,
            programs: vec![
                program("web", Phase::Running, true, Some(10)),
                program("manual", Phase::Stopped, false, None),
            ],
        };
        sd.board_changed(&up, &[true, false]);
        assert_eq!(
            received(&rx),
            ["READY=1\nSTATUS=1 running, 1 ready, 0 failed"],
            "a program without autostart is not waited for"
        );
        sd.board_changed(&up, &[true, false]);
        assert!(received(&rx).is_empty(), "READY=1 is sent once");
        sd.stopping();
        sd.reloading();
        sd.reloaded();
        let rest = received(&rx);
        assert_eq!(rest[0], "STOPPING=1");
        assert!(
            rest[1].starts_with("RELOADING=1\nMONOTONIC_USEC="),
            "{rest:?}"
        );
        assert_eq!(rest[2], "READY=1");
    }

    #[test]
    fn a_completed_oneshot_counts_as_ready() {
        let mut job = ProgramStatus::new("migrate", true, true, 1);
        job.instances[0].snapshot.phase = Phase::Exited;
        job.instances[0].snapshot.last_exit_kind = Some(ExitKind::Success);
        let board = Board {
            shutting_down: false,
            programs: vec![Arc::new(job)],
        };
        assert!(all_started(&board, &[true]));
    }

    #[test]
    fn environment_parsing() {
        assert!(Systemd::from_values(None, None, None, 1).is_none());
        assert!(Systemd::from_values(Some(Vec::new()), None, None, 1).is_none());
        let sd = Systemd::from_values(
            Some(b"@abstract".to_vec()),
            Some("1000000".into()),
            Some("7".into()),
            7,
        )
        .unwrap_or_else(|| panic!("a notifier"));
        assert_eq!(sd.address, Address::Abstract(b"abstract".to_vec()));
        assert_eq!(sd.watchdog_interval(), Some(Duration::from_millis(500)));
        // WATCHDOG_PID names another process: the watchdog is not ours.
        let other = Systemd::from_values(
            Some(b"/x".to_vec()),
            Some("1000000".into()),
            Some("8".into()),
            7,
        )
        .unwrap_or_else(|| panic!("a notifier"));
        assert_eq!(other.watchdog_interval(), None);
        let junk = Systemd::from_values(Some(b"/x".to_vec()), Some("soon".into()), None, 7)
            .unwrap_or_else(|| panic!("a notifier"));
        assert_eq!(junk.watchdog_interval(), None);
    }
}

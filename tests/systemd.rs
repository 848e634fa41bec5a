//! kelpie under systemd (`Type=notify`), with a datagram socket of the
//! test's own as `$NOTIFY_SOCKET`: `READY=1` only once the programs are
//! ready, `STATUS=` lines, `RELOADING=1`/`READY=1` around a reload,
//! `WATCHDOG=1` at half of `$WATCHDOG_USEC`, `STOPPING=1` on SIGTERM, and
//! none of it leaked to programs.

// Test code: a panic is the failure report.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    clippy::disallowed_types
)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{secs, Kelpie, Options};

struct Listener {
    messages: mpsc::Receiver<(Instant, String)>,
    seen: Vec<(Instant, String)>,
    _dir: tempfile::TempDir,
}

impl Listener {
    fn start() -> (Self, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if tx.send((Instant::now(), text)).is_err() {
                    break;
                }
            }
        });
        (
            Self {
                messages: rx,
                seen: Vec::new(),
                _dir: dir,
            },
            path.display().to_string(),
        )
    }

    /// Waits for a message containing `line`; returns when it arrived.
    fn wait_for(&mut self, line: &str, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        if let Some((at, _)) = self.seen.iter().find(|(_, m)| m.lines().any(|l| l == line)) {
            return *at;
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (at, message) = self.messages.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "no {line:?} from kelpie within {timeout:?}; got {:?}",
                    self.texts()
                )
            });
            self.seen.push((at, message.clone()));
            if message.lines().any(|l| l == line) {
                return at;
            }
        }
    }

    /// Everything received so far, without waiting.
    fn drain(&mut self) {
        while let Ok(m) = self.messages.try_recv() {
            self.seen.push(m);
        }
    }

    fn texts(&self) -> Vec<&str> {
        self.seen.iter().map(|(_, m)| m.as_str()).collect()
    }

    fn count(&self, line: &str) -> usize {
        self.seen
            .iter()
            .filter(|(_, m)| m.lines().any(|l| l == line))
            .count()
    }
}

const CONFIG: &str = r#"
[supervisor]
http_listen = "off"

[program.gated]
command = ["sleep", "1000"]
start_seconds = "0s"

[program.gated.readiness]
exec = ["test", "-e", "{dir}/go"]
interval = "100ms"

[program.nosy]
command = ["sh", "-c", "echo \"ns=${NOTIFY_SOCKET:-none} wd=${WATCHDOG_USEC:-none}\"; exec sleep 1000"]
start_seconds = "0s"
"#;

#[test]
fn kelpie_speaks_sd_notify() {
    let (mut sd, path) = Listener::start();
    let wrapper: &'static str = Box::leak(
        format!("export NOTIFY_SOCKET='{path}' WATCHDOG_USEC=200000 WATCHDOG_PID=$$")
            .into_boxed_str(),
    );
    let mut k = Kelpie::start_with(
        CONFIG,
        Options {
            wrapper: Some(wrapper),
            ..Options::default()
        },
    );
    k.wait_control();
    // The readiness probe has failed: kelpie must not claim to be ready.
    k.wait_event("probe_failed", "gated", secs(10.0));
    sd.wait_for("STATUS=2 running, 1 ready, 0 failed", secs(10.0));
    sd.drain();
    assert_eq!(
        sd.count("READY=1"),
        0,
        "READY=1 before gated is ready: {:?}",
        sd.texts()
    );

    let go = Instant::now();
    std::fs::write(k.path("go"), "").unwrap();
    let ready = sd.wait_for("READY=1", secs(10.0));
    assert!(
        ready >= go,
        "READY=1 came only after the program became ready"
    );
    sd.wait_for("STATUS=2 running, 2 ready, 0 failed", secs(5.0));

    // Programs never see kelpie's own service-manager variables.
    k.wait_output("nosy", "ns=none wd=none", secs(5.0));

    // WATCHDOG=1 every half of WATCHDOG_USEC (200 ms → every 100 ms).
    let first = sd.wait_for("WATCHDOG=1", secs(5.0));
    let mut pings = vec![first];
    while pings.len() < 6 {
        let before = sd.count("WATCHDOG=1");
        let at = loop {
            let (at, message) = sd
                .messages
                .recv_timeout(secs(5.0))
                .expect("a watchdog ping");
            sd.seen.push((at, message.clone()));
            if message == "WATCHDOG=1" && sd.count("WATCHDOG=1") > before {
                break at;
            }
        };
        pings.push(at);
    }
    let mut gaps: Vec<Duration> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort();
    let median = gaps[gaps.len() / 2];
    assert!(
        median >= Duration::from_millis(70) && median <= Duration::from_millis(200),
        "watchdog pings every {median:?} (gaps {gaps:?}), expected about 100 ms"
    );

    // A reload: RELOADING=1 (with MONOTONIC_USEC), then READY=1 again.
    let readies = sd.count("READY=1");
    k.ctl(&["reload"]).expect(0);
    sd.wait_for("RELOADING=1", secs(5.0));
    let reloading = sd
        .seen
        .iter()
        .find(|(_, m)| m.starts_with("RELOADING=1"))
        .map(|(_, m)| m.clone())
        .unwrap();
    assert!(reloading.contains("\nMONOTONIC_USEC="), "{reloading:?}");
    common::wait_until("READY=1 after the reload", secs(5.0), || {
        sd.drain();
        (sd.count("READY=1") > readies).then_some(())
    });

    k.signal("TERM");
    sd.wait_for("STOPPING=1", secs(5.0));
    assert!(k.wait_exit(secs(10.0)).success());
}

#[test]
fn without_notify_socket_kelpie_sends_nothing_and_runs() {
    let mut k = Kelpie::start(CONFIG);
    k.wait_control();
    k.wait_output("nosy", "ns=none wd=none", secs(5.0));
    k.signal("TERM");
    assert!(k.wait_exit(secs(10.0)).success());
}

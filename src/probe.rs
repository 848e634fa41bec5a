//! Active health probes (http, tcp, exec): one task per probe and process,
//! started when the process is spawned and aborted when it goes away. Each
//! result goes to the instance's Program actor through the `deliver`
//! callback it passes in; thresholds are counted in the pure state
//! machine, not here.
//!
//! The passive kinds are elsewhere: `notify` (sd_notify datagrams) in
//! `notify_socket.rs`, `log` (a pattern over output lines) in `output.rs`.

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::template::{self, Values};
use crate::config::{ProbeConfig, ProbeKind};
use crate::reaper::Reaper;
use crate::state::{ExitStatus, ProbeRole};

/// What an exec probe runs, prepared by the caller (environment, directory
/// and credentials of the program).
pub type ExecBuilder = Box<dyn Fn(&[String]) -> crate::spawn::Command + Send + Sync>;

/// One probe's answer about run `run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    pub role: ProbeRole,
    pub run: u64,
    pub ok: bool,
    pub detail: String,
    pub duration: std::time::Duration,
}

/// Hands a result to the instance; false once nobody listens (the task
/// then ends).
pub type Deliver = Box<dyn Fn(ProbeResult) -> bool + Send>;

/// Aborts its probe tasks when dropped.
#[derive(Default)]
pub struct Probes {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Probes {
    fn drop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Probes {
    pub fn push(&mut self, task: JoinHandle<()>) {
        self.tasks.push(task);
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

/// The probe as one instance runs it: `${KELPIE_INSTANCE}` and
/// `${KELPIE_SLOT}` in an http or tcp target replaced by `values` (the
/// config keeps the template). Exec probes need nothing here: they run with
/// the instance's environment, whose values are expanded the same way.
pub fn for_instance(config: &ProbeConfig, values: Values) -> ProbeConfig {
    let kind = match &config.kind {
        ProbeKind::Http(url) => ProbeKind::Http(template::expand(url, values)),
        ProbeKind::Tcp(address) => ProbeKind::Tcp(template::expand(address, values)),
        other => other.clone(),
    };
    ProbeConfig {
        kind,
        ..config.clone()
    }
}

/// Starts the polling task for an active probe; `None` for passive kinds.
pub fn start(
    role: ProbeRole,
    config: &ProbeConfig,
    run: u64,
    deliver: Deliver,
    reaper: Reaper,
    exec: std::sync::Arc<ExecBuilder>,
) -> Option<JoinHandle<()>> {
    if matches!(config.kind, ProbeKind::Notify | ProbeKind::Log(_)) {
        return None;
    }
    let config = config.clone();
    Some(tokio::spawn(async move {
        tokio::time::sleep(config.initial_delay).await;
        loop {
            let started = Instant::now();
            let outcome =
                tokio::time::timeout(config.timeout, check(&config.kind, &reaper, &exec)).await;
            let (ok, detail) = match outcome {
                Ok(Ok(())) => (true, String::new()),
                Ok(Err(detail)) => (false, detail),
                Err(_) => (
                    false,
                    format!(
                        "no answer within {}",
                        humantime::format_duration(config.timeout)
                    ),
                ),
            };
            let result = ProbeResult {
                role,
                run,
                ok,
                detail,
                duration: started.elapsed(),
            };
            if !deliver(result) {
                return;
            }
            tokio::time::sleep(config.interval).await;
        }
    }))
}

async fn check(kind: &ProbeKind, reaper: &Reaper, exec: &ExecBuilder) -> Result<(), String> {
    match kind {
        ProbeKind::Http(url) => http_get(url).await,
        ProbeKind::Tcp(address) => TcpStream::connect(address.as_str())
            .await
            .map(drop)
            .map_err(|e| format!("connect to {address}: {}", crate::os_lookup::io_reason(&e))),
        ProbeKind::Exec(argv) => run_exec(argv, reaper, exec).await,
        ProbeKind::Notify | ProbeKind::Log(_) => Ok(()),
    }
}

/// `http://HOST:PORT/PATH` → (authority, path).
fn split_url(url: &str) -> Result<(&str, &str), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("unsupported URL {url}"))?;
    Ok(match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    })
}

/// GET; any 2xx or 3xx status is a success, the body is ignored.
async fn http_get(url: &str) -> Result<(), String> {
    let (authority, path) = split_url(url)?;
    let address = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let stream = TcpStream::connect(&address)
        .await
        .map_err(|e| format!("connect to {address}: {}", crate::os_lookup::io_reason(&e)))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(
            hyper::header::USER_AGENT,
            concat!("kelpie/", env!("CARGO_PKG_VERSION")),
        )
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("GET {url}: {e}"))?;
    let result = sender.send_request(request).await;
    driver.abort();
    let response = result.map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(format!("GET {url}: HTTP {}", status.as_u16()))
    }
}

/// Kills the probe's process group if the probe is abandoned (timeout, or
/// the instance went away) before the process exited.
struct ExecGuard {
    reaper: Reaper,
    pgid: i32,
}

impl Drop for ExecGuard {
    fn drop(&mut self) {
        // A no-op once the probe exited: the reaper forgets reaped groups.
        self.reaper
            .signal_group(self.pgid, nix::sys::signal::Signal::SIGKILL);
    }
}

/// Runs the command through the reaper (so its status has one owner);
/// exit 0 is a success.
async fn run_exec(argv: &[String], reaper: &Reaper, exec: &ExecBuilder) -> Result<(), String> {
    let mut command = exec(argv);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let child = reaper
        .spawn(
            &mut command,
            Box::new(move |_pid, status, _group_alive| {
                let _ = tx.send(status);
            }),
        )
        .map_err(|e| crate::process::spawn_error(&argv[0], &e, None))?;
    let _guard = ExecGuard {
        reaper: reaper.clone(),
        pgid: child.pid,
    };
    drop(child);
    match rx.await {
        Ok(ExitStatus::Code(0)) => Ok(()),
        Ok(status) => Err(format!("{} exited with {status}", argv[0])),
        Err(_) => Err(format!("{} vanished", argv[0])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_instance_probes_its_own_expanded_target() {
        let probe = |kind| ProbeConfig {
            kind,
            interval: std::time::Duration::from_secs(2),
            timeout: std::time::Duration::from_secs(1),
            failure_threshold: 3,
            success_threshold: 1,
            initial_delay: std::time::Duration::ZERO,
        };
        let http = probe(ProbeKind::Http(
            "http://127.0.0.1:810${KELPIE_INSTANCE}/health".into(),
        ));
        assert_eq!(
            for_instance(&http, Values::first(2)),
            probe(ProbeKind::Http("http://127.0.0.1:8102/health".into()))
        );
        let tcp = probe(ProbeKind::Tcp("127.0.0.1:90${KELPIE_INSTANCE}".into()));
        assert_eq!(
            for_instance(&tcp, Values::first(1)).kind,
            ProbeKind::Tcp("127.0.0.1:901".into())
        );
        // A rolling replacement of instance 1 of 3 probes its own slot.
        let replacement = Values {
            instance: 1,
            slot: 4,
        };
        let slotted = probe(ProbeKind::Http(
            "http://127.0.0.1:910${KELPIE_SLOT}/i/${KELPIE_INSTANCE}".into(),
        ));
        assert_eq!(
            for_instance(&slotted, replacement).kind,
            ProbeKind::Http("http://127.0.0.1:9104/i/1".into())
        );
        let tcp = probe(ProbeKind::Tcp("127.0.0.1:90${KELPIE_SLOT}".into()));
        assert_eq!(
            for_instance(&tcp, replacement).kind,
            ProbeKind::Tcp("127.0.0.1:904".into())
        );
        // argv is not expanded: it sees $KELPIE_INSTANCE in its environment.
        let exec = probe(ProbeKind::Exec(vec![
            "check".into(),
            "${KELPIE_INSTANCE}".into(),
        ]));
        assert_eq!(for_instance(&exec, Values::first(1)), exec);
    }

    #[test]
    fn urls_split_into_authority_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/health"),
            Ok(("127.0.0.1:8080", "/health"))
        );
        assert_eq!(split_url("http://localhost"), Ok(("localhost", "/")));
        assert_eq!(split_url("http://h:1/a/b?c=d"), Ok(("h:1", "/a/b?c=d")));
        assert!(split_url("https://x").is_err());
    }
}

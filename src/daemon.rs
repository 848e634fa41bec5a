//! `kelpie run`: the daemon's start-up and end: process hygiene and the
//! guardian first, then the config, signal handlers, the HTTP port, the
//! control socket, the Supervisor and the control server, then the wait
//! for the exit code and for the output pumps to drain. The order matters
//! (docs/architecture.md, "Why things are where they are").

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use ractor::Actor;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

use crate::config::{self, Host, Mode};
use crate::control::api::ControlApi;
use crate::http::HttpState;
use crate::http_server::Limits;
use crate::output::Relay;
use crate::reaper::Reaper;
use crate::status::{Board, ProgramStatus, RunningConfig};
use crate::supervisor::{SupervisorActor, SupervisorArgs, SupervisorMsg};
use crate::EXIT_CONFIG;

type SignalMessage = fn(Signal) -> SupervisorMsg;

const SWALLOWED_SIGNALS: &[Signal] = &[
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
    Signal::SIGVTALRM,
    Signal::SIGPROF,
    Signal::SIGIO,
    Signal::SIGPWR,
    Signal::SIGXCPU,
    Signal::SIGXFSZ,
];

/// How long to wait after shutdown for output pumps to drain what the
/// stopped programs wrote last.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// glibc gives each thread that allocates its own arena. kelpie allocates
/// little, from a few threads, for a long time: extra arenas only add
/// resident memory (about 80 KiB with 100 programs), never speed. Called
/// before any thread exists.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is called once,
    // before the runtime starts any other thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

pub fn run(explicit: Option<&Path>) -> i32 {
    one_malloc_arena();
    crate::process::seal_inherited_fds();
    // Forked first thing, while kelpie is one thread and its heap is still
    // small (the guardian keeps a copy-on-write view of it), and kept until
    // kelpie exits: if kelpie dies, even by SIGKILL, the guardian kills what
    // it started. As PID 1 there is nothing to guard: when PID 1 dies the
    // kernel kills every process in its PID namespace.
    #[cfg(target_os = "linux")]
    let guardian = (std::process::id() != 1).then(crate::guardian::start);
    let path = config::find_config(explicit);
    let validation = config::load(&path, Mode::Run, &Host::current());
    let Some(config) = validation.config.clone() else {
        validation.print_diagnostics();
        if !validation.unreadable() {
            eprintln!("{}: invalid config; nothing was started", path.display());
        }
        return EXIT_CONFIG;
    };
    let format = match crate::logging::format_override() {
        Ok(over) => crate::logging::resolve(over.unwrap_or(config.supervisor.log_format)),
        Err(message) => {
            eprintln!("kelpie: {message}");
            return EXIT_CONFIG;
        }
    };
    if let Err(message) = crate::logging::init(format, &config.supervisor.log_level) {
        eprintln!("kelpie: {message}");
        return EXIT_CONFIG;
    }
    std::panic::set_hook(Box::new(|info| {
        tracing::error!(event = "panic", "BUG: {info}");
    }));
    for warning in validation.warnings() {
        tracing::warn!(event = "config_warning", "{warning}");
    }
    if nix::unistd::geteuid().is_root() {
        let as_root: Vec<&str> = config
            .programs
            .iter()
            .filter(|p| p.user.is_none())
            .map(|p| p.name.as_str())
            .collect();
        if !as_root.is_empty() {
            let mut shown = as_root
                .iter()
                .take(5)
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            if as_root.len() > 5 {
                shown.push_str(&format!(" and {} more", as_root.len() - 5));
            }
            tracing::warn!(
                event = "programs_run_as_root",
                count = as_root.len(),
                "kelpie runs as root and these programs have no `user`, so they run as root too: {shown}"
            );
        }
    }

    #[cfg(target_os = "linux")]
    let _guardian = match guardian {
        None => None,
        Some(Ok(guardian)) => Some(guardian),
        Some(Err(message)) => {
            tracing::warn!(
                event = "guardian_unavailable",
                "{message}; programs would outlive a SIGKILL of kelpie"
            );
            None
        }
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("kelpie: cannot start the async runtime: {err}");
            return 1;
        }
    };
    let (relay, relay_handle) = match Relay::start(format) {
        Ok(pair) => pair,
        Err(err) => {
            eprintln!("kelpie: cannot start the output relay: {err}");
            return 1;
        }
    };
    let code = runtime.block_on(supervise(config, relay));
    runtime.shutdown_timeout(Duration::from_millis(200));
    relay_handle.finish();
    code
}

async fn supervise(config: config::Config, relay: Relay) -> i32 {
    let started = tokio::time::Instant::now();
    // Bound before anything else happens: a port in use is one clear line
    // and exit 1, with no program started.
    let listener = match &config.supervisor.http_listen {
        Some(addr) => match crate::http::bind(addr).await {
            Ok(listener) => Some(listener),
            Err(message) => {
                tracing::error!(event = "http_listen_failed", "{message}");
                return 1;
            }
        },
        None => None,
    };

    // Also before any program exists: binding briefly narrows the process
    // umask, which a program spawned meanwhile would inherit.
    let control_socket = match crate::control::socket::bind(
        &config.supervisor.control_socket,
        config.supervisor.socket_mode,
    ) {
        Ok(socket) => socket,
        Err(message) => {
            tracing::error!(event = "control_socket_failed", "{message}");
            return 1;
        }
    };

    #[cfg(target_os = "linux")]
    if let Err(err) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(event = "subreaper_unavailable", error = %err, "cannot become a child subreaper; daemonizing grandchildren will escape supervision");
    }

    // OOM kills reported so far are not the programs': the crash history
    // reads the kernel log from here on, and counts only a rise of the
    // cgroup's counter.
    crate::exit_history::oom::prepare();

    // Before any program: kelpie may first have to move itself out of the
    // cgroup its programs' cgroups go under.
    let cgroups = prepare_cgroups(&config);

    // Every handler is registered before the first spawn: SIGCHLD so no
    // exit is missed, and the others because as PID 1 a signal without a
    // handler is dropped by the kernel.
    let reaper = Reaper::new();
    let mut sigchld = match signal(SignalKind::child()) {
        Ok(s) => s,
        Err(err) => {
            tracing::error!(event = "signal_setup_failed", error = %err, "cannot watch SIGCHLD");
            return 1;
        }
    };
    let mut streams = Vec::new();
    let mut kinds: Vec<(Signal, SignalMessage)> = vec![
        (Signal::SIGTERM, SupervisorMsg::Terminate),
        (Signal::SIGINT, SupervisorMsg::Terminate),
        (Signal::SIGQUIT, SupervisorMsg::Terminate),
        (Signal::SIGHUP, |_| SupervisorMsg::Hangup),
    ];
    for &forwarded in &config.supervisor.forward_signals {
        if !kinds.iter().any(|(s, _)| *s == forwarded) {
            kinds.push((forwarded, SupervisorMsg::Forward));
        }
    }
    for (sig, make) in kinds {
        match signal(SignalKind::from_raw(sig as i32)) {
            Ok(stream) => streams.push((sig, make, stream)),
            Err(err) => {
                tracing::error!(event = "signal_setup_failed", signal = %sig, error = %err, "cannot handle {sig}");
                return 1;
            }
        }
    }
    // Signals kelpie does not act on still get a (no-op) handler: kelpie
    // does not die of a stray SIGUSR1, and since exec resets handled
    // signals to their default, programs never inherit an "ignored"
    // disposition from whoever started kelpie.
    let realtime = libc::SIGRTMIN()..=libc::SIGRTMAX();
    for raw in SWALLOWED_SIGNALS.iter().map(|s| *s as i32).chain(realtime) {
        if !streams.iter().any(|(s, _, _)| *s as i32 == raw) {
            let _ = signal(SignalKind::from_raw(raw));
        }
    }

    let reaper_task = {
        let reaper = reaper.clone();
        tokio::spawn(async move {
            reaper.reap();
            while sigchld.recv().await.is_some() {
                reaper.reap();
            }
        })
    };

    let (exit_tx, exit_rx) = oneshot::channel();
    let pumps = crate::output::PumpTracker::new();
    let metrics = match crate::metrics::Metrics::new() {
        Ok(metrics) => Arc::new(metrics),
        Err(err) => {
            tracing::error!(event = "metrics_failed", error = %err, "cannot set up metrics");
            return 1;
        }
    };
    let (status_tx, status_rx) = crate::status::channel(initial_board(&config));
    let (config_tx, config_rx) = tokio::sync::watch::channel(Arc::new(RunningConfig {
        config: config.clone(),
        loaded_at: std::time::SystemTime::now(),
    }));
    // The server starts before the Supervisor so /health answers while
    // programs are being spawned; /ready says 503 until they are ready.
    let dashboard = Arc::new(crate::http::Dashboard::new(
        config.supervisor.dashboard,
        config
            .supervisor
            .control_token
            .as_ref()
            .map(|t| t.token.clone()),
    ));
    // Before the first spawn: the soft open-file limit must cover every
    // instance's pipes (validation checked them against the hard limit).
    let http_connections = crate::fd_budget::reserve(
        config.open_files_needed(),
        if listener.is_some() {
            crate::http::MAX_CONNECTIONS
        } else {
            0
        },
        config.instance_count(),
    );
    let http = match listener {
        Some(listener) => {
            let limits = Limits::http(http_connections);
            let state = Arc::new(HttpState {
                status: status_rx.clone(),
                render_metrics: {
                    let metrics = metrics.clone();
                    Arc::new(move |board: &Board| metrics.render(board))
                },
                on_request: {
                    let metrics = metrics.clone();
                    Arc::new(move |path: &str, code: u16| metrics.http_request(path, code))
                },
                started,
                dashboard: dashboard.clone(),
            });
            match crate::http::start(listener, state, limits).await {
                Ok(server) => Some(server),
                Err(message) => {
                    tracing::error!(event = "http_start_failed", "{message}");
                    return 1;
                }
            }
        }
        None => None,
    };
    let config_path = config.path.clone();
    let (outputs_tx, outputs_rx) = crate::output::outputs_channel();
    let args = SupervisorArgs {
        config,
        reaper: reaper.clone(),
        relay,
        exit: exit_tx,
        pumps: pumps.clone(),
        status: status_tx,
        outputs: outputs_tx,
        running_config: config_tx,
        metrics: metrics.clone(),
        systemd: crate::service_manager::Systemd::from_env(),
        cgroups,
    };
    let (supervisor, join) = match Actor::spawn(
        Some("kelpie-supervisor".into()),
        SupervisorActor,
        args,
    )
    .await
    {
        Ok(pair) => pair,
        Err(err) => {
            tracing::error!(event = "supervisor_failed", error = %err, "cannot start the supervisor");
            if let Some(server) = http {
                server.stop().await;
            }
            return 1;
        }
    };

    let (finished, finished_rx) = tokio::sync::watch::channel(None);
    let api = Arc::new(ControlApi {
        supervisor: supervisor.clone(),
        status: status_rx,
        running_config: config_rx,
        started,
        config_path,
        finished: finished_rx,
        usage: Default::default(),
    });
    tracing::info!(
        event = "control_listening",
        path = %control_socket.path().display(),
        "control socket at {}",
        control_socket.path().display()
    );
    let handler = crate::control::api::handler(api);
    dashboard.link(crate::http::ControlLink {
        outputs: outputs_rx,
        handler: handler.clone(),
    });
    let control = crate::control::server::start(control_socket, handler);

    let mut signal_tasks = Vec::new();
    for (sig, make, mut stream) in streams {
        let supervisor = supervisor.clone();
        signal_tasks.push(tokio::spawn(async move {
            while stream.recv().await.is_some() {
                let _ = supervisor.cast(make(sig));
            }
        }));
    }

    let code = exit_rx.await.unwrap_or_else(|_| {
        tracing::error!(
            event = "supervisor_lost",
            "BUG: the supervisor ended without an exit code"
        );
        1
    });
    let _ = join.await;
    // A `kelpie shutdown` waiting on the control socket learns the code.
    let _ = finished.send(Some(code));
    // /health answers until the supervisor is done; then the servers stop
    // (in-flight requests get at most a second) while output drains.
    let stop_http = async {
        if let Some(server) = http {
            server.stop().await;
        }
    };
    tokio::join!(pumps.wait_idle(OUTPUT_DRAIN), stop_http, control.stop());
    for task in signal_tasks {
        task.abort();
    }
    reaper_task.abort();
    code
}

/// What the endpoints show before the Supervisor's first publish: every
/// program, none started yet, so /ready is 503 rather than vacuously ready.
fn initial_board(config: &config::Config) -> Board {
    Board {
        shutting_down: false,
        programs: config
            .programs
            .iter()
            .map(|p| {
                Arc::new(ProgramStatus::new(
                    &p.name,
                    p.required,
                    p.kind == crate::restart_policy::ProgramKind::Oneshot,
                    p.instances as usize,
                ))
            })
            .collect(),
    }
}

/// The cgroup tree instances run in, or `None`, said once: a warning
/// naming the keys that cannot apply when some program sets cgroup limits
/// (or `cgroup_root` names a directory), else a debug line.
fn prepare_cgroups(config: &config::Config) -> Option<Arc<crate::cgroup::CgroupTree>> {
    let wanted =
        crate::cgroup::wanted_controllers(config.programs.iter().map(|p| &p.limits.cgroup));
    match crate::cgroup::CgroupTree::prepare(&config.supervisor.cgroup_root, &wanted) {
        Ok(tree) => {
            let root = tree.root().display().to_string();
            tracing::info!(
                event = "cgroups_ready",
                root = %root,
                "each program instance runs in its own cgroup under {root}"
            );
            for program in &config.programs {
                for (key, why) in tree.unavailable(&program.limits.cgroup) {
                    tracing::warn!(
                        event = "cgroup_limit_unavailable",
                        program = %program.name,
                        key,
                        reason = %why,
                        "program.{}.{key} cannot apply: {why}",
                        program.name
                    );
                }
            }
            Some(Arc::new(tree))
        }
        Err(why) => {
            let limited: Vec<String> = config
                .programs
                .iter()
                .filter(|p| !p.limits.cgroup.is_empty())
                .map(|p| {
                    let keys: Vec<&str> = p.limits.cgroup.keys().iter().map(|(k, _)| *k).collect();
                    format!("{}: {}", p.name, keys.join(", "))
                })
                .collect();
            let asked = matches!(
                config.supervisor.cgroup_root,
                crate::config::CgroupRoot::Path(_)
            );
            if limited.is_empty() && !asked {
                tracing::debug!(event = "cgroups_unused", reason = %why, "programs run without cgroups: {why}");
            } else {
                let unapplied = if limited.is_empty() {
                    String::new()
                } else {
                    format!("; these limits do not apply: {}", limited.join("; "))
                };
                tracing::warn!(
                    event = "cgroups_unavailable",
                    reason = %why,
                    "programs run without cgroups: {why}{unapplied}"
                );
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initial_board_lists_every_program_and_is_not_ready() {
        let source = "[program.web]\ncommand = [\"sleep\", \"1\"]\ninstances = 2\n\n\
                      [program.job]\ncommand = [\"true\"]\ntype = \"oneshot\"\nrestart = \"never\"\nrequired = false\n";
        let validation = config::validate(
            source,
            Path::new("supervisor.toml"),
            Mode::Check,
            &Host::current(),
        );
        let config = validation.config.expect("valid config");
        let board = initial_board(&config);
        let names: Vec<&str> = board.programs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["web", "job"]);
        assert_eq!(board.programs[0].instances.len(), 2);
        assert!(board.programs[1].oneshot && !board.programs[1].required);
        // Never vacuously ready before the Supervisor's first publish.
        assert_eq!(board.ready(), Err("web:0 is stopped".to_string()));
    }
}

//! Command-line definitions (clap). Parsing only; `dispatch::dispatch` runs the
//! commands. Everything that can be checked without a running supervisor
//! (signal names, durations, `NAME…` versus `--all`) is checked here, so a
//! mistake is a usage error (exit 2) before any connection is attempted.
//!
//! The value parsers (`values`) and the completion scripts (`completions`)
//! have their own modules; this file is the command tree.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use nix::sys::signal::Signal;

mod completions;
mod values;

pub use completions::{completion_script, print_completions, CompletionShell};
pub use values::{parse_duration, parse_interval, parse_signal};

/// Most lines `kelpie logs -n` asks for: the supervisor keeps the last 1000
/// lines of each program in memory (docs/cli.md, `kelpie logs`), so more could never be sent.
/// A larger `-n` is accepted and shows everything kept, as `tail -n` does.
pub const MAX_LOG_LINES: u32 = 1000;

/// Lines `kelpie logs` shows without `-n`: a screenful or two, like `tail`
/// but enough context to see what led up to a crash.
pub const DEFAULT_LOG_LINES: u32 = 100;

#[derive(Debug, Parser)]
#[command(
    name = "kelpie",
    version,
    about = "A process supervisor: restarts with backoff, graceful drain, one binary",
    long_about = "A process supervisor: restarts with backoff, graceful drain, one binary.\n\n\
        `kelpie run` supervises the programs of supervisor.toml in the foreground; the other \
        commands control a running supervisor through its control socket.",
    after_long_help = "Examples:\n  \
        kelpie run -c supervisor.toml\n  \
        kelpie status\n  \
        kelpie -s /run/kelpie.sock restart backend\n  \
        kelpie restart web --rolling\n  \
        kelpie logs web -f\n  \
        kelpie ready || echo not ready",
    propagate_version = true
)]
pub struct Cli {
    /// `kelpie -s SOCK status` as well as `kelpie status -s SOCK`: the
    /// connection options may come before the verb. `merged` folds them
    /// into the verb's own (given after the verb wins).
    #[command(flatten)]
    pub control: LeadingOpts,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The command with the options given before the verb folded in. `-c`
    /// also names the config of `run`, `check` and `config`; an option the
    /// verb has no use for is a usage error (exit 2), never ignored.
    pub fn merged(self) -> Result<Command, String> {
        let outer = self.control;
        let mut command = self.command;
        let verb = command.verb();
        if let Some(inner) = command.control_mut() {
            inner.socket = inner.socket.take().or(outer.socket);
            inner.config = inner.config.take().or(outer.config);
            inner.timeout = inner.timeout.or(outer.timeout);
            return Ok(command);
        }
        // `config --running` is a control command too (its -s and --timeout
        // are rejected without --running, as if given after the verb).
        if let Command::Config {
            config,
            running,
            socket,
            timeout,
        } = &mut command
        {
            if !*running && (outer.socket.is_some() || outer.timeout.is_some()) {
                return Err(
                    "-s/--socket and --timeout apply to `kelpie config --running` only".into(),
                );
            }
            *config = config.take().or(outer.config);
            *socket = socket.take().or(outer.socket);
            *timeout = timeout.or(outer.timeout);
            return Ok(command);
        }
        let unused = match (&outer.socket, &outer.timeout) {
            (Some(_), _) => Some("-s/--socket"),
            (None, Some(_)) => Some("--timeout"),
            (None, None) => None,
        };
        if let Some(option) = unused {
            return Err(format!(
                "{option} applies to control commands, not to `kelpie {verb}`"
            ));
        }
        match &mut command {
            Command::Run { config } | Command::Check { config } => {
                *config = config.take().or(outer.config);
            }
            _ if outer.config.is_some() => {
                return Err(format!("-c/--config does not apply to `kelpie {verb}`"))
            }
            _ => {}
        }
        Ok(command)
    }
}

/// How a control command finds the supervisor, and how long it waits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
#[command(next_help_heading = "Connection")]
pub struct ControlOpts {
    /// Control socket of the running supervisor (default: $KELPIE_SOCKET,
    /// else the config's supervisor.control_socket, else the default path).
    // Not `env = "KELPIE_SOCKET"`: the caller resolves the environment so
    // the lookup order (-s, $KELPIE_SOCKET, config, default) lives in one
    // place and an error can say which source the path came from.
    #[arg(short = 's', long = "socket", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Config file whose supervisor.control_socket to use (default:
    /// $KELPIE_CONFIG, ./supervisor.toml, /etc/kelpie/supervisor.toml).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Give up after this long, e.g. 30s, 2m, 500ms (default: derived from
    /// the programs' start/stop timeouts for waiting commands, 10s otherwise).
    #[arg(long = "timeout", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

/// The options that may also come before the verb (`kelpie -s SOCK
/// status`); `Cli::merged` hands them to the verb.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
#[command(next_help_heading = "Options before the verb (also accepted after it)")]
pub struct LeadingOpts {
    /// Control socket of the running supervisor (control commands).
    #[arg(short = 's', long = "socket", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Config file: of `run`, `check`, `config`, and whose
    /// supervisor.control_socket a control command uses.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Give up after this long, e.g. 30s, 2m (control commands).
    #[arg(long = "timeout", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

/// The programs an action applies to: some names, or `--all`, never both
/// and never neither (a bare `kelpie stop` stopping everything would be a
/// dangerous default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
#[group(required = true, multiple = false)]
pub struct Targets {
    /// Programs (web), instances (web:1) or groups (every member) to act on.
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// Act on every program.
    #[arg(long = "all")]
    pub all: bool,
}

/// `kelpie top --sort`: CPU, memory and restarts most first, names A-Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TopSort {
    Cpu,
    #[value(alias = "mem", alias = "memory")]
    Rss,
    Restarts,
    Name,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the supervisor in the foreground (never daemonizes).
    #[command(
        after_long_help = "Examples:\n  kelpie run\n  kelpie run -c /etc/kelpie/supervisor.toml"
    )]
    Run {
        /// Config file (default: $KELPIE_CONFIG, ./supervisor.toml, /etc/kelpie/supervisor.toml).
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Validate a config file and print every problem found; starts nothing.
    #[command(after_long_help = "Exit status: 0 valid, 78 invalid.\n\n\
        Examples:\n  kelpie check\n  kelpie check -c staging.toml")]
    Check {
        /// Config file (default: $KELPIE_CONFIG, ./supervisor.toml, /etc/kelpie/supervisor.toml).
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Show the state of every program (or the named ones).
    ///
    /// One row per program, or per instance for programs with several
    /// instances: name, state, pid, uptime, restarts, ready, and why it is
    /// not running or ready.
    #[command(
        after_long_help = "Examples:\n  kelpie status\n  kelpie status web db\n  kelpie status --json | jq '.programs[].state'"
    )]
    Status {
        /// Programs or instances (web:1) to show (default: all).
        #[arg(value_name = "NAME")]
        names: Vec<String>,
        /// Print the reply as JSON (the control API's ProgramsReply).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        control: ControlOpts,
    },
    /// Start programs and wait until they run.
    ///
    /// Clears `failed` and `stopped by user`, resets the backoff, and waits
    /// until every instance is running (or a oneshot completed); fails as
    /// soon as an instance crashes or the timeout passes.
    #[command(
        after_long_help = "Examples:\n  kelpie start web\n  kelpie start --all --timeout 2m\n  kelpie start worker --no-wait"
    )]
    Start {
        #[command(flatten)]
        targets: Targets,
        /// Return once the supervisor accepted the action.
        #[arg(long)]
        no_wait: bool,
        /// Print the result as JSON (the control API's ActionReply).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        control: ControlOpts,
    },
    /// Stop programs and wait until none of their processes remains.
    ///
    /// Sticky: a stopped program is not started again by a crash or a
    /// reload until `kelpie start`.
    #[command(
        after_long_help = "Examples:\n  kelpie stop worker\n  kelpie stop web:1\n  kelpie stop --all"
    )]
    Stop {
        #[command(flatten)]
        targets: Targets,
        /// Return once the supervisor accepted the action.
        #[arg(long)]
        no_wait: bool,
        /// Print the result as JSON (the control API's ActionReply).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        control: ControlOpts,
    },
    /// Stop, then start programs, and wait until they run again.
    ///
    /// With --rolling the instances of a program are replaced one at a
    /// time: each replacement must become ready before the next old
    /// instance stops; if one does not, the restart stops there and the
    /// remaining old instances keep running.
    #[command(
        after_long_help = "Examples:\n  kelpie restart web\n  kelpie restart web --rolling\n  kelpie restart --all"
    )]
    Restart {
        #[command(flatten)]
        targets: Targets,
        /// One instance at a time, each replacement ready before the next old one stops.
        #[arg(long)]
        rolling: bool,
        /// Return once the supervisor accepted the action.
        #[arg(long)]
        no_wait: bool,
        /// Print the result as JSON (the control API's ActionReply).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        control: ControlOpts,
    },
    /// Send a signal to the process group of every instance of programs.
    #[command(
        after_long_help = "SIG is a name or a number: TERM, SIGTERM, term and 15 are the same signal.\n\n\
        Examples:\n  kelpie signal HUP nginx\n  kelpie signal USR1 --all"
    )]
    Signal {
        /// Signal to send: TERM, SIGTERM, term or 15.
        #[arg(value_name = "SIG", value_parser = parse_signal)]
        signal: Signal,
        #[command(flatten)]
        targets: Targets,
        /// Print the result as JSON (the control API's ActionReply).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        control: ControlOpts,
    },
    /// Re-read the config file and apply the difference (same as SIGHUP).
    ///
    /// Starts new programs, stops removed ones, restarts changed ones and
    /// leaves the others untouched. An invalid config is refused (exit 78)
    /// and the running one is kept.
    #[command(after_long_help = "Examples:\n  kelpie diff && kelpie reload")]
    Reload {
        /// Print the plan as JSON (the control API's ReloadReply).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        control: ControlOpts,
    },
    /// Show what `reload` would do, without doing it.
    ///
    /// Compares the running config with the file given by -c (default: the
    /// file the supervisor was started with).
    #[command(after_long_help = "Examples:\n  kelpie diff\n  kelpie diff -c new.toml")]
    Diff {
        /// Print the plan as JSON (the control API's ReloadReply).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        control: ControlOpts,
    },
    /// Print recent output lines (kept in memory) of a program, one
    /// instance, or every program.
    #[command(
        after_long_help = "Examples:\n  kelpie logs web\n  kelpie logs web -n 20 -f\n  kelpie logs web:1\n  kelpie logs -f --timestamps"
    )]
    Logs {
        /// Program whose output to show, or one instance of it (`web:1`).
        /// Without it, every program's lines, merged in time order.
        #[arg(value_name = "NAME")]
        name: Option<String>,
        /// Keep printing new lines as they come, until interrupted.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Prefix each line with its program and instance (`web:0 | `) even
        /// when only one instance is shown.
        #[arg(long)]
        prefix: bool,
        /// Prefix each line with the time kelpie read it (RFC 3339, UTC,
        /// milliseconds).
        #[arg(short = 't', long)]
        timestamps: bool,
        /// How many recent lines to show first (at most the 1000 kept are
        /// shown; a larger N shows all of them).
        #[arg(
            short = 'n',
            long = "lines",
            value_name = "N",
            default_value_t = DEFAULT_LOG_LINES
        )]
        lines: u32,
        /// Print each event as a JSON line (the control API's LogEvent).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        control: ControlOpts,
    },
    /// Explain a program's recent exits: a one-line verdict, then its last
    /// exits newest first (how each ended, what kelpie did next, the last
    /// lines the process wrote).
    ///
    /// kelpie keeps the last 20 exits of each program in memory, each with
    /// the last 20 output lines of its process.
    #[command(
        after_long_help = "Examples:\n  kelpie why web\n  kelpie why web:1\n  kelpie why web --json | jq -r '.exits[0].output[].line'"
    )]
    Why {
        /// Program to explain, or one instance of it (`web:1`).
        #[arg(value_name = "NAME")]
        name: String,
        /// Print the reply as JSON (the control API's HistoryReply).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        control: ControlOpts,
    },
    /// Shut the running supervisor down gracefully (same as SIGTERM).
    ///
    /// Waits until every program is stopped and the supervisor is done.
    #[command(after_long_help = "Examples:\n  kelpie shutdown\n  kelpie shutdown --no-wait")]
    Shutdown {
        /// Return once the supervisor began shutting down.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        control: ControlOpts,
    },
    /// Exit 0 if the supervisor (or one program) is ready, else 1.
    ///
    /// For Docker HEALTHCHECK and scripts; exits 69 when no supervisor answers.
    #[command(
        after_long_help = "Examples:\n  kelpie ready\n  kelpie ready db --timeout 2s\n  HEALTHCHECK CMD [\"kelpie\", \"ready\"]"
    )]
    Ready {
        /// Program or instance (web:0) to ask about (default: the supervisor as a whole).
        #[arg(value_name = "NAME")]
        name: Option<String>,
        /// Print the reply as JSON (the control API's ReadyReply).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        control: ControlOpts,
    },
    /// Exit 0 if a supervisor answers on the control socket, else 69.
    #[command(after_long_help = "Examples:\n  kelpie health\n  kelpie health --json")]
    Health {
        /// Print the reply as JSON (the control API's HealthReply).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        control: ControlOpts,
    },
    /// Print the effective config (every default filled in) as TOML.
    ///
    /// By default the file as it is on disk now, which the supervisor may
    /// not run yet (until a reload); --running asks the running supervisor
    /// for the config it uses. The first line says which one it is.
    #[command(after_long_help = "Examples:\n  \
        kelpie config > effective.toml && kelpie check -c effective.toml\n  \
        kelpie config --running\n  \
        diff <(kelpie config --running | tail -n +2) <(kelpie config | tail -n +2)")]
    Config {
        /// Config file to print (default: $KELPIE_CONFIG, ./supervisor.toml,
        /// /etc/kelpie/supervisor.toml); with --running, the config whose
        /// supervisor.control_socket to use.
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print the config the running supervisor uses (asked over the
        /// control socket) instead of the file on disk.
        #[arg(long)]
        running: bool,
        /// With --running: control socket of the running supervisor
        /// (default: $KELPIE_SOCKET, else the config's
        /// supervisor.control_socket, else the default path).
        #[arg(
            short = 's',
            long = "socket",
            value_name = "PATH",
            requires = "running"
        )]
        socket: Option<PathBuf>,
        /// With --running: give up after this long (default 10s).
        #[arg(long = "timeout", value_name = "DURATION", value_parser = parse_duration, requires = "running")]
        timeout: Option<Duration>,
    },
    /// Translate an existing setup (supervisord, launchd, Procfile,
    /// process-compose, pm2) into a kelpie config.
    ///
    /// FORMAT is one of supervisord, launchd, procfile, process-compose, pm2;
    /// without it the format is told from the first file's name and content.
    /// The config goes to stdout (or -o FILE, written whole or not at all);
    /// every source key kelpie has no equivalent for is listed on stderr
    /// as `file:line: key: why` and commented in the config. The result
    /// passes `kelpie check`.
    #[command(
        after_long_help = "Exit status: 0 imported, 65 invalid input (or --strict and \
        something was not carried over; nothing is written), 66 an input file cannot be read, \
        73 the output cannot be written.\n\n\
        Examples:\n  \
        kelpie import supervisord /etc/supervisor/supervisord.conf -o supervisor.toml\n  \
        kelpie import Procfile > supervisor.toml\n  \
        kelpie import launchd ~/Library/LaunchAgents/*.plist --strict"
    )]
    Import {
        /// The source format and files: `[FORMAT] FILE…` (a file literally
        /// named like a format is written `./pm2`).
        #[arg(value_name = "FORMAT|FILE", required = true, num_args = 1..)]
        args: Vec<String>,
        /// Write the config to FILE instead of stdout (replaced only with --force).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        /// Exit 65 and write nothing when any key could not be carried over.
        #[arg(long)]
        strict: bool,
        /// Replace the -o file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Run one command as a tini-style init: forward signals, reap zombies,
    /// exit with its status. No config file.
    ///
    /// CMD runs in its own process group with kelpie's stdin, stdout and
    /// stderr. Every catchable signal is forwarded to that group; SIGTERM and
    /// SIGINT also stop it (SIGKILL after --stop-timeout). Exit status: the
    /// command's code, 128+N if it died of signal N, 127 if CMD is not found,
    /// 126 if it is not executable.
    #[command(after_long_help = "Examples:\n  \
        kelpie exec -- python3 -m http.server\n  \
        kelpie exec --restart on-failure --stop-timeout 30s -- ./worker --queue jobs\n  \
        ENTRYPOINT [\"kelpie\", \"exec\", \"--\"]   (Dockerfile)")]
    Exec {
        /// When to start the command again after it exits.
        #[arg(long, value_enum, value_name = "POLICY", default_value = "never")]
        restart: crate::exec::RestartPolicy,
        /// After forwarding SIGTERM/SIGINT (or when the command exits and left
        /// processes behind), SIGKILL what is still alive after this long.
        #[arg(long = "stop-timeout", value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
        stop_timeout: Duration,
        /// The command and its arguments (use `--` before it when it starts
        /// with `-`).
        #[arg(value_name = "CMD", required = true, num_args = 1.., trailing_var_arg = true)]
        command: Vec<OsString>,
    },
    /// A live view of every program and instance: state, readiness, pid,
    /// uptime, restarts, CPU and memory; restart, stop or start one, or
    /// read its log tail.
    ///
    /// Keys: Up/Down or j/k select; R restart, S start, X stop the selected
    /// program or instance; l or Enter its log tail (Esc back); c, m, r, n
    /// sort by CPU, memory, restarts, name; q or Ctrl-C quit. Needs a
    /// terminal; --once prints one frame as plain text instead.
    #[command(
        after_long_help = "Exit status: 0 quit (or --once printed), 2 no terminal \
        and no --once, 69 no supervisor answers (--once), 128+N ended by signal N \
        (SIGTERM, SIGHUP, SIGINT; the terminal is restored).\n\n\
        Examples:\n  kelpie top\n  kelpie top --sort rss --interval 2s\n  \
        kelpie top --once --sort rss | head -6"
    )]
    Top {
        /// Print one frame as plain text (no colors, no screen control) and
        /// exit; takes one --interval, to measure CPU.
        #[arg(long)]
        once: bool,
        /// The order of the rows (keys c, m, r and n change it).
        #[arg(long, value_enum, value_name = "KEY", default_value_t = TopSort::Cpu)]
        sort: TopSort,
        /// Time between refreshes, at least 1s.
        #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
        interval: Duration,
        #[command(flatten)]
        control: ControlOpts,
    },
    /// Print a shell completion script to stdout.
    #[command(after_long_help = "Examples:\n  \
        kelpie completions bash > ~/.local/share/bash-completion/completions/kelpie\n  \
        kelpie completions zsh > \"${fpath[1]}/_kelpie\"\n  \
        kelpie completions fish > ~/.config/fish/completions/kelpie.fish")]
    Completions {
        #[arg(value_enum, value_name = "SHELL")]
        shell: CompletionShell,
    },
}

impl Command {
    /// The connection options of a control command.
    pub fn control_mut(&mut self) -> Option<&mut ControlOpts> {
        match self {
            Command::Status { control, .. }
            | Command::Start { control, .. }
            | Command::Stop { control, .. }
            | Command::Restart { control, .. }
            | Command::Signal { control, .. }
            | Command::Reload { control, .. }
            | Command::Diff { control, .. }
            | Command::Logs { control, .. }
            | Command::Why { control, .. }
            | Command::Shutdown { control, .. }
            | Command::Ready { control, .. }
            | Command::Health { control, .. }
            | Command::Top { control, .. } => Some(control),
            Command::Run { .. }
            | Command::Check { .. }
            | Command::Config { .. }
            | Command::Exec { .. }
            | Command::Import { .. }
            | Command::Completions { .. } => None,
        }
    }

    /// The subcommand's name as typed (`status`, `restart`, …), for messages.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Run { .. } => "run",
            Command::Check { .. } => "check",
            Command::Status { .. } => "status",
            Command::Start { .. } => "start",
            Command::Stop { .. } => "stop",
            Command::Restart { .. } => "restart",
            Command::Signal { .. } => "signal",
            Command::Reload { .. } => "reload",
            Command::Diff { .. } => "diff",
            Command::Logs { .. } => "logs",
            Command::Why { .. } => "why",
            Command::Shutdown { .. } => "shutdown",
            Command::Ready { .. } => "ready",
            Command::Health { .. } => "health",
            Command::Config { .. } => "config",
            Command::Completions { .. } => "completions",
            Command::Exec { .. } => "exec",
            Command::Import { .. } => "import",
            Command::Top { .. } => "top",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kelpie").chain(args.iter().copied()))
    }

    fn usage_error(args: &[&str]) -> clap::Error {
        match parse(args) {
            Ok(cli) => panic!("{args:?} parsed as {:?}", cli.command),
            Err(err) => err,
        }
    }

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn targets_are_names_or_all() {
        let cli = parse(&["stop", "web", "db"]).expect("names");
        let Command::Stop { targets, .. } = cli.command else {
            panic!("not stop")
        };
        assert_eq!(targets.names, ["web", "db"]);
        assert!(!targets.all);

        let cli = parse(&["restart", "--all", "--rolling"]).expect("--all");
        let Command::Restart {
            targets, rolling, ..
        } = cli.command
        else {
            panic!("not restart")
        };
        assert!(targets.all && targets.names.is_empty() && rolling);

        assert_eq!(
            usage_error(&["stop"]).kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            usage_error(&["start", "web", "--all"]).kind(),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            usage_error(&["signal", "TERM"]).kind(),
            ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn signal_is_checked_at_parse_time() {
        let cli = parse(&["signal", "hup", "web"]).expect("hup");
        let Command::Signal {
            signal, targets, ..
        } = cli.command
        else {
            panic!("not signal")
        };
        assert_eq!(signal, Signal::SIGHUP);
        assert_eq!(targets.names, ["web"]);

        let err = usage_error(&["signal", "NOPE", "web"]);
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn control_options_are_on_every_control_command() {
        let cli = parse(&[
            "status",
            "-s",
            "/tmp/k.sock",
            "-c",
            "k.toml",
            "--timeout",
            "2s",
            "--json",
            "web",
        ])
        .expect("status");
        let Command::Status {
            names,
            json,
            control,
        } = cli.command
        else {
            panic!("not status")
        };
        assert_eq!(names, ["web"]);
        assert!(json);
        assert_eq!(
            control,
            ControlOpts {
                socket: Some(PathBuf::from("/tmp/k.sock")),
                config: Some(PathBuf::from("k.toml")),
                timeout: Some(Duration::from_secs(2)),
            }
        );
        for verb in [
            "status", "reload", "diff", "shutdown", "ready", "health", "logs", "why",
        ] {
            let mut args = vec![verb, "--socket", "x.sock"];
            if verb == "logs" || verb == "why" {
                args.push("web");
            }
            parse(&args).unwrap_or_else(|err| panic!("{verb}: {err}"));
        }
        assert_eq!(
            usage_error(&["status", "--timeout", "soon"]).kind(),
            ErrorKind::ValueValidation
        );
    }

    #[test]
    fn connection_options_may_come_before_the_verb() {
        let cli = parse(&[
            "-s",
            "/a.sock",
            "--timeout",
            "3s",
            "status",
            "-s",
            "/b.sock",
        ])
        .expect("options before the verb");
        let Ok(Command::Status { control, .. }) = cli.merged() else {
            panic!("not status")
        };
        // Given after the verb wins; the rest comes from before it.
        assert_eq!(
            control,
            ControlOpts {
                socket: Some(PathBuf::from("/b.sock")),
                config: None,
                timeout: Some(Duration::from_secs(3)),
            }
        );
        let cli = parse(&["-c", "k.toml", "check"]).expect("-c before check");
        let Ok(Command::Check { config }) = cli.merged() else {
            panic!("not check")
        };
        assert_eq!(config, Some(PathBuf::from("k.toml")));
        let cli = parse(&["-c", "a.toml", "run", "-c", "b.toml"]).expect("-c twice");
        let Ok(Command::Run { config }) = cli.merged() else {
            panic!("not run")
        };
        assert_eq!(config, Some(PathBuf::from("b.toml")));
        for args in [
            &["-s", "x.sock", "run"][..],
            &["--timeout", "1s", "check"],
            &["-c", "k.toml", "completions", "bash"],
            &["-s", "x.sock", "exec", "--", "true"],
        ] {
            let cli = parse(args).unwrap_or_else(|err| panic!("{args:?}: {err}"));
            let err = cli.merged().expect_err("an option the verb does not use");
            assert!(
                err.contains("does not apply") || err.contains("applies to control"),
                "{err}"
            );
        }
    }

    #[test]
    fn config_running_takes_connection_options_from_before_the_verb() {
        let cli = parse(&["-s", "/a.sock", "config", "--running"]).expect("config --running");
        let Ok(Command::Config {
            socket, running, ..
        }) = cli.merged()
        else {
            panic!("not config")
        };
        assert!(running);
        assert_eq!(socket, Some(PathBuf::from("/a.sock")));
        let cli = parse(&["-s", "/a.sock", "config"]).expect("parses");
        let err = cli.merged().expect_err("-s without --running");
        assert!(err.contains("--running"), "{err}");
    }

    #[test]
    fn logs_lines_default_and_bounds() {
        let cli = parse(&["logs", "web"]).expect("logs");
        let Command::Logs {
            name,
            follow,
            lines,
            ..
        } = cli.command
        else {
            panic!("not logs")
        };
        assert_eq!(
            (name.as_deref(), follow, lines),
            (Some("web"), false, DEFAULT_LOG_LINES)
        );

        let cli = parse(&["logs", "web", "-f", "-n", "0"]).expect("-n 0");
        let Command::Logs { follow, lines, .. } = cli.command else {
            panic!("not logs")
        };
        assert!(follow);
        assert_eq!(lines, 0);
        // Like `tail -n`: more than is kept means everything kept.
        let cli = parse(&["logs", "web", "-n", "2000"]).expect("-n 2000");
        let Command::Logs { lines, .. } = cli.command else {
            panic!("not logs")
        };
        assert_eq!(lines, 2000);
        assert_eq!(
            usage_error(&["logs", "web", "-n", "-1"]).kind(),
            ErrorKind::UnknownArgument
        );
        assert_eq!(
            usage_error(&["logs", "web", "-n", "many"]).kind(),
            ErrorKind::ValueValidation
        );
    }

    #[test]
    fn verbs_match_the_subcommand_names() {
        let command = Cli::command();
        let names: Vec<&str> = command.get_subcommands().map(|c| c.get_name()).collect();
        for name in &names {
            let mut args = vec![*name];
            // The smallest valid argument list for each verb.
            match *name {
                "start" | "stop" | "restart" => args.push("--all"),
                "signal" => args.extend(["TERM", "--all"]),
                "logs" | "why" => args.push("web"),
                "completions" => args.push("bash"),
                "exec" => args.extend(["--", "true"]),
                "import" => args.push("Procfile"),
                _ => {}
            }
            let cli = parse(&args).unwrap_or_else(|err| panic!("{name}: {err}"));
            assert_eq!(cli.command.verb(), *name);
        }
        assert_eq!(names.len(), 19);
    }
}

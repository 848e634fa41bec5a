//! Subcommand entry points and exit codes: `main` only parses and exits;
//! this runs the subcommand. `kelpie run` is the daemon (`daemon.rs`),
//! `kelpie exec` the one-command init (`exec.rs`), the control verbs the
//! client side (`control_client`).

use std::path::Path;

use crate::cli::{Cli, Command};
use crate::config::{self, Host, Mode};
use crate::EXIT_CONFIG;

pub fn dispatch(cli: Cli) -> i32 {
    let command = match cli.merged() {
        Ok(command) => command,
        Err(usage) => {
            eprintln!("error: {usage}\n\nFor more information, try '--help'.");
            return 2;
        }
    };
    match command {
        Command::Check { config } => check(config.as_deref()),
        Command::Run { config } => crate::daemon::run(config.as_deref()),
        Command::Completions { shell } => crate::cli::print_completions(shell),
        Command::Exec {
            restart,
            stop_timeout,
            command,
        } => crate::exec::run(restart, stop_timeout, command),
        Command::Import {
            args,
            output,
            strict,
            force,
        } => import(args, output, strict, force),
        Command::Config {
            config,
            running: false,
            ..
        } => print_config(config.as_deref()),
        Command::Top {
            once,
            sort,
            interval,
            control,
        } => crate::top::run(once, sort, interval, &control),
        // `config --running` asks the supervisor, like the control verbs.
        command => crate::control_client::run(command),
    }
}

/// `kelpie import [FORMAT] FILE…`: the first word is the format when it
/// names one (and more words follow).
fn import(
    mut args: Vec<String>,
    output: Option<std::path::PathBuf>,
    strict: bool,
    force: bool,
) -> i32 {
    use crate::import::{Format, Options};
    let format = match args.first().and_then(|a| Format::from_name(a)) {
        Some(format) if args.len() > 1 => {
            args.remove(0);
            Some(format)
        }
        Some(format) => {
            eprintln!(
                "error: no FILE given after the format `{}`\n\nFor more information, try '--help'.",
                format.name()
            );
            return 2;
        }
        None => None,
    };
    crate::import::run(Options {
        format,
        files: args.into_iter().map(Into::into).collect(),
        output,
        strict,
        force,
    })
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn check(explicit: Option<&Path>) -> i32 {
    let path = config::find_config(explicit);
    let validation = config::load(&path, Mode::Check, &Host::current());
    validation.print_diagnostics();
    let errors = validation.errors().count();
    let warnings = validation.warnings().count();
    match &validation.config {
        Some(config) if errors == 0 => {
            let unapplicable = crate::cgroup::unapplicable(
                &config.supervisor.cgroup_root,
                config
                    .programs
                    .iter()
                    .map(|p| (p.name.as_str(), &p.limits.cgroup)),
            );
            for line in &unapplicable {
                eprintln!("{}: warning: {line}", path.display());
            }
            let warn = match warnings + unapplicable.len() {
                0 => String::new(),
                n => format!(", {}", plural(n, "warning")),
            };
            println!(
                "{}: OK ({}, {}{warn})",
                path.display(),
                plural(config.programs.len(), "program"),
                plural(config.instance_count(), "instance")
            );
            0
        }
        _ => {
            if !validation.unreadable() {
                eprintln!("{}: invalid ({})", path.display(), plural(errors, "error"));
            }
            EXIT_CONFIG
        }
    }
}

/// `kelpie config`: the effective config as TOML, or the errors (78).
fn print_config(explicit: Option<&Path>) -> i32 {
    let path = config::find_config(explicit);
    let validation = config::load(&path, Mode::Check, &Host::current());
    match &validation.config {
        Some(config) if validation.errors().next().is_none() => {
            for warning in validation.warnings() {
                eprintln!("{warning}");
            }
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            // A closed pipe (`| head`) just ends the output.
            let text = format!(
                "{}\n\n{}",
                config::print::disk_header(&config.path),
                config::print::to_toml(config)
            );
            let _ = out.write_all(text.as_bytes());
            0
        }
        _ => {
            validation.print_diagnostics();
            if !validation.unreadable() {
                eprintln!("{}: invalid config", path.display());
            }
            EXIT_CONFIG
        }
    }
}

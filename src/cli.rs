//! Command-line definitions (clap). Parsing only; `main.rs` dispatches.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "kelpie",
    version,
    about = "A process supervisor: restarts with backoff, graceful drain, one binary",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the supervisor in the foreground (never daemonizes).
    Run {
        /// Config file (default: $KELPIE_CONFIG, ./supervisor.toml, /etc/kelpie/supervisor.toml).
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Validate a config file and print every problem found; starts nothing.
    Check {
        /// Config file (default: $KELPIE_CONFIG, ./supervisor.toml, /etc/kelpie/supervisor.toml).
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

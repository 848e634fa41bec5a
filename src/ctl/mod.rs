//! The control commands (`status`, `start`, `reload`, …): clients of the
//! control socket. `render` turns the control API's replies into the text
//! they print; it does no I/O, so every output format is unit-tested.

pub mod render;

use crate::cli::Command;

/// Runs one control command and returns its exit code.
// Placeholder so the CLI surface compiles; the client replaces it.
pub fn run(command: Command) -> i32 {
    eprintln!("kelpie: {} is not implemented yet", command.verb());
    1
}

//! The control commands (`status`, `start`, `reload`, …): clients of the
//! control socket. `render` turns the control API's replies into the text
//! they print; it does no I/O, so every output format is unit-tested.

pub mod render;

mod commands;

pub use commands::{run, socket_path, EXIT_UNAVAILABLE};

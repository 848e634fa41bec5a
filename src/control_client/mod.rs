//! The control commands (`status`, `start`, `reload`, …): the client side
//! of the control socket (`control` is the side `kelpie run` serves).
//! `connection` speaks HTTP/1.1 + JSON over the socket, `commands` runs
//! each verb and maps replies to exit codes, and `render` turns replies
//! into the text they print; it does no I/O, so every output format is
//! unit-tested.

pub mod connection;
pub mod render;

mod commands;

pub(crate) use commands::segment;
pub use commands::{run, socket_path, EXIT_UNAVAILABLE};

//! Test harness: runs the real `kelpie` binary on a config in a temporary
//! directory, collects its JSON log lines, and waits for conditions with
//! deadlines (never fixed sleeps).
//!
//! - `harness`: `Kelpie`, the binary under test and its event log
//! - `events`: reading events (`is`, timestamps)
//! - `wait`: deadlines (`wait_until`, `secs`)
//! - `procfs`: /proc: marked processes, liveness, sockets
//! - `http`: a raw HTTP/1.1 client for the endpoints
//! - `ctl`: control commands and child output with a deadline
//! - `import`: `kelpie import` and running what it writes
//!
//! Everything is re-exported here, so a test file says `use common::…`.

#![allow(dead_code)]
// Test harness code: panicking on a broken environment is the right
// failure, and std's Instant is fine for test deadlines.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods
)]

mod ctl;
mod events;
mod harness;
mod http;
mod import;
mod procfs;
mod wait;

// A test file that uses none of a module's helpers would otherwise warn
// about its re-export.
#[allow(unused_imports)]
pub use {ctl::*, events::*, harness::*, http::*, import::*, procfs::*, wait::*};

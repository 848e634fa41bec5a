//! kelpie: a process supervisor.
//!
//! ```text
//!  signals, control ──► Supervisor actor (shell) ──► Fleet::step (pure fleet core:
//!                          │ spawn_linked ▲ reports    gating, shutdown, groups,
//!                 ┌────────┼────────┐     │            reload, rolls, budget)
//!              Program  Program  Program    one actor per instance, pure state machine
//!                 │
//!                 ├─ Reaper (one owner of every wait): exit → Program
//!                 └─ output pumps: pipe → lines → relay / file, tail
//! ```
//!
//! - `config`: supervisor.toml → validated `Config`, every error with a location
//! - `state`, `backoff`: the pure lifecycle and restart arithmetic
//! - `process`, `spawn`, `reaper`, `procfs`, `os_lookup`: the OS boundary
//!   (what a child gets, starting it, signal, wait, `/proc`, users and
//!   executables)
//! - `program`, `supervisor`: the actors; `supervisor::core` is the pure
//!   fleet state machine they carry out, `report` what instances tell it
//! - `output`: program stdout/stderr handling; `exit_history`: each program's
//!   last exits, their verdict and the kernel's OOM evidence (`kelpie why`)
//! - `status`, `http`, `metrics`: the read model, the `/health` `/ready`
//!   `/metrics` endpoints and the Prometheus exposition
//! - `http_server`: the hardened HTTP/1.1 server under `http` and the
//!   control socket
//! - `control`, `control_client`: the control socket as served by `kelpie run`,
//!   and the commands that use it (`status`, `start`, …)
//! - `top`: `kelpie top`, the live terminal view over the control socket
//! - `exec`: `kelpie exec`, the config-less tini-style init for one command
//! - `logging`, `signals`, `cli`, `dispatch`: plumbing; `daemon`: `kelpie run`'s start-up
//! - `restart_policy`, `output_stream`: vocabulary shared by layers that must
//!   not depend on each other (the `import_cycles` test keeps them apart)

pub mod backoff;
pub mod cgroup;
pub mod cli;
pub mod config;
pub mod control;
pub mod control_client;
pub mod daemon;
pub mod dispatch;
pub mod exec;
pub mod exit_history;
pub mod fd_budget;
pub mod guardian;
pub mod http;
pub mod http_server;
pub mod import;
#[cfg(test)]
mod import_cycles;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod notify_socket;
pub mod os_lookup;
pub mod output;
pub mod output_stream;
pub mod probe;
pub mod process;
pub mod procfs;
pub mod program;
pub mod reaper;
pub mod reload;
pub mod report;
pub mod restart_policy;
pub mod service_manager;
pub mod signals;
pub mod spawn;
pub mod state;
pub mod status;
pub mod supervisor;
pub mod top;

/// sysexits: the config is invalid.
pub const EXIT_CONFIG: i32 = 78;

//! What the control commands print, as pure functions of the control API's
//! replies (`control::protocol`). No I/O here except `use_color` reading
//! the environment, so every format is pinned by a unit test and scripts
//! can rely on it (docs/cli.md).
//!
//! One module per output: `status` (the table and its colors), `actions`
//! (start/stop/restart/signal results), `plan` (reload and diff), `logs`,
//! `health` (ready and health), `config` (`config --running`), `why` (the
//! crash history) and `errors` (refusals, for every command).

mod actions;
mod config;
mod errors;
mod health;
mod logs;
mod plan;
mod status;
mod why;

pub use actions::action_lines;
pub use config::running_config_text;
pub use errors::{error_line, error_lines};
pub use health::{health_line, ready_line};
pub use logs::{log_line, removed_notice, skipped_notice, LogStyle};
pub use plan::plan_lines;
pub use status::{color_wanted, format_uptime, status_table, status_table_of, use_color};
pub use why::why_lines;

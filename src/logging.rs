//! kelpie's own logs (tracing): text for people, JSON for machines.
//!
//! `KELPIE_LOG` and `KELPIE_LOG_FORMAT` override the config. ractor's spans
//! are filtered out because they would put a duplicate `name` key into JSON
//! records.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::output::RelayFormat;

/// Parses `KELPIE_LOG_FORMAT`; `None` when unset.
pub fn format_override() -> Result<Option<LogFormat>, String> {
    match std::env::var("KELPIE_LOG_FORMAT") {
        Err(_) => Ok(None),
        Ok(value) => match value.as_str() {
            "auto" => Ok(Some(LogFormat::Auto)),
            "text" => Ok(Some(LogFormat::Text)),
            "json" => Ok(Some(LogFormat::Json)),
            other => Err(format!(
                "KELPIE_LOG_FORMAT=\"{other}\" is not one of: auto, text, json"
            )),
        },
    }
}

/// The effective output format: `auto` means text on a terminal, JSON
/// otherwise (a log collector).
pub fn resolve(format: LogFormat) -> RelayFormat {
    match format {
        LogFormat::Text => RelayFormat::Text,
        LogFormat::Json => RelayFormat::Json,
        LogFormat::Auto if std::io::stdout().is_terminal() => RelayFormat::Text,
        LogFormat::Auto => RelayFormat::Json,
    }
}

/// Installs the global subscriber. `level` is EnvFilter syntax.
pub fn init(format: RelayFormat, level: &str) -> Result<(), String> {
    let directives = std::env::var("KELPIE_LOG").unwrap_or_else(|_| level.to_string());
    let filter = EnvFilter::try_new(format!("{directives},ractor=warn"))
        .map_err(|e| format!("invalid log filter \"{directives}\": {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .with_target(false);
    let result = match format {
        RelayFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        RelayFormat::Text => builder
            .with_ansi(std::io::stdout().is_terminal())
            .try_init(),
    };
    result.map_err(|e| format!("cannot set up logging: {e}"))
}

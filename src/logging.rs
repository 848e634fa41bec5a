//! kelpie's own logs (tracing): text for people, JSON for machines.
//!
//! `KELPIE_LOG` and `KELPIE_LOG_FORMAT` override the config. ractor's spans
//! are filtered out because they would put a duplicate `name` key into JSON
//! records.
//!
//! Filters are `target=level` directives (`info`, `warn,kelpie=debug`):
//! tracing-subscriber's `Targets`, not `EnvFilter`, whose regex engine would
//! add about a megabyte of code to a process whose private memory is mostly
//! its own code.

use std::io::IsTerminal;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

/// `log_format` as configured: `auto` is decided at start-up by `resolve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Auto,
    Text,
    Json,
}

/// The format kelpie's log records are written in; relayed program lines
/// follow it so one stream has one format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayFormat {
    Text,
    Json,
}

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

/// Parses a log filter: comma-separated `level` or `target=level`.
pub fn parse_filter(text: &str) -> Result<Targets, String> {
    let invalid = |why: &str| format!("invalid log filter \"{text}\": {why}");
    let mut targets = Targets::new();
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let (target, level) = match directive.split_once('=') {
            Some((target, level)) => (Some(target.trim()), level.trim()),
            None => (None, directive),
        };
        let level: LevelFilter = level.parse().map_err(|_| {
            invalid(&format!(
                "\"{level}\" is not a level (trace, debug, info, warn, error, off)"
            ))
        })?;
        targets = match target {
            None => targets.with_default(level),
            Some(t)
                if !t.is_empty()
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') =>
            {
                targets.with_target(t, level)
            }
            Some(t) => return Err(invalid(&format!("\"{t}\" is not a module path"))),
        };
    }
    Ok(targets)
}

/// Installs the global subscriber. `level` is a filter for `parse_filter`.
pub fn init(format: RelayFormat, level: &str) -> Result<(), String> {
    let directives = std::env::var("KELPIE_LOG").unwrap_or_else(|_| level.to_string());
    let filter = parse_filter(&directives)?.with_target("ractor", LevelFilter::WARN);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stdout)
        .with_target(false);
    let result = match format {
        RelayFormat::Json => tracing_subscriber::registry()
            .with(
                layer
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_filter(filter),
            )
            .try_init(),
        RelayFormat::Text => tracing_subscriber::registry()
            .with(
                layer
                    .with_ansi(std::io::stdout().is_terminal())
                    .with_filter(filter),
            )
            .try_init(),
    };
    result.map_err(|e| format!("cannot set up logging: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_levels_and_targets() {
        assert!(parse_filter("info").is_ok());
        assert!(parse_filter("warn,kelpie=debug").is_ok());
        assert!(parse_filter("kelpie=trace").is_ok());
        assert_eq!(
            parse_filter("kelpie=loud").unwrap_err(),
            "invalid log filter \"kelpie=loud\": \"loud\" is not a level (trace, debug, info, warn, error, off)"
        );
        assert_eq!(
            parse_filter("[[[").unwrap_err(),
            "invalid log filter \"[[[\": \"[[[\" is not a level (trace, debug, info, warn, error, off)"
        );
        assert!(parse_filter("a-b=info").is_err());
    }
}

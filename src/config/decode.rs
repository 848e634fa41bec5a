//! Decoding one key at a time from toml's spanned tree with serde, so a bad
//! value is reported at its position and never hides the next one; plus the
//! value grammars shared by every section (durations, sizes, signals,
//! choices, names).

use std::ops::Range;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::diagnostics::{did_you_mean, source_text, Diags};
use crate::signals;

const MAX_NAME_LEN: usize = 64;

pub(super) type Table<'i> = DeTable<'i>;
pub(super) type Value<'i> = Spanned<DeValue<'i>>;

pub(super) fn table_at<'a, 'i>(
    parent: &'a Table<'i>,
    key: &str,
    key_path: &str,
    diags: &mut Diags<'_>,
) -> Option<&'a Table<'i>> {
    parent
        .get(key)
        .and_then(|value| expect_table(value, key_path, diags))
}

pub(super) fn expect_table<'a, 'i>(
    value: &'a Value<'i>,
    key_path: &str,
    diags: &mut Diags<'_>,
) -> Option<&'a Table<'i>> {
    match value.get_ref() {
        DeValue::Table(table) => Some(table),
        other => {
            diags.error(
                &value.span(),
                key_path,
                format!("expected a table, found {}", other.type_str()),
            );
            None
        }
    }
}

/// Reports every key of `table` that is not in `known`, with a hint when a
/// known key is close.
pub(super) fn check_keys(table: &Table<'_>, path: &str, known: &[&str], diags: &mut Diags<'_>) {
    for key in table.keys() {
        let name: &str = key.get_ref();
        if known.contains(&name) {
            continue;
        }
        let full = join(path, name);
        let message = match did_you_mean(name, known) {
            Some(hint) => format!("unknown key (did you mean `{hint}`?)"),
            None => format!("unknown key; expected one of: {}", known.join(", ")),
        };
        diags.error(&key.span(), &full, message);
    }
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Decodes one key with serde; a type error is reported at the value.
pub(super) fn get<T: DeserializeOwned>(
    table: &Table<'_>,
    path: &str,
    key: &str,
    diags: &mut Diags<'_>,
) -> Option<Spanned<T>> {
    let value = table.get(key)?;
    let span = value.span();
    match T::deserialize(ValueDeserializer::from(value.clone())) {
        Ok(decoded) => Some(Spanned::new(span, decoded)),
        Err(err) => {
            let at = err.span().unwrap_or_else(|| span.clone());
            diags.error(&at, &join(path, key), tidy_serde_message(err.message()));
            None
        }
    }
}

/// serde's "invalid type: integer `5`, expected a string" becomes
/// "expected a string, found integer `5`", with TOML's words for types
/// instead of Rust's (`i64`, `f64`, sequence, map).
fn tidy_serde_message(message: &str) -> String {
    let message = message.trim();
    let message = message.strip_prefix("invalid type: ").unwrap_or(message);
    let message = match message.rsplit_once(", expected ") {
        Some((found, expected)) => format!("expected {expected}, found {found}"),
        None => message.to_string(),
    };
    message
        .replace("expected i64", "expected an integer")
        .replace("expected i128", "expected an integer")
        .replace("expected f64", "expected a number")
        .replace(" as i128", "")
        .replace("integer number overflowed", "integer is too large")
        .replace("floating point", "float")
        .replace("a sequence", "an array")
        .replace("found sequence", "found array")
        .replace("a map", "a table")
        .replace("found map", "found table")
}

pub(super) fn get_duration(
    table: &Table<'_>,
    path: &str,
    key: &str,
    default: Duration,
    diags: &mut Diags<'_>,
) -> Option<Duration> {
    if let Some(value) = table.get(key) {
        if let DeValue::Integer(_) | DeValue::Float(_) = value.get_ref() {
            let raw = source_text(diags.source, &value.span());
            diags.error(
                &value.span(),
                &join(path, key),
                format!(
                    "expected a duration string with a unit, e.g. \"{raw}s\", found number {raw}"
                ),
            );
            return None;
        }
    }
    let Some(text) = get::<String>(table, path, key, diags) else {
        return if table.contains_key(key) {
            None
        } else {
            Some(default)
        };
    };
    match parse_duration(text.get_ref()) {
        Ok(d) => Some(d),
        Err(why) => {
            diags.error(&text.span(), &join(path, key), why);
            None
        }
    }
}

/// Durations are humantime strings with a unit (`"250ms"`, `"10s"`, `"1m 30s"`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty duration; write e.g. \"10s\" or \"250ms\"".into());
    }
    if trimmed.starts_with('-') {
        return Err(format!("invalid duration \"{text}\": must not be negative"));
    }
    if trimmed.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!(
            "invalid duration \"{text}\": a unit is required, e.g. \"{trimmed}s\""
        ));
    }
    let parsed = humantime::parse_duration(trimmed).map_err(|err| match err {
        humantime::DurationError::NumberOverflow if trimmed.contains('.') => format!(
            "invalid duration \"{text}\": out of range (at most 10 years, in steps of at least 1ns)"
        ),
        humantime::DurationError::NumberOverflow => {
            format!("invalid duration \"{text}\": longer than 10 years")
        }
        humantime::DurationError::UnknownUnit { unit, .. } => format!(
            "invalid duration \"{text}\": unknown unit \"{unit}\"; use ms, s, m, h or d, e.g. \"10s\""
        ),
        other => format!("invalid duration \"{text}\": {other}"),
    })?;
    // Bounded so that every deadline computed from it fits a monotonic
    // instant without overflow.
    if parsed > Duration::from_secs(10 * 365 * 24 * 3600) {
        return Err(format!("invalid duration \"{text}\": longer than 10 years"));
    }
    Ok(parsed)
}

/// Sizes like `"10MB"`, `"512KiB"`, `"1048576"` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    if unit.starts_with('.') {
        return Err(format!(
            "invalid size \"{text}\": a whole number is required, e.g. \"512KiB\""
        ));
    }
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("invalid size \"{text}\": expected e.g. \"10MB\""))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "invalid size \"{text}\": unknown unit \"{}\"; use B, KB, MB, GB, KiB, MiB or GiB",
                unit.trim()
            ))
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("invalid size \"{text}\": too large"))
}

/// Decodes a string key that must be one of `choices`.
pub(super) fn get_choice<T: Copy>(
    table: &Table<'_>,
    path: &str,
    key: &str,
    choices: &[(&str, T)],
    default: T,
    diags: &mut Diags<'_>,
) -> Option<T> {
    let Some(text) = get::<String>(table, path, key, diags) else {
        return if table.contains_key(key) {
            None
        } else {
            Some(default)
        };
    };
    if let Some((_, value)) = choices.iter().find(|(name, _)| *name == text.get_ref()) {
        return Some(*value);
    }
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    let hint = did_you_mean(text.get_ref(), &names)
        .map(|h| format!(" (did you mean \"{h}\"?)"))
        .unwrap_or_default();
    diags.error(
        &text.span(),
        &join(path, key),
        format!(
            "invalid value \"{}\"{hint}; expected one of: {}",
            text.get_ref(),
            names.join(", ")
        ),
    );
    None
}

pub(super) fn get_signal(
    table: &Table<'_>,
    path: &str,
    key: &str,
    default: Signal,
    diags: &mut Diags<'_>,
) -> Option<Signal> {
    let Some(text) = get::<String>(table, path, key, diags) else {
        return if table.contains_key(key) {
            None
        } else {
            Some(default)
        };
    };
    let parsed = signals::parse(text.get_ref());
    match parsed {
        Some(Signal::SIGKILL | Signal::SIGSTOP) => {
            diags.error(
                &text.span(),
                &join(path, key),
                format!(
                    "signal \"{}\" cannot be caught; use e.g. \"TERM\"",
                    text.get_ref()
                ),
            );
            None
        }
        Some(signal) => Some(signal),
        None => {
            diags.error(
                &text.span(),
                &join(path, key),
                format!(
                    "unknown signal \"{}\"; write e.g. \"TERM\" or \"SIGTERM\"",
                    text.get_ref()
                ),
            );
            None
        }
    }
}

pub(super) fn get_u32(
    table: &Table<'_>,
    path: &str,
    key: &str,
    range: std::ops::RangeInclusive<u32>,
    default: u32,
    diags: &mut Diags<'_>,
) -> Option<u32> {
    let Some(n) = get::<i128>(table, path, key, diags) else {
        return if table.contains_key(key) {
            None
        } else {
            Some(default)
        };
    };
    match u32::try_from(*n.get_ref()) {
        Ok(v) if range.contains(&v) => Some(v),
        _ => {
            diags.error(
                &n.span(),
                &join(path, key),
                format!(
                    "{} is out of range; expected {} to {}",
                    n.get_ref(),
                    range.start(),
                    range.end()
                ),
            );
            None
        }
    }
}

pub(super) fn get_bool(
    table: &Table<'_>,
    path: &str,
    key: &str,
    default: bool,
    diags: &mut Diags<'_>,
) -> Option<bool> {
    match get::<bool>(table, path, key, diags) {
        Some(v) => Some(*v.get_ref()),
        None if table.contains_key(key) => None,
        None => Some(default),
    }
}

pub(super) fn check_name(
    name: &str,
    span: &Range<usize>,
    key_path: &str,
    what: &str,
    diags: &mut Diags<'_>,
) {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !valid_chars || !first_ok {
        diags.error(
            span,
            key_path,
            format!(
                "invalid {what} name {name:?}: use 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 _ . -, starting with a letter, digit or _"
            ),
        );
    }
}

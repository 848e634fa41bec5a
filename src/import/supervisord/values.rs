//! supervisord's value grammars, as its `datatypes` module reads them:
//! booleans (`true/false/yes/no/on/off/1/0`, any case), whole numbers,
//! sizes (`50MB`: KB, MB and GB are 1024s), octal umasks (`022`, `0o22`).
//! Errors name the key and its line.

use std::time::Duration;

use super::ini::Entry;
use crate::import::ImportError;

pub fn bad(entry: &Entry, message: impl std::fmt::Display) -> ImportError {
    ImportError::data(entry.origin.clone(), format!("{}: {message}", entry.key))
}

pub fn boolean(entry: &Entry, value: &str) -> Result<bool, ImportError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(bad(
            entry,
            format!("{value:?} is not a boolean (true, false, yes, no, on, off, 1, 0)"),
        )),
    }
}

pub fn integer(entry: &Entry, value: &str) -> Result<i64, ImportError> {
    value
        .trim()
        .parse::<i64>()
        .map_err(|_| bad(entry, format!("{value:?} is not a whole number")))
}

pub fn count(entry: &Entry, value: &str) -> Result<u64, ImportError> {
    let n = integer(entry, value)?;
    u64::try_from(n).map_err(|_| bad(entry, format!("{n} is negative")))
}

pub fn seconds(entry: &Entry, value: &str) -> Result<Duration, ImportError> {
    let n = count(entry, value)?;
    if n > 10 * 365 * 24 * 3600 {
        return Err(bad(entry, format!("{n} seconds is more than 10 years")));
    }
    Ok(Duration::from_secs(n))
}

/// supervisord's sizes: a number of bytes, or `KB`, `MB`, `GB` (1024s).
pub fn byte_size(entry: &Entry, value: &str) -> Result<u64, ImportError> {
    let lower = value.trim().to_ascii_lowercase();
    let (digits, multiplier) = match lower.len().checked_sub(2).map(|at| lower.split_at(at)) {
        Some((n, "kb")) => (n, 1u64 << 10),
        Some((n, "mb")) => (n, 1 << 20),
        Some((n, "gb")) => (n, 1 << 30),
        _ => (lower.as_str(), 1),
    };
    let n = count(entry, digits).map_err(|_| {
        bad(
            entry,
            format!("{value:?} is not a size (a number of bytes, or with KB, MB or GB)"),
        )
    })?;
    n.checked_mul(multiplier)
        .ok_or_else(|| bad(entry, format!("{value:?} is too large")))
}

pub fn octal(entry: &Entry, value: &str) -> Result<u32, ImportError> {
    let trimmed = value.trim();
    let digits = trimmed
        .strip_prefix("0o")
        .or_else(|| trimmed.strip_prefix("0O"))
        .unwrap_or(trimmed);
    match u32::from_str_radix(digits, 8) {
        Ok(mask) if mask <= 0o777 => Ok(mask),
        Ok(_) => Err(bad(entry, format!("{value:?} is more than 0777"))),
        Err(_) => Err(bad(
            entry,
            format!("{value:?} is not an octal number such as 022"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::import::Origin;

    fn entry(key: &str) -> Entry {
        Entry {
            key: key.into(),
            value: String::new(),
            origin: Origin::new("s.conf", 7),
            here: PathBuf::from("/"),
        }
    }

    #[test]
    fn values_read_as_supervisord_reads_them() {
        let e = entry("k");
        for (text, want) in [
            ("true", true),
            ("Yes", true),
            ("ON", true),
            ("1", true),
            ("false", false),
            ("no", false),
            ("off", false),
            ("0", false),
        ] {
            assert_eq!(boolean(&e, text).ok(), Some(want), "{text}");
        }
        assert!(boolean(&e, "y").is_err());
        for (text, want) in [
            ("0", 0),
            ("512", 512),
            ("1KB", 1024),
            ("50MB", 52_428_800),
            ("2gb", 2 << 30),
            (" 3 mb", 3 << 20),
        ] {
            assert_eq!(byte_size(&e, text).ok(), Some(want), "{text}");
        }
        for text in ["1.5MB", "MB", "-1", "10TB"] {
            assert!(byte_size(&e, text).is_err(), "{text}");
        }
        for (text, want) in [("022", 0o22), ("0o27", 0o27), ("777", 0o777), ("0", 0)] {
            assert_eq!(octal(&e, text).ok(), Some(want), "{text}");
        }
        assert_eq!(
            octal(&e, "1000").err().map(|e| e.to_string()).as_deref(),
            Some("s.conf:7: k: \"1000\" is more than 0777")
        );
        assert_eq!(integer(&e, " -3 ").ok(), Some(-3));
        assert_eq!(seconds(&e, "90").ok(), Some(Duration::from_secs(90)));
        assert!(seconds(&e, "-1").is_err());
    }
}

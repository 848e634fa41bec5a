//! The value parsers on their own: durations, sizes, `env_file` lines, executables on PATH.

use super::*;
use crate::os_lookup::find_executable;

// ---------------------------------------------------------------------------
// parse_duration, parse_size, parse_env_file

#[test]
fn parse_duration_accepts_units() {
    for (text, expected) in [
        ("250ms", Duration::from_millis(250)),
        ("10s", Duration::from_secs(10)),
        ("5m", Duration::from_secs(300)),
        ("1h", Duration::from_secs(3600)),
        ("1m 30s", Duration::from_secs(90)),
        ("1.5s", Duration::from_millis(1500)),
        (" 2s ", Duration::from_secs(2)),
        ("0s", Duration::ZERO),
        ("10us", Duration::from_micros(10)),
        ("3650d", Duration::from_secs(3650 * 24 * 3600)),
    ] {
        assert_eq!(parse_duration(text), Ok(expected), "{text:?}");
    }
}

#[test]
fn parse_duration_rejects() {
    for (text, message) in [
        ("", "empty duration; write e.g. \"10s\" or \"250ms\""),
        ("   ", "empty duration; write e.g. \"10s\" or \"250ms\""),
        (
            "10",
            "invalid duration \"10\": a unit is required, e.g. \"10s\"",
        ),
        (
            "1.5",
            "invalid duration \"1.5\": a unit is required, e.g. \"1.5s\"",
        ),
        ("-5s", "invalid duration \"-5s\": must not be negative"),
        ("3651d", "invalid duration \"3651d\": longer than 10 years"),
        (
            "1e3s",
            "invalid duration \"1e3s\": unknown unit \"e\"; use ms, s, m, h or d, e.g. \"10s\"",
        ),
        ("s", "invalid duration \"s\": expected number at 0"),
    ] {
        assert_eq!(parse_duration(text), Err(message.to_string()), "{text:?}");
    }
}

#[test]
fn parse_size_units() {
    for (text, expected) in [
        ("0", 0),
        ("1048576", 1_048_576),
        ("10B", 10),
        ("10KB", 10_000),
        ("10MB", 10_000_000),
        ("1GB", 1_000_000_000),
        ("512KiB", 512 * 1024),
        ("2 MiB", 2 << 20),
        ("1g", 1 << 30),
        ("3k", 3 * 1024),
        (" 7mb ", 7_000_000),
    ] {
        assert_eq!(parse_size(text), Ok(expected), "{text:?}");
    }
}

#[test]
fn parse_size_rejects() {
    for (text, message) in [
        ("", "invalid size \"\": expected e.g. \"10MB\""),
        ("MB", "invalid size \"MB\": expected e.g. \"10MB\""),
        ("-5MB", "invalid size \"-5MB\": expected e.g. \"10MB\""),
        (
            "1.5MB",
            "invalid size \"1.5MB\": a whole number is required, e.g. \"512KiB\"",
        ),
        (
            "10 parsecs",
            "invalid size \"10 parsecs\": unknown unit \"parsecs\"; use B, KB, MB, GB, KiB, MiB or GiB",
        ),
        (
            "99999999999999999999",
            "invalid size \"99999999999999999999\": expected e.g. \"10MB\"",
        ),
        (
            "18446744073709551615GiB",
            "invalid size \"18446744073709551615GiB\": too large",
        ),
    ] {
        assert_eq!(parse_size(text), Err(message.to_string()), "{text:?}");
    }
}

#[test]
fn parse_env_file_accepts() {
    let text = "\u{feff}# comment\n\n  A=1  \r\nexport B=two words\nC=\"quoted\"\nD='single'\nE=\nF=a=b\nG=\"unbalanced\n_H1=x\n";
    let vars = parse_env_file(text).unwrap();
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        pairs,
        [
            ("A", "1"),
            ("B", "two words"),
            ("C", "quoted"),
            ("D", "single"),
            ("E", ""),
            ("F", "a=b"),
            ("G", "\"unbalanced"),
            ("_H1", "x"),
        ]
    );
    assert_eq!(parse_env_file(""), Ok(Vec::new()));
}

#[test]
fn parse_env_file_rejects() {
    for (text, line, message) in [
        ("A=1\nnot a pair\n", 2, "expected KEY=VALUE".to_string()),
        ("=1\n", 1, "invalid variable name \"\"".to_string()),
        ("1A=1\n", 1, "invalid variable name \"1A\"".to_string()),
        ("A-B=1\n", 1, "invalid variable name \"A-B\"".to_string()),
        ("\n\nexport\n", 3, "expected KEY=VALUE".to_string()),
        ("A=x\0y\n", 1, "value of A contains a NUL byte".to_string()),
    ] {
        assert_eq!(parse_env_file(text), Err((line, message)), "{text:?}");
    }
}

#[test]
fn find_executable_mirrors_execvp() {
    let bin = bin_dir();
    let dir = bin.path();
    let path_var = format!("/nonexistent:{}", dir.display());
    assert_eq!(
        find_executable("app", None, Some(&path_var)),
        Ok(dir.join("app"))
    );
    assert_eq!(
        find_executable("./app", Some(dir), None),
        Ok(dir.join("./app"))
    );
    assert_eq!(
        find_executable("data", None, Some(&path_var)),
        Err("command \"data\" not found in PATH".to_string())
    );
    assert_eq!(
        find_executable("/nonexistent/app", None, None),
        Err("\"/nonexistent/app\": No such file or directory".to_string())
    );
}

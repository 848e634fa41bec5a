//! A program's `readiness` / `liveness` probe table.

use std::time::Duration;

use super::decode::{check_keys, expect_table, get, get_duration, get_u32, join, Table};
use super::diagnostics::Diags;
use super::template::{self, Values};
use super::{ProbeConfig, ProbeKind};

const PROBE_KINDS: &[&str] = &["http", "tcp", "exec", "notify", "log"];

pub(super) fn parse_probe_block(
    t: &Table<'_>,
    p: &str,
    block: &str,
    default_interval: Duration,
    instances: Option<u32>,
    diags: &mut Diags<'_>,
) -> Option<Option<ProbeConfig>> {
    let Some(value) = t.get(block) else {
        return Some(None);
    };
    let bp = join(p, block);
    let b = expect_table(value, &bp, diags)?;
    let mut known: Vec<&str> = PROBE_KINDS.to_vec();
    known.extend([
        "interval",
        "timeout",
        "failure_threshold",
        "success_threshold",
        "initial_delay",
    ]);
    check_keys(b, &bp, &known, diags);
    let present: Vec<&str> = PROBE_KINDS
        .iter()
        .copied()
        .filter(|k| b.contains_key(*k))
        .collect();
    if present.len() != 1 {
        let message = if present.is_empty() {
            "needs exactly one probe kind: http, tcp, exec, notify or log".to_string()
        } else {
            format!(
                "more than one probe kind ({}); choose exactly one",
                present.join(", ")
            )
        };
        diags.error(&value.span(), &bp, message);
        return None;
    }
    let kind = match present[0] {
        "http" => get::<String>(b, &bp, "http", diags).and_then(|url| {
            let key = join(&bp, "http");
            per_instance(&url, &key, instances, diags, |url| {
                (url.starts_with("http://") && url.len() > "http://".len())
                    .then_some(())
                    .ok_or_else(|| format!("invalid URL \"{url}\"; expected http://HOST:PORT/PATH"))
            })
            .then(|| ProbeKind::Http(url.into_inner()))
        }),
        "tcp" => get::<String>(b, &bp, "tcp", diags).and_then(|addr| {
            let key = join(&bp, "tcp");
            per_instance(&addr, &key, instances, diags, |addr| {
                match addr.rsplit_once(':') {
                    Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
                    _ => Err(format!("invalid address \"{addr}\"; expected HOST:PORT")),
                }
            })
            .then(|| ProbeKind::Tcp(addr.into_inner()))
        }),
        "exec" => get::<Vec<String>>(b, &bp, "exec", diags).and_then(|argv| {
            if argv.get_ref().first().is_some_and(|a| !a.is_empty()) {
                Some(ProbeKind::Exec(argv.into_inner()))
            } else {
                diags.error(&argv.span(), &join(&bp, "exec"), "command is empty");
                None
            }
        }),
        kind @ ("notify" | "log") if block == "liveness" => {
            let span = b
                .get(kind)
                .map(|v| v.span())
                .unwrap_or_else(|| value.span());
            diags.error(
                &span,
                &join(&bp, kind),
                format!("a {kind} probe only tells when a program is ready; liveness needs http, tcp or exec"),
            );
            None
        }
        "notify" => get::<bool>(b, &bp, "notify", diags).and_then(|on| {
            if *on.get_ref() {
                Some(ProbeKind::Notify)
            } else {
                diags.error(
                    &on.span(),
                    &join(&bp, "notify"),
                    "notify = false is not a probe; remove the block instead",
                );
                None
            }
        }),
        _ => get::<String>(b, &bp, "log", diags).and_then(|pattern| {
            if pattern.get_ref().is_empty() {
                diags.error(&pattern.span(), &join(&bp, "log"), "pattern is empty");
                return None;
            }
            match regex_lite::Regex::new(pattern.get_ref()) {
                Ok(_) => Some(ProbeKind::Log(pattern.into_inner())),
                Err(err) => {
                    let why = err.to_string();
                    let first = why.lines().last().unwrap_or("invalid pattern").trim();
                    diags.error(
                        &pattern.span(),
                        &join(&bp, "log"),
                        format!("invalid regular expression: {first}"),
                    );
                    None
                }
            }
        }),
    };
    let interval = get_duration(b, &bp, "interval", default_interval, diags);
    let timeout = get_duration(b, &bp, "timeout", Duration::from_secs(1), diags);
    let failure_threshold = get_u32(b, &bp, "failure_threshold", 1..=1000, 3, diags);
    let success_threshold = get_u32(b, &bp, "success_threshold", 1..=1000, 1, diags);
    let initial_delay = get_duration(b, &bp, "initial_delay", Duration::ZERO, diags);
    for (key, d) in [("interval", interval), ("timeout", timeout)] {
        if d.is_some_and(|d| d.is_zero()) {
            let span = b.get(key).map(|v| v.span()).unwrap_or_else(|| value.span());
            diags.error(&span, &join(&bp, key), "must be longer than 0s");
            return None;
        }
    }
    Some(Some(ProbeConfig {
        kind: kind?,
        interval: interval?,
        timeout: timeout?,
        failure_threshold: failure_threshold?,
        success_threshold: success_threshold?,
        initial_delay: initial_delay?,
    }))
}

/// Checks a probe target that may name `${KELPIE_INSTANCE}` or
/// `${KELPIE_SLOT}`: its variables, then `valid` on what the first and the
/// last instance would probe, the last in the highest slot a rolling
/// replacement takes (a port such as `80${KELPIE_SLOT}` can be valid for
/// one and not the other). `instances` is `None` when that key was itself
/// invalid.
fn per_instance(
    target: &toml::Spanned<String>,
    key: &str,
    instances: Option<u32>,
    diags: &mut Diags<'_>,
    valid: impl Fn(&str) -> Result<(), String>,
) -> bool {
    let text = target.get_ref();
    if let Err(why) = template::check(text) {
        diags.error(&target.span(), key, why);
        return false;
    }
    let count = instances.unwrap_or(1).max(1);
    let last = Values {
        instance: count - 1,
        slot: 2 * count - 1,
    };
    for values in [Values::first(0), last] {
        let expanded = template::expand(text, values);
        if let Err(why) = valid(&expanded) {
            let by_instance = template::mentions(text, "KELPIE_INSTANCE");
            let by_slot = template::mentions(text, "KELPIE_SLOT");
            let message = match (by_instance, by_slot) {
                (false, false) => why,
                (true, false) => format!("{why} for instance {}", values.instance),
                (false, true) => format!("{why} for slot {}", values.slot),
                (true, true) => format!(
                    "{why} for instance {} in slot {}",
                    values.instance, values.slot
                ),
            };
            diags.error(&target.span(), key, message);
            return false;
        }
    }
    true
}

//! The resource-limit keys of a `[program.NAME]` table: `rlimits`, the
//! cgroup limits and `memory_restart`.

use serde::Deserialize;
use toml::de::{DeValue, ValueDeserializer};

use super::decode::{get, get_duration, get_u32, join, parse_size, Table};
use super::diagnostics::{did_you_mean, Diags};
use crate::limits::{
    CgroupLimits, Limits, MemoryRestart, Rlimit, RlimitResource, CPU_PERIOD_MICROS,
    MEMORY_RESTART_AFTER, UNLIMITED,
};

/// The keys this module reads, for the program table's key check.
pub(super) const LIMIT_KEYS: &[&str] = &[
    "rlimits",
    "memory_max",
    "memory_high",
    "cpu_max",
    "pids_max",
    "io_weight",
    "memory_restart",
    "memory_restart_after",
];

/// The most `cpu_max` may grant: 4096 CPUs, in percent of one.
const CPU_MAX_PERCENT: f64 = 409_600.0;

/// `None` when a key was invalid (already reported). Every key is parsed
/// even after an error, so one run reports them all.
pub(super) fn parse_limits(t: &Table<'_>, p: &str, diags: &mut Diags<'_>) -> Option<Limits> {
    let rlimits = parse_rlimits(t, p, diags);
    let memory_max = parse_memory(t, p, "memory_max", diags);
    let memory_high = parse_memory(t, p, "memory_high", diags);
    let cpu_max = parse_cpu_max(t, p, diags);
    let pids_max = optional_u32(t, p, "pids_max", 1..=u32::MAX, diags);
    let io_weight = optional_u32(t, p, "io_weight", 1..=10_000, diags);
    let memory_restart = parse_memory(t, p, "memory_restart", diags);
    let after = get_duration(t, p, "memory_restart_after", MEMORY_RESTART_AFTER, diags);
    if memory_restart == Some(None) && t.contains_key("memory_restart_after") {
        if let Some(value) = t.get("memory_restart_after") {
            diags.warn(
                &value.span(),
                &join(p, "memory_restart_after"),
                "has no effect without memory_restart",
            );
        }
    }
    let memory_restart = match (memory_restart?, after?) {
        (Some(threshold), after) => Some(MemoryRestart { threshold, after }),
        (None, _) => None,
    };
    Some(Limits {
        rlimits: rlimits?,
        cgroup: CgroupLimits {
            memory_max: memory_max?,
            memory_high: memory_high?,
            cpu_max: cpu_max?,
            pids_max: pids_max?,
            io_weight: io_weight?.map(|w| w as u16),
        },
        memory_restart,
    })
}

/// A size key such as `memory_max = "256MiB"`: `Some(None)` when absent.
fn parse_memory(t: &Table<'_>, p: &str, key: &str, diags: &mut Diags<'_>) -> Option<Option<u64>> {
    if !t.contains_key(key) {
        return Some(None);
    }
    let text = get::<String>(t, p, key, diags)?;
    match parse_size(text.get_ref()) {
        Ok(0) => {
            diags.error(&text.span(), &join(p, key), "must be more than 0 bytes");
            None
        }
        Ok(bytes) => Some(Some(bytes)),
        Err(why) => {
            diags.error(&text.span(), &join(p, key), why);
            None
        }
    }
}

fn optional_u32(
    t: &Table<'_>,
    p: &str,
    key: &str,
    range: std::ops::RangeInclusive<u32>,
    diags: &mut Diags<'_>,
) -> Option<Option<u32>> {
    if !t.contains_key(key) {
        return Some(None);
    }
    get_u32(t, p, key, range, 0, diags).map(Some)
}

/// `cpu_max = "50%"`, `"0.5"` or `0.5`: a share of one CPU (`"150%"` is one
/// and a half), as the `cpu.max` quota per 100 ms, to a tenth of a percent.
fn parse_cpu_max(t: &Table<'_>, p: &str, diags: &mut Diags<'_>) -> Option<Option<u32>> {
    let Some(value) = t.get("cpu_max") else {
        return Some(None);
    };
    let percent = match value.get_ref() {
        DeValue::String(text) => parse_cpu_share(text),
        DeValue::Integer(_) | DeValue::Float(_) => {
            f64::deserialize(ValueDeserializer::from(value.clone()))
                .ok()
                .map(|cpus| cpus * 100.0)
        }
        _ => None,
    };
    let path = join(p, "cpu_max");
    let Some(percent) = percent.filter(|p| p.is_finite()) else {
        diags.error(
            &value.span(),
            &path,
            "expected a share of one CPU such as \"50%\" or \"0.5\"",
        );
        return None;
    };
    if !(1.0..=CPU_MAX_PERCENT).contains(&percent) {
        diags.error(
            &value.span(),
            &path,
            format!("{percent}% is out of range; expected 1% to {CPU_MAX_PERCENT}% of one CPU"),
        );
        return None;
    }
    // Tenths of a percent: what `kelpie config` prints back.
    let quota = (percent * 10.0).round() * f64::from(CPU_PERIOD_MICROS) / 1000.0;
    Some(Some(quota as u32))
}

/// `"50%"` → 50, `"0.5"` → 50.
fn parse_cpu_share(text: &str) -> Option<f64> {
    let text = text.trim();
    let (number, scale) = match text.strip_suffix('%') {
        Some(number) => (number.trim_end(), 1.0),
        None => (text, 100.0),
    };
    let valid = !number.is_empty() && number.chars().all(|c| c.is_ascii_digit() || c == '.');
    valid
        .then(|| number.parse::<f64>().ok())
        .flatten()
        .map(|n| n * scale)
}

/// `rlimits = { nofile = 65536, core = 0, nproc = "unlimited" }`: each
/// value sets both the soft and the hard limit.
fn parse_rlimits(t: &Table<'_>, p: &str, diags: &mut Diags<'_>) -> Option<Vec<Rlimit>> {
    let Some(value) = t.get("rlimits") else {
        return Some(Vec::new());
    };
    let path = join(p, "rlimits");
    let DeValue::Table(entries) = value.get_ref() else {
        diags.error(
            &value.span(),
            &path,
            format!(
                "expected a table such as {{ nofile = 65536 }}, found {}",
                value.get_ref().type_str()
            ),
        );
        return None;
    };
    let names: Vec<&str> = RlimitResource::ALL.iter().map(|r| r.name()).collect();
    let mut rlimits = Vec::new();
    let mut ok = true;
    for (name, limit) in entries {
        let key_path = join(&path, name.get_ref());
        let Some(resource) = RlimitResource::from_name(name.get_ref()) else {
            let hint = match did_you_mean(name.get_ref(), &names) {
                Some(near) => format!("; did you mean `{near}`?"),
                None => format!("; known: {}", names.join(", ")),
            };
            diags.error(
                &name.span(),
                &key_path,
                format!("unknown rlimit `{}`{hint}", name.get_ref()),
            );
            ok = false;
            continue;
        };
        let amount = match limit.get_ref() {
            DeValue::Integer(_) => u64::deserialize(ValueDeserializer::from(limit.clone()))
                .ok()
                .filter(|n| *n != UNLIMITED),
            DeValue::String(text) if text.as_ref() == "unlimited" => Some(UNLIMITED),
            _ => None,
        };
        match amount {
            Some(amount) => rlimits.push(Rlimit {
                resource,
                soft: amount,
                hard: amount,
            }),
            None => {
                diags.error(
                    &limit.span(),
                    &key_path,
                    "expected a non-negative integer or \"unlimited\"",
                );
                ok = false;
            }
        }
    }
    rlimits.sort_by_key(|r| r.resource);
    ok.then_some(rlimits)
}

//! The resource-limit keys of a `[program.NAME]` table: so far `rlimits`.

use serde::Deserialize;
use toml::de::{DeValue, ValueDeserializer};

use super::decode::{join, Table};
use super::diagnostics::{did_you_mean, Diags};
use crate::limits::{Limits, Rlimit, RlimitResource, UNLIMITED};

/// The keys this module reads, for the program table's key check.
pub(super) const LIMIT_KEYS: &[&str] = &["rlimits"];

/// `None` when a key was invalid (already reported).
pub(super) fn parse_limits(t: &Table<'_>, p: &str, diags: &mut Diags<'_>) -> Option<Limits> {
    let rlimits = parse_rlimits(t, p, diags)?;
    Some(Limits { rlimits })
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

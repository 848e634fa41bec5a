//! A `[group.NAME]` table: supervision strategy and group intensity.

use std::ops::Range;
use std::time::Duration;

use super::decode::{check_keys, get, get_choice, get_duration, get_u32, join, Table};
use super::diagnostics::{table_key, Diags};
use super::program_section::parse_on_failure;
use super::{GroupConfig, GroupStrategy};

pub(super) fn parse_group(
    name: &str,
    t: &Table<'_>,
    header: &Range<usize>,
    diags: &mut Diags<'_>,
) -> Option<GroupConfig> {
    let p = table_key("group", name);
    let p = p.as_str();
    check_keys(
        t,
        p,
        &[
            "programs",
            "strategy",
            "max_restarts",
            "restart_window",
            "on_failure",
        ],
        diags,
    );
    let programs = match get::<Vec<String>>(t, p, "programs", diags) {
        Some(list) if list.get_ref().is_empty() => {
            diags.error(
                &list.span(),
                &join(p, "programs"),
                "must list at least one program",
            );
            None
        }
        Some(list) => Some(list.into_inner()),
        None => {
            if !t.contains_key("programs") {
                diags.error(header, p, "missing key `programs`");
            }
            None
        }
    };
    let strategy = get_choice(
        t,
        p,
        "strategy",
        &[
            ("one_for_one", GroupStrategy::OneForOne),
            ("one_for_all", GroupStrategy::OneForAll),
            ("rest_for_one", GroupStrategy::RestForOne),
        ],
        GroupStrategy::OneForOne,
        diags,
    );
    let max_restarts = match get_u32(t, p, "max_restarts", 0..=u32::MAX, 0, diags) {
        Some(v) if t.contains_key("max_restarts") => Some(Some(v)),
        Some(_) => Some(None),
        None => None,
    };
    let restart_window = get_duration(t, p, "restart_window", Duration::from_secs(60), diags);
    if restart_window.is_some_and(|w| w.is_zero()) {
        let span = t.get("restart_window").map(|v| v.span()).unwrap_or(0..0);
        diags.error(&span, &join(p, "restart_window"), "must be longer than 0s");
    }
    let restart_window = restart_window.filter(|w| !w.is_zero());
    let on_failure = parse_on_failure(t, p, diags);
    Some(GroupConfig {
        name: name.to_string(),
        programs: programs?,
        strategy: strategy?,
        max_restarts: max_restarts?,
        restart_window: restart_window?,
        on_failure: on_failure?,
    })
}

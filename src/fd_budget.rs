//! How many file descriptors kelpie needs for a config, and the one place
//! that raises its soft `RLIMIT_NOFILE` to fit them.
//!
//! Every running instance pins descriptors in kelpie for its whole life:
//! the read ends of its stdout and stderr pipes, its notify socket, and a
//! socket while an http/tcp probe runs. Running out is not a clean failure:
//! the spawn that hits `EMFILE` fails half-way through a start, or a pipe
//! of a program that is already running cannot be replaced on restart. So
//! the need is computed from the config (`config::open_files`) and checked
//! before anything starts (config validation turns a shortfall into an
//! error for `run`, `reload` and `diff`, and a warning for `check`), and
//! the soft limit is raised here, at start and on reload, to cover it.
//!
//! Two users are elastic and get what is left: HTTP connections (capped,
//! with a warning, when the hard limit is too low for the full number) and
//! the `/proc` reader's cache of open `stat` files (which falls back to
//! open + read + close per pass).

use std::sync::atomic::{AtomicUsize, Ordering};

/// The `/proc` reader's cache is worth at most this many open files. Every
/// descriptor kelpie holds is copied into each child it spawns and closed
/// again by the child's exec, one by one: 10,000 cached files made every
/// spawn close 10,000 descriptors. Past this many, a scrape opens and
/// closes the rest, which costs each scrape less than the spawns lose.
const STAT_FILES_MAX: usize = 4096;
/// And at least this many, when the limit allows (a small fleet's processes
/// and their descendants).
const STAT_FILES_MIN: usize = 256;

/// What this process may keep open beyond the descriptors a config needs,
/// as decided by the last [`reserve`].
static STAT_FILES: AtomicUsize = AtomicUsize::new(STAT_FILES_MIN);
static HTTP_CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

/// How the open-file limit is shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The soft limit to set, when it must rise.
    pub raise_to: Option<u64>,
    pub http_connections: usize,
    pub stat_files: usize,
}

/// The share-out for `needed` descriptors plus up to `http_wanted` HTTP
/// connections and `stat_wanted` cached `/proc` files, under the current
/// `soft` and `hard` limits. The soft limit rises only as far as needed
/// (programs inherit it, and some misbehave with huge limits, e.g. closing
/// every possible descriptor one by one), never beyond `hard`, and is
/// never lowered. What must fit comes first, then HTTP, then the cache.
pub fn plan(soft: u64, hard: u64, needed: u64, http_wanted: usize, stat_wanted: usize) -> Plan {
    let wanted = needed
        .saturating_add(http_wanted as u64)
        .saturating_add(stat_wanted as u64);
    let limit = soft.max(wanted.min(hard));
    let mut left = limit.saturating_sub(needed);
    let http_connections = usize::try_from(left.min(http_wanted as u64)).unwrap_or(http_wanted);
    left -= http_connections as u64;
    let stat_files = usize::try_from(left.min(stat_wanted as u64)).unwrap_or(stat_wanted);
    Plan {
        raise_to: (limit > soft).then_some(limit),
        http_connections,
        stat_files,
    }
}

/// How many `/proc` stat files are worth caching for `instances` running
/// instances (their processes and some descendants).
pub fn stat_files_wanted(instances: usize) -> usize {
    instances
        .saturating_mul(2)
        .clamp(STAT_FILES_MIN, STAT_FILES_MAX)
}

/// Raises the soft limit for `needed` descriptors and returns how many
/// HTTP connections fit, of `http_wanted` (0 without HTTP). Config
/// validation has already checked `needed` against the hard limit; if the
/// limit cannot be read, nothing changes and the caps are the wishes.
pub fn reserve(needed: u64, http_wanted: usize, instances: usize) -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let stat_wanted = stat_files_wanted(instances);
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        STAT_FILES.store(STAT_FILES_MIN, Ordering::Relaxed);
        HTTP_CONNECTIONS.store(http_wanted, Ordering::Relaxed);
        return http_wanted;
    };
    let mut plan = plan(soft, hard, needed, http_wanted, stat_wanted);
    let mut limit = plan.raise_to.unwrap_or(soft);
    if let Some(target) = plan.raise_to {
        match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
            Ok(()) => tracing::debug!(
                event = "fd_limit_raised",
                from = soft,
                to = target,
                "raised the open-file limit from {soft} to {target}"
            ),
            Err(err) => {
                tracing::warn!(
                    event = "fd_limit_not_raised",
                    from = soft,
                    to = target,
                    error = %err,
                    "cannot raise the open-file limit from {soft} to {target}: {err}"
                );
                plan = self::plan(soft, soft, needed, http_wanted, stat_wanted);
                limit = soft;
            }
        }
    }
    if plan.http_connections < http_wanted {
        let cap = plan.http_connections.max(1);
        tracing::warn!(
            event = "http_connection_cap_reduced",
            cap,
            fd_limit = limit,
            "the open-file limit ({limit}) leaves room for only {cap} HTTP connections instead of {http_wanted}; raise the hard RLIMIT_NOFILE"
        );
        plan.http_connections = cap;
    }
    STAT_FILES.store(plan.stat_files, Ordering::Relaxed);
    HTTP_CONNECTIONS.store(plan.http_connections, Ordering::Relaxed);
    plan.http_connections
}

/// On reload: makes room for the new config's `needed` descriptors beside
/// the HTTP connections reserved at start (the server's cap is fixed for
/// its lifetime).
pub fn reserve_again(needed: u64, instances: usize) {
    let http = HTTP_CONNECTIONS.load(Ordering::Relaxed);
    let _ = reserve(needed, http, instances);
}

/// How many `/proc/<pid>/stat` files the metrics reader may keep open.
pub fn stat_files() -> usize {
    STAT_FILES.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_shared_out_in_order_of_need() {
        struct Row {
            soft: u64,
            hard: u64,
            needed: u64,
            http: usize,
            stat: usize,
            expect: Plan,
        }
        let rows = [
            // Plenty already: nothing changes.
            Row {
                soft: 100_000,
                hard: 100_000,
                needed: 20_064,
                http: 4096,
                stat: 20_000,
                expect: Plan {
                    raise_to: None,
                    http_connections: 4096,
                    stat_files: 20_000,
                },
            },
            // The soft limit rises exactly to what is wanted.
            Row {
                soft: 1024,
                hard: 1_048_576,
                needed: 20_064,
                http: 4096,
                stat: 20_000,
                expect: Plan {
                    raise_to: Some(44_160),
                    http_connections: 4096,
                    stat_files: 20_000,
                },
            },
            // Hard limit between need and wish: HTTP before the cache.
            Row {
                soft: 1024,
                hard: 25_000,
                needed: 20_064,
                http: 4096,
                stat: 20_000,
                expect: Plan {
                    raise_to: Some(25_000),
                    http_connections: 4096,
                    stat_files: 840,
                },
            },
            // Only just enough for the programs: no HTTP room, no cache.
            Row {
                soft: 1024,
                hard: 20_064,
                needed: 20_064,
                http: 4096,
                stat: 20_000,
                expect: Plan {
                    raise_to: Some(20_064),
                    http_connections: 0,
                    stat_files: 0,
                },
            },
            // A soft limit above the wish is never lowered.
            Row {
                soft: 500_000,
                hard: 1_048_576,
                needed: 100,
                http: 0,
                stat: 256,
                expect: Plan {
                    raise_to: None,
                    http_connections: 0,
                    stat_files: 256,
                },
            },
        ];
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(
                plan(row.soft, row.hard, row.needed, row.http, row.stat),
                row.expect,
                "row {i}"
            );
        }
    }

    #[test]
    fn the_stat_cache_is_bounded_both_ways() {
        assert_eq!(stat_files_wanted(1), STAT_FILES_MIN);
        assert_eq!(stat_files_wanted(1000), 2000);
        assert_eq!(stat_files_wanted(10_000), STAT_FILES_MAX);
    }
}

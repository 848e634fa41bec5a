//! Prometheus metrics for `GET /metrics` (docs/metrics.md).
//!
//! Two kinds of series:
//! - **event counters** the actors report as things happen: exits, restarts,
//!   probe results, log lines, HTTP requests, budget delays. `Metrics` keeps
//!   them per program in plain atomics;
//! - **state gauges** computed from the status [`Board`](crate::status::Board) at scrape time:
//!   state, readiness, running instances, start times, backoff, and the CPU
//!   and memory of each program's processes: its process groups and every
//!   descendant (one pass over `/proc`, see `metrics/proc.rs`).
//!
//! [`Metrics::render`] writes the text exposition format (0.0.4) itself and
//! only iterates the board's programs, so a program removed by reload
//! disappears from the output at the next scrape even before
//! [`Metrics::remove_program`] frees its counters, and no per-series
//! bookkeeping (which label tuples exist, which gauge to delete when an
//! instance stops) can go stale.
//!
//! Why not `prometheus::*Vec` families in a `Registry`: with 1000 programs
//! (~50k lines, mostly probe histograms) `Registry::gather` + `TextEncoder`
//! took 38 ms p50 on the benchmark machine, against a 10 ms target for a
//! scrape; `gather` builds, clones and sorts a protobuf-shaped copy of
//! every series. Writing the text directly is an order of magnitude faster,
//! also removes the label-arity panics of `with_label_values`, and makes
//! removal one map delete. The `prometheus` crate still supplies the
//! `process_*` family (`ProcessCollector::for_self`, Linux only) through a
//! small `Registry`; its output is appended as-is.
//!
//! Call `render` off the async reactor (`spawn_blocking`): it reads
//! `/proc/<pid>/stat` of every process in kelpie's session, a few
//! milliseconds with a thousand processes (docs/metrics.md, "Benchmark"),
//! on up to four threads. It keeps those files open between scrapes (as
//! many as `fd_budget` leaves room for).
//!
//! API decisions:
//! - `program_restarted(program, count)` *adds* `count` (normally 1); it is
//!   not the instance's running total.
//! - `probe_result` accepts the probe names `readiness` and `liveness`
//!   (the label values docs/metrics.md lists); anything else is ignored rather than creating an
//!   unbounded label.
//! - `http_request` folds the path into a fixed route set (`/health`,
//!   `/ready`, `/ready/{program}`, `/metrics`, `other`) so that clients
//!   requesting random paths cannot grow the series count.
//! - `set_restart_budget_available(None)` (no global budget configured)
//!   omits `kelpie_restart_budget_available`: there is no finite number to
//!   report, and an absent series keeps `== 0` alerts quiet.
//! - Counters of a program on the board start at 0 before their first event
//!   (`exits_total` for all five reasons, `log_lines_total` for both
//!   streams, `restarts_total`, `restarts_delayed_total`), so `increase()`
//!   sees the first event. Probe series appear with the first probe result
//!   (the board does not say which probes a program has), and
//!   `last_exit_code` with the first exit.

mod exposition;
pub(crate) mod proc;
#[cfg(test)]
mod tests;
mod text;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use prometheus::Registry;

pub use self::proc::{GroupScanner, Usage};
use crate::output_stream::Stream;
use crate::state::{ExitKind, ExitStatus};

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds of `kelpie_probe_duration_seconds`, in seconds. Local TCP
/// and HTTP probes take well under a millisecond to a few; exec probes and
/// timeouts (default 1-10 s) fill the upper buckets.
pub const PROBE_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// `PROBE_BUCKETS` (and +Inf) as the end of a bucket line, from the `le`
/// label to the value: one copy per line. Kept in step by a test.
const PROBE_BUCKET_ENDS: [&str; 13] = [
    ",le=\"0.001\"} ",
    ",le=\"0.005\"} ",
    ",le=\"0.01\"} ",
    ",le=\"0.025\"} ",
    ",le=\"0.05\"} ",
    ",le=\"0.1\"} ",
    ",le=\"0.25\"} ",
    ",le=\"0.5\"} ",
    ",le=\"1\"} ",
    ",le=\"2.5\"} ",
    ",le=\"5\"} ",
    ",le=\"10\"} ",
    ",le=\"+Inf\"} ",
];

const EXIT_KINDS: [ExitKind; 5] = [
    ExitKind::Success,
    ExitKind::Failure,
    ExitKind::Signal,
    ExitKind::Killed,
    ExitKind::Oom,
];
const STREAMS: [Stream; 2] = [Stream::Stdout, Stream::Stderr];
const PROBES: [&str; 2] = ["readiness", "liveness"];
/// Routes for the `path` label of `kelpie_http_requests_total`.
const HTTP_ROUTES: [&str; 4] = ["/health", "/ready", "/metrics", "/ready/{program}"];
const HTTP_OTHER: &str = "other";

/// `last_exit_code` before any exit.
const NO_EXIT: i64 = i64::MIN;
/// `restart_budget_available` when no budget is configured.
const NO_BUDGET: u64 = u64::MAX;

fn exit_index(kind: ExitKind) -> usize {
    match kind {
        ExitKind::Success => 0,
        ExitKind::Failure => 1,
        ExitKind::Signal => 2,
        ExitKind::Killed => 3,
        ExitKind::Oom => 4,
    }
}

fn stream_index(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

/// The conventional shell encoding: the exit code, or 128 + signal number.
pub fn exit_code(status: ExitStatus) -> i64 {
    match status {
        ExitStatus::Code(code) => i64::from(code),
        ExitStatus::Signal(signal) => 128 + i64::from(signal),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain counters
    // behind, which are still fine to read and bump.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Per bucket, not cumulative; the last slot is +Inf.
    buckets: [u64; PROBE_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
    failures: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64, ok: bool) {
        let slot = PROBE_BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(PROBE_BUCKETS.len());
        self.buckets[slot] += 1;
        self.sum += seconds;
        self.count += 1;
        if !ok {
            self.failures += 1;
        }
    }
}

/// The event counters of one program.
#[derive(Debug)]
struct ProgramCounters {
    restarts: AtomicU64,
    exits: [AtomicU64; 5],
    last_exit_code: AtomicI64,
    log_lines: [AtomicU64; 2],
    restarts_delayed: AtomicU64,
    /// By `PROBES` index; `None` until the first result. Probe results come
    /// seconds apart, so a mutex (keeping buckets, sum and count
    /// consistent) costs nothing.
    probes: Mutex<[Option<Histogram>; 2]>,
}

impl ProgramCounters {
    fn new() -> Self {
        Self {
            restarts: AtomicU64::new(0),
            exits: Default::default(),
            last_exit_code: AtomicI64::new(NO_EXIT),
            log_lines: Default::default(),
            restarts_delayed: AtomicU64::new(0),
            probes: Mutex::new([None, None]),
        }
    }
}

/// A cheap handle for the log-line hot path: one atomic add per line, no
/// map lookup or lock. A handle taken before `remove_program` keeps
/// counting into the removed (no longer rendered) counters.
#[derive(Debug, Clone)]
pub struct LogLineCounter {
    counters: Arc<ProgramCounters>,
    stream: usize,
}

impl LogLineCounter {
    pub fn inc(&self) {
        self.inc_by(1);
    }

    pub fn inc_by(&self, lines: u64) {
        self.counters.log_lines[self.stream].fetch_add(lines, Ordering::Relaxed);
    }
}

pub struct Metrics {
    /// `process_*` only (see the module docs).
    registry: Registry,
    programs: RwLock<HashMap<String, Arc<ProgramCounters>>>,
    /// (route, status code) → requests. A handful of entries.
    http: Mutex<Vec<(&'static str, u16, u64)>>,
    budget: AtomicU64,
    scanner: Mutex<GroupScanner>,
    /// Length of the previous output, to allocate the next one in one go.
    last_len: AtomicUsize,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Result<Self, String> {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .map_err(|e| format!("cannot register the process metrics: {e}"))?;
        Ok(Self {
            registry,
            programs: RwLock::new(HashMap::new()),
            http: Mutex::new(Vec::new()),
            budget: AtomicU64::new(NO_BUDGET),
            scanner: Mutex::new(GroupScanner::new()),
            last_len: AtomicUsize::new(0),
        })
    }

    /// Runs `f` on the program's counters, creating them on first use.
    /// The common case (counters exist) takes only the read lock.
    fn with_program<R>(&self, program: &str, f: impl FnOnce(&ProgramCounters) -> R) -> R {
        {
            let programs = self.programs.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(counters) = programs.get(program) {
                return f(counters);
            }
        }
        let mut programs = self
            .programs
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let counters = programs
            .entry(program.to_string())
            .or_insert_with(|| Arc::new(ProgramCounters::new()));
        f(counters)
    }

    /// The program's counters, created on first use.
    fn counters(&self, program: &str) -> Arc<ProgramCounters> {
        if let Some(counters) = self
            .programs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(program)
        {
            return counters.clone();
        }
        self.programs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(program.to_string())
            .or_insert_with(|| Arc::new(ProgramCounters::new()))
            .clone()
    }

    /// An instance's process exited (the group leader), however it ended.
    pub fn program_exited(&self, program: &str, kind: ExitKind, status: ExitStatus) {
        self.with_program(program, |c| {
            c.exits[exit_index(kind)].fetch_add(1, Ordering::Relaxed);
            c.last_exit_code.store(exit_code(status), Ordering::Relaxed);
        });
    }

    /// `exits_total` of `program` by reason, in `EXIT_KINDS` order.
    #[cfg(test)]
    pub fn exits_of(&self, program: &str) -> [u64; 5] {
        let programs = self.programs.read().unwrap_or_else(PoisonError::into_inner);
        let Some(counters) = programs.get(program) else {
            return [0; 5];
        };
        std::array::from_fn(|i| counters.exits[i].load(Ordering::Relaxed))
    }

    /// Adds `count` restarts (normally 1 per restart).
    pub fn program_restarted(&self, program: &str, count: u64) {
        self.with_program(program, |c| {
            c.restarts.fetch_add(count, Ordering::Relaxed);
        });
    }

    /// One probe run. `probe` is `readiness` or `liveness`; other names are
    /// ignored (see the module docs).
    pub fn probe_result(&self, program: &str, probe: &str, duration: Duration, ok: bool) {
        let Some(index) = PROBES.iter().position(|p| *p == probe) else {
            tracing::debug!(program, probe, "metrics: unknown probe name ignored");
            return;
        };
        self.with_program(program, |c| {
            lock(&c.probes)[index]
                .get_or_insert_with(Histogram::default)
                .observe(duration.as_secs_f64(), ok);
        });
    }

    pub fn log_line(&self, program: &str, stream: Stream) {
        self.with_program(program, |c| {
            c.log_lines[stream_index(stream)].fetch_add(1, Ordering::Relaxed);
        });
    }

    /// A handle for counting a program's log lines without a lookup per
    /// line (for output pumps).
    pub fn log_line_counter(&self, program: &str, stream: Stream) -> LogLineCounter {
        LogLineCounter {
            counters: self.counters(program),
            stream: stream_index(stream),
        }
    }

    /// A request served on `http_listen`. `path` is the request path or
    /// route; it is folded into the fixed route set.
    pub fn http_request(&self, path: &str, code: u16) {
        let route = http_route(path);
        let mut http = lock(&self.http);
        match http.iter_mut().find(|(r, c, _)| *r == route && *c == code) {
            Some((_, _, n)) => *n += 1,
            None => http.push((route, code, 1)),
        }
    }

    /// A restart the global restart budget held back.
    pub fn restart_delayed(&self, program: &str) {
        self.with_program(program, |c| {
            c.restarts_delayed.fetch_add(1, Ordering::Relaxed);
        });
    }

    /// Restarts the global budget allows right now; `None` when there is no
    /// budget, which omits the gauge.
    pub fn set_restart_budget_available(&self, n: Option<u64>) {
        // u64::MAX restarts available is "unlimited" anyway.
        self.budget.store(n.unwrap_or(NO_BUDGET), Ordering::Relaxed);
    }

    /// Forgets every series of a program (reload removed it). The output
    /// already omits programs that are not on the board; this frees the
    /// counters and the accumulated CPU, so a program of the same name
    /// added later starts from zero.
    pub fn remove_program(&self, program: &str) {
        self.programs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(program);
        lock(&self.scanner).forget(program);
    }
}

/// Folds a request path into the fixed route set.
fn http_route(path: &str) -> &'static str {
    if let Some(route) = HTTP_ROUTES.iter().find(|r| **r == path) {
        return route;
    }
    match path.strip_prefix("/ready/") {
        Some(rest) if !rest.is_empty() && !rest.contains('/') => "/ready/{program}",
        _ => HTTP_OTHER,
    }
}

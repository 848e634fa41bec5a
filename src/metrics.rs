//! Prometheus metrics for `GET /metrics` (SPEC §4, docs/metrics.md).
//!
//! Two kinds of series:
//! - **event counters** the actors report as things happen: exits, restarts,
//!   probe results, log lines, HTTP requests, budget delays. `Metrics` keeps
//!   them per program in plain atomics;
//! - **state gauges** computed from the status [`Board`] at scrape time:
//!   state, readiness, running instances, start times, backoff, and the CPU
//!   and memory of each program's process groups (one pass over `/proc`,
//!   see `metrics/proc.rs`).
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
//! on up to four threads. It keeps those files open between scrapes (up to
//! a quarter of RLIMIT_NOFILE).
//!
//! API decisions:
//! - `program_restarted(program, count)` *adds* `count` (normally 1); it is
//!   not the instance's running total.
//! - `probe_result` accepts the probe names `readiness` and `liveness`
//!   (SPEC label values); anything else is ignored rather than creating an
//!   unbounded label.
//! - `http_request` folds the path into a fixed route set (`/health`,
//!   `/ready`, `/ready/{program}`, `/metrics`, `other`) so that clients
//!   requesting random paths cannot grow the series count.
//! - `set_restart_budget_available(None)` (no global budget configured)
//!   omits `kelpie_restart_budget_available`: there is no finite number to
//!   report, and an absent series keeps `== 0` alerts quiet.
//! - Counters of a program on the board start at 0 before their first event
//!   (`exits_total` for all four reasons, `log_lines_total` for both
//!   streams, `restarts_total`, `restarts_delayed_total`), so `increase()`
//!   sees the first event. Probe series appear with the first probe result
//!   (the board does not say which probes a program has), and
//!   `last_exit_code` with the first exit.

mod proc;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use prometheus::Registry;

use self::proc::{GroupScanner, Usage};
use crate::output_stream::Stream;
use crate::state::{ExitKind, ExitStatus, Phase};
use crate::status::Board;

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

const EXIT_KINDS: [ExitKind; 4] = [
    ExitKind::Success,
    ExitKind::Failure,
    ExitKind::Signal,
    ExitKind::Killed,
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
    exits: [AtomicU64; 4],
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

    /// The text exposition for `board`, with CPU and memory sampled now.
    pub fn render(&self, board: &Board) -> String {
        let mut out = String::with_capacity(self.last_len.load(Ordering::Relaxed) + 4096);
        // The scan spreads its reads over threads itself; overlapping the
        // whole scan with the text instead gained nothing measurable
        // (docs/metrics.md, "Implementation notes").
        let usage = cfg!(target_os = "linux").then(|| lock(&self.scanner).scan(board));
        self.render_board(&mut out, board);
        if let Some(usage) = usage {
            self.render_usage(&mut out, board, &usage);
        }
        self.render_process(&mut out);
        self.last_len.store(out.len(), Ordering::Relaxed);
        out
    }

    /// Every family but the /proc ones and `process_*`.
    fn render_board(&self, out: &mut String, board: &Board) {
        let mut w = Writer { out };
        let programs = self.programs.read().unwrap_or_else(PoisonError::into_inner);
        let counters: Vec<Option<&ProgramCounters>> = board
            .programs
            .iter()
            .map(|p| programs.get(p.name.as_str()).map(|c| c.as_ref()))
            .collect();
        // Program names as label values, escaped once (config validation
        // keeps them plain, so this borrows).
        let names: Vec<Cow<'_, str>> = board.programs.iter().map(|p| escape(&p.name)).collect();
        let rows = || board.programs.iter().zip(&names).zip(&counters);

        w.header(
            "kelpie_build_info",
            "gauge",
            "Always 1; the version label carries kelpie's version.",
        );
        w.out.push_str("kelpie_build_info{version=\"");
        w.out.push_str(&escape(env!("CARGO_PKG_VERSION")));
        w.out.push('"');
        w.end_u64(1);
        w.header(
            "kelpie_up",
            "gauge",
            "Always 1 while kelpie serves metrics.",
        );
        w.plain_u64("kelpie_up", 1);
        w.header(
            "kelpie_shutting_down",
            "gauge",
            "1 once shutdown has begun, else 0.",
        );
        w.plain_u64("kelpie_shutting_down", u64::from(board.shutting_down));

        w.header(
            "kelpie_program_state",
            "gauge",
            "1 for the program's current state, 0 for the other states.",
        );
        for ((program, name), _) in rows() {
            let current = program.state();
            for phase in Phase::ALL {
                w.series("kelpie_program_state", name);
                w.label(",state=\"", phase.as_str());
                w.end_u64(u64::from(phase == current));
            }
        }

        w.header(
            "kelpie_program_ready",
            "gauge",
            "1 if every instance of the program is ready.",
        );
        for ((program, name), _) in rows() {
            w.series("kelpie_program_ready", name);
            w.end_u64(u64::from(program.ready()));
        }

        w.header(
            "kelpie_program_instances_running",
            "gauge",
            "Instances with a live process.",
        );
        for ((program, name), _) in rows() {
            w.series("kelpie_program_instances_running", name);
            w.end_u64(program.running() as u64);
        }

        w.header(
            "kelpie_program_restarts_total",
            "counter",
            "Restarts of the program's instances.",
        );
        for ((_, name), c) in rows() {
            w.series("kelpie_program_restarts_total", name);
            w.end_u64(c.map_or(0, |c| c.restarts.load(Ordering::Relaxed)));
        }

        w.header(
            "kelpie_program_exits_total",
            "counter",
            "Process exits by reason: success, failure, signal, killed.",
        );
        for ((_, name), c) in rows() {
            for kind in EXIT_KINDS {
                w.series("kelpie_program_exits_total", name);
                w.label(",reason=\"", kind.as_str());
                w.end_u64(c.map_or(0, |c| c.exits[exit_index(kind)].load(Ordering::Relaxed)));
            }
        }

        let mut family = Lazy::new(
            "kelpie_program_last_exit_code",
            "gauge",
            "Exit code of the last exit, or 128 + signal number.",
        );
        for ((_, name), c) in rows() {
            let code = c.map_or(NO_EXIT, |c| c.last_exit_code.load(Ordering::Relaxed));
            if code != NO_EXIT {
                family.open(&mut w);
                w.series("kelpie_program_last_exit_code", name);
                w.end_i64(code);
            }
        }

        let mut family = Lazy::new(
            "kelpie_program_start_time_seconds",
            "gauge",
            "Start time of each instance's current process, in seconds since the Unix epoch.",
        );
        for ((program, name), _) in rows() {
            for (index, instance) in program.instances.iter().enumerate() {
                // Only instances with a process: a stopped one has no start.
                let (Some(_), Some(started)) = (instance.snapshot.pid, instance.started_at) else {
                    continue;
                };
                let Ok(since_epoch) = started.duration_since(SystemTime::UNIX_EPOCH) else {
                    continue;
                };
                family.open(&mut w);
                w.series("kelpie_program_start_time_seconds", name);
                w.out.push_str(",instance=\"");
                push_u64(w.out, index as u64);
                w.out.push('"');
                w.end_f64(since_epoch.as_secs_f64());
            }
        }

        w.header(
            "kelpie_program_backoff_seconds",
            "gauge",
            "Current restart delay of the program (longest over its instances), 0 if none.",
        );
        for ((program, name), _) in rows() {
            let backoff = program
                .instances
                .iter()
                .map(|i| i.snapshot.backoff)
                .max()
                .unwrap_or_default();
            w.series("kelpie_program_backoff_seconds", name);
            w.end_f64(backoff.as_secs_f64());
        }

        // Probe histograms: copied under each program's lock, written after.
        let probes: Vec<[Option<Histogram>; 2]> = counters
            .iter()
            .map(|c| c.map(|c| lock(&c.probes).clone()).unwrap_or_default())
            .collect();
        let mut family = Lazy::new(
            "kelpie_probe_duration_seconds",
            "histogram",
            "Duration of probe runs, successful or not.",
        );
        // `{program="…",probe="…"`, shared by the 15 lines of a histogram.
        let mut labels = String::new();
        for (name, hists) in names.iter().zip(&probes) {
            for (probe, h) in PROBES.iter().zip(hists) {
                let Some(h) = h else { continue };
                family.open(&mut w);
                labels.clear();
                labels.push_str("{program=\"");
                labels.push_str(name);
                labels.push_str("\",probe=\"");
                labels.push_str(probe);
                labels.push('"');
                let mut cumulative = 0;
                for (end, n) in PROBE_BUCKET_ENDS.iter().zip(h.buckets) {
                    cumulative += n;
                    w.out.push_str("kelpie_probe_duration_seconds_bucket");
                    w.out.push_str(&labels);
                    w.out.push_str(end);
                    push_u64(w.out, cumulative);
                    w.out.push('\n');
                }
                w.out.push_str("kelpie_probe_duration_seconds_sum");
                w.out.push_str(&labels);
                w.end_f64(h.sum);
                w.out.push_str("kelpie_probe_duration_seconds_count");
                w.out.push_str(&labels);
                w.end_u64(h.count);
            }
        }
        let mut family = Lazy::new(
            "kelpie_probe_failures_total",
            "counter",
            "Probe runs that failed (including timeouts).",
        );
        for (name, hists) in names.iter().zip(&probes) {
            for (probe, h) in PROBES.iter().zip(hists) {
                let Some(h) = h else { continue };
                family.open(&mut w);
                w.series("kelpie_probe_failures_total", name);
                w.label(",probe=\"", probe);
                w.end_u64(h.failures);
            }
        }

        w.header(
            "kelpie_log_lines_total",
            "counter",
            "Lines the program wrote, by stream.",
        );
        for ((_, name), c) in rows() {
            for stream in STREAMS {
                w.series("kelpie_log_lines_total", name);
                w.label(",stream=\"", stream.as_str());
                w.end_u64(c.map_or(0, |c| {
                    c.log_lines[stream_index(stream)].load(Ordering::Relaxed)
                }));
            }
        }

        let budget = self.budget.load(Ordering::Relaxed);
        if budget != NO_BUDGET {
            w.header(
                "kelpie_restart_budget_available",
                "gauge",
                "Restarts the global restart budget allows right now.",
            );
            w.plain_u64("kelpie_restart_budget_available", budget);
        }

        w.header(
            "kelpie_restarts_delayed_total",
            "counter",
            "Restarts held back by the global restart budget.",
        );
        for ((_, name), c) in rows() {
            w.series("kelpie_restarts_delayed_total", name);
            w.end_u64(c.map_or(0, |c| c.restarts_delayed.load(Ordering::Relaxed)));
        }
        drop(programs);

        let mut http = lock(&self.http).clone();
        if !http.is_empty() {
            http.sort_unstable();
            w.header(
                "kelpie_http_requests_total",
                "counter",
                "Requests served on http_listen, by route and status code.",
            );
            for (route, code, n) in http {
                // Routes are constants that need no escaping.
                w.out.push_str("kelpie_http_requests_total{path=\"");
                w.out.push_str(route);
                w.out.push_str("\",code=\"");
                push_u64(w.out, u64::from(code));
                w.out.push('"');
                w.end_u64(n);
            }
        }
    }

    /// CPU and memory per program, `usage` in board order.
    fn render_usage(&self, out: &mut String, board: &Board, usage: &[Usage]) {
        let mut w = Writer { out };
        let names: Vec<Cow<'_, str>> = board.programs.iter().map(|p| escape(&p.name)).collect();
        w.header(
            "kelpie_program_cpu_seconds_total",
            "counter",
            "CPU time (user + system) of the program's process groups.",
        );
        for (name, u) in names.iter().zip(usage) {
            w.series("kelpie_program_cpu_seconds_total", name);
            w.end_f64(u.cpu_seconds);
        }
        w.header(
            "kelpie_program_resident_memory_bytes",
            "gauge",
            "Sum of the resident set sizes of the program's process groups.",
        );
        for (name, u) in names.iter().zip(usage) {
            w.series("kelpie_program_resident_memory_bytes", name);
            w.end_u64(u.rss_bytes);
        }
    }

    /// `process_*`: a handful of series, so the crate's encoder is fine.
    fn render_process(&self, out: &mut String) {
        let families = self.registry.gather();
        if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&families, out) {
            tracing::debug!(error = %e, "metrics: cannot encode process metrics");
        }
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

/// A family header written only before its first sample.
struct Lazy {
    header: Option<(&'static str, &'static str, &'static str)>,
}

impl Lazy {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Self {
        Self {
            header: Some((name, kind, help)),
        }
    }

    fn open(&mut self, w: &mut Writer<'_>) {
        if let Some((name, kind, help)) = self.header.take() {
            w.header(name, kind, help);
        }
    }
}

/// Appends text-format lines piecewise (`series`, `label`, `end_*`), so
/// no line needs an intermediate String. Label values passed in must be
/// escaped already (`escape`) or be constants that need no escaping.
struct Writer<'a> {
    out: &'a mut String,
}

impl Writer<'_> {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        // HELP texts are constants without backslashes or newlines.
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(help);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind);
        self.out.push('\n');
    }

    /// `name{program="…"`, labels still open.
    fn series(&mut self, name: &str, program: &str) {
        self.out.push_str(name);
        self.out.push_str("{program=\"");
        self.out.push_str(program);
        self.out.push('"');
    }

    /// `key` comes with its punctuation (`,state="`), one copy instead of
    /// three on the hottest path.
    fn label(&mut self, key: &str, value: &str) {
        self.out.push_str(key);
        self.out.push_str(value);
        self.out.push('"');
    }

    /// A sample without labels.
    fn plain_u64(&mut self, name: &str, value: u64) {
        self.out.push_str(name);
        self.out.push(' ');
        push_u64(self.out, value);
        self.out.push('\n');
    }

    fn end_u64(&mut self, value: u64) {
        self.out.push_str("} ");
        push_u64(self.out, value);
        self.out.push('\n');
    }

    fn end_i64(&mut self, value: i64) {
        self.out.push_str("} ");
        if value < 0 {
            self.out.push('-');
        }
        push_u64(self.out, value.unsigned_abs());
        self.out.push('\n');
    }

    fn end_f64(&mut self, value: f64) {
        self.out.push_str("} ");
        push_f64(self.out, value);
        self.out.push('\n');
    }
}

/// A label value escaped for the text format: `\`, `"` and newline.
fn escape(value: &str) -> Cow<'_, str> {
    if !value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn push_u64(out: &mut String, mut n: u64) {
    // Faster than `write!` for the tens of thousands of integers a large
    // scrape has.
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&digits[i..]).unwrap_or("0"));
}

fn push_f64(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else if value.fract() == 0.0 && value.abs() < 9.0e15 {
        // Whole numbers (zero backoffs, idle CPU) skip float formatting;
        // below 2^53 the integer is exact.
        if value < 0.0 {
            out.push('-');
        }
        push_u64(out, value.abs() as u64);
    } else {
        // Display never uses exponents and round-trips; Prometheus parses
        // plain decimals.
        let _ = write!(out, "{value}");
    }
}

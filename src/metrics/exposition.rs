//! The text exposition of `GET /metrics`: every family, from the board and
//! the counters, plus the /proc usage and the crate's `process_*` families.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::PoisonError;
use std::time::SystemTime;

use super::proc::Usage;
use super::text::{escape, push_u64, Lazy, Writer};
use super::{
    exit_index, lock, stream_index, Histogram, Metrics, ProgramCounters, EXIT_KINDS, NO_BUDGET,
    NO_EXIT, PROBES, PROBE_BUCKET_ENDS, STREAMS,
};
use crate::state::Phase;
use crate::status::Board;

impl Metrics {
    /// The text exposition for `board`, with CPU and memory sampled now.
    pub fn render(&self, board: &Board) -> String {
        let mut out = String::with_capacity(self.last_len.load(Ordering::Relaxed) + 4096);
        // The text of the board, and `process_*`, do not need the scan:
        // they are written on this thread while the scan's helper threads
        // read (docs/metrics.md, "The `/proc` pass"). `process_*` goes into
        // its own buffer, as it comes last.
        let mut process = String::new();
        let mut written = false;
        let mut write_rest = || {
            if !written {
                self.render_board(&mut out, board);
                self.render_process(&mut process);
                written = true;
            }
        };
        let usage = cfg!(target_os = "linux")
            .then(|| lock(&self.scanner).scan_while(board, &mut write_rest));
        write_rest();
        if let Some(usage) = usage {
            self.render_usage(&mut out, board, &usage);
        }
        out.push_str(&process);
        self.last_len.store(out.len(), Ordering::Relaxed);
        out
    }

    /// Every family but the /proc ones and `process_*`.
    pub(super) fn render_board(&self, out: &mut String, board: &Board) {
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
            "kelpie_program_enabled",
            "gauge",
            "1 if the program is meant to run: autostart, or started by request, and not stopped by `kelpie stop`.",
        );
        for ((program, name), _) in rows() {
            w.series("kelpie_program_enabled", name);
            w.end_u64(u64::from(program.enabled));
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
            "Process exits by reason: success, failure, signal, killed, oom.",
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
    pub(super) fn render_usage(&self, out: &mut String, board: &Board, usage: &[Usage]) {
        let mut w = Writer { out };
        let names: Vec<Cow<'_, str>> = board.programs.iter().map(|p| escape(&p.name)).collect();
        w.header(
            "kelpie_program_cpu_seconds_total",
            "counter",
            "CPU time (user + system) of the program's processes: its process groups and their descendants.",
        );
        for (name, u) in names.iter().zip(usage) {
            w.series("kelpie_program_cpu_seconds_total", name);
            w.end_f64(u.cpu_seconds);
        }
        w.header(
            "kelpie_program_resident_memory_bytes",
            "gauge",
            "Sum of the resident set sizes of the program's processes: its process groups and their descendants.",
        );
        for (name, u) in names.iter().zip(usage) {
            w.series("kelpie_program_resident_memory_bytes", name);
            w.end_u64(u.rss_bytes);
        }
    }

    /// `process_*`: a handful of series, so the crate's encoder is fine.
    pub(super) fn render_process(&self, out: &mut String) {
        let families = self.registry.gather();
        if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&families, out) {
            tracing::debug!(error = %e, "metrics: cannot encode process metrics");
        }
    }
}

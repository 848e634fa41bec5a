//! The `/metrics` render benchmark (ignored; run by bench/metrics_scrape.sh)
//! and the `prometheus` crate design it is compared with.

use super::*;

/// The same series as a `render` of `board` (apart from `process_*`), in
/// `prometheus` crate `*Vec` families: the design kelpie did not take,
/// kept in the benchmark as the comparison.
fn prometheus_crate_registry(board: &Board) -> prometheus::Registry {
    use prometheus::{
        GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    };
    let r = Registry::new();
    let gauge = |name: &str, labels: &[&str]| {
        let g = IntGaugeVec::new(Opts::new(name, "help"), labels).unwrap();
        r.register(Box::new(g.clone())).unwrap();
        g
    };
    let fgauge = |name: &str, labels: &[&str]| {
        let g = GaugeVec::new(Opts::new(name, "help"), labels).unwrap();
        r.register(Box::new(g.clone())).unwrap();
        g
    };
    let counter = |name: &str, labels: &[&str]| {
        let c = IntCounterVec::new(Opts::new(name, "help"), labels).unwrap();
        r.register(Box::new(c.clone())).unwrap();
        c
    };
    let state = gauge("kelpie_program_state", &["program", "state"]);
    let ready = gauge("kelpie_program_ready", &["program"]);
    let running = gauge("kelpie_program_instances_running", &["program"]);
    let restarts = counter("kelpie_program_restarts_total", &["program"]);
    let exits = counter("kelpie_program_exits_total", &["program", "reason"]);
    let last = gauge("kelpie_program_last_exit_code", &["program"]);
    let start = fgauge(
        "kelpie_program_start_time_seconds",
        &["program", "instance"],
    );
    let cpu = fgauge("kelpie_program_cpu_seconds_total", &["program"]);
    let rss = gauge("kelpie_program_resident_memory_bytes", &["program"]);
    let backoff = fgauge("kelpie_program_backoff_seconds", &["program"]);
    let failures = counter("kelpie_probe_failures_total", &["program", "probe"]);
    let lines = counter("kelpie_log_lines_total", &["program", "stream"]);
    let delayed = counter("kelpie_restarts_delayed_total", &["program"]);
    let probes = HistogramVec::new(
        HistogramOpts::new("kelpie_probe_duration_seconds", "help").buckets(PROBE_BUCKETS.to_vec()),
        &["program", "probe"],
    )
    .unwrap();
    r.register(Box::new(probes.clone())).unwrap();
    for (i, p) in board.programs.iter().enumerate() {
        let name = p.name.as_str();
        for phase in Phase::ALL {
            state.with_label_values(&[name, phase.as_str()]).set(1);
        }
        ready.with_label_values(&[name]).set(1);
        running.with_label_values(&[name]).set(1);
        restarts.with_label_values(&[name]).inc_by(2);
        for kind in EXIT_KINDS {
            exits.with_label_values(&[name, kind.as_str()]).inc();
        }
        last.with_label_values(&[name]).set(143);
        start.with_label_values(&[name, "0"]).set(1.7e9);
        cpu.with_label_values(&[name]).set(0.5);
        rss.with_label_values(&[name]).set(1 << 20);
        backoff.with_label_values(&[name]).set(0.0);
        for ms in [1, 2, 4, 8, 16, 32, 64, 128, 256, 512] {
            probes
                .with_label_values(&[name, "readiness"])
                .observe(ms as f64 / 1e3);
        }
        failures.with_label_values(&[name, "readiness"]).inc();
        if i % 2 == 0 {
            probes.with_label_values(&[name, "liveness"]).observe(0.003);
            failures.with_label_values(&[name, "liveness"]).inc_by(0);
        }
        for stream in STREAMS {
            lines.with_label_values(&[name, stream.as_str()]).inc();
        }
        delayed
            .with_label_values(&[name])
            .inc_by(u64::from(i % 10 == 0));
    }
    r
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: usize) -> f64 {
    let index = (sorted.len() * p / 100).min(sorted.len() - 1);
    sorted[index].as_secs_f64() * 1e3
}

/// The /metrics scrape with 1000 programs, each a real `sleep` in its own
/// process group, and every event family populated. Run through
/// `bench/metrics_scrape.sh` (release build, several runs); prints one
/// `metrics_scrape ...` line.
#[test]
#[ignore = "benchmark: spawns 1000 processes; run bench/metrics_scrape.sh"]
fn scrape_benchmark() {
    let programs = env_usize("KELPIE_BENCH_PROGRAMS", 1000);
    let renders = env_usize("KELPIE_BENCH_RENDERS", 200).max(50);
    let mut groups = Groups(Vec::with_capacity(programs));
    let started = SystemTime::now();
    let board = Board {
        shutting_down: false,
        programs: (0..programs)
            .map(|i| {
                let pid = groups.spawn(&["sleep", "1000"]);
                program(
                    &format!("program-{i:04}"),
                    false,
                    vec![instance(Phase::Running, Some(pid), Some(started))],
                )
            })
            .collect(),
    };
    let m = Metrics::new().unwrap();
    for (i, p) in board.programs.iter().enumerate() {
        let name = p.name.as_str();
        m.program_exited(name, ExitKind::Failure, ExitStatus::Code(1));
        m.program_exited(name, ExitKind::Signal, ExitStatus::Signal(15));
        m.program_restarted(name, 2);
        for ms in [1, 2, 4, 8, 16, 32, 64, 128, 256, 512] {
            m.probe_result(name, "readiness", Duration::from_millis(ms), ms < 500);
        }
        if i % 2 == 0 {
            m.probe_result(name, "liveness", Duration::from_millis(3), true);
        }
        m.log_line(name, Stream::Stdout);
        m.log_line(name, Stream::Stderr);
        if i % 10 == 0 {
            m.restart_delayed(name);
        }
    }
    for code in [200, 404, 503] {
        m.http_request("/metrics", code);
        m.http_request("/ready", code);
    }
    m.set_restart_budget_available(Some(10));

    // Every process must be found before timing (sleep has exec'd).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let usage = lock(&m.scanner).scan(&board);
        let found = usage
            .iter()
            .filter(|u| u.processes == 1 && u.rss_bytes > 0)
            .count();
        if found == programs {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {found} of {programs} groups found in /proc"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // For a profiler: renders only, none of the comparison figures, so a
    // profile of the whole process is a profile of `render`.
    if std::env::var_os("KELPIE_BENCH_RENDER_ONLY").is_some() {
        let t = tokio::time::Instant::now();
        for _ in 0..renders {
            std::hint::black_box(m.render(&board));
        }
        println!(
            "metrics_scrape_render_only programs={programs} renders={renders} mean_ms={:.3}",
            t.elapsed().as_secs_f64() * 1e3 / renders as f64
        );
        return;
    }

    // The prometheus crate's gather + encode of the same series, timed
    // like `text` (no /proc pass).
    let crate_registry = prometheus_crate_registry(&board);
    let mut crate_encode = Vec::with_capacity(renders);
    let mut crate_bytes = 0;
    for _ in 0..renders.min(50) {
        let t = tokio::time::Instant::now();
        let mut out = String::new();
        prometheus::TextEncoder::new()
            .encode_utf8(&crate_registry.gather(), &mut out)
            .unwrap();
        crate_encode.push(t.elapsed());
        crate_bytes = out.len();
    }
    drop(crate_registry);

    let mut bytes = 0;
    let mut total = Vec::with_capacity(renders);
    let mut scan = Vec::with_capacity(renders);
    let mut text_only = Vec::with_capacity(renders);
    for _ in 0..5 {
        std::hint::black_box(m.render(&board));
    }
    // Every figure is sampled in each round, so all of them see the same
    // machine conditions (other load on the machine comes and goes).
    let mut process = Vec::with_capacity(renders);
    // The scan's share spent deciding whose each process is (the ppid
    // walk), as the scan itself measured it.
    let mut attribute = Vec::with_capacity(renders);
    // The kernel's share, for context on a given machine: one pread of
    // every kept-open stat file, and one bare listing of /proc.
    let (mut pread_floor, mut readdir_floor) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; 1024];
    let time = |samples: &mut Vec<Duration>, f: &mut dyn FnMut()| {
        let t = tokio::time::Instant::now();
        f();
        samples.push(t.elapsed());
    };
    for _ in 0..renders {
        time(&mut total, &mut || {
            bytes = std::hint::black_box(m.render(&board)).len();
        });
        let mut usage = Vec::new();
        time(&mut scan, &mut || {
            usage = std::hint::black_box(lock(&m.scanner).scan(&board));
        });
        attribute.push(lock(&m.scanner).attribute_time);
        time(&mut text_only, &mut || {
            let mut out = String::with_capacity(bytes + 4096);
            m.render_board(&mut out, &board);
            m.render_usage(&mut out, &board, &usage);
            std::hint::black_box(out);
        });
        time(&mut process, &mut || {
            let mut out = String::new();
            m.render_process(&mut out);
            std::hint::black_box(out);
        });
        let scanner = lock(&m.scanner);
        let files = scanner.reader_files();
        time(&mut pread_floor, &mut || {
            use std::os::unix::fs::FileExt as _;
            for file in &files {
                let _ = std::hint::black_box(file.read_at(&mut buf, 0));
            }
        });
        drop(files);
        drop(scanner);
        time(&mut readdir_floor, &mut || {
            std::hint::black_box(std::fs::read_dir("/proc").unwrap().flatten().count());
        });
    }
    let processes = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                .count()
        })
        .unwrap_or(0);
    for v in [
        &mut total,
        &mut scan,
        &mut attribute,
        &mut text_only,
        &mut process,
        &mut pread_floor,
        &mut readdir_floor,
        &mut crate_encode,
    ] {
        v.sort();
    }
    println!(
        "metrics_scrape programs={programs} proc_entries={processes} renders={renders} \
         bytes={bytes} p50_ms={:.3} p99_ms={:.3} min_ms={:.3} max_ms={:.3} \
         scan_p50_ms={:.3} attribute_p50_ms={:.3} text_p50_ms={:.3} process_p50_ms={:.3} \
         pread_floor_p50_ms={:.3} \
         readdir_floor_p50_ms={:.3} prometheus_crate_p50_ms={:.3} prometheus_crate_bytes={crate_bytes} \
         loadavg={}",
        percentile(&total, 50),
        percentile(&total, 99),
        percentile(&total, 0),
        percentile(&total, 100),
        percentile(&scan, 50),
        percentile(&attribute, 50),
        percentile(&text_only, 50),
        percentile(&process, 50),
        percentile(&pread_floor, 50),
        percentile(&readdir_floor, 50),
        percentile(&crate_encode, 50),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .unwrap_or("?"),
    );
}

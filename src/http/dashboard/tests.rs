//! The dashboard's JSON: its shape, and the render benchmark (ignored; run
//! by bench/dashboard_json.sh).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::json::{self, Inputs, Selected};
use crate::exit_history::{verdict, Decision, ExitOverview, ExitRecord, KeptLine};
use crate::metrics::proc::Usage;
use crate::output_stream::Stream;
use crate::state::{ExitKind, ExitStatus, Phase};
use crate::status::{Board, InstanceStatus, ProgramStatus};

fn running(name: &str, pid: i32, started: SystemTime) -> Arc<ProgramStatus> {
    let mut program = ProgramStatus::new(name, false, false, 1);
    let mut instance = InstanceStatus::new();
    instance.snapshot.phase = Phase::Running;
    instance.snapshot.pid = Some(pid);
    instance.started_at = Some(started);
    program.instances = vec![instance];
    Arc::new(program)
}

fn exits(n: usize, lines: usize, now: SystemTime) -> Vec<ExitRecord> {
    (0..n)
        .map(|i| ExitRecord {
            seq: i as u64,
            at: now - Duration::from_secs(i as u64),
            instance: 0,
            pid: 1000 + i as i32,
            status: ExitStatus::Code(3),
            kind: ExitKind::Failure,
            by_kelpie: false,
            kelpie_reason: None,
            ran: Duration::from_millis(200),
            decision: Decision::Restart {
                delay: Duration::from_millis(700),
            },
            oom: None,
            output: (0..lines)
                .map(|l| {
                    KeptLine::new(
                        Stream::Stderr,
                        &format!("line {l} of a crash: segfault at 0x{l:x}"),
                    )
                })
                .collect(),
        })
        .collect()
}

/// What `ProgramOutput::exit_overview` makes of `records` (newest first).
fn overview(records: &[ExitRecord], now: SystemTime) -> ExitOverview {
    ExitOverview {
        count: records.len(),
        verdict: verdict::verdict(records, crate::state::Phase::Running, now),
        newest: records.first().map(ExitRecord::without_output),
    }
}

#[test]
fn json_lists_programs_instances_history_and_the_selected_log() {
    let now = SystemTime::now();
    let board = Board {
        shutting_down: false,
        programs: vec![running("web", 42, now - Duration::from_secs(90))],
    };
    let usage = [Usage {
        rss_bytes: 4096,
        cpu_seconds: 1.5,
        processes: 1,
    }];
    let records = exits(3, 2, now);
    let overviews = [Some(overview(&records, now))];
    let bytes = json::render(&Inputs {
        board: &board,
        usage: &usage,
        overviews: &overviews,
        selected: Some(Selected {
            name: "web".into(),
            exits: records,
            log: Vec::new(),
        }),
        actions: true,
        uptime_seconds: 7,
        now,
    });
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let web = &value["programs"][0];
    assert_eq!(web["name"], "web");
    assert_eq!(web["state"], "running");
    assert_eq!(web["rss_bytes"], 4096);
    assert_eq!(web["instances"][0]["pid"], 42);
    assert_eq!(web["instances"][0]["uptime_seconds"], 90);
    assert_eq!(web["exit_count"], 3);
    assert_eq!(web["last_exit"]["pid"], 1000, "{web}");
    assert!(web["last_exit"].get("output").is_none(), "{web}");
    assert!(
        web.get("exits").is_none(),
        "only the selected program's history is sent: {web}"
    );
    assert!(
        web["verdict"].as_str().unwrap().contains("exit code 3"),
        "{web}"
    );
    assert_eq!(value["actions"], true);
    let selected = &value["selected"];
    assert_eq!(selected["exits"][0]["output"][1]["stream"], "stderr");
    assert!(selected["exits"][0]["output"][1]["line"]
        .as_str()
        .unwrap()
        .starts_with("line 1 of a crash"));
}

/// `/dashboard.json` for 1000 programs, each with a full crash history (20
/// exits of 20 lines), one of them selected: every program's overview (its
/// verdict and newest exit, as `ProgramOutput::exit_overview` makes them),
/// the selected history with its lines, and the serialization, timed
/// `KELPIE_BENCH_RENDERS` times: the worst case of the render. The whole
/// request against real processes, `/proc` pass included, is timed by
/// bench/dashboard.py. Prints one `dashboard_json ...` line.
#[test]
#[ignore = "benchmark: run bench/dashboard_json.sh"]
fn dashboard_json_benchmark() {
    let programs = std::env::var("KELPIE_BENCH_PROGRAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000usize);
    let renders = std::env::var("KELPIE_BENCH_RENDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200usize)
        .max(20);
    let now = SystemTime::now();
    let board = Board {
        shutting_down: false,
        programs: (0..programs)
            .map(|i| running(&format!("program-{i:04}"), 10_000 + i as i32, now))
            .collect(),
    };
    let usage: Vec<Usage> = (0..programs)
        .map(|i| Usage {
            rss_bytes: 1 << 20,
            cpu_seconds: i as f64,
            processes: 1,
        })
        .collect();
    let kept: Vec<Vec<ExitRecord>> = (0..programs)
        .map(|_| {
            exits(
                crate::exit_history::EXITS_KEPT,
                crate::exit_history::LINES_KEPT,
                now,
            )
        })
        .collect();
    let mut times = Vec::with_capacity(renders);
    let mut size = 0;
    for _ in 0..renders {
        let started = Instant::now();
        let overviews: Vec<Option<ExitOverview>> =
            kept.iter().map(|e| Some(overview(e, now))).collect();
        let bytes = json::render(&Inputs {
            board: &board,
            usage: &usage,
            overviews: &overviews,
            selected: Some(Selected {
                name: "program-0000".into(),
                exits: kept[0].clone(),
                log: Vec::new(),
            }),
            actions: true,
            uptime_seconds: 1,
            now,
        });
        times.push(started.elapsed());
        size = bytes.len();
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "dashboard_json programs={programs} renders={renders} bytes={size} p50_ms={:.3} p99_ms={:.3} min_ms={:.3}",
        ms(times[times.len() / 2]),
        ms(times[times.len() * 99 / 100]),
        ms(times[0]),
    );
}

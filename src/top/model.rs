//! What `kelpie top` shows, as data: one row per program, and one per
//! instance under a program with several; the CPU share measured between
//! two samples; the order of the rows. Pure: no I/O, no clock reads.

use std::cmp::Ordering;
use std::collections::HashMap;

use tokio::time::Instant;

use crate::cli::TopSort;
use crate::control::protocol::{ProcessUsage, ProgramsReply, UsageReply};

/// One sample of the supervisor: its status board and the usage scan,
/// with when the usage reply arrived (the CPU share's clock).
#[derive(Debug, Clone)]
pub struct Sample {
    pub programs: ProgramsReply,
    /// `None` from a supervisor without `/v1/usage`.
    pub usage: Option<UsageReply>,
    pub at: Instant,
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `web`, or `web:1` for an instance row; also the name actions and the
    /// log tail use.
    pub name: String,
    pub program: String,
    /// `Some` for an instance row.
    pub index: Option<u32>,
    /// Instances of the program (several: the program row is a summary
    /// and its instances follow it).
    pub instances: usize,
    pub state: String,
    /// `yes`, `no`, or `-` when stopped.
    pub ready: &'static str,
    pub pid: Option<i32>,
    pub uptime_seconds: Option<u64>,
    pub restarts: u64,
    /// Percent of one CPU since the previous sample.
    pub cpu_percent: Option<f64>,
    pub rss_bytes: Option<u64>,
}

/// The CPU share of `name` between two samples of its `cpu_seconds`
/// counter: seconds used over seconds elapsed, in percent of one CPU (200
/// is two CPUs' worth). `None` without an earlier sample, when no time
/// passed, or when the counter went back (the program was rebuilt by a
/// reload, or the supervisor restarted).
pub fn cpu_percent(before: (f64, Instant), after: (f64, Instant)) -> Option<f64> {
    let elapsed = after.1.checked_duration_since(before.1)?.as_secs_f64();
    let used = after.0 - before.0;
    (elapsed > 0.0 && used >= 0.0 && used.is_finite()).then(|| used / elapsed * 100.0)
}

/// The last `cpu_seconds` of every program and instance, to measure the
/// next sample against.
#[derive(Debug, Default)]
pub struct CpuMeter {
    last: HashMap<String, (f64, Instant)>,
}

impl CpuMeter {
    /// The CPU share of every program and instance of `usage` since the
    /// previous call, by name; forgets the names `usage` no longer has.
    pub fn measure(&mut self, usage: &UsageReply, at: Instant) -> HashMap<String, f64> {
        let mut next = HashMap::with_capacity(self.last.len());
        let mut shares = HashMap::new();
        let mut take = |name: &str, usage: &ProcessUsage| {
            let now = (usage.cpu_seconds, at);
            if let Some(share) = self.last.get(name).and_then(|&b| cpu_percent(b, now)) {
                shares.insert(name.to_string(), share);
            }
            next.insert(name.to_string(), now);
        };
        for program in &usage.programs {
            take(&program.name, &program.usage);
            for instance in &program.instances {
                take(&instance.name, &instance.usage);
            }
        }
        self.last = next;
        shares
    }
}

/// The rows of a sample in `sort` order. A program with one instance is
/// one row with that instance's process; one with several is a summary row
/// (CPU and memory summed, restarts of all) followed by a row per
/// instance. Programs are ordered by their row, instances within their
/// program by theirs.
pub fn rows(sample: &Sample, cpu: &HashMap<String, f64>, sort: TopSort) -> Vec<Row> {
    let usage_of = |program: &str| {
        sample
            .usage
            .as_ref()
            .and_then(|u| u.programs.iter().find(|p| p.name == program))
    };
    // Usage replies list programs in board order too; look them up by
    // position first so hundreds of programs stay linear.
    let by_position = |position: usize, program: &str| {
        sample
            .usage
            .as_ref()
            .and_then(|u| u.programs.get(position))
            .filter(|p| p.name == program)
            .or_else(|| usage_of(program))
    };
    let mut groups: Vec<(Row, Vec<Row>)> = Vec::with_capacity(sample.programs.programs.len());
    for (position, program) in sample.programs.programs.iter().enumerate() {
        let usage = by_position(position, &program.name);
        let only = (program.instances.len() == 1).then(|| &program.instances[0]);
        let head = Row {
            name: program.name.clone(),
            program: program.name.clone(),
            index: None,
            instances: program.instances.len(),
            state: program.state.clone(),
            ready: ready(&program.state, program.ready),
            pid: only.and_then(|i| i.pid),
            uptime_seconds: only.and_then(|i| i.uptime_seconds),
            restarts: program.restarts,
            cpu_percent: cpu.get(&program.name).copied(),
            rss_bytes: usage.map(|u| u.usage.rss_bytes),
        };
        let mut instances = Vec::new();
        if program.instances.len() > 1 {
            for instance in &program.instances {
                let usage = usage.and_then(|u| {
                    u.instances
                        .get(instance.index as usize)
                        .filter(|i| i.index == instance.index)
                });
                instances.push(Row {
                    name: instance.name.clone(),
                    program: program.name.clone(),
                    index: Some(instance.index),
                    instances: program.instances.len(),
                    state: instance.state.clone(),
                    ready: ready(&instance.state, instance.ready),
                    pid: instance.pid,
                    uptime_seconds: instance.uptime_seconds,
                    restarts: instance.restarts,
                    cpu_percent: cpu.get(&instance.name).copied(),
                    rss_bytes: usage.map(|u| u.usage.rss_bytes),
                });
            }
            instances.sort_by(|a, b| order(a, b, sort));
        }
        groups.push((head, instances));
    }
    groups.sort_by(|a, b| order(&a.0, &b.0, sort));
    let mut out = Vec::with_capacity(groups.iter().map(|g| 1 + g.1.len()).sum());
    for (head, instances) in groups {
        out.push(head);
        out.extend(instances);
    }
    out
}

/// `-` for `stopped`, as `kelpie status` shows it: nothing is expected to
/// be ready.
fn ready(state: &str, ready: bool) -> &'static str {
    match (state, ready) {
        ("stopped", _) => "-",
        (_, true) => "yes",
        (_, false) => "no",
    }
}

/// Most first for the figures (rows without one last), names A-Z and
/// instances by index for `name` and for ties.
pub fn order(a: &Row, b: &Row, sort: TopSort) -> Ordering {
    let most_first = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => b.total_cmp(&a),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    let by_key = match sort {
        TopSort::Cpu => most_first(a.cpu_percent, b.cpu_percent),
        TopSort::Rss => most_first(a.rss_bytes.map(|r| r as f64), b.rss_bytes.map(|r| r as f64)),
        TopSort::Restarts => b.restarts.cmp(&a.restarts),
        TopSort::Name => Ordering::Equal,
    };
    by_key
        .then_with(|| a.program.cmp(&b.program))
        .then_with(|| a.index.cmp(&b.index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::{
        InstanceInfo, InstanceUsage, ProgramInfo, ProgramUsage, ProgramsReply,
    };
    use std::time::Duration;

    pub(crate) fn instance(program: &str, index: u32, pid: i32, restarts: u64) -> InstanceInfo {
        InstanceInfo {
            name: format!("{program}:{index}"),
            index,
            slot: index,
            state: "running".into(),
            pid: Some(pid),
            ready: true,
            uptime_seconds: Some(65),
            started_at: None,
            restarts,
            last_exit: None,
            reason: None,
            backoff_seconds: None,
            status_text: None,
            stopped_by_user: false,
        }
    }

    pub(crate) fn program(name: &str, instances: Vec<InstanceInfo>) -> ProgramInfo {
        ProgramInfo {
            name: name.into(),
            state: "running".into(),
            ready: true,
            required: true,
            kind: "service".into(),
            restarts: instances.iter().map(|i| i.restarts).sum(),
            reason: None,
            stopped_by_user: false,
            enabled: true,
            instances,
        }
    }

    fn figures(cpu_seconds: f64, rss_bytes: u64) -> ProcessUsage {
        ProcessUsage {
            cpu_seconds,
            rss_bytes,
            processes: 1,
        }
    }

    /// One instance: `(pid, restarts, cpu_seconds, rss)`.
    type Figures = (i32, u64, f64, u64);

    /// Programs with their instances' figures.
    fn sample(programs: &[(&str, &[Figures])], at: Instant) -> Sample {
        let infos = programs
            .iter()
            .map(|(name, instances)| {
                let list = instances
                    .iter()
                    .enumerate()
                    .map(|(n, &(pid, restarts, _, _))| instance(name, n as u32, pid, restarts))
                    .collect();
                program(name, list)
            })
            .collect();
        let usage = programs
            .iter()
            .map(|(name, instances)| {
                let list: Vec<InstanceUsage> = instances
                    .iter()
                    .enumerate()
                    .map(|(n, &(pid, _, cpu, rss))| InstanceUsage {
                        name: format!("{name}:{n}"),
                        index: n as u32,
                        pid: Some(pid),
                        usage: figures(cpu, rss),
                    })
                    .collect();
                ProgramUsage {
                    name: name.to_string(),
                    usage: figures(
                        list.iter().map(|i| i.usage.cpu_seconds).sum(),
                        list.iter().map(|i| i.usage.rss_bytes).sum(),
                    ),
                    instances: list,
                }
            })
            .collect();
        Sample {
            programs: ProgramsReply {
                shutting_down: false,
                programs: infos,
            },
            usage: Some(UsageReply { programs: usage }),
            at,
        }
    }

    fn names(rows: &[Row]) -> Vec<&str> {
        rows.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn cpu_share_is_seconds_used_over_seconds_elapsed() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(cpu_percent((10.0, t0), (11.0, t1)), Some(50.0));
        // Two CPUs busy.
        assert_eq!(cpu_percent((0.0, t0), (4.0, t1)), Some(200.0));
        assert_eq!(cpu_percent((3.0, t0), (3.0, t1)), Some(0.0));
        // No time passed, time went back, the counter went back.
        assert_eq!(cpu_percent((1.0, t0), (2.0, t0)), None);
        assert_eq!(cpu_percent((1.0, t1), (2.0, t0)), None);
        assert_eq!(cpu_percent((5.0, t0), (1.0, t1)), None);
        assert_eq!(cpu_percent((0.0, t0), (f64::NAN, t1)), None);
    }

    #[test]
    fn the_meter_measures_against_the_previous_sample_and_forgets_the_removed() {
        let t0 = Instant::now();
        let mut meter = CpuMeter::default();
        let first = sample(&[("web", &[(1, 0, 1.0, 0), (2, 0, 2.0, 0)])], t0);
        assert!(meter.measure(first.usage.as_ref().unwrap(), t0).is_empty());
        let t1 = t0 + Duration::from_millis(500);
        let second = sample(&[("web", &[(1, 0, 1.25, 0), (2, 0, 2.0, 0)])], t1);
        let shares = meter.measure(second.usage.as_ref().unwrap(), t1);
        assert_eq!(shares["web:0"], 50.0);
        assert_eq!(shares["web:1"], 0.0);
        assert_eq!(shares["web"], 50.0);
        let third = sample(&[("db", &[(3, 0, 9.0, 0)])], t1 + Duration::from_secs(1));
        let shares = meter.measure(third.usage.as_ref().unwrap(), third.at);
        assert!(shares.is_empty(), "db is new: {shares:?}");
        assert_eq!(meter.last.len(), 2, "db and db:0 only");
    }

    fn shares(pairs: &[(&str, f64)]) -> HashMap<String, f64> {
        pairs.iter().map(|(n, s)| (n.to_string(), *s)).collect()
    }

    #[test]
    fn rows_sort_by_each_key_and_instances_stay_under_their_program() {
        let s = sample(
            &[
                ("api", &[(10, 5, 0.0, 300)]),
                ("web", &[(20, 1, 0.0, 100), (21, 7, 0.0, 900)]),
                ("db", &[(30, 0, 0.0, 500)]),
                ("cron", &[(40, 2, 0.0, 50)]),
            ],
            Instant::now(),
        );
        let cpu = shares(&[
            ("api", 1.0),
            ("web", 30.0),
            ("web:0", 25.0),
            ("web:1", 5.0),
            ("db", 12.5),
        ]);
        let table = [
            (TopSort::Cpu, ["web", "web:0", "web:1", "db", "api", "cron"]),
            (TopSort::Rss, ["web", "web:1", "web:0", "db", "api", "cron"]),
            (
                TopSort::Restarts,
                ["web", "web:1", "web:0", "api", "cron", "db"],
            ),
            (
                TopSort::Name,
                ["api", "cron", "db", "web", "web:0", "web:1"],
            ),
        ];
        for (sort, expected) in table {
            assert_eq!(names(&rows(&s, &cpu, sort)), expected, "{sort:?}");
        }
    }

    #[test]
    fn ties_and_missing_figures_fall_back_to_names_and_indexes() {
        let s = sample(
            &[
                ("b", &[(1, 0, 0.0, 0)]),
                ("a", &[(2, 0, 0.0, 0)]),
                (
                    "c",
                    &(0..12).map(|n| (100 + n, 0, 0.0, 0)).collect::<Vec<_>>(),
                ),
            ],
            Instant::now(),
        );
        // Only b has a CPU figure: it comes first, the rest by name; the
        // instances of c in index order (c:2 before c:10).
        let rows = rows(&s, &shares(&[("b", 0.0)]), TopSort::Cpu);
        let order = names(&rows);
        assert_eq!(&order[..4], ["b", "a", "c", "c:0"]);
        assert_eq!(order[4], "c:1");
        assert_eq!(order[5], "c:2");
        assert_eq!(order[14], "c:11");
    }

    #[test]
    fn a_single_instance_program_is_one_row_with_its_process() {
        let s = sample(
            &[("web", &[(20, 3, 1.0, 4096)]), ("db", &[(30, 0, 0.0, 1)])],
            Instant::now(),
        );
        let rows = rows(&s, &shares(&[("web", 12.0)]), TopSort::Name);
        let web = rows.iter().find(|r| r.name == "web").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(web.pid, Some(20));
        assert_eq!(web.uptime_seconds, Some(65));
        assert_eq!((web.restarts, web.rss_bytes), (3, Some(4096)));
        assert_eq!(web.cpu_percent, Some(12.0));
        assert_eq!(web.ready, "yes");
        assert_eq!(web.index, None);
    }

    #[test]
    fn without_the_usage_route_the_figures_are_missing_not_zero() {
        let mut s = sample(&[("web", &[(20, 0, 1.0, 4096)])], Instant::now());
        s.usage = None;
        let rows = rows(&s, &HashMap::new(), TopSort::Rss);
        assert_eq!((rows[0].cpu_percent, rows[0].rss_bytes), (None, None));
    }
}

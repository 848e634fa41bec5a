//! Whether the kernel's OOM killer ended a process that died of a SIGKILL
//! kelpie did not send. The kernel says so in its log (`/dev/kmsg`):
//!
//! ```text
//! 6,425,23745769036,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/batch,task_memcg=/batch,task=python3,pid=30724,uid=0
//! 3,426,23745769067,-;Memory cgroup out of memory: Killed process 30724 (python3) total-vm:58712kB, …
//! ```
//!
//! Reading the log needs CAP_SYSLOG where `kernel.dmesg_restrict` is set,
//! and names pids as the initial pid namespace sees them. Where it cannot
//! be read, the `oom_kill` counter of kelpie's own memory cgroup (its
//! programs start in it) is the evidence instead: a rise since the last
//! look is taken as this kill. Both are read only for such an exit, on a
//! thread of their own, never on the actor. kelpie opens the log when it
//! starts and reads on from where it left off, so a question costs only
//! the records written since the last one, and a restart after a SIGKILL
//! does not compete with a read of the whole log.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::{Oom, OomSource};

/// Records read from the kernel log per question at most (a big log
/// buffer holds some tens of thousands).
const MAX_RECORDS: usize = 200_000;

/// How much earlier than the process's start a kernel record may be
/// stamped and still be about it: the log's clock and CLOCK_MONOTONIC
/// differ a little.
const CLOCK_SLACK: Duration = Duration::from_secs(2);

/// One OOM kill as a kernel log message tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OomKill {
    pub pid: i32,
    /// The memory cgroup whose limit was reached, when the message says.
    pub memcg: Option<String>,
}

/// The time stamp (µs since boot) and text of one `/dev/kmsg` record
/// (`PRIORITY,SEQUENCE,MICROSECONDS,FLAGS[,…];MESSAGE`, continuation lines
/// after it).
pub fn parse_record(record: &str) -> Option<(u64, &str)> {
    let (header, rest) = record.split_once(';')?;
    let micros = header.split(',').nth(2)?.parse().ok()?;
    let message = rest.split('\n').next().unwrap_or(rest);
    Some((micros, message))
}

/// The OOM kill a kernel message reports, if it reports one:
/// `oom-kill:…,pid=N,…` (with the cgroup), `Out of memory: Killed process
/// N (…)`, `Memory cgroup out of memory: Killed process N (…)` (and
/// `Kill process N` of kernels before 4.19).
pub fn oom_kill_in(message: &str) -> Option<OomKill> {
    if let Some(fields) = message.strip_prefix("oom-kill:") {
        let mut pid = None;
        let mut memcg = None;
        let mut limited = false;
        for field in fields.split(',') {
            match field.split_once('=') {
                Some(("pid", value)) => pid = value.trim().parse().ok(),
                Some(("oom_memcg", value)) => memcg = Some(value.to_string()),
                Some(("constraint", value)) => limited = value == "CONSTRAINT_MEMCG",
                _ => {}
            }
        }
        return Some(OomKill {
            pid: pid?,
            memcg: memcg.filter(|_| limited),
        });
    }
    // `Out of memory: ` and `Memory cgroup out of memory: ` alike, without
    // lowercasing every record of the log.
    const TAIL: &str = "ut of memory: ";
    let at = message.find(TAIL)?;
    let after = &message[at + TAIL.len()..];
    let number = after
        .strip_prefix("Killed process ")
        .or_else(|| after.strip_prefix("Kill process "))?;
    let digits: String = number.chars().take_while(char::is_ascii_digit).collect();
    Some(OomKill {
        pid: digits.parse().ok()?,
        memcg: None,
    })
}

/// OOM kills kept from the kernel log, so that one read of it answers
/// later questions too (the newest, oldest first).
const KILLS_KEPT: usize = 256;

/// The kernel log, opened once and read on from where it was left: each
/// question costs only the records written since the last one.
struct KernelLog {
    file: File,
    /// (µs since boot, kill) of the OOM kills read so far, oldest first.
    kills: VecDeque<(u64, OomKill)>,
}

impl KernelLog {
    /// Opens `/dev/kmsg` without blocking; `from_end` skips what it holds
    /// already (kills from before kelpie started are not its programs').
    fn open(from_end: bool) -> io::Result<Self> {
        use std::io::{Seek, SeekFrom};
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = File::options()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")?;
        if from_end {
            file.seek(SeekFrom::End(0))?;
        }
        Ok(Self {
            file,
            kills: VecDeque::new(),
        })
    }

    /// Reads the records written since the last read (at most
    /// `MAX_RECORDS`), keeping the OOM kills among them.
    fn catch_up(&mut self) -> io::Result<()> {
        // One record per read; records are at most ~1 KiB of text plus
        // their continuation lines.
        let mut buffer = vec![0u8; 8192];
        for _ in 0..MAX_RECORDS {
            let n = match self.file.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                // Records overwritten since the last read: the next read
                // goes on from the oldest one left.
                Err(err) if err.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            note_record(&String::from_utf8_lossy(&buffer[..n]), &mut self.kills);
        }
        Ok(())
    }
}

/// Keeps the OOM kill one kernel log record reports, if it reports one.
fn note_record(record: &str, kills: &mut VecDeque<(u64, OomKill)>) {
    let Some((micros, message)) = parse_record(record) else {
        return;
    };
    let Some(kill) = oom_kill_in(message) else {
        return;
    };
    if kills.len() == KILLS_KEPT {
        kills.pop_front();
    }
    kills.push_back((micros, kill));
}

/// Whether `kills` holds an OOM kill of `pid` stamped at or after `since`
/// (µs since boot; older ones were of an earlier process with that pid),
/// and its memory cgroup when a message names it.
fn kill_of(kills: &VecDeque<(u64, OomKill)>, pid: i32, since: u64) -> Option<Option<String>> {
    let mut found = None;
    for (_, kill) in kills.iter().filter(|(at, k)| k.pid == pid && *at >= since) {
        // Several messages name one kill; the one with the cgroup says the
        // most.
        let memcg: &mut Option<String> = found.get_or_insert(None);
        if memcg.is_none() {
            memcg.clone_from(&kill.memcg);
        }
    }
    found
}

enum LogState {
    /// Not opened yet (`prepare` was not called): the first question
    /// opens it and reads all it holds.
    Unopened,
    Open(KernelLog),
    /// Cannot be read (no CAP_SYSLOG under `kernel.dmesg_restrict`, no
    /// such device): the cgroup counter answers instead.
    Unreadable,
}

static KERNEL_LOG: Mutex<LogState> = Mutex::new(LogState::Unopened);

/// The `oom_kill` value of a `memory.events` (cgroup v2) or
/// `memory.oom_control` (v1) file.
pub fn oom_kills_in(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == "oom_kill")
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// The file holding the `oom_kill` counter of the memory cgroup in
/// `proc_cgroup` (`/proc/PID/cgroup`), found through `mountinfo`
/// (`/proc/self/mountinfo`): the v1 memory hierarchy if there is one,
/// else the v2 unified one.
pub fn counter_file(proc_cgroup: &str, mountinfo: &str) -> Option<PathBuf> {
    let mut v1 = None;
    let mut v2 = None;
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            v2 = Some(path.to_string());
        } else if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(path.to_string());
        }
    }
    let mut v1_mount = None;
    let mut v2_mount = None;
    for line in mountinfo.lines() {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS…] - FSTYPE SOURCE SUPEROPTIONS
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(mount)) = (left.get(3), left.get(4)) else {
            continue;
        };
        match right.first() {
            Some(&"cgroup2") => v2_mount = Some((root.to_string(), mount.to_string())),
            Some(&"cgroup")
                if right
                    .get(2)
                    .is_some_and(|options| options.split(',').any(|o| o == "memory")) =>
            {
                v1_mount = Some((root.to_string(), mount.to_string()))
            }
            _ => {}
        }
    }
    let join = |(root, mount): (String, String), path: String, file: &str| {
        // A mount of a cgroup subtree (a container's) shows the paths
        // below its root.
        let relative = path.strip_prefix(root.as_str()).unwrap_or(&path);
        let mut full = PathBuf::from(mount);
        full.push(relative.trim_start_matches('/'));
        full.push(file);
        full
    };
    match (v1, v1_mount, v2, v2_mount) {
        (Some(path), Some(mount), _, _) => Some(join(mount, path, "memory.oom_control")),
        (_, _, Some(path), Some(mount)) => Some(join(mount, path, "memory.events")),
        _ => None,
    }
}

/// The counter value already accounted for: the baseline taken at start,
/// plus one per kill attributed since.
static COUNTED: Mutex<Option<u64>> = Mutex::new(None);

/// kelpie's own counter file, found once (mountinfo can be long).
static OWN_COUNTER_FILE: OnceLock<Option<PathBuf>> = OnceLock::new();

fn own_counter() -> Option<u64> {
    let file = OWN_COUNTER_FILE.get_or_init(|| {
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        counter_file(&cgroup, &mountinfo)
    });
    oom_kills_in(&std::fs::read_to_string(file.as_ref()?).ok()?)
}

/// Opens the kernel log at its end and notes the `oom_kill` count of
/// kelpie's memory cgroup, so that what comes later can be told apart
/// (`kelpie run` calls this before starting programs).
pub fn prepare() {
    let log = match KernelLog::open(true) {
        Ok(log) => LogState::Open(log),
        Err(_) => LogState::Unreadable,
    };
    *KERNEL_LOG.lock().unwrap_or_else(|p| p.into_inner()) = log;
    let now = own_counter();
    *COUNTED.lock().unwrap_or_else(|p| p.into_inner()) = now;
}

/// One kill of kelpie's memory cgroup not yet attributed to an exit.
fn counter_rose() -> bool {
    let Some(now) = own_counter() else {
        return false;
    };
    let mut counted = COUNTED.lock().unwrap_or_else(|p| p.into_inner());
    match *counted {
        Some(before) if now > before => {
            *counted = Some(before + 1);
            true
        }
        Some(_) => false,
        None => {
            *counted = Some(now);
            false
        }
    }
}

/// Microseconds since boot on the clock the kernel log is stamped with
/// (CLOCK_MONOTONIC, close enough).
fn micros_since_boot() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| Duration::from(t).as_micros() as u64)
        .unwrap_or(0)
}

/// Answers whether the OOM killer ended a process: `Some` when it did.
pub type OnOom = Box<dyn FnOnce(Option<Oom>) + Send>;

struct Question {
    pid: i32,
    /// Kernel log records stamped earlier are about an older process.
    since: u64,
    answer: OnOom,
}

struct Questions {
    waiting: Vec<Question>,
    /// A thread is answering them.
    answering: bool,
}

static QUESTIONS: Mutex<Questions> = Mutex::new(Questions {
    waiting: Vec::new(),
    answering: false,
});

fn questions() -> std::sync::MutexGuard<'static, Questions> {
    QUESTIONS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Asks whether the kernel's OOM killer ended `pid`, which ran for `ran`
/// and died just now of a SIGKILL kelpie did not send; `answer` is called
/// on another thread. One thread answers every question waiting with one
/// pass over the kernel log (bounded), so a burst of SIGKILLs (`kill -9`
/// of every program) costs one reader, not one per exit.
pub fn check(pid: i32, ran: Duration, answer: OnOom) {
    let since = micros_since_boot().saturating_sub((ran + CLOCK_SLACK).as_micros() as u64);
    let mut waiting = questions();
    waiting.waiting.push(Question { pid, since, answer });
    if waiting.answering {
        return;
    }
    waiting.answering = true;
    drop(waiting);
    let started = std::thread::Builder::new()
        .name("kelpie-oom".into())
        .spawn(answer_waiting);
    if started.is_err() {
        let unanswered = {
            let mut waiting = questions();
            waiting.answering = false;
            std::mem::take(&mut waiting.waiting)
        };
        for question in unanswered {
            (question.answer)(None);
        }
    }
}

fn answer_waiting() {
    loop {
        let batch = {
            let mut waiting = questions();
            if waiting.waiting.is_empty() {
                waiting.answering = false;
                return;
            }
            std::mem::take(&mut waiting.waiting)
        };
        let mut log = KERNEL_LOG.lock().unwrap_or_else(|p| p.into_inner());
        if let LogState::Unopened = *log {
            *log = match KernelLog::open(false) {
                Ok(opened) => LogState::Open(opened),
                Err(_) => LogState::Unreadable,
            };
        }
        if let LogState::Open(reader) = &mut *log {
            if reader.catch_up().is_err() {
                *log = LogState::Unreadable;
            }
        }
        for question in batch {
            let oom = match &*log {
                LogState::Open(reader) => {
                    kill_of(&reader.kills, question.pid, question.since).map(|memcg| Oom {
                        source: OomSource::KernelLog,
                        memcg,
                    })
                }
                _ => counter_rose().then_some(Oom {
                    source: OomSource::CgroupCounter,
                    memcg: None,
                }),
            };
            (question.answer)(oom);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records as this machine's kernel (6.x, cgroup v1 memory limit) wrote
    /// them, and the global-OOM and pre-4.19 forms.
    const RECORDS: [&str; 6] = [
        "6,425,23745769036,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/kelpie-probe-test,task_memcg=/kelpie-probe-test,task=python3,pid=30724,uid=0\n",
        "3,426,23745769067,-;Memory cgroup out of memory: Killed process 30724 (python3) total-vm:58712kB, anon-rss:48512kB, file-rss:6516kB, shmem-rss:0kB, UID:0 pgtables:152kB oom_score_adj:0\n",
        "3,1201,99000000,-;Out of memory: Killed process 4242 (java) total-vm:9000000kB, anon-rss:7000000kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:14000kB oom_score_adj:0\n",
        "6,1200,98999990,-;oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/user.slice,task=java,pid=4242,uid=1000\n",
        "3,77,5000,-;Out of memory: Kill process 777 (perl) score 901 or sacrifice child\n SUBSYSTEM=memory\n",
        "6,424,23745769032,-;[  30724]     0 30724    14678    13757    12128     1629         0   155648        0             0 python3\n",
    ];

    fn kill_in(record: &str) -> Option<OomKill> {
        let (_, message) = parse_record(record)?;
        oom_kill_in(message)
    }

    #[test]
    fn kernel_log_records_name_the_killed_pid() {
        assert_eq!(parse_record(RECORDS[0]).map(|(t, _)| t), Some(23745769036));
        let memcg = Some("/kelpie-probe-test".to_string());
        assert_eq!(kill_in(RECORDS[0]), Some(OomKill { pid: 30724, memcg }));
        assert_eq!(
            kill_in(RECORDS[1]),
            Some(OomKill {
                pid: 30724,
                memcg: None
            })
        );
        assert_eq!(
            kill_in(RECORDS[2]),
            Some(OomKill {
                pid: 4242,
                memcg: None
            })
        );
        // A machine-wide OOM names no cgroup limit.
        assert_eq!(
            kill_in(RECORDS[3]),
            Some(OomKill {
                pid: 4242,
                memcg: None
            })
        );
        // Continuation lines are not part of the message.
        assert_eq!(
            parse_record(RECORDS[4]).map(|(_, m)| m.ends_with("child")),
            Some(true)
        );
        assert_eq!(
            kill_in(RECORDS[4]),
            Some(OomKill {
                pid: 777,
                memcg: None
            })
        );
        // The task table that precedes a kill names the pid, but no kill.
        assert_eq!(kill_in(RECORDS[5]), None);
        for other in [
            "6,1,2,-;python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
            "6,1,2,-;Killed process 12 (sh)",
            "not a record",
            "6,1;no time stamp",
        ] {
            assert_eq!(parse_record(other).and_then(|(_, m)| oom_kill_in(m)), None, "{other}");
        }
    }

    #[test]
    fn only_kills_of_the_asked_processes_count() {
        let mut kills = VecDeque::new();
        for record in RECORDS {
            note_record(record, &mut kills);
        }
        assert_eq!(kills.len(), 5, "{kills:?}");
        // The `oom-kill:` record names the cgroup; the one after it does not
        // take it away.
        let memcg = Some("/kelpie-probe-test".to_string());
        assert_eq!(kill_of(&kills, 30724, 23_745_000_000), Some(memcg.clone()));
        let reversed: VecDeque<_> = kills.iter().rev().cloned().collect();
        assert_eq!(kill_of(&reversed, 30724, 23_745_000_000), Some(memcg));
        // 4242 was killed before this process with its pid started.
        assert_eq!(kill_of(&kills, 4242, 99_000_001), None);
        assert_eq!(kill_of(&kills, 4242, 98_000_000), Some(None));
        assert_eq!(kill_of(&kills, 5, 0), None);
        // Only the newest kills are kept.
        for n in 0..KILLS_KEPT as i32 + 10 {
            let record = format!("3,1,{n},-;Out of memory: Killed process {n} (x)");
            note_record(&record, &mut kills);
        }
        assert_eq!(kills.len(), KILLS_KEPT);
        assert_eq!(kill_of(&kills, 30724, 0), None);
        assert_eq!(kill_of(&kills, KILLS_KEPT as i32 + 9, 0), Some(None));
    }

    #[test]
    fn cgroup_counters_are_found_and_read() {
        let mountinfo = "\
30 25 0:26 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755
34 30 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
35 30 0:31 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 30 0:35 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let v1 = "4:memory:/batch/kelpie\n1:cpu:/\n0::/\n";
        assert_eq!(
            counter_file(v1, mountinfo),
            Some(PathBuf::from(
                "/sys/fs/cgroup/memory/batch/kelpie/memory.oom_control"
            ))
        );
        let v2_only =
            "29 1 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            counter_file("0::/system.slice/kelpie.service\n", v2_only),
            Some(PathBuf::from(
                "/sys/fs/cgroup/system.slice/kelpie.service/memory.events"
            ))
        );
        // A container sees its own cgroup as the root of the mount.
        let container = "700 650 0:26 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n";
        assert_eq!(
            counter_file("0::/docker/abc\n", container),
            Some(PathBuf::from("/sys/fs/cgroup/memory.events"))
        );
        assert_eq!(counter_file("0::/\n", "no mounts here\n"), None);

        let v2_events = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(oom_kills_in(v2_events), Some(2));
        let v1_control = "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n";
        assert_eq!(oom_kills_in(v1_control), Some(1));
        assert_eq!(oom_kills_in("oom 3\n"), None);
    }
}

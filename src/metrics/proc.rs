//! CPU and memory of whole process groups, from one pass over `/proc`.
//!
//! A program instance runs in its own process group whose id is the pid
//! of the process kelpie spawned, so the board's pids name the groups. Each
//! scrape lists `/proc`, reads `/proc/<pid>/stat` of the processes that may
//! be in a group, keeps those whose `pgrp` is one of the groups, and sums
//! their resident memory and CPU time per program.
//!
//! The reads are the cost of a scrape (a few microseconds of kernel time
//! each), so `ProcReader` avoids what it can:
//! - a process can only be in a group of its own session, and program
//!   groups are in kelpie's session, so processes of other sessions are read
//!   once and then skipped (a process never returns to a session it left);
//! - the stat files of the others stay open between scrapes, so each scrape
//!   costs one `pread` per process instead of open + read + close (bounded by
//!   a quarter of RLIMIT_NOFILE);
//! - with hundreds of processes to read, up to four threads (the caller and
//!   scoped helpers, no more than the CPUs available) share the reads; the
//!   kernel work per read is independent, so this divides the wall time.
//!
//! CPU must be a monotonic counter although processes come and go, so the
//! scanner remembers, per process, the ticks it had at the last scrape; when
//! a process is gone at the next scrape its last-seen ticks move into the
//! program's "exited" total. The counter is therefore
//! `exited + sum(live processes)`, which never decreases.
//!
//! Approximations (documented in docs/metrics.md):
//! - CPU a process used between the last scrape and its death is lost. The
//!   reaper could close most of that gap later by passing the leader's
//!   `rusage` from `wait4` (children it waited for are included there, which
//!   would then need de-duplicating against what was seen here).
//! - A group keeps being attributed to its program after the leader exited
//!   (the board drops the pid then) for as long as members remain: the
//!   kernel does not reuse a pid while it names a live process group, so the
//!   remembered group id cannot point at someone else's processes.
//! - Memory is the sum of each process's RSS, so pages shared between
//!   processes of a group (libraries, fork copy-on-write) count once per
//!   process, like summing `ps` output. PSS (smaps_rollup) would be exact
//!   but costs far more per scrape.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, FileExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::procfs::{parse_decimal, parse_stat, Stat};
use crate::status::Board;

/// Resource use of one program's process groups, at one scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
    /// Processes found in the program's groups.
    pub processes: u32,
}

/// A process seen at an earlier scrape.
#[derive(Debug)]
struct Tracked {
    starttime: u64,
    ticks: u64,
    program: Arc<str>,
    /// The scan generation that last saw it.
    seen: u64,
}

/// Accumulates per-program CPU across scrapes; lives as long as `Metrics`.
#[derive(Debug)]
pub struct GroupScanner {
    reader: ProcReader,
    clk_tck: f64,
    page_size: u64,
    /// kelpie's session: program groups are created in it
    /// (`process_group(0)`), so processes of other sessions can never be in
    /// one. `None` if unknown (then every process is read every time).
    own_session: Option<i32>,
    generation: u64,
    tracked: HashMap<i32, Tracked>,
    /// Groups that had members at the last scan, by program. Keeps a group
    /// attributed while it drains after its leader exited.
    groups: HashMap<i32, Arc<str>>,
    /// Ticks of processes that are gone, per program. Also interns the
    /// program names shared by `tracked` and `groups`.
    exited: HashMap<Arc<str>, u64>,
}

impl GroupScanner {
    pub fn new() -> Self {
        Self::with_root("/proc")
    }

    /// A scanner over another procfs-like tree (tests).
    pub fn with_root(root: &str) -> Self {
        let sysconf = |var| {
            nix::unistd::sysconf(var)
                .ok()
                .flatten()
                .filter(|v| *v > 0)
                .map(|v| v as u64)
        };
        Self {
            reader: ProcReader::new(root),
            own_session: nix::unistd::getsid(None).ok().map(|sid| sid.as_raw()),
            // Linux has used 100 on every architecture for decades; the
            // fallback only matters if sysconf itself fails.
            clk_tck: sysconf(nix::unistd::SysconfVar::CLK_TCK).unwrap_or(100) as f64,
            page_size: sysconf(nix::unistd::SysconfVar::PAGE_SIZE).unwrap_or(4096),
            generation: 0,
            tracked: HashMap::new(),
            groups: HashMap::new(),
            exited: HashMap::new(),
        }
    }

    /// One pass over `/proc`: usage per board program, in board order.
    pub fn scan(&mut self, board: &Board) -> Vec<Usage> {
        self.generation += 1;
        let generation = self.generation;
        let n = board.programs.len();

        // Intern the board's names; forget programs that left the board
        // (reload removed them) so their totals do not outlive them.
        let mut names: Vec<Arc<str>> = Vec::with_capacity(n);
        for program in &board.programs {
            match self.exited.get_key_value(program.name.as_str()) {
                Some((name, _)) => names.push(name.clone()),
                None => {
                    let name: Arc<str> = Arc::from(program.name.as_str());
                    self.exited.insert(name.clone(), 0);
                    names.push(name);
                }
            }
        }

        // pgid → board index: the running instances, then groups that were
        // seen before and may still be draining.
        let mut wanted: HashMap<i32, usize> = HashMap::with_capacity(n + self.groups.len());
        for (index, program) in board.programs.iter().enumerate() {
            for instance in &program.instances {
                if let Some(pid) = instance.snapshot.pid {
                    wanted.insert(pid, index);
                }
            }
        }
        let by_name: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.as_ref(), i))
            .collect();
        for (pgid, program) in &self.groups {
            if let Some(&index) = by_name.get(program.as_ref()) {
                wanted.entry(*pgid).or_insert(index);
            }
        }

        let mut rss_pages = vec![0u64; n];
        let mut live_ticks = vec![0u64; n];
        let mut processes = vec![0u32; n];
        let mut groups = HashMap::with_capacity(self.groups.len().max(wanted.len()));
        if !wanted.is_empty() {
            let tracked = &mut self.tracked;
            let exited = &mut self.exited;
            // A process can only be in a group of its own session. Program
            // groups live in kelpie's session; the group ids themselves
            // cover a program that made itself a session leader (setsid
            // keeps pgid == pid).
            let own_session = self.own_session;
            let candidate = |session: i32| {
                own_session.is_none_or(|own| own == session) || wanted.contains_key(&session)
            };
            self.reader.scan(candidate, |pid, read| {
                let stat = match read {
                    Read::Stat(stat) => stat,
                    Read::Nothing => return,
                    Read::Unreadable => {
                        // Keep counting what it had, so the counter does
                        // not dip (a dip reads as a reset to Prometheus).
                        if let Some(t) = tracked.get_mut(&pid) {
                            if let Some(&index) = by_name.get(t.program.as_ref()) {
                                t.seen = generation;
                                live_ticks[index] = live_ticks[index].saturating_add(t.ticks);
                                processes[index] = processes[index].saturating_add(1);
                            }
                        }
                        return;
                    }
                };
                let Some(&index) = wanted.get(&stat.pgrp) else {
                    return;
                };
                let program = &names[index];
                rss_pages[index] = rss_pages[index].saturating_add(stat.rss_pages);
                processes[index] = processes[index].saturating_add(1);
                let ticks = match tracked.get_mut(&pid) {
                    Some(t)
                        if t.starttime == stat.starttime && Arc::ptr_eq(&t.program, program) =>
                    {
                        // Never let a counter step back, whatever procfs says.
                        t.ticks = t.ticks.max(stat.cpu_ticks());
                        t.seen = generation;
                        t.ticks
                    }
                    previous => {
                        // New, or the pid now names another process: the
                        // old one is gone and keeps what it had used.
                        if let Some(old) = previous {
                            if let Some(total) = exited.get_mut(&old.program) {
                                *total = total.saturating_add(old.ticks);
                            }
                        }
                        tracked.insert(
                            pid,
                            Tracked {
                                starttime: stat.starttime,
                                ticks: stat.cpu_ticks(),
                                program: program.clone(),
                                seen: generation,
                            },
                        );
                        stat.cpu_ticks()
                    }
                };
                live_ticks[index] = live_ticks[index].saturating_add(ticks);
                groups.insert(stat.pgrp, program.clone());
            });
        }
        self.groups = groups;

        // Processes not seen this time have exited (or left their group).
        let exited = &mut self.exited;
        self.tracked.retain(|_, t| {
            if t.seen == generation {
                return true;
            }
            if let Some(total) = exited.get_mut(&t.program) {
                *total = total.saturating_add(t.ticks);
            }
            false
        });
        self.exited
            .retain(|name, _| by_name.contains_key(name.as_ref()));

        (0..n)
            .map(|i| {
                let exited = self.exited.get(&names[i]).copied().unwrap_or(0);
                Usage {
                    rss_bytes: rss_pages[i].saturating_mul(self.page_size),
                    cpu_seconds: exited.saturating_add(live_ticks[i]) as f64 / self.clk_tck,
                    processes: processes[i],
                }
            })
            .collect()
    }

    /// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
    #[cfg(test)]
    pub fn clk_tck(&self) -> f64 {
        self.clk_tck
    }

    #[cfg(test)]
    pub fn reader_files(&self) -> Vec<&File> {
        self.reader
            .entries
            .values()
            .filter_map(|e| e.file.as_ref())
            .collect()
    }

    /// Drops a program's accumulated CPU (it was removed).
    pub fn forget(&mut self, program: &str) {
        self.exited.remove(program);
        self.tracked.retain(|_, t| t.program.as_ref() != program);
        self.groups.retain(|_, p| p.as_ref() != program);
    }
}

impl Default for GroupScanner {
    fn default() -> Self {
        Self::new()
    }
}

/// Scans with an outsider re-read at least this often: it bounds the damage
/// should a dead outsider's pid and inode number both be reused.
const OUTSIDER_RECHECK: u64 = 32;

/// What the reader remembers about one `/proc/<pid>`.
#[derive(Debug)]
struct ProcEntry {
    /// `d_ino` of `/proc/<pid>`: procfs gives every new process a new inode,
    /// so a reused pid shows up with another number.
    ino: u64,
    /// Kept open while the process may be in a program group: the next scan
    /// then costs one pread instead of open + read + close (the open is the
    /// larger half: a path walk and a procfs inode lookup). The file refers
    /// to this process, never to a later one with the same pid.
    file: Option<File>,
    /// Skip until this scan: the process is in a session no program group
    /// can be in.
    skip_until: u64,
    seen: u64,
}

/// Reads `/proc/<pid>/stat` of every process, as cheaply as the kernel
/// allows: outsiders are read once, candidates through a kept-open file,
/// and many processes on several threads.
#[derive(Debug)]
struct ProcReader {
    root: String,
    entries: HashMap<i32, ProcEntry>,
    generation: u64,
    /// Overrides `file_budget()` (tests).
    max_files: Option<usize>,
}

/// Below this many reads a scan stays on the calling thread: a thread
/// costs about as much as a few dozen reads.
const PARALLEL_MIN: usize = 256;
/// Reads handed out at a time to the scan threads.
const CHUNK: usize = 64;
/// At most this many threads read at once (the caller included).
const MAX_THREADS: usize = 4;

/// Shared by the threads of one scan.
struct ReadContext<'a, C> {
    root: &'a str,
    candidate: &'a C,
    generation: u64,
    open_files: AtomicUsize,
    max_files: usize,
}

impl ProcReader {
    fn new(root: &str) -> Self {
        Self {
            root: root.to_string(),
            entries: HashMap::new(),
            generation: 0,
            max_files: None,
        }
    }

    /// Calls `f(pid, read)` for every process that may be in a program
    /// group (`candidate(session)`): its stat, or `Read::Unreadable`.
    /// Processes that exit during the scan are skipped; that is normal.
    fn scan(&mut self, candidate: impl Fn(i32) -> bool + Sync, mut f: impl FnMut(i32, Read)) {
        self.generation += 1;
        let generation = self.generation;
        let Ok(dir) = std::fs::read_dir(&self.root) else {
            self.entries.clear();
            return;
        };
        // 1. List the processes; forget the ones that are gone (closing
        // their files) and those whose pid now names another process.
        for dirent in dir.flatten() {
            // Non-process entries (self, sys, meminfo, ...) fail on the
            // first byte.
            let Some(pid) =
                parse_decimal(dirent.file_name().as_bytes()).and_then(|p| i32::try_from(p).ok())
            else {
                continue;
            };
            let ino = dirent.ino();
            let entry = self
                .entries
                .entry(pid)
                .or_insert_with(|| ProcEntry::new(ino));
            if entry.ino != ino {
                *entry = ProcEntry::new(ino);
            }
            entry.seen = generation;
        }
        self.entries.retain(|_, e| e.seen == generation);

        // 2. Read the ones not known to be outsiders. The reads are kernel
        // time, one process at a time, so they spread over threads well.
        let context = ReadContext {
            root: &self.root,
            candidate: &candidate,
            generation,
            open_files: AtomicUsize::new(
                self.entries.values().filter(|e| e.file.is_some()).count(),
            ),
            max_files: self.max_files.unwrap_or_else(file_budget),
        };
        let mut work: Vec<(i32, &mut ProcEntry)> = self
            .entries
            .iter_mut()
            .filter(|(_, e)| e.skip_until <= generation)
            .map(|(pid, e)| (*pid, e))
            .collect();
        let threads = if work.len() < PARALLEL_MIN {
            1
        } else {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_THREADS)
        };
        let chunks: Vec<Mutex<&mut [(i32, &mut ProcEntry)]>> =
            work.chunks_mut(CHUNK).map(Mutex::new).collect();
        let next = AtomicUsize::new(0);
        // Each thread takes chunks until none is left, so a thread that
        // could not be started or runs slow leaves its share to the others.
        let drain = || {
            let mut stats = Vec::new();
            let mut buf = vec![0; 1024];
            let mut path = String::with_capacity(context.root.len() + 24);
            while let Some(chunk) = chunks.get(next.fetch_add(1, Ordering::Relaxed)) {
                let mut chunk = chunk.lock().unwrap_or_else(PoisonError::into_inner);
                for (pid, entry) in chunk.iter_mut() {
                    match read_entry(&context, *pid, entry, &mut buf, &mut path) {
                        Read::Nothing => {}
                        read => stats.push((*pid, read)),
                    }
                }
            }
            stats
        };
        let stats = std::thread::scope(|scope| {
            let helpers: Vec<_> = (1..threads)
                .filter_map(|_| {
                    std::thread::Builder::new()
                        .name("kelpie-metrics".into())
                        .spawn_scoped(scope, drain)
                        .ok()
                })
                .collect();
            let mut stats = drain();
            for helper in helpers {
                // A panicked helper's reads are lost for this scrape.
                if let Ok(more) = helper.join() {
                    stats.extend(more);
                }
            }
            stats
        });
        for (pid, read) in stats {
            f(pid, read);
        }
    }
}

impl ProcEntry {
    fn new(ino: u64) -> Self {
        Self {
            ino,
            file: None,
            skip_until: 0,
            seen: 0,
        }
    }
}

/// What reading one process's stat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    Stat(Stat),
    /// Gone, or in a session no program group can be in: nothing to count.
    Nothing,
    /// Alive as far as we know, but unreadable this time (out of file
    /// descriptors, an unexpected error). Its previous figures should
    /// stand: treating it as gone would move its CPU to the exited total
    /// and count it again once it is readable.
    Unreadable,
}

/// An error that means the process no longer exists.
fn is_gone(err: &std::io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOENT | libc::ESRCH))
}

/// Reads one process's stat: through its kept-open file, or by opening it
/// (and keeping it open if it may be in a program group and the budget
/// allows). Marks outsiders.
fn read_entry<C: Fn(i32) -> bool>(
    context: &ReadContext<'_, C>,
    pid: i32,
    entry: &mut ProcEntry,
    buf: &mut Vec<u8>,
    path: &mut String,
) -> Read {
    let open_files = &context.open_files;
    let read = match &entry.file {
        Some(file) => read_at_start(file, buf).map(|len| (len, None)),
        None => {
            path.clear();
            let _ = write!(path, "{}/{pid}/stat", context.root);
            File::open(&*path)
                .and_then(|file| read_at_start(&file, buf).map(|len| (len, Some(file))))
        }
    };
    let (len, fresh) = match read {
        Ok(read) => read,
        Err(err) if is_gone(&err) => {
            // Gone since the directory was listed.
            if entry.file.take().is_some() {
                open_files.fetch_sub(1, Ordering::Relaxed);
            }
            return Read::Nothing;
        }
        Err(_) => return Read::Unreadable,
    };
    let Some(stat) = buf.get(..len).and_then(parse_stat) else {
        return Read::Unreadable;
    };
    if !(context.candidate)(stat.session) {
        // setsid() is the only way out of a session and never leads into
        // an existing one, so this holds for the process's lifetime;
        // re-read now and then all the same.
        entry.skip_until = context.generation + OUTSIDER_RECHECK;
        if entry.file.take().is_some() {
            open_files.fetch_sub(1, Ordering::Relaxed);
        }
        return Read::Nothing;
    }
    if let Some(file) = fresh {
        if open_files.fetch_add(1, Ordering::Relaxed) < context.max_files {
            entry.file = Some(file);
        } else {
            open_files.fetch_sub(1, Ordering::Relaxed);
        }
    }
    Read::Stat(stat)
}

/// How many `/proc/<pid>/stat` files the reader may keep open: a quarter of
/// the soft RLIMIT_NOFILE, so connections, pipes and log files keep the
/// rest. Beyond it, processes are read with open + read + close.
fn file_budget() -> usize {
    use nix::sys::resource::{getrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) => usize::try_from(soft / 4).unwrap_or(usize::MAX).min(65536),
        Err(_) => 0,
    }
}

/// Reads a small file from its start into `buf` (grown if needed),
/// returning its length. procfs generates a stat file in one go and hands
/// over all of it when the buffer is large enough, so one pread suffices;
/// a full buffer means the line may be longer.
fn read_at_start(file: &File, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    loop {
        let n = file.read_at(buf, 0)?;
        if n == 0 {
            // A live process's stat is never empty.
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
        if n < buf.len() {
            return Ok(n);
        }
        buf.resize(buf.len() * 2, 0);
    }
}

#[cfg(test)]
mod tests;

//! CPU and memory of each program's processes, from one pass over `/proc`.
//!
//! A program's processes are, per running instance, the main process (the
//! board's pid), the members of its process group (whose id is that pid),
//! and every descendant of either, followed through the `ppid` links of the
//! same pass: children that made a group or a session of their own
//! (postgres backends call `setsid`) are still the program's. A process
//! counted once stays its program's until it exits, even after its parent
//! died and kelpie, the subreaper, adopted it. Each scrape lists `/proc`,
//! reads `/proc/<pid>/stat` of the processes that may be a program's,
//! attributes each one once, and sums resident memory and CPU per program.
//!
//! The reads are the cost of a scrape (a few microseconds of kernel time
//! each), so `ProcReader` avoids what it can:
//! - a process of another session that does not descend from kelpie is
//!   read once and then skipped: it cannot join a program group (groups do
//!   not span sessions, and program groups are in kelpie's session), and it
//!   can never become kelpie's descendant (an orphan is adopted by an
//!   ancestor, a subreaper or init);
//! - the stat files of the others stay open between scrapes, so each scrape
//!   costs one `pread` per process instead of open + read + close (bounded by
//!   what `fd_budget` leaves of RLIMIT_NOFILE);
//! - with hundreds of processes to read, up to four threads (the caller and
//!   scoped helpers, no more than the CPUs available) share the reads; the
//!   kernel work per read is independent, so this divides the wall time;
//! - the helpers start on the kept-open files at once, while the caller
//!   lists `/proc` and does the work its caller gave it (`scan_while`:
//!   `/metrics` writes its other text then), so neither waits for the other.
//!
//! CPU must be a monotonic counter although processes come and go, so the
//! scanner remembers, per process, the ticks it had at the last scrape; when
//! a process is gone at the next scrape its last-seen ticks move into the
//! program's "exited" total. The counter is therefore
//! `exited + sum(live processes)`, which never decreases, whichever group or
//! session the process was in. `cutime`/`cstime` are not used: they would
//! count again the children a process waited for.
//!
//! Approximations (documented in docs/metrics.md):
//! - CPU a process used between the last scrape and its death is lost. The
//!   reaper could close most of that gap later by passing the leader's
//!   `rusage` from `wait4` (children it waited for are included there, which
//!   would then need de-duplicating against what was seen here).
//! - A descendant that lost its parent before any scrape saw it (the parent
//!   exited, kelpie adopted it) is no longer in any tree; it is counted only
//!   if it is in a group the program's processes lead or led.
//! - A group keeps being attributed to its program after the leader exited
//!   (the board drops the pid then) for as long as members remain: the
//!   kernel does not reuse a pid while it names a live process group, so the
//!   remembered group id cannot point at someone else's processes.
//! - Memory is the sum of each process's RSS, so pages shared between
//!   processes (libraries, fork copy-on-write) count once per process, like
//!   summing `ps` output. PSS (smaps_rollup) would be exact but costs far
//!   more per scrape.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, FileExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::procfs::{parse_decimal, parse_stat, Stat};
use crate::status::Board;

/// The hash of every map of the scan. std's SipHash resists keys chosen to
/// collide, but these keys are pids the kernel hands out and names from
/// kelpie's own config, and with a thousand processes per scrape SipHash
/// cost more than the rest of the lookups (the scrape benchmark's
/// profile). A multiply-rotate per word, as in rustc's FxHash.
#[derive(Debug, Clone, Copy, Default)]
struct FastHash;

impl BuildHasher for FastHash {
    type Hasher = FastHasher;

    fn build_hasher(&self) -> FastHasher {
        FastHasher(0)
    }
}

struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut w = [0; 8];
            w.copy_from_slice(word);
            self.add(u64::from_le_bytes(w));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut w = [0; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        // The table indexes by the low bits: bring the well-mixed high bits
        // of the product down (keys that differ only in high bits, like
        // pids 1000 apart, would otherwise share low bits).
        self.0.rotate_left(26)
    }
}

type Map<K, V> = HashMap<K, V, FastHash>;

/// Resource use of one program's processes, at one scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
    /// Processes counted for the program.
    pub processes: u32,
}

/// A process counted at an earlier scrape: it stays `program`'s until it
/// exits (`starttime` tells a reused pid apart).
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
    tracked: Map<i32, Tracked>,
    /// Groups that had members at the last scan, by program. Keeps a group
    /// attributed while it drains after its leader exited.
    groups: Map<i32, Arc<str>>,
    /// Ticks of processes that are gone, per program. Also interns the
    /// program names shared by `tracked` and `groups`.
    exited: Map<Arc<str>, u64>,
    /// kelpie's pid: the processes under it are the ones that can be, or
    /// become, a program's.
    own_pid: i32,
    /// What the last pass read, kept for its allocation.
    reads: Vec<(i32, Read)>,
    attribution: Attribution,
    /// How long the last pass spent attributing (the scrape benchmark).
    #[cfg(test)]
    pub attribute_time: std::time::Duration,
}

impl GroupScanner {
    pub fn new() -> Self {
        Self::with_root("/proc")
    }

    /// A scanner that keeps no file open between scans: each read is open +
    /// read + close. For scans made only while someone watches (`kelpie
    /// top`), so an idle kelpie holds no descriptors for them.
    pub fn keeping_no_files() -> Self {
        let mut scanner = Self::new();
        scanner.reader.max_files = Some(0);
        scanner
    }

    /// A scanner that reads on the calling thread only, however many
    /// processes there are: a scan then wakes no other thread (the
    /// dashboard's poll, whose cost is counted in wake-ups).
    pub fn on_one_thread(mut self) -> Self {
        self.reader.max_threads = Some(1);
        self
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
            tracked: Map::default(),
            groups: Map::default(),
            exited: Map::default(),
            own_pid: nix::unistd::getpid().as_raw(),
            reads: Vec::new(),
            attribution: Attribution::default(),
            #[cfg(test)]
            attribute_time: std::time::Duration::ZERO,
        }
    }

    /// One pass over `/proc`: usage per board program, in board order.
    pub fn scan(&mut self, board: &Board) -> Vec<Usage> {
        self.scan_while(board, &mut || {})
    }

    /// [`scan`](Self::scan), running `meanwhile` once on the calling thread
    /// while helper threads do the reads (or before the reads when the scan
    /// stays on one thread): `/metrics` writes the rest of its text then.
    pub fn scan_while(&mut self, board: &Board, meanwhile: &mut dyn FnMut()) -> Vec<Usage> {
        let names: Vec<&str> = board.programs.iter().map(|p| p.name.as_str()).collect();
        let roots = board
            .programs
            .iter()
            .enumerate()
            .flat_map(|(index, program)| {
                program
                    .instances
                    .iter()
                    .filter_map(move |instance| instance.snapshot.pid.map(|pid| (pid, index)))
            });
        self.scan_units(&names, roots, meanwhile)
    }

    /// One pass over `/proc` with every instance a unit of its own
    /// (`web:0`, `web:1`; program names cannot contain `:`): usage per
    /// instance, `[program][instance]` in board order. An instance's
    /// processes are its main process, its group and their descendants,
    /// so the instances of a program add up to what [`scan`](Self::scan)
    /// counts for it. Keep a scanner for this use only: its totals are
    /// per instance, and a program scan would forget them.
    pub fn scan_instances(&mut self, board: &Board) -> Vec<Vec<Usage>> {
        let names: Vec<String> = board
            .programs
            .iter()
            .flat_map(|p| (0..p.instances.len()).map(move |n| format!("{}:{n}", p.name)))
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut unit = 0;
        let mut roots = Vec::new();
        let mut sizes = Vec::with_capacity(board.programs.len());
        for program in &board.programs {
            for instance in &program.instances {
                if let Some(pid) = instance.snapshot.pid {
                    roots.push((pid, unit));
                }
                unit += 1;
            }
            sizes.push(program.instances.len());
        }
        let mut usage = self.scan_units(&names, roots, &mut || {}).into_iter();
        sizes
            .into_iter()
            .map(|n| usage.by_ref().take(n).collect())
            .collect()
    }

    /// One pass over `/proc` for `units`, the names processes are counted
    /// for, given the main processes of each (`(pid, index in units)`).
    /// Runs `meanwhile` once, during the reads.
    fn scan_units(
        &mut self,
        units: &[&str],
        main_processes: impl IntoIterator<Item = (i32, usize)>,
        meanwhile: &mut dyn FnMut(),
    ) -> Vec<Usage> {
        self.generation += 1;
        let generation = self.generation;
        let n = units.len();

        // Intern the names; forget units that left the board (reload
        // removed them) so their totals do not outlive them.
        let mut names: Vec<Arc<str>> = Vec::with_capacity(n);
        for &unit in units {
            match self.exited.get_key_value(unit) {
                Some((name, _)) => names.push(name.clone()),
                None => {
                    let name: Arc<str> = Arc::from(unit);
                    self.exited.insert(name.clone(), 0);
                    names.push(name);
                }
            }
        }

        // The units' main processes (roots of their trees), and the
        // groups they lead plus those seen before that may still be
        // draining, each with its unit index.
        let mut roots: Map<i32, usize> = Map::with_capacity_and_hasher(n, FastHash);
        roots.extend(main_processes);
        let by_name: Map<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.as_ref(), i))
            .collect();
        let mut wanted = roots.clone();
        for (pgid, program) in &self.groups {
            if let Some(&index) = by_name.get(program.as_ref()) {
                wanted.entry(*pgid).or_insert(index);
            }
        }

        let mut rss_pages = vec![0u64; n];
        let mut live_ticks = vec![0u64; n];
        let mut processes = vec![0u32; n];
        let mut groups =
            Map::with_capacity_and_hasher(self.groups.len().max(wanted.len()), FastHash);
        let reads = &mut self.reads;
        reads.clear();
        if !wanted.is_empty() || !self.tracked.is_empty() {
            self.reader.scan(reads, meanwhile);
        } else {
            meanwhile();
        }
        #[cfg(test)]
        let attribute_start = tokio::time::Instant::now();
        let owners = attribute(
            &mut self.attribution,
            reads,
            &Claims {
                tracked: &self.tracked,
                by_name: &by_name,
                roots: &roots,
                wanted: &wanted,
                own_pid: self.own_pid,
            },
        );
        #[cfg(test)]
        {
            self.attribute_time = attribute_start.elapsed();
        }
        let tracked = &mut self.tracked;
        let exited = &mut self.exited;
        for (&(pid, read), &owner) in reads.iter().zip(owners) {
            let index = match owner {
                Owner::Program(index) => index,
                Owner::Unclaimed | Owner::Unresolved => continue,
                Owner::Outside => {
                    // Outside kelpie's tree: it can never enter it (an
                    // orphan is adopted by an ancestor), and a process of
                    // another session cannot join a program group, so it
                    // is not read again (bar the recheck).
                    if let Read::Stat(stat) = read {
                        let own = self.own_session.is_none_or(|own| own == stat.session);
                        if !own && !wanted.contains_key(&stat.session) {
                            self.reader.set_outsider(pid);
                        }
                    }
                    continue;
                }
            };
            let stat = match read {
                Read::Stat(stat) => stat,
                Read::Nothing => continue,
                Read::Unreadable => {
                    // Keep counting what it had, so the counter does not
                    // dip (a dip reads as a reset to Prometheus).
                    if let Some(t) = tracked.get_mut(&pid) {
                        t.seen = generation;
                        live_ticks[index] = live_ticks[index].saturating_add(t.ticks);
                        processes[index] = processes[index].saturating_add(1);
                    }
                    continue;
                }
            };
            let program = &names[index];
            rss_pages[index] = rss_pages[index].saturating_add(stat.rss_pages);
            processes[index] = processes[index].saturating_add(1);
            let ticks = match tracked.get_mut(&pid) {
                Some(t) if t.starttime == stat.starttime && Arc::ptr_eq(&t.program, program) => {
                    // Never let a counter step back, whatever procfs says.
                    t.ticks = t.ticks.max(stat.cpu_ticks());
                    t.seen = generation;
                    t.ticks
                }
                previous => {
                    // New, or the pid now names another process: the old
                    // one is gone and keeps what it had used.
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
            // A group is remembered when it is already a program's, or
            // when a counted process leads it (a descendant that made its
            // own group). Not merely because a member is counted: a
            // descendant could join a group that is not the program's
            // (kelpie's own, say) with setpgid.
            if pid == stat.pgrp || wanted.contains_key(&stat.pgrp) {
                groups.insert(stat.pgrp, program.clone());
            }
        }
        self.groups = groups;

        // Processes not seen this time have exited.
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

/// Whose a process read in this pass is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// Not looked at yet (or being looked at: its ancestors are).
    Unresolved,
    /// The program at this board index.
    Program(usize),
    /// Under kelpie but no program's (kelpie itself, a probe command, an
    /// orphan never seen in a program), or its ancestry could not be read:
    /// read again next time.
    Unclaimed,
    /// Not a descendant of kelpie.
    Outside,
}

/// What makes a process a program's by itself, without its ancestors.
struct Claims<'a> {
    tracked: &'a Map<i32, Tracked>,
    by_name: &'a Map<&'a str, usize>,
    /// Main pid of each running instance.
    roots: &'a Map<i32, usize>,
    /// Program process groups.
    wanted: &'a Map<i32, usize>,
    own_pid: i32,
}

impl Claims<'_> {
    /// An instance's main process and the members of a program group are
    /// the program's; so is a process counted before, until it exits (its
    /// start time tells a reused pid apart). The two disagree only if a
    /// process moved into another program's group, and the group wins then;
    /// it is also the cheaper lookup, so it goes first.
    fn of(&self, pid: i32, read: &Read) -> Option<usize> {
        if let Read::Stat(stat) = read {
            if let Some(&index) = self.roots.get(&pid).or_else(|| self.wanted.get(&stat.pgrp)) {
                return Some(index);
            }
        }
        let counted = self.tracked.get(&pid).filter(|t| match read {
            Read::Stat(stat) => t.starttime == stat.starttime,
            Read::Unreadable | Read::Nothing => true,
        })?;
        self.by_name.get(counted.program.as_ref()).copied()
    }
}

/// The buffers of `attribute`, kept between passes.
#[derive(Debug, Default)]
struct Attribution {
    /// pid → position in the pass's reads.
    at: Map<i32, usize>,
    owners: Vec<Owner>,
    chain: Vec<usize>,
}

/// The owner of every process read, in the order of `reads`: its own
/// claim (see `Claims::of`), else its parent's owner, so a program owns
/// the whole tree under its main processes and group members, including
/// children that moved to a group or session of their own.
///
/// One walk up the ppid links per process, each stopping at the first
/// process already resolved, so the whole pass is linear in the number of
/// processes read.
fn attribute<'a>(
    buffers: &'a mut Attribution,
    reads: &[(i32, Read)],
    claims: &Claims<'_>,
) -> &'a [Owner] {
    let Attribution { at, owners, chain } = buffers;
    // Built on the first parent lookup: usually every process read is a
    // main process, a group member or kelpie's, and none is needed.
    at.clear();
    let mut indexed = false;
    owners.clear();
    owners.resize(reads.len(), Owner::Unresolved);
    for start in 0..reads.len() {
        chain.clear();
        let mut i = start;
        let owner = loop {
            if owners[i] != Owner::Unresolved {
                break owners[i];
            }
            if chain.contains(&i) {
                // A loop in ppid links: reads taken at different instants
                // while pids were reused. Decide next time.
                break Owner::Unclaimed;
            }
            chain.push(i);
            let (pid, read) = &reads[i];
            if let Some(index) = claims.of(*pid, read) {
                break Owner::Program(index);
            }
            let Read::Stat(stat) = read else {
                // Its parent is unknown.
                break Owner::Unclaimed;
            };
            if *pid == claims.own_pid || stat.ppid == claims.own_pid {
                break Owner::Unclaimed;
            }
            if !indexed {
                at.extend(reads.iter().enumerate().map(|(i, (pid, _))| (*pid, i)));
                indexed = true;
            }
            match at.get(&stat.ppid) {
                Some(&parent) => i = parent,
                // pid 0 above init and kthreadd, or a parent already known
                // to be outside (not read): outside too. (A parent that
                // died before the listing left an orphan whose ppid names
                // its adopter; one that died during the pass is in `reads`
                // as gone.)
                None => break Owner::Outside,
            }
        };
        for &c in chain.iter() {
            owners[c] = owner;
        }
    }
    owners
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
    /// The scan that last read it.
    read: u64,
}

/// Reads `/proc/<pid>/stat` of every process, as cheaply as the kernel
/// allows: outsiders are read once, candidates through a kept-open file,
/// and many processes on several threads.
#[derive(Debug)]
struct ProcReader {
    root: String,
    entries: Map<i32, ProcEntry>,
    generation: u64,
    /// Overrides `file_budget()` (tests).
    max_files: Option<usize>,
    /// Caps the threads of a scan below `MAX_THREADS`.
    max_threads: Option<usize>,
    /// `available_parallelism()`, asked once: std reads the cgroup's CPU
    /// quota files for it, which cost as much as dozens of stat reads.
    cpus: Option<usize>,
    /// The last listing of the root, kept for its allocation.
    listed: Vec<(i32, u64)>,
}

/// Below this many reads a scan stays on the calling thread: a thread
/// costs about as much as a few dozen reads.
const PARALLEL_MIN: usize = 256;
/// Reads handed out at a time to the scan threads.
const CHUNK: usize = 64;
/// At most this many threads read at once (the caller included).
const MAX_THREADS: usize = 4;

/// Shared by the threads of one scan.
struct ReadContext<'a> {
    root: &'a str,
    open_files: AtomicUsize,
    max_files: usize,
    generation: u64,
}

impl ProcReader {
    fn new(root: &str) -> Self {
        Self {
            root: root.to_string(),
            entries: Map::default(),
            generation: 0,
            max_files: None,
            max_threads: None,
            cpus: None,
            listed: Vec::new(),
        }
    }

    /// Reads every process not marked an outsider into `out`: its stat,
    /// `Read::Unreadable`, or `Read::Nothing` if it exited since the
    /// listing (that is normal). Runs `meanwhile` once on the calling
    /// thread while helper threads read, if there are any.
    ///
    /// The files kept open since the last scan are read first, by helpers,
    /// while the calling thread lists the root and then runs `meanwhile`:
    /// the listing and the caller's own work are then no longer in series
    /// with the reads. The listing then decides which of those reads stand
    /// (a process gone from it, or whose pid now names another process, is
    /// dropped), and the processes it shows that were not read yet (new,
    /// rechecked outsiders, over the file budget) are read after it.
    fn scan(&mut self, out: &mut Vec<(i32, Read)>, meanwhile: &mut dyn FnMut()) {
        self.generation += 1;
        let generation = self.generation;
        let Ok(mut dir) = std::fs::read_dir(&self.root) else {
            self.entries.clear();
            meanwhile();
            return;
        };
        let max_files = self.max_files.unwrap_or_else(file_budget);
        let max_threads = self.max_threads.unwrap_or(MAX_THREADS);
        let cpus = *self
            .cpus
            .get_or_insert_with(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let threads = |reads: usize| {
            if reads < PARALLEL_MIN {
                1
            } else {
                cpus.min(max_threads)
            }
        };
        let Self {
            root,
            entries,
            listed,
            ..
        } = self;

        // 1. Read the kept-open files while listing the root.
        let context = ReadContext {
            root,
            open_files: AtomicUsize::new(0),
            max_files,
            generation,
        };
        let mut kept: Vec<(i32, &mut ProcEntry)> = entries
            .iter_mut()
            .filter(|(_, e)| e.file.is_some() && e.skip_until <= generation)
            .map(|(pid, e)| (*pid, e))
            .collect();
        listed.clear();
        let list = &mut || {
            for dirent in dir.by_ref().flatten() {
                // Non-process entries (self, sys, meminfo, ...) fail on the
                // first byte.
                if let Some(pid) =
                    parse_decimal(dirent.file_name().as_bytes()).and_then(|p| i32::try_from(p).ok())
                {
                    listed.push((pid, dirent.ino()));
                }
            }
            meanwhile();
        };
        let n = threads(kept.len());
        read_all(&context, &mut kept, n, out, list);
        drop(kept);

        // 2. Forget the processes that are gone (closing their files) and
        // those whose pid now names another process; keep the reads of
        // the rest.
        for &(pid, ino) in listed.iter() {
            let entry = entries.entry(pid).or_insert_with(|| ProcEntry::new(ino));
            if entry.ino != ino {
                *entry = ProcEntry::new(ino);
            }
            entry.seen = generation;
        }
        entries.retain(|_, e| e.seen == generation);
        out.retain(|(pid, _)| entries.get(pid).is_some_and(|e| e.read == generation));

        // 3. Read the ones not read yet that are not known outsiders.
        let context = ReadContext {
            open_files: AtomicUsize::new(entries.values().filter(|e| e.file.is_some()).count()),
            ..context
        };
        let mut rest: Vec<(i32, &mut ProcEntry)> = entries
            .iter_mut()
            .filter(|(_, e)| e.read != generation && e.skip_until <= generation)
            .map(|(pid, e)| (*pid, e))
            .collect();
        let n = threads(rest.len());
        read_all(&context, &mut rest, n, out, &mut || {});
    }

    /// Skips `pid` for the next `OUTSIDER_RECHECK` scans, closing its file:
    /// it is outside kelpie's tree and session.
    fn set_outsider(&mut self, pid: i32) {
        if let Some(entry) = self.entries.get_mut(&pid) {
            entry.skip_until = self.generation + OUTSIDER_RECHECK;
            entry.file = None;
        }
    }
}

/// Reads `work` into `out` on `threads` threads: the caller, which first
/// runs `first`, and scoped helpers. The reads are kernel time, one process
/// at a time, so they spread over threads well. Each thread takes chunks
/// until none is left, so a helper that could not be started or runs slow
/// leaves its share to the others.
fn read_all(
    context: &ReadContext<'_>,
    work: &mut [(i32, &mut ProcEntry)],
    threads: usize,
    out: &mut Vec<(i32, Read)>,
    first: &mut dyn FnMut(),
) {
    let chunks: Vec<Mutex<&mut [(i32, &mut ProcEntry)]>> =
        work.chunks_mut(CHUNK).map(Mutex::new).collect();
    let next = AtomicUsize::new(0);
    let drain = |stats: &mut Vec<(i32, Read)>| {
        let mut buf = vec![0; 1024];
        let mut path = String::with_capacity(context.root.len() + 24);
        while let Some(chunk) = chunks.get(next.fetch_add(1, Ordering::Relaxed)) {
            let mut chunk = chunk.lock().unwrap_or_else(PoisonError::into_inner);
            for (pid, entry) in chunk.iter_mut() {
                stats.push((*pid, read_entry(context, *pid, entry, &mut buf, &mut path)));
            }
        }
    };
    if threads <= 1 {
        first();
        drain(out);
        return;
    }
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads)
            .filter_map(|_| {
                std::thread::Builder::new()
                    .name("kelpie-metrics".into())
                    .spawn_scoped(scope, || {
                        let mut stats = Vec::new();
                        drain(&mut stats);
                        stats
                    })
                    .ok()
            })
            .collect();
        first();
        drain(out);
        for helper in helpers {
            // A panicked helper's reads are lost for this scrape.
            if let Ok(more) = helper.join() {
                out.extend(more);
            }
        }
    });
}

impl ProcEntry {
    fn new(ino: u64) -> Self {
        Self {
            ino,
            file: None,
            skip_until: 0,
            seen: 0,
            read: 0,
        }
    }
}

/// What reading one process's stat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    Stat(Stat),
    /// Gone since the listing: nothing to count.
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
/// (and keeping it open if the budget allows; the scanner closes the files
/// of outsiders).
fn read_entry(
    context: &ReadContext<'_>,
    pid: i32,
    entry: &mut ProcEntry,
    buf: &mut Vec<u8>,
    path: &mut String,
) -> Read {
    let open_files = &context.open_files;
    entry.read = context.generation;
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
    if let Some(file) = fresh {
        if open_files.fetch_add(1, Ordering::Relaxed) < context.max_files {
            entry.file = Some(file);
        } else {
            open_files.fetch_sub(1, Ordering::Relaxed);
        }
    }
    Read::Stat(stat)
}

/// How many `/proc/<pid>/stat` files the reader may keep open: what
/// `fd_budget` left after the programs' pipes and HTTP connections. Beyond
/// it, processes are read with open + read + close.
fn file_budget() -> usize {
    crate::fd_budget::stat_files()
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

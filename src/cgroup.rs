//! cgroup v2 containment: one cgroup per instance run, under a root kelpie
//! may manage (`supervisor.cgroup_root`, docs/lifecycle.md#cgroups).
//!
//! The child enters its cgroup between fork and exec (it writes `0` to the
//! cgroup's `cgroup.procs`, opened just before the fork), so every process
//! it ever forks is inside before it can run a line of the program. A stop
//! then has a complete answer to "is anything left": the cgroup's
//! `populated` flag, and a complete way to end what is: `cgroup.kill`.
//!
//! cgroup v2 forbids processes in a cgroup whose children get controllers
//! ("no internal processes"), so when the root is kelpie's own cgroup
//! kelpie first moves itself (and whatever shares the cgroup with it) into
//! the leaf `supervisor`.

pub mod detect;
mod watch;

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use nix::unistd::AccessFlags;

use crate::config::CgroupRoot;
use crate::limits::{CgroupLimits, CPU_PERIOD_MICROS};
use detect::{controllers, Location, OwnCgroup};
pub use watch::OnEmpty;

/// The leaf kelpie moves itself into when its own cgroup is the root.
pub const SUPERVISOR_LEAF: &str = "supervisor";

/// Controllers kelpie enables for every program cgroup when the root
/// offers them: `memory` for `memory.events` (OOM kills are then known per
/// instance) and `pids`, both cheap accounting.
const ALWAYS: [&str; 2] = ["memory", "pids"];

/// The cgroup root kelpie manages.
pub struct CgroupTree {
    root: PathBuf,
    /// What the root's own `cgroup.controllers` offers its children.
    available: BTreeSet<String>,
    /// Enabled in the root's `cgroup.subtree_control`, with why a wanted
    /// one could not be.
    enabled: Mutex<Enabled>,
    watcher: watch::EmptyWatcher,
}

#[derive(Default)]
struct Enabled {
    on: BTreeSet<String>,
    refused: Vec<(String, String)>,
}

/// What `kelpie check` can tell without changing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub root: PathBuf,
    pub available: BTreeSet<String>,
}

/// The controllers the limits need, by config key.
pub fn wanted_controllers<'a>(
    limits: impl IntoIterator<Item = &'a CgroupLimits>,
) -> BTreeSet<&'static str> {
    let mut wanted: BTreeSet<&'static str> = ALWAYS.into_iter().collect();
    for limits in limits {
        wanted.extend(limits.keys().into_iter().map(|(_, controller)| controller));
    }
    wanted
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn read(path: &Path) -> io::Result<String> {
    std::fs::read_to_string(path)
}

fn write(path: &Path, text: &str) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(text.as_bytes())
}

fn locate_self() -> Result<Location, String> {
    let proc_cgroup = read(Path::new("/proc/self/cgroup"))
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let mountinfo = read(Path::new("/proc/self/mountinfo"))
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    detect::locate(&proc_cgroup, &mountinfo)
}

fn members(dir: &Path) -> Vec<i32> {
    read(&dir.join("cgroup.procs"))
        .map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn writable(path: &Path) -> bool {
    nix::unistd::access(path, AccessFlags::W_OK).is_ok()
}

/// The root `setting` names, checked for use, or why there is none.
fn choose_root(setting: &CgroupRoot) -> Result<(PathBuf, Location), String> {
    if *setting == CgroupRoot::Off {
        return Err("cgroup_root = \"off\"".to_string());
    }
    let location = locate_self()?;
    let root = match setting {
        CgroupRoot::Path(path) => {
            if !path.starts_with(&location.mount) {
                return Err(format!(
                    "cgroup_root {} is not under the cgroup v2 mount {}",
                    path.display(),
                    location.mount.display()
                ));
            }
            path.clone()
        }
        _ => {
            let dir = &location.own;
            // Already in the leaf (systemd's `DelegateSubgroup=supervisor`,
            // or a kelpie that re-ran in place): the root is its parent.
            if let Some(parent) = already_in_leaf(dir) {
                return Ok((parent, location));
            }
            let me = std::process::id() as i32;
            let guardian = crate::guardian::pid();
            let others = members(dir)
                .into_iter()
                .filter(|pid| *pid != me && Some(*pid) != guardian)
                .count();
            detect::auto_root(&OwnCgroup {
                dir,
                has_kill: dir.join("cgroup.kill").exists(),
                writable: [
                    dir.clone(),
                    dir.join("cgroup.procs"),
                    dir.join("cgroup.subtree_control"),
                ]
                .iter()
                .all(|p| writable(p)),
                others,
                pid1: me == 1,
            })?;
            dir.clone()
        }
    };
    Ok((root, location))
}

/// The parent of `own` when `own` is a `supervisor` leaf kelpie may
/// manage the parent of: writable, able to kill, and holding no process
/// itself.
fn already_in_leaf(own: &Path) -> Option<PathBuf> {
    if own.file_name()? != SUPERVISOR_LEAF {
        return None;
    }
    let parent = own.parent()?;
    let usable = parent.join("cgroup.kill").exists()
        && writable(&parent.join("cgroup.subtree_control"))
        && writable(parent)
        && members(parent).is_empty();
    usable.then(|| parent.to_path_buf())
}

/// For `kelpie check`: where program cgroups would go and what controllers
/// they could get, without creating or moving anything.
pub fn assess(setting: &CgroupRoot) -> Result<Assessment, String> {
    let (root, _) = choose_root(setting)?;
    // A root that does not exist yet gets what its parent offers.
    let offered_by = root
        .ancestors()
        .find(|dir| dir.join("cgroup.controllers").exists())
        .ok_or_else(|| format!("{} is not in a cgroup v2 hierarchy", root.display()))?;
    let available = read(&offered_by.join("cgroup.controllers"))
        .map(|text| controllers(&text).into_iter().collect())
        .unwrap_or_default();
    Ok(Assessment { root, available })
}

/// For `kelpie check`: each cgroup key of `programs` that could not apply
/// to a kelpie started the way `check` was, as `program.NAME.KEY: why`.
/// (With `auto` that depends on the cgroup kelpie runs in, so the answer
/// is about the one `check` runs in.)
pub fn unapplicable<'a>(
    setting: &CgroupRoot,
    programs: impl IntoIterator<Item = (&'a str, &'a CgroupLimits)>,
) -> Vec<String> {
    let assessment = assess(setting);
    let mut lines = Vec::new();
    for (name, limits) in programs {
        for (key, controller) in limits.keys() {
            let why = match &assessment {
                Err(why) => why.clone(),
                Ok(found) if found.available.contains(controller) => continue,
                Ok(found) => {
                    let offered: Vec<&str> = found.available.iter().map(String::as_str).collect();
                    format!(
                        "the {controller} controller is not available in {} (it offers: {})",
                        found.root.display(),
                        if offered.is_empty() {
                            "none".to_string()
                        } else {
                            offered.join(" ")
                        }
                    )
                }
            };
            lines.push(format!("program.{name}.{key}: cannot apply here: {why}"));
        }
    }
    lines
}

impl CgroupTree {
    /// Sets up the root: creates it if needed, moves kelpie out of it when
    /// it is kelpie's own cgroup, and enables the `wanted` controllers it
    /// offers. Needs a tokio runtime (the empty-watcher's task).
    pub fn prepare(setting: &CgroupRoot, wanted: &BTreeSet<&str>) -> Result<Self, String> {
        let (root, location) = choose_root(setting)?;
        if root != location.own {
            create_root(&root, wanted)?;
        } else {
            move_into_leaf(&root)?;
        }
        if !root.join("cgroup.kill").exists() {
            return Err(format!(
                "{} has no cgroup.kill (Linux before 5.14)",
                root.display()
            ));
        }
        let available = read(&root.join("cgroup.controllers"))
            .map(|text| controllers(&text).into_iter().collect())
            .map_err(|e| format!("cannot read {}/cgroup.controllers: {e}", root.display()))?;
        let watcher = watch::EmptyWatcher::start()
            .map_err(|e| format!("cannot watch cgroups with inotify: {e}"))?;
        let tree = Self {
            root,
            available,
            enabled: Mutex::default(),
            watcher,
        };
        tree.enable(wanted.iter().copied());
        Ok(tree)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn enabled(&self) -> MutexGuard<'_, Enabled> {
        lock(&self.enabled)
    }

    /// Enables controllers for the root's children (once each; a refusal
    /// is remembered with its reason).
    fn enable<'a>(&self, wanted: impl IntoIterator<Item = &'a str>) {
        let mut enabled = self.enabled();
        for controller in wanted {
            let known = enabled.on.contains(controller)
                || enabled.refused.iter().any(|(c, _)| c == controller);
            if known {
                continue;
            }
            if !self.available.contains(controller) {
                let offered: Vec<&str> = self.available.iter().map(String::as_str).collect();
                let why = format!(
                    "the {controller} controller is not available in {} (it offers: {})",
                    self.root.display(),
                    if offered.is_empty() {
                        "none".to_string()
                    } else {
                        offered.join(" ")
                    }
                );
                enabled.refused.push((controller.to_string(), why));
                continue;
            }
            match write(
                &self.root.join("cgroup.subtree_control"),
                &format!("+{controller}"),
            ) {
                Ok(()) => {
                    enabled.on.insert(controller.to_string());
                }
                Err(err) => {
                    let why = format!(
                        "cannot enable the {controller} controller in {}: {}",
                        self.root.display(),
                        crate::os_lookup::io_reason(&err)
                    );
                    enabled.refused.push((controller.to_string(), why));
                }
            }
        }
    }

    /// The keys of `limits` that cannot apply, each with why.
    pub fn unavailable(&self, limits: &CgroupLimits) -> Vec<(&'static str, String)> {
        self.enable(limits.keys().into_iter().map(|(_, c)| c));
        let enabled = self.enabled();
        limits
            .keys()
            .into_iter()
            .filter_map(|(key, controller)| {
                let (_, why) = enabled.refused.iter().find(|(c, _)| c == controller)?;
                Some((key, why.clone()))
            })
            .collect()
    }

    /// Creates (or takes over an empty leftover of) the cgroup `name` with
    /// `limits`, ready for a child to enter.
    pub fn create(&self, name: &str, limits: &CgroupLimits) -> Result<RunCgroup, String> {
        let dir = self.root.join(name);
        let open = RunCgroup::open;
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                let run = open(dir.clone())?;
                if run.populated() {
                    // Left by a kelpie that died without its guardian
                    // cleaning up; nothing else uses kelpie's names.
                    run.kill();
                    return Err(format!(
                        "cgroup {} still held processes of an earlier run; killed them",
                        dir.display()
                    ));
                }
            }
            Err(err) => {
                return Err(format!(
                    "cannot create cgroup {}: {}",
                    dir.display(),
                    crate::os_lookup::io_reason(&err)
                ))
            }
        }
        self.enable(limits.keys().into_iter().map(|(_, c)| c));
        let run = open(dir)?;
        if let Err(why) = run.apply(limits) {
            run.remove();
            return Err(why);
        }
        Ok(run)
    }

    /// Calls `on_empty` once `run` holds no process.
    pub fn when_empty(&self, run: &RunCgroup, on_empty: OnEmpty) {
        self.watcher.when_empty(&run.dir, on_empty);
    }
}

/// Creates `root` and the directories above it that are missing, giving
/// each the wanted controllers its parent offers.
fn create_root(root: &Path, wanted: &BTreeSet<&str>) -> Result<(), String> {
    let missing: Vec<&Path> = root.ancestors().take_while(|dir| !dir.exists()).collect();
    for dir in missing.into_iter().rev() {
        if let Some(parent) = dir.parent() {
            let offered = read(&parent.join("cgroup.controllers"))
                .map(|text| controllers(&text))
                .unwrap_or_default();
            let enabled = read(&parent.join("cgroup.subtree_control"))
                .map(|text| controllers(&text))
                .unwrap_or_default();
            for controller in wanted {
                let needed = offered.iter().any(|c| c == controller)
                    && !enabled.iter().any(|c| c == controller);
                if needed {
                    // Refused when the parent holds processes; the root
                    // then lacks the controller, reported per key later.
                    let _ = write(
                        &parent.join("cgroup.subtree_control"),
                        &format!("+{controller}"),
                    );
                }
            }
        }
        std::fs::create_dir(dir).map_err(|err| {
            format!(
                "cannot create cgroup {}: {}",
                dir.display(),
                crate::os_lookup::io_reason(&err)
            )
        })?;
    }
    Ok(())
}

/// Moves every process of `root` into its `supervisor` leaf. A process
/// forked meanwhile lands in `root` again, hence a few passes.
fn move_into_leaf(root: &Path) -> Result<(), String> {
    let leaf = root.join(SUPERVISOR_LEAF);
    match std::fs::create_dir(&leaf) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
        Err(err) => {
            return Err(format!(
                "cannot create cgroup {}: {}",
                leaf.display(),
                crate::os_lookup::io_reason(&err)
            ))
        }
    }
    let procs = leaf.join("cgroup.procs");
    for _ in 0..5 {
        let left = members(root);
        if left.is_empty() {
            return Ok(());
        }
        for pid in left {
            match write(&procs, &pid.to_string()) {
                Ok(()) => {}
                // Exited meanwhile.
                Err(err) if err.raw_os_error() == Some(libc::ESRCH) => {}
                Err(err) => {
                    return Err(format!(
                        "cannot move pid {pid} into {}: {}",
                        leaf.display(),
                        crate::os_lookup::io_reason(&err)
                    ))
                }
            }
        }
    }
    Err(format!(
        "processes keep appearing in {}; cannot leave it to the program cgroups",
        root.display()
    ))
}

/// One instance run's cgroup.
pub struct RunCgroup {
    dir: PathBuf,
    /// The run is over and its cgroup removed (or left to be taken over).
    finished: AtomicBool,
}

impl RunCgroup {
    fn open(dir: PathBuf) -> Result<Self, String> {
        if !dir.join("cgroup.procs").exists() {
            return Err(format!("{} is not a cgroup", dir.display()));
        }
        Ok(Self {
            dir,
            finished: AtomicBool::new(false),
        })
    }

    /// The cgroup's `cgroup.procs`, for a child to enter by writing `0` to
    /// it between fork and exec (no path lookup or allocation there). Held
    /// only while spawning: thousands of instances must not hold an fd
    /// each.
    pub fn entry(&self) -> Result<File, String> {
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(self.dir.join("cgroup.procs"))
            .map_err(|err| {
                format!(
                    "cannot open {}/cgroup.procs: {}",
                    self.dir.display(),
                    crate::os_lookup::io_reason(&err)
                )
            })
    }

    pub fn finish(&self) {
        self.finished.store(true, Ordering::Release);
    }

    pub fn finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes the limits; a file missing because its controller is off is
    /// skipped (kelpie reported that key at start).
    fn apply(&self, limits: &CgroupLimits) -> Result<(), String> {
        let mut files: Vec<(&str, &str, String)> = Vec::new();
        if let Some(bytes) = limits.memory_max {
            files.push(("memory_max", "memory.max", bytes.to_string()));
        }
        if let Some(bytes) = limits.memory_high {
            files.push(("memory_high", "memory.high", bytes.to_string()));
        }
        if let Some(quota) = limits.cpu_max {
            files.push(("cpu_max", "cpu.max", format!("{quota} {CPU_PERIOD_MICROS}")));
        }
        if let Some(pids) = limits.pids_max {
            files.push(("pids_max", "pids.max", pids.to_string()));
        }
        if let Some(weight) = limits.io_weight {
            files.push(("io_weight", "io.weight", format!("default {weight}")));
        }
        for (key, file, value) in files {
            match write(&self.dir.join(file), &value) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(format!(
                        "cannot set {key} ({file} = {value}) in {}: {}",
                        self.dir.display(),
                        crate::os_lookup::io_reason(&err)
                    ))
                }
            }
        }
        Ok(())
    }

    /// Whether any process is in it; a cgroup that cannot be read counts
    /// as empty (see `detect::populated`).
    pub fn populated(&self) -> bool {
        read(&self.dir.join("cgroup.events"))
            .map(|text| detect::populated(&text))
            .unwrap_or(false)
    }

    /// SIGKILLs every process in it at once, including those forked while
    /// the kill runs. False when that failed.
    pub fn kill(&self) -> bool {
        write(&self.dir.join("cgroup.kill"), "1").is_ok()
    }

    /// The pids in it now.
    pub fn members(&self) -> Vec<i32> {
        members(&self.dir)
    }

    /// OOM kills in it so far (`memory.events`); `None` without the memory
    /// controller.
    pub fn oom_kills(&self) -> Option<u64> {
        crate::exit_history::oom::oom_kills_in(&read(&self.dir.join("memory.events")).ok()?)
    }

    /// Removes the (empty) cgroup; a cgroup still busy stays, and is taken
    /// over by the next run of the same name.
    pub fn remove(&self) {
        if let Err(err) = std::fs::remove_dir(&self.dir) {
            tracing::debug!(cgroup = %self.dir.display(), error = %err, "cannot remove cgroup");
        }
    }
}

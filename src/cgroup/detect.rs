//! Finding the cgroup v2 hierarchy and kelpie's place in it, from the text
//! of `/proc/self/cgroup` and `/proc/self/mountinfo`, and deciding whether
//! `cgroup_root = "auto"` may use kelpie's own cgroup. Pure: the callers
//! read the files and look at the directories.

use std::path::{Path, PathBuf};

/// Where the unified hierarchy is mounted and kelpie's cgroup directory in
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub mount: PathBuf,
    pub own: PathBuf,
}

/// kelpie's cgroup v2 directory. `proc_cgroup` is `/proc/self/cgroup`
/// (the `0::PATH` line), `mountinfo` is `/proc/self/mountinfo`.
pub fn locate(proc_cgroup: &str, mountinfo: &str) -> Result<Location, String> {
    let own = proc_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .ok_or("kelpie is in no cgroup v2 hierarchy (only cgroup v1 is in use)")?;
    let (root, mount) = mountinfo
        .lines()
        .find_map(cgroup2_mount)
        .ok_or("no cgroup v2 hierarchy is mounted")?;
    // A mount of a subtree (a container's view without a cgroup namespace)
    // shows only what is below its root.
    let relative = if root == "/" {
        own
    } else {
        match own.strip_prefix(root) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
            _ => {
                return Err(format!(
                    "kelpie's cgroup {own} is outside the mounted cgroup v2 subtree {root}"
                ))
            }
        }
    };
    // A cgroup removed under a process shows as "PATH (deleted)".
    if relative.ends_with(" (deleted)") {
        return Err(format!("kelpie's cgroup {own} has been removed"));
    }
    let mut dir = PathBuf::from(unescape(mount));
    dir.push(relative.trim_start_matches('/'));
    Ok(Location {
        mount: PathBuf::from(unescape(mount)),
        own: dir,
    })
}

/// `(root, mount point)` of a mountinfo line of a cgroup2 file system.
/// Line format: `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS…] - FSTYPE
/// SOURCE SUPEROPTIONS`.
fn cgroup2_mount(line: &str) -> Option<(&str, &str)> {
    let (left, right) = line.split_once(" - ")?;
    if right.split(' ').next()? != "cgroup2" {
        return None;
    }
    let mut fields = left.split(' ');
    let root = fields.nth(3)?;
    let mount = fields.next()?;
    Some((root, mount))
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match octal {
            Some(digits) => {
                let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
                out.push(value as u8);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What kelpie saw of its own cgroup, for `auto`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnCgroup<'a> {
    pub dir: &'a Path,
    /// The hierarchy's root has no `cgroup.kill` (nor does a kernel before
    /// 5.14, where kelpie cannot kill a cgroup at once either).
    pub has_kill: bool,
    /// kelpie may create cgroups in it and move processes.
    pub writable: bool,
    /// Processes in it besides kelpie and its guardian.
    pub others: usize,
    /// kelpie is PID 1 (of a container): whatever else runs in its cgroup
    /// (a `docker exec` shell) is under its care.
    pub pid1: bool,
}

/// Whether `cgroup_root = "auto"` uses kelpie's own cgroup: only one that
/// is kelpie's alone to manage (delegated by systemd, or a container's).
/// The error says why not, and what to do.
pub fn auto_root(own: &OwnCgroup<'_>) -> Result<(), String> {
    let dir = own.dir.display();
    if !own.has_kill {
        return Err(format!(
            "kelpie's cgroup {dir} is the root of the hierarchy or the kernel is older than 5.14 (no cgroup.kill); set cgroup_root to a cgroup for kelpie"
        ));
    }
    if !own.writable {
        return Err(format!(
            "kelpie's cgroup {dir} is not writable by kelpie; under systemd set Delegate=yes, in a container give it a private cgroup namespace with a writable /sys/fs/cgroup, or set cgroup_root"
        ));
    }
    if own.others > 0 && !own.pid1 {
        return Err(format!(
            "kelpie's cgroup {dir} also holds {} other process(es), so it is not kelpie's to manage; set cgroup_root to a cgroup for kelpie",
            own.others
        ));
    }
    Ok(())
}

/// The controllers a `cgroup.controllers` or `cgroup.subtree_control` file
/// lists.
pub fn controllers(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

/// `populated` of a `cgroup.events` file; a file that cannot be read or
/// parsed counts as empty, so a stop never waits on a cgroup that is gone.
pub fn populated(events: &str) -> bool {
    events
        .lines()
        .any(|line| line.split_once(' ') == Some(("populated", "1")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's kind of line (hybrid: v2 at .../unified) and a pure
    /// v2 host's.
    const HYBRID: &str = "35 25 0:30 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate\n36 25 0:31 / /sys/fs/cgroup/memory rw,nosuid shared:11 - cgroup cgroup rw,memory\n";
    const UNIFIED: &str = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";

    #[test]
    fn locates_the_own_cgroup_under_the_mount() {
        type Case = (
            &'static str,
            &'static str,
            Result<(&'static str, &'static str), &'static str>,
        );
        let cases: &[Case] = &[
            (
                "0::/system.slice/kelpie.service\n",
                UNIFIED,
                Ok(("/sys/fs/cgroup", "/sys/fs/cgroup/system.slice/kelpie.service")),
            ),
            (
                "12:memory:/x\n0::/\n",
                HYBRID,
                Ok(("/sys/fs/cgroup/unified", "/sys/fs/cgroup/unified")),
            ),
            // A container's bind mount of its own subtree.
            (
                "0::/docker/abc/sub\n",
                "40 30 0:26 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
                Ok(("/sys/fs/cgroup", "/sys/fs/cgroup/sub")),
            ),
            (
                "0::/docker/abcdef\n",
                "40 30 0:26 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
                Err("kelpie's cgroup /docker/abcdef is outside the mounted cgroup v2 subtree /docker/abc"),
            ),
            (
                "0::/a b\n",
                "30 23 0:26 / /mnt/cg\\040v2 rw - cgroup2 none rw\n",
                Ok(("/mnt/cg v2", "/mnt/cg v2/a b")),
            ),
            (
                "3:cpu:/x\n",
                UNIFIED,
                Err("kelpie is in no cgroup v2 hierarchy (only cgroup v1 is in use)"),
            ),
            ("0::/x\n", "36 25 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n", Err("no cgroup v2 hierarchy is mounted")),
            ("0::/gone (deleted)\n", UNIFIED, Err("kelpie's cgroup /gone (deleted) has been removed")),
        ];
        for (proc_cgroup, mountinfo, expected) in cases {
            let got = locate(proc_cgroup, mountinfo);
            let expected = (*expected).map(|(mount, own)| Location {
                mount: mount.into(),
                own: own.into(),
            });
            assert_eq!(got, expected.map_err(str::to_string), "{proc_cgroup:?}");
        }
    }

    #[test]
    fn auto_takes_only_a_cgroup_that_is_kelpies_alone() {
        let dir = Path::new("/sys/fs/cgroup/app");
        let own = |has_kill, writable, others, pid1| OwnCgroup {
            dir,
            has_kill,
            writable,
            others,
            pid1,
        };
        assert_eq!(auto_root(&own(true, true, 0, false)), Ok(()));
        assert_eq!(auto_root(&own(true, true, 3, true)), Ok(()));
        let refused = [
            (own(false, true, 0, false), "is the root of the hierarchy"),
            (own(true, false, 0, true), "Delegate=yes"),
            (own(true, true, 2, false), "also holds 2 other process(es)"),
        ];
        for (case, why) in refused {
            let message = auto_root(&case).expect_err(why);
            assert!(message.contains(why), "{message}");
            assert!(message.contains("/sys/fs/cgroup/app"), "{message}");
        }
    }

    #[test]
    fn reads_populated_and_controllers() {
        assert!(populated("populated 1\nfrozen 0\n"));
        assert!(!populated("populated 0\nfrozen 0\n"));
        assert!(!populated(""));
        assert_eq!(
            controllers("cpu io memory pids\n"),
            ["cpu", "io", "memory", "pids"]
        );
        assert!(controllers("\n").is_empty());
    }
}

//! What /proc says about the processes a test started: which carry its
//! marker, which are alive, which sockets they hold.

/// Processes kelpie started for this test (kelpie's guardian, a fork of
/// kelpie that carries the marker too, is not one of them).
pub fn marked_processes(marker: &str) -> Vec<i32> {
    marked_including_guardian(marker)
        .into_iter()
        .filter(|&pid| !is_guardian(pid))
        .collect()
}

/// kelpie's guardian (see src/guardian.rs) names itself so, first thing
/// after the fork; on a loaded machine the forked child may not have run
/// yet, so a process that is a fork of a kelpie (the kelpie binary, with a
/// kelpie as its parent) counts too.
pub fn is_guardian(pid: i32) -> bool {
    let named = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|comm| comm.trim_end() == "kelpie-guardian");
    named || (is_kelpie_binary(pid) && parent_of(pid).is_some_and(is_kelpie_binary))
}

fn is_kelpie_binary(pid: i32) -> bool {
    let kelpie = std::fs::canonicalize(env!("CARGO_BIN_EXE_kelpie"));
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"));
    matches!((kelpie, exe), (Ok(k), Ok(e)) if k == e)
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

pub fn marked_including_guardian(marker: &str) -> Vec<i32> {
    let needle = format!("KELPIE_TEST_MARKER={marker}");
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let hit = environ
            .split(|&b| b == 0)
            .any(|var| var == needle.as_bytes());
        if hit && !is_zombie(pid) {
            pids.push(pid);
        }
    }
    pids
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Alive and not a zombie.
pub fn alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid)
}

/// Socket descriptors open in process `pid`.
pub fn socket_fds(pid: i32) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|target| {
            let text = target.to_string_lossy().into_owned();
            text.strip_prefix("socket:[")
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inode| inode.parse().ok())
        })
        .collect()
}

/// TCP sockets in LISTEN state owned by process `pid`.
pub fn tcp_listeners(pid: i32) -> usize {
    let mine = socket_fds(pid);
    let mut listening = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            if fields.len() > 9 && fields[3] == "0A" {
                if let Ok(inode) = fields[9].parse::<u64>() {
                    listening.push(inode);
                }
            }
        }
    }
    mine.iter().filter(|i| listening.contains(i)).count()
}

//! `/proc/<pid>/stat`, read one way for everyone who asks the kernel about
//! a process: the reaper (state, parent, group), the metrics scan (group,
//! session, CPU, memory), the guardian and `kelpie exec` (state).
//!
//! The second field is the command name in parentheses, and a process can
//! name itself anything, spaces and `) (` included; the fields after it are
//! therefore counted from the *last* `)`. Anything malformed is `None`: the
//! caller treats that process as unreadable rather than guessing.

/// The fields of `/proc/<pid>/stat` kelpie uses (proc(5) numbering in the
/// comments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// (3) `R`, `S`, `D`, `T`, `Z`, …
    pub state: char,
    /// (4)
    pub ppid: i32,
    /// (5) process group.
    pub pgrp: i32,
    /// (6)
    pub session: i32,
    /// (14) user CPU time, in clock ticks.
    pub utime: u64,
    /// (15) system CPU time, in clock ticks.
    pub stime: u64,
    /// (22) start time since boot in clock ticks: with the pid, it
    /// identifies a process even when the pid number has been reused.
    pub starttime: u64,
    /// (24) resident set size, in pages.
    pub rss_pages: u64,
}

impl Stat {
    /// User plus system CPU time, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        self.utime.saturating_add(self.stime)
    }
}

/// Reads and parses `/proc/<pid>/stat`; `None` when the process is gone or
/// the file cannot be read or parsed.
pub fn read_stat(pid: i32) -> Option<Stat> {
    let content = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&content)
}

/// Parses the content of a `/proc/<pid>/stat` file. Allocation-free: the
/// metrics scan calls it for every process at every scrape.
pub fn parse_stat(content: &[u8]) -> Option<Stat> {
    let close = content.iter().rposition(|&b| b == b')')?;
    // After ") ": field 3 (state) is index 0, so field n is index n - 3.
    let mut fields = content.get(close + 1..)?.split(|&b| b == b' ');
    // The first split item is the empty string between ')' and ' '.
    if !fields.next()?.is_empty() {
        return None;
    }
    let mut state = None;
    let mut ppid = None;
    let mut pgrp = None;
    let mut session = None;
    let mut utime = None;
    let mut stime = None;
    let mut starttime = None;
    let mut rss = None;
    for (index, field) in fields.enumerate() {
        match index + 3 {
            3 => match field {
                [letter] if letter.is_ascii_alphabetic() => state = Some(char::from(*letter)),
                _ => return None,
            },
            4 => ppid = Some(parse_i64(field)?),
            5 => pgrp = Some(parse_i64(field)?),
            6 => session = Some(parse_i64(field)?),
            14 => utime = Some(parse_decimal(field)?),
            15 => stime = Some(parse_decimal(field)?),
            22 => starttime = Some(parse_decimal(field)?),
            24 => {
                // Signed in the kernel; never negative in practice.
                rss = Some(parse_i64(field)?.max(0) as u64);
                break;
            }
            _ => {}
        }
    }
    Some(Stat {
        state: state?,
        ppid: i32::try_from(ppid?).ok()?,
        pgrp: i32::try_from(pgrp?).ok()?,
        session: i32::try_from(session?).ok()?,
        utime: utime?,
        stime: stime?,
        starttime: starttime?,
        rss_pages: rss?,
    })
}

/// An unsigned decimal field of a procfs file (or a `/proc` entry name):
/// digits only, a trailing newline allowed, `None` on overflow.
pub fn parse_decimal(field: &[u8]) -> Option<u64> {
    // The last field carries the trailing newline.
    let field = field.strip_suffix(b"\n").unwrap_or(field);
    if field.is_empty() {
        return None;
    }
    field.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

fn parse_i64(field: &[u8]) -> Option<i64> {
    match field.strip_prefix(b"-") {
        Some(rest) => i64::try_from(parse_decimal(rest)?).ok().map(|n| -n),
        None => i64::try_from(parse_decimal(field)?).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A whole line as a current kernel prints it, with the fields under
    /// test spelled out.
    fn line(comm: &str, state: char, ppid: i32, pgrp: i32, session: i32) -> String {
        format!(
            "4242 ({comm}) {state} {ppid} {pgrp} {session} 0 -1 4194560 100 0 0 0 12 3 0 0 20 0 1 0 \
             987654 8941568 215 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
        )
    }

    #[test]
    fn parses_every_field_of_a_real_line() {
        assert_eq!(
            parse_stat(line("sleep", 'S', 1, 4240, 4239).as_bytes()),
            Some(Stat {
                state: 'S',
                ppid: 1,
                pgrp: 4240,
                session: 4239,
                utime: 12,
                stime: 3,
                starttime: 987654,
                rss_pages: 215,
            })
        );
    }

    #[test]
    fn the_command_name_may_contain_spaces_and_parentheses() {
        for comm in [
            "a b",
            ") (",
            "x) (Z 1 2 3",
            "evil ) 1 2 3 (name) x",
            "((",
            ")",
        ] {
            let stat = parse_stat(line(comm, 'T', 7, 8, 9).as_bytes())
                .unwrap_or_else(|| panic!("{comm:?} not parsed"));
            assert_eq!(
                (
                    stat.state,
                    stat.ppid,
                    stat.pgrp,
                    stat.session,
                    stat.cpu_ticks()
                ),
                ('T', 7, 8, 9, 15),
                "{comm:?}"
            );
        }
    }

    #[test]
    fn a_zombie_is_read_like_any_other_process() {
        let stat = parse_stat(line("defunct", 'Z', 100, 100, 1).as_bytes());
        assert_eq!(stat.map(|s| s.state), Some('Z'));
    }

    #[test]
    fn the_last_field_needed_may_end_the_line() {
        // Older kernels print fewer fields; the newline then sits on rss.
        let line = "9 (x) R 1 9 9 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 77 100 12\n";
        let stat = parse_stat(line.as_bytes()).unwrap_or_else(|| panic!("not parsed"));
        assert_eq!((stat.rss_pages, stat.cpu_ticks()), (12, 11));
    }

    #[test]
    fn malformed_lines_are_rejected_not_panicked_on() {
        for bad in [
            "",
            "1 (x",
            "1 (x)",
            "1 (x) S 1",
            "1 (x) S 1 abc 1 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 77 100 12",
            "1 (x) S 1 2 1 0 -1 0 0 0 0 0 -5 6 0 0 20 0 1 0 77 100 12",
            "1 (x)S 1 2 1 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 77 100 12",
            "1 (x) S 1 99999999999 1 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 77 100 12",
            "1 (x) SS 1 2 1 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 77 100 12",
            "1 (x) 5 1 2 1 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 77 100 12",
        ] {
            assert_eq!(parse_stat(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(parse_decimal(b"18446744073709551616"), None, "overflow");
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id() as i32;
        let stat = read_stat(me).unwrap_or_else(|| panic!("/proc/{me}/stat not read"));
        // The test is running, so this thread group is not stopped or dead.
        assert!(matches!(stat.state, 'R' | 'S' | 'D'), "{stat:?}");
        assert_eq!(stat.pgrp, nix::unistd::getpgrp().as_raw());
        assert_eq!(stat.ppid, nix::unistd::getppid().as_raw());
        assert!(stat.rss_pages > 0, "{stat:?}");
    }
}

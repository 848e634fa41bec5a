//! supervisord's two logs per program (`stdout_logfile`, `stderr_logfile`,
//! or one with `redirect_stderr`) as kelpie's one `log` per program, which
//! takes both streams. `stdout_logfile` decides; `stderr_logfile` is used
//! only when stdout is discarded, and is otherwise reported as not carried
//! over. `AUTO` (supervisord's temporary files in `childlogdir`) and
//! `/dev/stdout`-like paths become kelpie's `inherit`; `NONE` and
//! `/dev/null` become `discard` when both streams are discarded.

use crate::import::draft::Log;
use crate::import::Origin;

/// Where one stream went under supervisord.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    Auto,
    Discard,
    /// supervisord's own stdout or stderr, a tty: a console.
    Console(String),
    /// An absolute path.
    File(String),
}

impl Dest {
    /// A `*_logfile` value (already expanded and made absolute if it is a
    /// path). `syslog` is reported by the caller.
    pub fn parse(value: &str) -> Dest {
        match value.to_ascii_lowercase().as_str() {
            "auto" => return Dest::Auto,
            "none" | "off" => return Dest::Discard,
            _ => {}
        }
        if value == "/dev/null" {
            return Dest::Discard;
        }
        let console = [
            "/dev/stdout",
            "/dev/stderr",
            "/dev/tty",
            "/dev/console",
            "/dev/fd/1",
            "/dev/fd/2",
            "/proc/self/fd/1",
            "/proc/self/fd/2",
        ];
        if console.contains(&value) {
            return Dest::Console(value.to_string());
        }
        Dest::File(value.to_string())
    }
}

/// A number given for a key, with where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given<T> {
    pub value: T,
    pub origin: Origin,
    pub key: String,
}

/// One stream's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    pub dest: Dest,
    /// The `*_logfile` key, when the file set it.
    pub logfile: Option<Given<String>>,
    pub maxbytes: Option<Given<u64>>,
    pub backups: Option<Given<u32>>,
}

impl Stream {
    pub fn auto() -> Stream {
        Stream {
            dest: Dest::Auto,
            logfile: None,
            maxbytes: None,
            backups: None,
        }
    }
}

/// The translation: kelpie's `log` (None: kelpie's default, inherit),
/// comments, and keys not carried over `(origin, key, why)`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub log: Option<Log>,
    pub notes: Vec<String>,
    pub dropped: Vec<(Origin, String, String)>,
}

/// kelpie's smallest `max_size`.
const MIN_MAX_SIZE: u64 = 1024;
/// kelpie's largest `keep`.
const MAX_KEEP: u32 = 1000;

impl Plan {
    fn drop_stream(&mut self, stream: &Stream, why: &str) {
        if let Some(given) = &stream.logfile {
            self.dropped
                .push((given.origin.clone(), given.key.clone(), why.to_string()));
        }
        self.drop_rotation(stream, "applies to a log file kelpie does not write");
    }

    /// Rotation keys of a stream that is not a file kelpie writes; values
    /// that change nothing (0) are not worth a report.
    fn drop_rotation(&mut self, stream: &Stream, why: &str) {
        if let Some(given) = stream.maxbytes.as_ref().filter(|g| g.value != 0) {
            self.dropped
                .push((given.origin.clone(), given.key.clone(), why.to_string()));
        }
        if let Some(given) = stream.backups.as_ref().filter(|g| g.value != 0) {
            self.dropped
                .push((given.origin.clone(), given.key.clone(), why.to_string()));
        }
    }

    fn file(&mut self, path: &str, stream: &Stream) {
        let max_size = match &stream.maxbytes {
            None => None,
            Some(given) if given.value == 0 => {
                self.notes.push(format!(
                    "{} = 0: supervisord never rotates {path}; kelpie rotates it at its default max_size (10MB)",
                    given.key
                ));
                None
            }
            Some(given) if given.value < MIN_MAX_SIZE => {
                self.notes.push(format!(
                    "{} = {}: kelpie rotates at 1KiB at the least",
                    given.key, given.value
                ));
                Some(MIN_MAX_SIZE)
            }
            Some(given) => Some(given.value),
        };
        let keep = stream.backups.as_ref().map(|given| {
            if given.value > MAX_KEEP {
                self.notes.push(format!(
                    "{} = {}: kelpie keeps {MAX_KEEP} rotated files at most",
                    given.key, given.value
                ));
            }
            given.value.min(MAX_KEEP)
        });
        self.log = Some(Log::File {
            file: path.to_string(),
            max_size,
            keep,
        });
    }
}

/// Decides `log` from both streams.
pub fn plan(stdout: &Stream, stderr: &Stream, redirect_stderr: bool) -> Plan {
    let mut plan = Plan::default();
    if redirect_stderr {
        plan.drop_stream(
            stderr,
            "supervisord ignores it too, as redirect_stderr = true sends stderr to the stdout log",
        );
    }
    let err = if redirect_stderr {
        None
    } else {
        Some(&stderr.dest)
    };
    let one_log = "kelpie keeps one log per program, with stdout and stderr both";
    match &stdout.dest {
        Dest::File(path) => {
            plan.file(path, stdout);
            match err {
                None => {}
                Some(Dest::Auto) => plan.notes.push(format!(
                    "stderr goes to {path} too (supervisord kept it apart, in an AUTO log, as redirect_stderr is false)"
                )),
                Some(Dest::Discard) => plan.notes.push(format!(
                    "stderr goes to {path} too: kelpie cannot discard stderr alone (stderr_logfile = NONE)"
                )),
                Some(Dest::Console(_) | Dest::File(_)) => {
                    plan.drop_stream(stderr, &format!("{one_log}: stderr goes to {path} too"))
                }
            }
        }
        Dest::Discard => {
            plan.drop_rotation(stdout, "applies to a log file kelpie does not write");
            match err {
                None | Some(Dest::Discard) => plan.log = Some(Log::Discard),
                Some(Dest::File(path)) => {
                    plan.file(path, stderr);
                    plan.notes.push(format!(
                        "stdout goes to {path} too: kelpie cannot discard stdout alone (stdout_logfile = NONE)"
                    ));
                }
                Some(Dest::Auto | Dest::Console(_)) => plan.notes.push(
                    "kelpie cannot discard stdout alone (stdout_logfile = NONE): both streams are inherited".to_string(),
                ),
            }
        }
        Dest::Auto | Dest::Console(_) => {
            plan.drop_rotation(
                stdout,
                "applies to a log file; kelpie inherits this program's output, there is no file to rotate",
            );
            match &stdout.dest {
                Dest::Console(device) => plan.notes.push(format!(
                    "stdout_logfile = {device}: kelpie writes the program's lines to its own output, tagged with the program name (or as JSON, see log_format)"
                )),
                _ if stdout.logfile.is_some() => plan.notes.push(
                    "stdout_logfile = AUTO: kelpie keeps no AUTO log files; the output is inherited (kelpie's own output, or the journal under systemd)".to_string(),
                ),
                _ => {}
            }
            match err {
                Some(Dest::File(_)) => plan.drop_stream(
                    stderr,
                    &format!("{one_log}, and stdout is inherited here, so stderr is too"),
                ),
                Some(Dest::Discard) if stderr.logfile.is_some() => plan.notes.push(
                    "kelpie cannot discard stderr alone (stderr_logfile = NONE): it is inherited too"
                        .to_string(),
                ),
                Some(_) => plan.drop_rotation(
                    stderr,
                    "applies to a log file; kelpie inherits this program's output, there is no file to rotate",
                ),
                None => {}
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(dest: &str) -> Stream {
        Stream {
            dest: Dest::parse(dest),
            logfile: Some(Given {
                value: dest.to_string(),
                origin: Origin::new("x.conf", 1),
                key: "stdout_logfile".into(),
            }),
            maxbytes: None,
            backups: None,
        }
    }

    fn err(dest: &str) -> Stream {
        let mut s = stream(dest);
        if let Some(given) = s.logfile.as_mut() {
            given.key = "stderr_logfile".into();
            given.origin.line = 2;
        }
        s
    }

    fn file(path: &str) -> Option<Log> {
        Some(Log::File {
            file: path.into(),
            max_size: None,
            keep: None,
        })
    }

    #[test]
    fn destinations_are_told_apart() {
        let cases = [
            ("AUTO", Dest::Auto),
            ("none", Dest::Discard),
            ("OFF", Dest::Discard),
            ("/dev/null", Dest::Discard),
            ("/dev/stdout", Dest::Console("/dev/stdout".into())),
            ("/proc/self/fd/2", Dest::Console("/proc/self/fd/2".into())),
            ("/var/log/web.log", Dest::File("/var/log/web.log".into())),
        ];
        for (value, want) in cases {
            assert_eq!(Dest::parse(value), want, "{value}");
        }
    }

    #[test]
    fn one_log_per_program_from_both_streams() {
        // (stdout, stderr, redirect_stderr, log, notes, dropped keys)
        let auto = Stream::auto;
        type Case = (Stream, Stream, bool, Option<Log>, usize, Vec<&'static str>);
        let cases: Vec<Case> = vec![
            (auto(), auto(), false, None, 0, vec![]),
            (
                stream("/l/a.log"),
                auto(),
                true,
                file("/l/a.log"),
                0,
                vec![],
            ),
            (
                stream("/l/a.log"),
                auto(),
                false,
                file("/l/a.log"),
                1,
                vec![],
            ),
            (
                stream("/l/a.log"),
                err("/l/e.log"),
                false,
                file("/l/a.log"),
                0,
                vec!["stderr_logfile"],
            ),
            (
                stream("/l/a.log"),
                err("/l/e.log"),
                true,
                file("/l/a.log"),
                0,
                vec!["stderr_logfile"],
            ),
            (
                stream("/l/a.log"),
                err("NONE"),
                false,
                file("/l/a.log"),
                1,
                vec![],
            ),
            (stream("NONE"), auto(), true, Some(Log::Discard), 0, vec![]),
            (
                stream("NONE"),
                err("/dev/null"),
                false,
                Some(Log::Discard),
                0,
                vec![],
            ),
            (
                stream("NONE"),
                err("/l/e.log"),
                false,
                file("/l/e.log"),
                1,
                vec![],
            ),
            (stream("NONE"), auto(), false, None, 1, vec![]),
            (stream("/dev/stdout"), auto(), true, None, 1, vec![]),
            (
                stream("/dev/stdout"),
                err("/dev/stderr"),
                false,
                None,
                1,
                vec![],
            ),
            (
                auto(),
                err("/l/e.log"),
                false,
                None,
                0,
                vec!["stderr_logfile"],
            ),
            (stream("AUTO"), auto(), false, None, 1, vec![]),
        ];
        for (i, (out, err, redirect, log, notes, dropped)) in cases.into_iter().enumerate() {
            let plan = plan(&out, &err, redirect);
            assert_eq!(plan.log, log, "case {i}");
            assert_eq!(plan.notes.len(), notes, "case {i}: {:?}", plan.notes);
            let keys: Vec<&str> = plan.dropped.iter().map(|d| d.1.as_str()).collect();
            assert_eq!(keys, dropped, "case {i}");
        }
    }

    #[test]
    fn rotation_carries_over_within_kelpies_limits() {
        let given = |key: &str, value| Given {
            value,
            origin: Origin::new("x.conf", 3),
            key: key.to_string(),
        };
        let mut out = stream("/l/a.log");
        out.maxbytes = Some(given("stdout_logfile_maxbytes", 52_428_800));
        out.backups = Some(Given {
            value: 3,
            origin: Origin::new("x.conf", 4),
            key: "stdout_logfile_backups".into(),
        });
        let p = plan(&out, &Stream::auto(), true);
        assert_eq!(
            p.log,
            Some(Log::File {
                file: "/l/a.log".into(),
                max_size: Some(52_428_800),
                keep: Some(3)
            })
        );
        out.maxbytes = Some(given("stdout_logfile_maxbytes", 0));
        let p = plan(&out, &Stream::auto(), true);
        assert!(matches!(p.log, Some(Log::File { max_size: None, .. })));
        assert_eq!(p.notes.len(), 1);

        // A console takes no rotation: 0 is what supervisord requires there.
        let mut console = stream("/dev/stdout");
        console.maxbytes = Some(given("stdout_logfile_maxbytes", 0));
        assert!(plan(&console, &Stream::auto(), true).dropped.is_empty());
        console.maxbytes = Some(given("stdout_logfile_maxbytes", 1000));
        assert_eq!(plan(&console, &Stream::auto(), true).dropped.len(), 1);
    }
}

//! The bounded in-memory tail of a program's recent lines, which
//! `kelpie logs` reads.

use std::collections::VecDeque;
use std::time::SystemTime;

use crate::output_stream::Stream;

pub const TAIL_LINES: usize = 1000;
pub const TAIL_BYTES: usize = 256 * 1024;

/// One entry of a program's log stream, as kept in the tail and sent to
/// `logs -f` followers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailLine {
    /// When kelpie read it: one clock read per pipe read, shared by the
    /// lines of that read.
    pub time: SystemTime,
    pub instance: u32,
    pub kind: LineKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineKind {
    /// A line the program wrote.
    Output { stream: Stream, line: String },
    /// A new process of the instance took over from an earlier one (a
    /// crash restart, `kelpie restart`, a reload): the point in the stream
    /// where the new process's lines begin.
    Restarted { previous_pid: i32, pid: i32 },
    /// The program was removed by a reload: sent to followers as the last
    /// entry, never kept in a tail.
    Removed,
}

impl TailLine {
    fn bytes(&self) -> usize {
        match &self.kind {
            LineKind::Output { line, .. } => line.len(),
            LineKind::Restarted { .. } | LineKind::Removed => 0,
        }
    }
}

#[derive(Default)]
pub struct Tail {
    lines: VecDeque<TailLine>,
    bytes: usize,
}

impl Tail {
    pub fn push(&mut self, line: TailLine) {
        self.bytes += line.bytes();
        self.lines.push_back(line);
        while self.lines.len() > TAIL_LINES || self.bytes > TAIL_BYTES {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.bytes(),
                None => break,
            }
        }
    }

    pub fn lines(&self) -> impl Iterator<Item = &TailLine> {
        self.lines.iter()
    }

    /// The newest `n` lines, oldest first.
    pub fn last(&self, n: usize) -> Vec<TailLine> {
        let skip = self.lines.len().saturating_sub(n);
        self.lines.iter().skip(skip).cloned().collect()
    }

    /// The newest `n` lines of one instance (all instances for `None`),
    /// oldest first.
    pub fn last_of(&self, n: usize, instance: Option<u32>) -> Vec<TailLine> {
        let Some(instance) = instance else {
            return self.last(n);
        };
        let mut lines: Vec<TailLine> = self
            .lines
            .iter()
            .rev()
            .filter(|l| l.instance == instance)
            .take(n)
            .cloned()
            .collect();
        lines.reverse();
        lines
    }

    /// The last `n` lines process `pid` of `instance` wrote, oldest first.
    /// `latest` is the instance's latest process with pipes: its lines are
    /// the newest; walking back, each `Restarted` mark hands the older
    /// lines to the process it took over from.
    pub fn lines_of_process(
        &self,
        instance: u32,
        pid: i32,
        latest: Option<i32>,
        n: usize,
    ) -> Vec<(Stream, &str)> {
        let mut owner = latest;
        let mut lines = Vec::new();
        for entry in self.lines.iter().rev().filter(|l| l.instance == instance) {
            match &entry.kind {
                LineKind::Output { stream, line } if owner == Some(pid) => {
                    lines.push((*stream, line.as_str()));
                    if lines.len() == n {
                        break;
                    }
                }
                LineKind::Output { .. } => {}
                LineKind::Restarted { .. } if owner == Some(pid) => break,
                LineKind::Restarted { previous_pid, .. } => owner = Some(*previous_pid),
                LineKind::Removed => {}
            }
        }
        lines.reverse();
        lines
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::MAX_LINE_BYTES;

    fn output(instance: u32, stream: Stream, line: String) -> TailLine {
        TailLine {
            time: SystemTime::UNIX_EPOCH,
            instance,
            kind: LineKind::Output { stream, line },
        }
    }

    fn text(line: &TailLine) -> &str {
        match &line.kind {
            LineKind::Output { line, .. } => line,
            _ => "",
        }
    }

    #[test]
    fn tail_is_bounded_by_lines_and_bytes() {
        let mut tail = Tail::default();
        for i in 0..(TAIL_LINES + 50) {
            tail.push(output(0, Stream::Stdout, format!("line {i}")));
        }
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail.lines().next().map(text), Some("line 50"));
        let mut tail = Tail::default();
        for _ in 0..100 {
            tail.push(output(0, Stream::Stderr, "z".repeat(MAX_LINE_BYTES)));
        }
        assert!(tail.bytes() <= TAIL_BYTES);
        assert_eq!(tail.len(), TAIL_BYTES / MAX_LINE_BYTES);
    }

    #[test]
    fn lines_of_one_process_end_at_its_restart_marks() {
        let mark = |instance, previous_pid, pid| TailLine {
            time: SystemTime::UNIX_EPOCH,
            instance,
            kind: LineKind::Restarted { previous_pid, pid },
        };
        let mut tail = Tail::default();
        tail.push(output(0, Stream::Stdout, "a1".into()));
        tail.push(output(1, Stream::Stdout, "other instance".into()));
        tail.push(output(0, Stream::Stderr, "a2".into()));
        tail.push(mark(0, 100, 101));
        tail.push(output(0, Stream::Stdout, "b1".into()));
        tail.push(mark(0, 101, 102));
        tail.push(output(0, Stream::Stdout, "c1".into()));
        tail.push(output(0, Stream::Stdout, "c2".into()));
        let of = |pid, n| -> Vec<String> {
            tail.lines_of_process(0, pid, Some(102), n)
                .into_iter()
                .map(|(_, l)| l.to_string())
                .collect()
        };
        assert_eq!(of(100, 20), ["a1", "a2"]);
        assert_eq!(of(101, 20), ["b1"]);
        assert_eq!(of(102, 20), ["c1", "c2"]);
        assert_eq!(of(102, 1), ["c2"]);
        assert!(of(99, 20).is_empty());
        let streams: Vec<Stream> = tail
            .lines_of_process(0, 100, Some(102), 20)
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(streams, [Stream::Stdout, Stream::Stderr]);
        // Before any restart every line is the one process's.
        let mut first = Tail::default();
        first.push(output(0, Stream::Stdout, "only".into()));
        assert_eq!(first.lines_of_process(0, 7, Some(7), 20).len(), 1);
        assert!(first.lines_of_process(0, 7, None, 20).is_empty());
    }

    #[test]
    fn last_of_one_instance_takes_its_newest_lines() {
        let mut tail = Tail::default();
        for i in 0..10 {
            tail.push(output(i % 2, Stream::Stdout, format!("line {i}")));
        }
        let odd = tail.last_of(2, Some(1));
        let odd: Vec<&str> = odd.iter().map(text).collect();
        assert_eq!(odd, ["line 7", "line 9"]);
        assert_eq!(tail.last_of(3, None).len(), 3);
        assert!(tail.last_of(5, Some(4)).is_empty());
    }
}

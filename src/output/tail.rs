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

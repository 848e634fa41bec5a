//! The bounded in-memory tail of a program's recent lines, which
//! `kelpie logs` reads.

use std::collections::VecDeque;

use crate::output_stream::Stream;

pub const TAIL_LINES: usize = 1000;
pub const TAIL_BYTES: usize = 256 * 1024;

/// One line of program output, as kept in the tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailLine {
    pub instance: u32,
    pub stream: Stream,
    pub line: String,
}

#[derive(Default)]
pub struct Tail {
    lines: VecDeque<TailLine>,
    bytes: usize,
}

impl Tail {
    pub fn push(&mut self, line: TailLine) {
        self.bytes += line.line.len();
        self.lines.push_back(line);
        while self.lines.len() > TAIL_LINES || self.bytes > TAIL_BYTES {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.line.len(),
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
    #[test]
    fn tail_is_bounded_by_lines_and_bytes() {
        let mut tail = Tail::default();
        for i in 0..(TAIL_LINES + 50) {
            tail.push(TailLine {
                instance: 0,
                stream: Stream::Stdout,
                line: format!("line {i}"),
            });
        }
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(
            tail.lines().next().map(|l| l.line.as_str()),
            Some("line 50")
        );
        let mut tail = Tail::default();
        for _ in 0..100 {
            tail.push(TailLine {
                instance: 0,
                stream: Stream::Stderr,
                line: "z".repeat(MAX_LINE_BYTES),
            });
        }
        assert!(tail.bytes() <= TAIL_BYTES);
        assert_eq!(tail.len(), TAIL_BYTES / MAX_LINE_BYTES);
    }
}

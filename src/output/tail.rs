//! The bounded in-memory tail of a program's recent lines, which
//! `kelpie logs` reads.
//!
//! The tail is a byte ring: the text of the kept lines in one buffer, each
//! line followed by a newline, and a compact index with one entry per line
//! or restart mark (its time, instance, stream and where its text is).
//! A flood of short lines costs one copy of each pipe read into the ring
//! and one index entry per line, no allocation. The buffer grows to what
//! the kept lines need, at most `TAIL_BYTES` plus one newline per line, and
//! a program that never wrote a line has none.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::time::SystemTime;

use super::lines::LineBatch;
use crate::output_stream::Stream;

pub const TAIL_LINES: usize = 1000;
pub const TAIL_BYTES: usize = 256 * 1024;

/// The most the ring holds: `TAIL_BYTES` of text and a newline per line.
const RING_MAX: usize = TAIL_BYTES + TAIL_LINES;
/// The ring's first size.
const RING_MIN: usize = 4 * 1024;

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

/// What an index entry stands for.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// A line: `len` bytes of text from `start` in the ring (wrapping
    /// around its end), followed by a newline.
    Line {
        stream: Stream,
        start: u32,
        len: u32,
    },
    Mark {
        previous_pid: i32,
        pid: i32,
    },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    time: SystemTime,
    instance: u32,
    slot: Slot,
}

#[derive(Default)]
pub struct Tail {
    /// The ring; its length is its size. Bytes of evicted lines are left
    /// in place and overwritten.
    ring: Vec<u8>,
    /// Where the next byte goes.
    head: usize,
    /// Ring bytes the kept lines take (text and newlines), ending at
    /// `head`.
    used: usize,
    /// Oldest first.
    entries: VecDeque<Entry>,
    /// Text bytes of the kept lines, newlines not counted: what
    /// `TAIL_BYTES` bounds.
    bytes: usize,
}

impl Tail {
    /// Keeps an entry; a `Removed` entry is never kept.
    pub fn push(&mut self, line: TailLine) {
        match line.kind {
            LineKind::Output { stream, line: text } => {
                self.push_line(line.time, line.instance, stream, &text)
            }
            LineKind::Restarted { previous_pid, pid } => {
                self.make_room(1, 0);
                self.entries.push_back(Entry {
                    time: line.time,
                    instance: line.instance,
                    slot: Slot::Mark { previous_pid, pid },
                });
            }
            LineKind::Removed => {}
        }
    }

    /// Keeps one line (evicting the oldest entries beyond the bounds).
    pub fn push_line(&mut self, time: SystemTime, instance: u32, stream: Stream, text: &str) {
        if text.len() > TAIL_BYTES {
            // It could only be kept alone, and then only for a moment.
            self.clear();
            return;
        }
        self.make_room(1, text.len());
        let start = self.write(&[text.as_bytes(), b"\n"]);
        self.bytes += text.len();
        self.entries.push_back(Entry {
            time,
            instance,
            slot: Slot::Line {
                stream,
                start: start as u32,
                len: text.len() as u32,
            },
        });
    }

    /// Keeps the lines of one pipe read: as many of the newest as the
    /// bounds allow, their text copied into the ring in one piece. The
    /// result is the same as pushing each line in turn.
    pub fn push_batch(
        &mut self,
        time: SystemTime,
        instance: u32,
        stream: Stream,
        lines: &LineBatch,
    ) {
        let ends = lines.ends();
        // The newest lines that fit the bounds on their own.
        let mut keep = 0;
        let mut text_bytes = 0;
        for (i, &end) in ends.iter().enumerate().rev() {
            let start = if i == 0 { 0 } else { ends[i - 1] as usize + 1 };
            let len = end as usize - start;
            if keep == TAIL_LINES || text_bytes + len > TAIL_BYTES {
                break;
            }
            keep += 1;
            text_bytes += len;
        }
        if keep < ends.len() {
            // A line of this batch is not kept, so neither is anything
            // older: pushed one by one, the lines after it would have
            // evicted it and everything before it.
            self.clear();
        } else {
            self.make_room(keep, text_bytes);
        }
        if keep == 0 {
            return;
        }
        let first = ends.len() - keep;
        let from = if first == 0 {
            0
        } else {
            ends[first - 1] as usize + 1
        };
        let region = &lines.text().as_bytes()[from..];
        let at = self.write(&[region]);
        self.bytes += text_bytes;
        let size = self.ring.len();
        // Ring position of each line: `at` onwards, wrapping once at most
        // (no division per line).
        let mut start = from;
        self.entries.extend(ends[first..].iter().map(|&end| {
            let end = end as usize;
            let mut position = at + start - from;
            if position >= size {
                position -= size;
            }
            let entry = Entry {
                time,
                instance,
                slot: Slot::Line {
                    stream,
                    start: position as u32,
                    len: (end - start) as u32,
                },
            };
            start = end + 1;
            entry
        }));
    }

    /// Evicts the oldest entries until `lines` more entries with `bytes`
    /// of text fit both bounds.
    fn make_room(&mut self, lines: usize, bytes: usize) {
        let mut evict = self
            .entries
            .len()
            .saturating_sub(TAIL_LINES.saturating_sub(lines));
        let (mut kept_bytes, mut kept_used) = (self.bytes, self.used);
        for (i, entry) in self.entries.iter().enumerate() {
            if i >= evict && kept_bytes + bytes <= TAIL_BYTES {
                break;
            }
            if let Slot::Line { len, .. } = entry.slot {
                kept_bytes -= len as usize;
                kept_used -= len as usize + 1;
            }
            evict = evict.max(i + 1);
        }
        self.entries.drain(..evict);
        self.bytes = kept_bytes;
        self.used = kept_used;
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
        self.used = 0;
    }

    /// Copies `parts` into the ring after the kept bytes, growing it when
    /// they do not fit; returns where they start.
    fn write(&mut self, parts: &[&[u8]]) -> usize {
        let n: usize = parts.iter().map(|p| p.len()).sum();
        if n == 0 {
            return self.head;
        }
        if self.ring.len() - self.used < n {
            self.grow(self.used + n);
        }
        let size = self.ring.len();
        let at = self.head;
        let mut head = at;
        for part in parts {
            let first = part.len().min(size - head);
            self.ring[head..head + first].copy_from_slice(&part[..first]);
            let rest = part.len() - first;
            self.ring[..rest].copy_from_slice(&part[first..]);
            head = (head + part.len()) % size;
        }
        self.head = head;
        self.used += n;
        at
    }

    /// A larger ring, holding at least `need` bytes, with the kept bytes
    /// moved to its start.
    fn grow(&mut self, need: usize) {
        let size = self.ring.len();
        let new_size = need.max(size * 2).clamp(RING_MIN, RING_MAX.max(need));
        let oldest = if size == 0 {
            0
        } else {
            (self.head + size - self.used) % size
        };
        let mut ring = Vec::with_capacity(new_size);
        let first = self.used.min(size - oldest);
        ring.extend_from_slice(&self.ring[oldest..oldest + first]);
        ring.extend_from_slice(&self.ring[..self.used - first]);
        ring.resize(new_size, 0);
        for entry in &mut self.entries {
            if let Slot::Line { start, .. } = &mut entry.slot {
                *start = ((*start as usize + size - oldest) % size) as u32;
            }
        }
        self.ring = ring;
        self.head = self.used;
    }

    /// The text of a line entry.
    fn text(&self, start: u32, len: u32) -> Cow<'_, str> {
        let (start, len) = (start as usize, len as usize);
        let size = self.ring.len();
        let bytes: Cow<'_, [u8]> = if start + len <= size {
            Cow::Borrowed(&self.ring[start..start + len])
        } else {
            let mut joined = Vec::with_capacity(len);
            joined.extend_from_slice(&self.ring[start..]);
            joined.extend_from_slice(&self.ring[..start + len - size]);
            Cow::Owned(joined)
        };
        // Only whole lines of text are ever written, so this is valid
        // UTF-8; the lossy path is never taken.
        match bytes {
            Cow::Borrowed(b) => String::from_utf8_lossy(b),
            Cow::Owned(b) => Cow::Owned(
                String::from_utf8(b)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            ),
        }
    }

    fn tail_line(&self, entry: &Entry) -> TailLine {
        let kind = match entry.slot {
            Slot::Line { stream, start, len } => LineKind::Output {
                stream,
                line: self.text(start, len).into_owned(),
            },
            Slot::Mark { previous_pid, pid } => LineKind::Restarted { previous_pid, pid },
        };
        TailLine {
            time: entry.time,
            instance: entry.instance,
            kind,
        }
    }

    /// The newest `n` lines, oldest first.
    pub fn last(&self, n: usize) -> Vec<TailLine> {
        let skip = self.entries.len().saturating_sub(n);
        self.entries
            .iter()
            .skip(skip)
            .map(|e| self.tail_line(e))
            .collect()
    }

    /// The newest `n` lines of one instance (all instances for `None`),
    /// oldest first.
    pub fn last_of(&self, n: usize, instance: Option<u32>) -> Vec<TailLine> {
        let Some(instance) = instance else {
            return self.last(n);
        };
        let mut lines: Vec<TailLine> = self
            .entries
            .iter()
            .rev()
            .filter(|e| e.instance == instance)
            .take(n)
            .map(|e| self.tail_line(e))
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
    ) -> Vec<(Stream, Cow<'_, str>)> {
        let mut owner = latest;
        let mut lines = Vec::new();
        for entry in self.entries.iter().rev().filter(|e| e.instance == instance) {
            match entry.slot {
                Slot::Line { stream, start, len } if owner == Some(pid) => {
                    lines.push((stream, self.text(start, len)));
                    if lines.len() == n {
                        break;
                    }
                }
                Slot::Line { .. } => {}
                Slot::Mark { .. } if owner == Some(pid) => break,
                Slot::Mark { previous_pid, .. } => owner = Some(previous_pid),
            }
        }
        lines.reverse();
        lines
    }

    /// Entries kept (lines and restart marks).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Text bytes of the kept lines.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The ring's size: memory the tail's text takes.
    pub fn ring_size(&self) -> usize {
        self.ring.len()
    }
}

#[cfg(test)]
mod tests;

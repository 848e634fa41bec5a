//! Splitting a byte stream into bounded lines of text.

pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Where a [`LineSplitter`] puts complete lines (raw bytes, without the
/// newline).
pub trait LineSink {
    fn line(&mut self, bytes: &[u8]);

    /// `region` is complete lines, each followed by its newline and none
    /// longer than `MAX_LINE_BYTES`.
    fn lines(&mut self, region: &[u8]) {
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', region) {
            self.line(&region[start..end]);
            start = end + 1;
        }
    }
}

/// Lines as text: a trailing `\r` dropped, invalid UTF-8 replaced (never
/// dropped).
fn line_text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    // from_utf8 first: its ASCII fast path is much quicker than the lossy
    // decoder, and nearly all output is valid.
    match std::str::from_utf8(bytes) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

impl LineSink for Vec<String> {
    fn line(&mut self, bytes: &[u8]) {
        self.push(line_text(bytes).into_owned());
    }
}

/// Lines converted one by one, for what the fast path of [`LineReader`]
/// does not take (a `\r\n`, invalid UTF-8, an overlong line).
#[derive(Default)]
struct LineBuf {
    text: String,
    ends: Vec<u32>,
}

impl LineSink for LineBuf {
    fn line(&mut self, bytes: &[u8]) {
        self.text.push_str(&line_text(bytes));
        self.ends.push(self.text.len() as u32);
        self.text.push('\n');
    }
}

/// The lines of one pipe read, each followed by a newline in one piece
/// of text: a flood of short lines costs no allocation per line, and the
/// text is what a log file gets, in one write.
#[derive(Clone, Copy)]
pub struct LineBatch<'a> {
    text: &'a str,
    /// Where each line ends (its newline) in `text`.
    ends: &'a [u32],
}

impl<'a> LineBatch<'a> {
    /// A batch of `text` (lines each followed by a newline) whose lines
    /// end at `ends`.
    pub(super) fn from_parts(text: &'a str, ends: &'a [u32]) -> Self {
        Self { text, ends }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The lines, without their newlines.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &'a str> + ExactSizeIterator + 'a {
        let (text, ends) = (self.text, self.ends);
        ends.iter().enumerate().map(move |(i, &end)| {
            let start = if i == 0 { 0 } else { ends[i - 1] as usize + 1 };
            &text[start..end as usize]
        })
    }

    /// Every line followed by a newline.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// Where each line ends (its newline) in `text`.
    pub(super) fn ends(&self) -> &'a [u32] {
        self.ends
    }
}

/// Bytes read at most per pipe read: a whole pipe buffer (64 KiB by
/// default).
pub const READ_BYTES: usize = 64 * 1024;

/// Reads a byte stream into lines of at most `MAX_LINE_BYTES`, in one
/// buffer that holds the unterminated rest of the previous read followed
/// by the next read. The common case (valid UTF-8 without `\r\n`, no
/// overlong line) is one scan for newlines and one UTF-8 check per read,
/// and the batch is the buffer itself: no copy, no allocation.
#[derive(Default)]
pub struct LineReader {
    /// Empty while idle (after [`LineReader::idle`]) unless a partial
    /// line is carried; `READ_BYTES + MAX_LINE_BYTES` while reading.
    buf: Vec<u8>,
    /// Bytes at the start of `buf` already delivered as the last batch;
    /// moved out of the way by the next read.
    delivered: usize,
    /// End of the bytes in `buf`: after `delivered`, the carried partial
    /// line, then what was read.
    filled: usize,
    /// Line ends of the current batch.
    ends: Vec<u32>,
    /// The current batch when it needed converting.
    slow: LineBuf,
}

impl LineReader {
    /// Where the next read goes.
    pub fn space(&mut self) -> &mut [u8] {
        self.compact();
        if self.buf.is_empty() {
            self.buf = vec![0; READ_BYTES + MAX_LINE_BYTES];
        } else if self.buf.len() < READ_BYTES + MAX_LINE_BYTES {
            self.buf.resize(READ_BYTES + MAX_LINE_BYTES, 0);
        }
        let end = self.filled + READ_BYTES;
        &mut self.buf[self.filled..end]
    }

    /// Moves the carried partial line to the front.
    fn compact(&mut self) {
        if self.delivered > 0 {
            self.buf.copy_within(self.delivered..self.filled, 0);
            self.filled -= self.delivered;
            self.delivered = 0;
        }
    }

    /// `n` bytes were read into [`LineReader::space`]: the complete lines
    /// so far. An unterminated rest is kept for the next read.
    pub fn filled(&mut self, n: usize) -> LineBatch<'_> {
        let carried = self.filled;
        self.filled += n;
        self.ends.clear();
        let data = &self.buf[..self.filled];
        // The carried bytes hold no newline: scan only the new ones.
        let mut start = 0;
        let mut overlong = false;
        for end in memchr::memchr_iter(b'\n', &data[carried..]) {
            let end = carried + end;
            overlong |= end - start > MAX_LINE_BYTES;
            self.ends.push(end as u32);
            start = end + 1;
        }
        let region = &data[..start];
        let fast = !overlong
            && data.len() - start <= MAX_LINE_BYTES
            && !memchr::memchr_iter(b'\r', region).any(|i| region.get(i + 1) == Some(&b'\n'));
        if fast {
            // SIMD: several times quicker than `str::from_utf8` on a
            // 64 KiB read.
            if let Ok(text) = simdutf8::basic::from_utf8(region) {
                self.delivered = start;
                return LineBatch {
                    text,
                    ends: &self.ends,
                };
            }
        }
        // Every byte through [`LineSplitter`], which converts line by
        // line; what it leaves unterminated is the end of the buffer.
        let mut splitter = LineSplitter::default();
        self.slow.text.clear();
        self.slow.ends.clear();
        splitter.feed(data, &mut self.slow);
        self.delivered = self.filled - splitter.partial.len();
        LineBatch {
            text: &self.slow.text,
            ends: &self.slow.ends,
        }
    }

    /// Between reads, while nothing is available: keeps only the carried
    /// partial line, so an idle pump holds (nearly) nothing.
    pub fn idle(&mut self) {
        self.compact();
        self.buf.truncate(self.filled);
        self.buf.shrink_to_fit();
        self.ends = Vec::new();
        self.slow = LineBuf::default();
    }

    /// Heap bytes the reader holds (buffer, line ends, converted text):
    /// after [`LineReader::idle`], only a carried partial line.
    pub fn held_bytes(&self) -> usize {
        self.buf.capacity()
            + self.ends.capacity() * std::mem::size_of::<u32>()
            + self.slow.text.capacity()
            + self.slow.ends.capacity() * std::mem::size_of::<u32>()
    }

    /// The unterminated rest at end of stream, as a batch of one line (or
    /// of none).
    pub fn finish(&mut self) -> LineBatch<'_> {
        self.compact();
        self.slow.text.clear();
        self.slow.ends.clear();
        if self.filled > 0 {
            self.slow.line(&self.buf[..self.filled]);
            self.filled = 0;
        }
        LineBatch {
            text: &self.slow.text,
            ends: &self.slow.ends,
        }
    }
}

/// The complete lines at the start of `chunk`, up to its last newline or
/// to the first line longer than `MAX_LINE_BYTES`, whichever is first.
fn complete_lines(chunk: &[u8]) -> Option<&[u8]> {
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', chunk) {
        if end - start > MAX_LINE_BYTES {
            break;
        }
        start = end + 1;
    }
    (start > 0).then(|| &chunk[..start])
}

/// Splits a byte stream into lines of at most `MAX_LINE_BYTES`.
#[derive(Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    pub fn feed(&mut self, mut chunk: &[u8], sink: &mut impl LineSink) {
        while !chunk.is_empty() {
            if self.partial.len() >= MAX_LINE_BYTES {
                // A full line is flushed when more data arrives; a newline
                // right at the limit belongs to it rather than starting an
                // empty line.
                if chunk[0] == b'\n' {
                    chunk = &chunk[1..];
                }
                sink.line(&std::mem::take(&mut self.partial));
                continue;
            }
            if self.partial.is_empty() {
                if let Some(region) = complete_lines(chunk) {
                    sink.lines(region);
                    chunk = &chunk[region.len()..];
                    continue;
                }
            }
            let room = MAX_LINE_BYTES - self.partial.len();
            let window = &chunk[..chunk.len().min(room)];
            match memchr::memchr(b'\n', window) {
                Some(i) if self.partial.is_empty() => {
                    sink.line(&window[..i]);
                    chunk = &chunk[i + 1..];
                }
                Some(i) => {
                    self.partial.extend_from_slice(&window[..i]);
                    // Taken, not cleared: an idle pump keeps no buffer.
                    sink.line(&std::mem::take(&mut self.partial));
                    chunk = &chunk[i + 1..];
                }
                None => {
                    self.partial.extend_from_slice(window);
                    chunk = &chunk[window.len()..];
                }
            }
        }
    }

    /// The unterminated rest at end of stream.
    pub fn finish(&mut self) -> Option<String> {
        (!self.partial.is_empty())
            .then(|| line_text(&std::mem::take(&mut self.partial)).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` to a reader as successive reads; every line of
    /// every batch, then the rest at the end, and each batch's text.
    fn read_all(chunks: &[&[u8]]) -> (Vec<String>, Vec<String>) {
        let mut reader = LineReader::default();
        let (mut lines, mut texts) = (Vec::new(), Vec::new());
        for (i, chunk) in chunks.iter().enumerate() {
            let space = reader.space();
            space[..chunk.len()].copy_from_slice(chunk);
            let batch = reader.filled(chunk.len());
            lines.extend(batch.iter().map(str::to_string));
            texts.push(batch.text().to_string());
            if i % 3 == 2 {
                reader.idle();
            }
        }
        lines.extend(reader.finish().iter().map(str::to_string));
        (lines, texts)
    }

    /// What the old splitter makes of the same stream, one `String` per
    /// line: the reference.
    fn split_all(chunks: &[&[u8]]) -> Vec<String> {
        let mut splitter = LineSplitter::default();
        let mut lines = Vec::new();
        for chunk in chunks {
            splitter.feed(chunk, &mut lines);
        }
        lines.extend(splitter.finish());
        lines
    }

    /// The batches a pump delivers hold the same lines as one `String`
    /// per line would: `\r` stripped, invalid UTF-8 replaced, overlong
    /// lines split, partials carried across reads.
    #[test]
    fn a_line_batch_holds_the_same_lines() {
        let long = vec![b'x'; MAX_LINE_BYTES + 10];
        let chunks: Vec<&[u8]> = vec![b"one\r\ntw", b"o\n\xff\xfe bad\n\n", &long, b"\nlast"];
        let (lines, texts) = read_all(&chunks);
        let strings = split_all(&chunks);
        assert_eq!(lines, strings);
        assert_eq!(lines.len(), 7);
        assert_eq!(&strings[..4], ["one", "two", "\u{fffd}\u{fffd} bad", ""]);
        assert_eq!(strings[6], "last");
        let expected: String = strings[..6].iter().map(|l| format!("{l}\n")).collect();
        assert_eq!(texts.concat(), expected);
    }

    /// A stream of short lines, long lines, `\r`, invalid and split
    /// multi-byte UTF-8, cut into reads at every kind of boundary, reads
    /// into the same lines as the reference splitter.
    #[test]
    fn reads_match_the_reference_splitter_at_any_boundary() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..300 {
            let mut stream = Vec::new();
            while stream.len() < 3 * READ_BYTES {
                match next(12) {
                    0 => stream.extend(std::iter::repeat_n(
                        b'a',
                        next(3 * MAX_LINE_BYTES as u64) as usize,
                    )),
                    1 => stream.extend_from_slice(b"\r\n"),
                    2 => stream.extend_from_slice(b"mid\rline"),
                    3 => stream.extend_from_slice(b"\xff"),
                    4 => stream.extend_from_slice("é€".as_bytes()),
                    5 => stream.extend(std::iter::repeat_n(b'y', MAX_LINE_BYTES)),
                    6..=8 => stream.push(b'\n'),
                    _ => stream.extend(std::iter::repeat_n(b'z', next(200) as usize)),
                }
            }
            // Mostly clean ASCII in some rounds, so the fast path is taken.
            if round % 2 == 0 {
                stream.retain(|&b| b != b'\r' && b != 0xff && b.is_ascii());
            }
            let mut chunks = Vec::new();
            let mut rest = &stream[..];
            while !rest.is_empty() {
                let n = (1 + next(READ_BYTES as u64) as usize).min(rest.len());
                let (chunk, tail) = rest.split_at(n);
                chunks.push(chunk);
                rest = tail;
            }
            let (lines, _) = read_all(&chunks);
            assert_eq!(lines, split_all(&chunks), "round {round}");
        }
    }

    #[test]
    fn splits_lines_and_keeps_partials() {
        let mut s = LineSplitter::default();
        let mut lines = Vec::new();
        s.feed(b"one\ntw", &mut lines);
        s.feed(b"o\r\nthree", &mut lines);
        assert_eq!(lines, vec!["one", "two"]);
        assert_eq!(s.finish().as_deref(), Some("three"));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn overlong_lines_are_split_at_the_limit() {
        let mut s = LineSplitter::default();
        let mut lines = Vec::new();
        let long = vec![b'x'; MAX_LINE_BYTES * 2 + 10];
        s.feed(&long, &mut lines);
        s.feed(b"\n", &mut lines);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].len(), MAX_LINE_BYTES);
        assert_eq!(lines[1].len(), MAX_LINE_BYTES);
        assert_eq!(lines[2].len(), 10);
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_one_line() {
        let mut s = LineSplitter::default();
        let mut lines = Vec::new();
        let mut data = vec![b'y'; MAX_LINE_BYTES];
        data.push(b'\n');
        s.feed(&data, &mut lines);
        s.feed(b"next\n", &mut lines);
        assert_eq!(
            lines.len(),
            2,
            "no empty line after a line of exactly the limit"
        );
        assert_eq!(lines[0].len(), MAX_LINE_BYTES);
        assert_eq!(lines[1], "next");
    }

    #[test]
    fn invalid_utf8_is_replaced_not_dropped() {
        let mut s = LineSplitter::default();
        let mut lines = Vec::new();
        s.feed(b"ok \xff\xfe end\n", &mut lines);
        assert_eq!(lines, vec!["ok \u{fffd}\u{fffd} end"]);
    }
}

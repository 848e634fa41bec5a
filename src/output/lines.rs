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

/// The lines of one pipe read in one buffer, each followed by a newline:
/// a flood of short lines costs no allocation per line, and the buffer is
/// what a log file gets, in one write.
#[derive(Default)]
pub struct LineBatch {
    text: String,
    /// Where each line ends (its newline) in `text`.
    ends: Vec<usize>,
}

impl LineSink for LineBatch {
    fn line(&mut self, bytes: &[u8]) {
        self.text.push_str(&line_text(bytes));
        self.ends.push(self.text.len());
        self.text.push('\n');
    }

    /// The common case, valid UTF-8 without `\r`, is one validation and
    /// one copy for the whole region (a flood's 64 KiB read is ~650 lines).
    fn lines(&mut self, region: &[u8]) {
        if memchr::memchr(b'\r', region).is_none() {
            if let Ok(text) = std::str::from_utf8(region) {
                let base = self.text.len();
                self.text.push_str(text);
                self.ends
                    .extend(memchr::memchr_iter(b'\n', region).map(|end| base + end));
                return;
            }
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', region) {
            self.line(&region[start..end]);
            start = end + 1;
        }
    }
}

impl LineBatch {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The lines, without their newlines.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &str> + ExactSizeIterator + '_ {
        self.ends.iter().enumerate().map(|(i, &end)| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] + 1 };
            &self.text[start..end]
        })
    }

    /// Every line followed by a newline.
    pub fn text(&self) -> &str {
        &self.text
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

    /// The batch a pump delivers holds the same lines as one `String`
    /// per line would: `\r` stripped, invalid UTF-8 replaced, overlong
    /// lines split, partials carried across reads.
    #[test]
    fn a_line_batch_holds_the_same_lines() {
        let long = vec![b'x'; MAX_LINE_BYTES + 10];
        let chunks: Vec<&[u8]> = vec![b"one\r\ntw", b"o\n\xff\xfe bad\n\n", &long, b"\nlast"];
        let (mut a, mut b) = (LineSplitter::default(), LineSplitter::default());
        let mut strings = Vec::new();
        let mut batch = LineBatch::default();
        for chunk in &chunks {
            a.feed(chunk, &mut strings);
            b.feed(chunk, &mut batch);
        }
        assert_eq!(batch.iter().collect::<Vec<_>>(), strings);
        assert_eq!(batch.len(), 6);
        assert_eq!(&strings[..4], ["one", "two", "\u{fffd}\u{fffd} bad", ""]);
        let expected: String = strings.iter().map(|l| format!("{l}\n")).collect();
        assert_eq!(batch.text(), expected);
        assert_eq!(a.finish().as_deref(), Some("last"));
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

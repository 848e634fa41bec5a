//! Program output: pipes → lines → relay to kelpie's stdout, a bounded
//! in-memory tail per program, and rotated log files.
//!
//! Memory stays bounded everywhere: a pump holds at most one partial line
//! (≤ 16 KiB) between reads, the tail keeps ≤ 1000 lines / 256 KiB per
//! program, and the relay queue is a bounded channel. When kelpie's stdout
//! is slow the queue fills, pumps wait on it, stop reading their pipes, and
//! the kernel blocks the writing child: back-pressure, not loss.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::unix::pipe;
use tokio::sync::{broadcast, mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::config::{LogMode, ProgramConfig};
use crate::logging::RelayFormat;
use crate::output_stream::Stream;

pub const MAX_LINE_BYTES: usize = 16 * 1024;
pub const TAIL_LINES: usize = 1000;
pub const TAIL_BYTES: usize = 256 * 1024;
const RELAY_QUEUE: usize = 1024;
/// Bytes of formatted records waiting for the writer, at most. Bounds the
/// queue in memory as well as in count (JSON escaping can make a 16 KiB
/// line several times larger).
const RELAY_BUDGET_BYTES: usize = 1024 * 1024;
/// Lines a `logs -f` follower may fall behind before it skips some. A slow
/// follower is told how many it missed; it never slows the program down.
const FOLLOW_BUFFER: usize = 1024;

type Record = (String, OwnedSemaphorePermit);

/// The single writer of relayed lines to kelpie's stdout. A dedicated thread
/// does the (blocking) writes so a stalled terminal never blocks the
/// runtime's workers.
#[derive(Clone)]
pub struct Relay {
    queue: mpsc::Sender<Record>,
    budget: Arc<Semaphore>,
    format: RelayFormat,
}

pub struct RelayHandle {
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    pub fn start(format: RelayFormat) -> io::Result<(Relay, RelayHandle)> {
        let (queue, mut rx) = mpsc::channel::<Record>(RELAY_QUEUE);
        let thread = std::thread::Builder::new()
            .name("kelpie-relay".into())
            .spawn(move || {
                let stdout = io::stdout();
                while let Some((first, permit)) = rx.blocking_recv() {
                    let mut out = stdout.lock();
                    // Write errors (a closed stdout) must not stop draining,
                    // or every child would block on its pipe.
                    let _ = out.write_all(first.as_bytes());
                    drop(permit);
                    while let Ok((next, permit)) = rx.try_recv() {
                        let _ = out.write_all(next.as_bytes());
                        drop(permit);
                    }
                    let _ = out.flush();
                }
            })?;
        Ok((
            Relay {
                queue,
                budget: Arc::new(Semaphore::new(RELAY_BUDGET_BYTES)),
                format,
            },
            RelayHandle {
                thread: Some(thread),
            },
        ))
    }
}

impl RelayHandle {
    /// Waits until every queued line is written. Call after all senders
    /// are gone.
    pub fn finish(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

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

/// A log file rotated by size: `web.log` → `web.log.1` → … → `web.log.N`.
pub struct RotatingFile {
    path: PathBuf,
    max_size: u64,
    keep: u32,
    file: Option<File>,
    size: u64,
}

impl RotatingFile {
    pub fn new(path: PathBuf, max_size: u64, keep: u32) -> Self {
        Self {
            path,
            max_size,
            keep,
            file: None,
            size: 0,
        }
    }

    fn open(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir)?;
                }
            }
            // A program may own the directory of its log file: a symlink it
            // planted there must not make kelpie (often root) write into
            // another file.
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&self.path)?;
            self.size = file.metadata()?.len();
            self.file = Some(file);
        }
        match self.file.as_mut() {
            Some(file) => Ok(file),
            None => Err(io::Error::other("log file not open")),
        }
    }

    fn numbered(&self, n: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        if self.keep == 0 {
            std::fs::remove_file(&self.path).or_else(ignore_missing)?;
        } else {
            std::fs::remove_file(self.numbered(self.keep)).or_else(ignore_missing)?;
            for n in (1..self.keep).rev() {
                std::fs::rename(self.numbered(n), self.numbered(n + 1)).or_else(ignore_missing)?;
            }
            std::fs::rename(&self.path, self.numbered(1)).or_else(ignore_missing)?;
        }
        self.size = 0;
        Ok(())
    }

    pub fn write_line(&mut self, line: &str) -> io::Result<()> {
        self.write_lines(std::slice::from_ref(&line))
    }

    /// Appends each line and a newline, in as few writes as rotation
    /// allows: a pipe read of 64 KiB of short lines becomes one `write`, not
    /// hundreds (a flood of 100-byte lines went at 56 MB/s line by line).
    pub fn write_lines<S: AsRef<str>>(&mut self, lines: &[S]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(lines.iter().map(|l| l.as_ref().len() + 1).sum());
        self.open()?;
        let mut size = self.size;
        for line in lines {
            let line = line.as_ref();
            let len = line.len() as u64 + 1;
            if size > 0 && size + len > self.max_size {
                self.append(&buf)?;
                buf.clear();
                if let Err(err) = self.rotate() {
                    // Losing output is worse than an oversized file: keep
                    // appending and try to rotate again at the next line.
                    tracing::warn!(
                        event = "log_rotate_failed",
                        file = %self.path.display(),
                        error = %err,
                        "cannot rotate log file; appending past max_size"
                    );
                }
                self.open()?;
                size = self.size;
            }
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
            size += len;
        }
        self.append(&buf)
    }

    /// A batch that fits below `max_size` is one write; one that crosses
    /// it is written line by line around the rotation.
    pub fn write_batch(&mut self, lines: &LineBatch) -> io::Result<()> {
        self.open()?;
        if self.size + lines.text().len() as u64 <= self.max_size {
            return self.append(lines.text().as_bytes());
        }
        let lines: Vec<&str> = lines.iter().collect();
        self.write_lines(&lines)
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.open()?.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }
}

fn ignore_missing(err: io::Error) -> io::Result<()> {
    if err.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(err)
    }
}

enum Destination {
    Relay(Relay),
    File(Mutex<RotatingFile>),
    Discard,
}

/// Called once when an instance prints a line matching the log probe.
pub type OnMatch = Box<dyn FnOnce() + Send>;

/// Which process wrote a line: the instance index (shown to users) and the
/// actor incarnation (unique, so a rolling restart's replacement and the
/// instance it replaces never share a log-probe watcher).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub index: u32,
    pub incarnation: u64,
}

/// Where one program's output goes; shared by its instances.
pub struct ProgramOutput {
    program: String,
    destination: Destination,
    tail: Mutex<Tail>,
    /// The `readiness.log` pattern, and per instance what to do on the
    /// first match of the current run.
    pattern: Option<regex_lite::Regex>,
    watchers: Mutex<std::collections::HashMap<u64, OnMatch>>,
    /// `kelpie logs -f` subscribers; created on the first one.
    followers: Mutex<Option<broadcast::Sender<Arc<TailLine>>>>,
    /// `kelpie_log_lines_total` for stdout and stderr.
    line_counters: [crate::metrics::LogLineCounter; 2],
}

impl ProgramOutput {
    pub fn new(program: &ProgramConfig, relay: &Relay, metrics: &crate::metrics::Metrics) -> Self {
        let destination = match &program.log {
            LogMode::Inherit => Destination::Relay(relay.clone()),
            LogMode::File {
                path,
                max_size,
                keep,
            } => Destination::File(Mutex::new(RotatingFile::new(
                path.clone(),
                *max_size,
                *keep,
            ))),
            LogMode::Discard => Destination::Discard,
        };
        let pattern = match program.readiness.as_ref().map(|p| &p.kind) {
            Some(crate::config::ProbeKind::Log(pattern)) => regex_lite::Regex::new(pattern).ok(),
            _ => None,
        };
        Self {
            program: program.name.clone(),
            destination,
            tail: Mutex::new(Tail::default()),
            pattern,
            watchers: Mutex::new(std::collections::HashMap::new()),
            followers: Mutex::new(None),
            line_counters: [
                metrics.log_line_counter(&program.name, Stream::Stdout),
                metrics.log_line_counter(&program.name, Stream::Stderr),
            ],
        }
    }

    /// Arms the log probe for one actor incarnation: `on_match` runs on the
    /// first matching line (replacing a watcher of an earlier run).
    pub fn watch_for_match(&self, incarnation: u64, on_match: OnMatch) {
        if self.pattern.is_some() {
            self.watchers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(incarnation, on_match);
        }
    }

    /// Drops the log-probe watcher of an incarnation that ended.
    pub fn forget(&self, incarnation: u64) {
        if self.pattern.is_some() {
            self.watchers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&incarnation);
        }
    }

    fn check_pattern(&self, incarnation: u64, line: &str) {
        let Some(pattern) = &self.pattern else { return };
        let mut watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        if watchers.contains_key(&incarnation) && pattern.is_match(line) {
            if let Some(on_match) = watchers.remove(&incarnation) {
                drop(watchers);
                on_match();
            }
        }
    }

    /// Whether the instance's stdout/stderr need pipes at all.
    pub fn wants_pipes(&self) -> bool {
        !matches!(self.destination, Destination::Discard)
    }

    /// Takes over the recent lines of the output this one replaces (a
    /// program rebuilt by a reload), so `kelpie logs` still shows what led
    /// up to the change.
    pub fn adopt_tail(&self, previous: &ProgramOutput) {
        let lines = std::mem::take(&mut *previous.tail());
        *self.tail() = lines;
    }

    pub fn tail(&self) -> MutexGuard<'_, Tail> {
        self.tail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last `lines` lines of the tail and a subscription to every line
    /// after them, taken under the tail lock so none is lost or repeated.
    pub fn follow(&self, lines: usize) -> (Vec<TailLine>, broadcast::Receiver<Arc<TailLine>>) {
        let tail = self.tail();
        let mut followers = self.followers.lock().unwrap_or_else(|p| p.into_inner());
        let receiver = followers
            .get_or_insert_with(|| broadcast::channel(FOLLOW_BUFFER).0)
            .subscribe();
        (tail.last(lines), receiver)
    }

    /// Delivers the lines of one pipe read together: one lock of the tail,
    /// one write to the log file, one relay record.
    async fn deliver(&self, source: Source, stream: Stream, lines: LineBatch) {
        if lines.is_empty() {
            return;
        }
        let instance = source.index;
        self.line_counters[stream as usize].inc_by(lines.len() as u64);
        if self.pattern.is_some() {
            for line in lines.iter() {
                self.check_pattern(source.incarnation, line);
            }
        }
        match &self.destination {
            Destination::Relay(relay) => {
                let mut record = String::new();
                for line in lines.iter() {
                    format_relay_into(
                        &mut record,
                        relay.format,
                        &self.program,
                        instance,
                        stream,
                        line,
                    );
                }
                // Waiting here is the back-pressure: the pump stops reading
                // until the writer catches up.
                let cost = record.len().clamp(1, RELAY_BUDGET_BYTES) as u32;
                if let Ok(permit) = relay.budget.clone().acquire_many_owned(cost).await {
                    let _ = relay.queue.send((record, permit)).await;
                }
            }
            Destination::File(file) => {
                let result = file
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .write_batch(&lines);
                if let Err(err) = result {
                    tracing::warn!(
                        event = "log_write_failed",
                        program = %self.program,
                        error = %err,
                        "cannot write program output to its log file"
                    );
                }
            }
            Destination::Discard => {}
        }
        let mut tail = self.tail();
        let followers = self.followers.lock().unwrap_or_else(|p| p.into_inner());
        let sender = followers.as_ref().filter(|s| s.receiver_count() > 0);
        // Lines the tail would evict at once are only counted, not kept.
        let keep_from = if sender.is_some() {
            0
        } else {
            lines.len().saturating_sub(TAIL_LINES)
        };
        for line in lines.iter().skip(keep_from) {
            let line = TailLine {
                instance,
                stream,
                line: line.to_string(),
            };
            if let Some(sender) = sender {
                let _ = sender.send(Arc::new(line.clone()));
            }
            tail.push(line);
        }
    }
}

pub fn format_relay(
    format: RelayFormat,
    program: &str,
    instance: u32,
    stream: Stream,
    line: &str,
) -> String {
    let mut record = String::new();
    format_relay_into(&mut record, format, program, instance, stream, line);
    record
}

/// One relayed line as kelpie prints it, appended to `out`.
fn format_relay_into(
    out: &mut String,
    format: RelayFormat,
    program: &str,
    instance: u32,
    stream: Stream,
    line: &str,
) {
    use std::fmt::Write as _;
    match format {
        RelayFormat::Text => {
            let _ = writeln!(out, "{program}:{instance} | {line}");
        }
        RelayFormat::Json => {
            #[derive(serde::Serialize)]
            struct OutputRecord<'a> {
                timestamp: String,
                level: &'static str,
                event: &'static str,
                program: &'a str,
                instance: u32,
                stream: &'static str,
                line: &'a str,
            }
            let record = OutputRecord {
                timestamp: humantime::format_rfc3339_micros(std::time::SystemTime::now())
                    .to_string(),
                level: "INFO",
                event: "program_output",
                program,
                instance,
                stream: stream.as_str(),
                line,
            };
            if let Ok(text) = serde_json::to_string(&record) {
                out.push_str(&text);
                out.push('\n');
            }
        }
    }
}
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

/// Counts running pumps so that shutdown can wait, bounded, for the last
/// lines stopped programs wrote.
#[derive(Clone)]
pub struct PumpTracker {
    active: Arc<watch::Sender<usize>>,
}

struct PumpGuard(PumpTracker);

impl Drop for PumpGuard {
    fn drop(&mut self) {
        self.0.active.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Default for PumpTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl PumpTracker {
    pub fn new() -> Self {
        let (active, _) = watch::channel(0);
        Self {
            active: Arc::new(active),
        }
    }

    /// Spawns a pump task that is counted until it ends.
    pub fn spawn(
        &self,
        reader: pipe::Receiver,
        output: Arc<ProgramOutput>,
        source: Source,
        stream: Stream,
    ) {
        self.active.send_modify(|n| *n += 1);
        let guard = PumpGuard(self.clone());
        tokio::spawn(async move {
            pump(reader, output, source, stream).await;
            drop(guard);
        });
    }

    pub async fn wait_idle(&self, limit: std::time::Duration) {
        let mut rx = self.active.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|n| *n == 0)).await;
    }
}

/// Reads one pipe until EOF, delivering each line. Runs as its own task: it
/// outlives the instance if a grandchild keeps the pipe open, and ends when
/// the last writer closes it.
async fn pump(reader: pipe::Receiver, output: Arc<ProgramOutput>, source: Source, stream: Stream) {
    let mut splitter = LineSplitter::default();
    loop {
        let mut lines = LineBatch::default();
        if reader.readable().await.is_err() {
            break;
        }
        // The read buffer lives only between awaits, so an idle pump holds
        // no buffer at all (1000 idle programs would otherwise pin 32 MiB).
        let eof = {
            // A whole pipe buffer (64 KiB by default) per read.
            let mut chunk = vec![0u8; 64 * 1024];
            match reader.try_read(&mut chunk) {
                Ok(0) => true,
                Ok(n) => {
                    splitter.feed(&chunk[..n], &mut lines);
                    false
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => true,
            }
        };
        output.deliver(source, stream, lines).await;
        if eof {
            break;
        }
    }
    if let Some(rest) = splitter.finish() {
        let mut lines = LineBatch::default();
        lines.line(rest.as_bytes());
        output.deliver(source, stream, lines).await;
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

    #[test]
    fn json_relay_records_carry_program_instance_stream_line() {
        let text = format_relay(
            RelayFormat::Json,
            "web",
            2,
            Stream::Stderr,
            "he said \"hi\"",
        );
        let value: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(value["program"], "web");
        assert_eq!(value["instance"], 2);
        assert_eq!(value["stream"], "stderr");
        assert_eq!(value["line"], "he said \"hi\"");
        assert_eq!(
            format_relay(RelayFormat::Text, "web", 0, Stream::Stdout, "hello"),
            "web:0 | hello\n"
        );
    }

    #[test]
    fn rotating_file_keeps_n_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut file = RotatingFile::new(path.clone(), 100, 2);
        for i in 0..40 {
            file.write_line(&format!("line number {i:04}")).unwrap();
        }
        let current = std::fs::read_to_string(&path).unwrap();
        let one = std::fs::read_to_string(dir.path().join("app.log.1")).unwrap();
        let two = std::fs::read_to_string(dir.path().join("app.log.2")).unwrap();
        assert!(!dir.path().join("app.log.3").exists());
        for content in [&current, &one, &two] {
            assert!(content.len() <= 100, "{} bytes", content.len());
        }
        assert!(current.ends_with("line number 0039\n"));
        // Newest rotated file holds the lines just before the current ones.
        let last_of_one = one.lines().last().unwrap();
        let first_of_current = current.lines().next().unwrap();
        let n1: u32 = last_of_one[12..].parse().unwrap();
        let n2: u32 = first_of_current[12..].parse().unwrap();
        assert_eq!(n1 + 1, n2);
    }

    /// A batch that crosses `max_size` is split at the line that would
    /// overflow: the same files as line-by-line writes, no line torn.
    #[test]
    fn a_batch_rotates_where_single_lines_would() {
        let dir = tempfile::tempdir().unwrap();
        let lines: Vec<String> = (0..40).map(|i| format!("line number {i:04}")).collect();
        let batched = dir.path().join("batched.log");
        let mut file = RotatingFile::new(batched.clone(), 100, 2);
        file.write_lines(&lines[..7]).unwrap();
        file.write_lines(&lines[7..]).unwrap();
        let single = dir.path().join("single.log");
        let mut one_by_one = RotatingFile::new(single.clone(), 100, 2);
        for line in &lines {
            one_by_one.write_line(line).unwrap();
        }
        for suffix in ["", ".1", ".2"] {
            let read = |base: &std::path::Path| {
                let mut name = base.as_os_str().to_owned();
                name.push(suffix);
                std::fs::read_to_string(name).unwrap()
            };
            let (b, s) = (read(&batched), read(&single));
            assert_eq!(b, s, "file{suffix}");
            assert!(b.len() <= 100 && b.ends_with('\n'), "{b:?}");
        }
        assert!(std::fs::read_to_string(&batched)
            .unwrap()
            .ends_with("line number 0039\n"));
    }
}

#[cfg(test)]
mod log_file_tests {
    use super::*;

    /// A program that owns its log directory plants a symlink at the log
    /// path: kelpie must not write through it into another file.
    #[test]
    fn a_symlink_at_the_log_path_is_not_followed() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep me\n").unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("app.log");
        std::os::unix::fs::symlink(&target, &log).unwrap_or_else(|e| panic!("{e}"));
        let mut file = RotatingFile::new(log, 1 << 20, 2);
        assert!(file.write_line("injected").is_err());
        assert_eq!(
            std::fs::read_to_string(&target).unwrap_or_default(),
            "keep me\n"
        );
    }
}

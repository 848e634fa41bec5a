//! The relay: one writer thread that prints program output on kelpie's
//! stdout, fed by a bounded queue, and the text/JSON line formats.

use std::io::{self, Write};
use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::lines::LineBatch;
use crate::logging::RelayFormat;
use crate::output_stream::Stream;

const RELAY_QUEUE: usize = 1024;
/// Bytes of formatted records waiting for the writer, at most. Bounds the
/// queue in memory as well as in count (JSON escaping can make a 16 KiB
/// line several times larger).
pub(super) const RELAY_BUDGET_BYTES: usize = 1024 * 1024;

pub(super) type Record = (Vec<u8>, OwnedSemaphorePermit);

/// The single writer of relayed lines to kelpie's stdout. A dedicated thread
/// does the (blocking) writes so a stalled terminal never blocks the
/// runtime's workers.
#[derive(Clone)]
pub struct Relay {
    pub(super) queue: mpsc::Sender<Record>,
    pub(super) budget: Arc<Semaphore>,
    pub(super) format: RelayFormat,
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
                    let _ = out.write_all(&first);
                    drop(permit);
                    while let Ok((next, permit)) = rx.try_recv() {
                        let _ = out.write_all(&next);
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

pub fn format_relay(
    format: RelayFormat,
    program: &str,
    instance: u32,
    stream: Stream,
    line: &str,
) -> String {
    let mut text = String::new();
    text.push_str(line);
    let ends = [line.len() as u32];
    text.push('\n');
    let mut record = Vec::new();
    format_relay_into(
        &mut record,
        format,
        program,
        instance,
        stream,
        LineBatch::from_parts(&text, &ends),
        std::time::SystemTime::now(),
    );
    String::from_utf8_lossy(&record).into_owned()
}

/// The lines of one pipe read as kelpie prints them, appended to `out`:
/// the `program:instance | ` prefix or the JSON fields other than the
/// line are made once per read, and nothing is allocated per line. `time`
/// is when kelpie read them.
pub(super) fn format_relay_into(
    out: &mut Vec<u8>,
    format: RelayFormat,
    program: &str,
    instance: u32,
    stream: Stream,
    lines: LineBatch<'_>,
    time: std::time::SystemTime,
) {
    match format {
        RelayFormat::Text => {
            let prefix = format!("{program}:{instance} | ");
            out.reserve(lines.text().len() + lines.len() * prefix.len());
            for line in lines.iter() {
                out.extend_from_slice(prefix.as_bytes());
                out.extend_from_slice(line.as_bytes());
                out.push(b'\n');
            }
        }
        RelayFormat::Json => {
            #[derive(serde::Serialize)]
            struct OutputRecord<'a> {
                timestamp: &'a str,
                level: &'static str,
                event: &'static str,
                program: &'a str,
                instance: u32,
                stream: &'static str,
                line: &'a str,
            }
            let timestamp = humantime::format_rfc3339_micros(time).to_string();
            for line in lines.iter() {
                let record = OutputRecord {
                    timestamp: &timestamp,
                    level: "INFO",
                    event: "program_output",
                    program,
                    instance,
                    stream: stream.as_str(),
                    line,
                };
                let mark = out.len();
                if serde_json::to_writer(&mut *out, &record).is_ok() {
                    out.push(b'\n');
                } else {
                    out.truncate(mark);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// The lines of one read become one record per line, in order, each
    /// whole (a `"` or `\\` in a line escaped in JSON).
    #[test]
    fn a_batch_is_one_record_per_line() {
        let text = "first\nsecond \"q\" \\\n\n";
        let ends = [5, 18, 19];
        let batch = LineBatch::from_parts(text, &ends);
        let time = std::time::SystemTime::UNIX_EPOCH;
        let mut out = Vec::new();
        format_relay_into(
            &mut out,
            RelayFormat::Text,
            "db",
            1,
            Stream::Stdout,
            batch,
            time,
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "db:1 | first\ndb:1 | second \"q\" \\\ndb:1 | \n"
        );
        let mut out = Vec::new();
        format_relay_into(
            &mut out,
            RelayFormat::Json,
            "db",
            1,
            Stream::Stderr,
            batch,
            time,
        );
        let records: Vec<serde_json::Value> = String::from_utf8_lossy(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let lines: Vec<&str> = records
            .iter()
            .map(|r| r["line"].as_str().unwrap())
            .collect();
        assert_eq!(lines, ["first", "second \"q\" \\", ""]);
        assert!(records
            .iter()
            .all(|r| r["timestamp"] == "1970-01-01T00:00:00.000000Z"
                && r["stream"] == "stderr"
                && r["instance"] == 1));
    }
}

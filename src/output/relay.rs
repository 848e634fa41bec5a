//! The relay: one writer thread that prints program output on kelpie's
//! stdout, fed by a bounded queue, and the text/JSON line formats.

use std::io::{self, Write};
use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::logging::RelayFormat;
use crate::output_stream::Stream;

const RELAY_QUEUE: usize = 1024;
/// Bytes of formatted records waiting for the writer, at most. Bounds the
/// queue in memory as well as in count (JSON escaping can make a 16 KiB
/// line several times larger).
pub(super) const RELAY_BUDGET_BYTES: usize = 1024 * 1024;

pub(super) type Record = (String, OwnedSemaphorePermit);

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
pub(super) fn format_relay_into(
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
}

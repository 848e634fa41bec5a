//! The pipe readers (pumps) that feed a program's output, and the tracker
//! shutdown waits on for their last lines.

use std::io;
use std::sync::Arc;

use tokio::net::unix::pipe;
use tokio::sync::watch;

use super::lines::LineReader;
use super::{ProgramOutput, Source};
use crate::output_stream::Stream;

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

    /// Spawns a pump task that is counted until it ends. Called as the
    /// process starts, before it can have written anything, so a restart
    /// mark lands ahead of the new process's first line.
    pub fn spawn(
        &self,
        reader: pipe::Receiver,
        output: Arc<ProgramOutput>,
        source: Source,
        stream: Stream,
    ) {
        output.pipe_opened(source);
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
    let mut lines = LineReader::default();
    while read_burst(&reader, &mut lines, &output, source, stream).await {}
    output.deliver(source, stream, lines.finish()).await;
    output.pipe_closed(source);
}

/// Waits until the pipe has something, then reads it until it is empty,
/// delivering each read. `false` once the pipe has ended (or failed).
///
/// The wait comes before the read buffer is taken, and the buffer is given
/// back (all but a carried partial line) before the next wait: an idle
/// pump holds no buffer, so 1000 quiet programs do not pin 80 KiB each.
/// While data keeps coming the reads go into the same buffer one after
/// the other, back to the reactor only once the pipe is drained.
async fn read_burst(
    reader: &pipe::Receiver,
    lines: &mut LineReader,
    output: &ProgramOutput,
    source: Source,
    stream: Stream,
) -> bool {
    if reader.readable().await.is_err() {
        return false;
    }
    loop {
        match reader.try_read(lines.space()) {
            Ok(0) => return false,
            Ok(n) => {
                let batch = lines.filled(n);
                output.deliver(source, stream, batch).await;
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                lines.idle();
                return true;
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {

    use tokio::io::AsyncWriteExt;

    use super::*;

    use crate::output::{LineKind, Relay};

    fn discarding_output() -> ProgramOutput {
        let toml = "[program.web]\ncommand = [\"sleep\", \"1000\"]\nlog = { mode = \"discard\" }\n";
        let config = crate::config::valid_for_test(toml);
        let config = config.programs[0].clone();
        let metrics = crate::metrics::Metrics::new().expect("metrics");
        let (relay, _) = Relay::start(crate::logging::RelayFormat::Text).expect("relay");
        ProgramOutput::new(&config, &relay, &metrics)
    }

    fn tail_lines(output: &ProgramOutput) -> Vec<String> {
        output
            .tail()
            .last_of(usize::MAX, None)
            .into_iter()
            .filter_map(|l| match l.kind {
                LineKind::Output { line, .. } => Some(line),
                _ => None,
            })
            .collect()
    }

    /// After each burst of reads the pump goes back to waiting on the pipe
    /// holding no read buffer, only a carried partial line; the lines all
    /// arrive, the partial one at the end of the stream.
    #[tokio::test]
    async fn a_pump_waits_holding_no_buffer() {
        let output = discarding_output();
        let source = Source {
            index: 0,
            incarnation: 1,
            pid: 1,
        };
        let (mut writer, reader) = pipe::pipe().expect("pipe");
        let mut lines = LineReader::default();
        let burst: Vec<u8> = (0..3000)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        writer.write_all(&burst).await.expect("write");
        assert!(read_burst(&reader, &mut lines, &output, source, Stream::Stdout).await);
        assert_eq!(
            lines.held_bytes(),
            0,
            "held while waiting after whole lines"
        );
        assert_eq!(
            tail_lines(&output).len(),
            1000,
            "the tail keeps the last 1000"
        );

        writer.write_all(b"one\ntw").await.expect("write");
        assert!(read_burst(&reader, &mut lines, &output, source, Stream::Stdout).await);
        assert!(
            lines.held_bytes() < 64,
            "{} bytes held while waiting with a 2-byte partial line",
            lines.held_bytes()
        );

        writer.write_all(b"o\nthree").await.expect("write");
        drop(writer);
        while read_burst(&reader, &mut lines, &output, source, Stream::Stdout).await {}
        output.deliver(source, Stream::Stdout, lines.finish()).await;
        let tail = tail_lines(&output);
        assert_eq!(tail[tail.len() - 4..], ["line 2999", "one", "two", "three"]);
    }
}

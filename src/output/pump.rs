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
    loop {
        // The read buffer is kept only while there is more to read, so an
        // idle pump holds no buffer (1000 idle programs would otherwise
        // pin 80 MiB).
        match reader.try_read(lines.space()) {
            Ok(0) => break,
            Ok(n) => {
                let batch = lines.filled(n);
                output.deliver(source, stream, batch).await;
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                lines.idle();
                if reader.readable().await.is_err() {
                    break;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    output.deliver(source, stream, lines.finish()).await;
    output.pipe_closed(source);
}

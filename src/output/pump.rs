//! The pipe readers (pumps) that feed a program's output, and the tracker
//! shutdown waits on for their last lines.

use std::io;
use std::sync::Arc;

use tokio::net::unix::pipe;
use tokio::sync::watch;

use super::lines::{LineBatch, LineSink, LineSplitter};
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
    output.pipe_closed(source);
}

//! Which of a program's two output pipes a line came from. Shared by the
//! output pumps, which read the pipes, and the metrics, which count lines
//! per pipe; neither owns the other.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

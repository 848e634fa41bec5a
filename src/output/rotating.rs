//! Log files rotated by size, written without following symlinks.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use super::lines::LineBatch;

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

#[cfg(test)]
mod tests {
    use super::*;

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

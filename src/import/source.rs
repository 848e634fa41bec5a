//! Reading an input file: a size cap (a setup file is a few KiB; a huge
//! one is a mistake, not a config), UTF-8 with its path in the error, and
//! line numbers of byte offsets for messages.

use std::path::Path;

use super::{Context, ImportError, Origin, EXIT_NOINPUT};
use crate::os_lookup::io_reason;

/// Input files larger than this are refused before parsing.
pub const MAX_INPUT_BYTES: u64 = 4 * 1024 * 1024;

/// The UTF-8 encoding of U+FEFF, the byte order mark.
pub const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

/// The file's bytes (launchd's binary plists are not text). A relative
/// `path` is read from `cx.cwd`; messages name it as given.
///
/// Only a regular file is read: the file is opened without blocking and
/// checked on the open descriptor, so a FIFO (or a device) named by
/// mistake is refused at once instead of waiting for a writer forever,
/// and a file swapped between a check and the open cannot slip past.
pub fn read_bytes(path: &Path, cx: &Context) -> Result<Vec<u8>, ImportError> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;

    let actual = cx.cwd.join(path);
    let unreadable = |message: String| ImportError {
        origin: Origin::new(path, 0),
        message,
        code: EXIT_NOINPUT,
    };
    let cannot_read = |e: std::io::Error| unreadable(format!("cannot read: {}", io_reason(&e)));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&actual)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EISDIR) => unreadable("is a directory, not a file".into()),
            _ => cannot_read(e),
        })?;
    let meta = file.metadata().map_err(cannot_read)?;
    if meta.is_dir() {
        return Err(unreadable("is a directory, not a file".into()));
    }
    if !meta.is_file() {
        return Err(unreadable(
            "is not a regular file (a FIFO, socket or device); kelpie import reads a file, so save the setup to one first".into(),
        ));
    }
    let too_large = |len: u64| {
        ImportError::data(
            Origin::new(path, 0),
            format!(
                "file is {len} bytes, larger than the {MAX_INPUT_BYTES} bytes kelpie import reads"
            ),
        )
    };
    if meta.len() > MAX_INPUT_BYTES {
        return Err(too_large(meta.len()));
    }
    // The size can change after the check (a log being written): the cap
    // holds for what is actually read.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot_read)?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// The file as UTF-8 text; invalid UTF-8 is reported at its line.
pub fn read_text(path: &Path, cx: &Context) -> Result<String, ImportError> {
    let mut bytes = read_bytes(path, cx)?;
    // Editors on Windows start UTF-8 files with a byte order mark; no
    // format here gives it a meaning, and left in it would be part of the
    // first key or name. It has no newline, so lines stay as counted.
    if bytes.starts_with(UTF8_BOM) {
        bytes.drain(..UTF8_BOM.len());
    }
    String::from_utf8(bytes).map_err(|err| {
        let offset = err.utf8_error().valid_up_to();
        let line = line_of(err.as_bytes(), offset);
        ImportError::data(Origin::new(path, line), "not valid UTF-8 text")
    })
}

/// `path` against `base`, without `.` components (`dir/./app` reads as
/// `dir/app` in the config; `..` stays, as a symlink may sit before it).
pub fn resolve(base: &Path, path: impl AsRef<Path>) -> std::path::PathBuf {
    base.join(path)
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

/// The 1-based line of byte `offset` in `text`.
pub fn line_of(text: &[u8], offset: usize) -> usize {
    let end = offset.min(text.len());
    1 + memchr::memchr_iter(b'\n', &text[..end]).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_paths_drop_dot_components() {
        let cases = [
            ("/app", "./logs/a.log", "/app/logs/a.log"),
            ("/app", "sub/./x", "/app/sub/x"),
            ("/app", "/var/log", "/var/log"),
            ("/app/./b", "../c", "/app/b/../c"),
            ("/app", ".", "/app"),
        ];
        for (base, path, want) in cases {
            assert_eq!(resolve(Path::new(base), path), Path::new(want), "{path}");
        }
    }

    #[test]
    fn line_numbers_count_newlines_before_the_offset() {
        let text = b"a\nbb\nccc";
        assert_eq!(line_of(text, 0), 1);
        assert_eq!(line_of(text, 2), 2);
        assert_eq!(line_of(text, 5), 3);
        assert_eq!(line_of(text, 100), 3);
    }

    #[test]
    fn bad_files_are_one_line_errors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let cx = Context {
            env: Default::default(),
            cwd: dir.path().to_path_buf(),
        };
        let missing = dir.path().join("nope.conf");
        let err = read_text(&missing, &cx)
            .err()
            .unwrap_or_else(|| panic!("read a missing file"));
        assert_eq!(err.code, EXIT_NOINPUT);
        assert!(
            err.to_string()
                .to_lowercase()
                .ends_with("nope.conf: cannot read: no such file or directory"),
            "{err}"
        );

        let bad = dir.path().join("bad.conf");
        std::fs::write(&bad, b"ok\nstill ok\n\xff\xfe\n").unwrap_or_else(|e| panic!("write: {e}"));
        let err = read_text(&bad, &cx)
            .err()
            .unwrap_or_else(|| panic!("read invalid UTF-8"));
        assert_eq!(err.code, super::super::EXIT_DATAERR);
        assert!(
            err.to_string()
                .ends_with("bad.conf:3: not valid UTF-8 text"),
            "{err}"
        );

        let err = read_text(dir.path(), &cx)
            .err()
            .unwrap_or_else(|| panic!("read a directory"));
        assert!(
            err.to_string().ends_with(": is a directory, not a file"),
            "{err}"
        );
    }

    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let cx = Context {
            env: Default::default(),
            cwd: dir.path().to_path_buf(),
        };
        let fifo = dir.path().join("supervisord.conf");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .unwrap_or_else(|e| panic!("mkfifo: {e}"));
        // No writer ever opens it: a blocking open would never return.
        let err = read_text(Path::new("supervisord.conf"), &cx)
            .err()
            .unwrap_or_else(|| panic!("read a FIFO"));
        assert_eq!(err.code, EXIT_NOINPUT);
        assert_eq!(
            err.to_string(),
            "supervisord.conf: is not a regular file (a FIFO, socket or device); kelpie import reads a file, so save the setup to one first"
        );
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_text() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let cx = Context {
            env: Default::default(),
            cwd: dir.path().to_path_buf(),
        };
        std::fs::write(dir.path().join("Procfile"), b"\xef\xbb\xbfweb: serve\r\n")
            .unwrap_or_else(|e| panic!("write: {e}"));
        let text = read_text(Path::new("Procfile"), &cx).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text, "web: serve\r\n");
    }
}

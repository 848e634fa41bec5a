//! Reading an input file: a size cap (a setup file is a few KiB; a huge
//! one is a mistake, not a config), UTF-8 with its path in the error, and
//! line numbers of byte offsets for messages.

use std::path::Path;

use super::{Context, ImportError, Origin, EXIT_NOINPUT};
use crate::os_lookup::io_reason;

/// Input files larger than this are refused before parsing.
pub const MAX_INPUT_BYTES: u64 = 4 * 1024 * 1024;

/// The file's bytes (launchd's binary plists are not text). A relative
/// `path` is read from `cx.cwd`; messages name it as given.
pub fn read_bytes(path: &Path, cx: &Context) -> Result<Vec<u8>, ImportError> {
    let actual = cx.cwd.join(path);
    let unreadable = |message: String| ImportError {
        origin: Origin::new(path, 0),
        message,
        code: EXIT_NOINPUT,
    };
    let meta = std::fs::metadata(&actual)
        .map_err(|e| unreadable(format!("cannot read: {}", io_reason(&e))))?;
    if meta.is_dir() {
        return Err(unreadable("is a directory, not a file".into()));
    }
    if meta.len() > MAX_INPUT_BYTES {
        return Err(ImportError::data(
            Origin::new(path, 0),
            format!(
                "file is {} bytes, larger than the {} bytes kelpie import reads",
                meta.len(),
                MAX_INPUT_BYTES
            ),
        ));
    }
    std::fs::read(&actual).map_err(|e| unreadable(format!("cannot read: {}", io_reason(&e))))
}

/// The file as UTF-8 text; invalid UTF-8 is reported at its line.
pub fn read_text(path: &Path, cx: &Context) -> Result<String, ImportError> {
    let bytes = read_bytes(path, cx)?;
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
}

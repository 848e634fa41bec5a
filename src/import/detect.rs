//! Which format a file is, when `kelpie import` is not told: by its name
//! first (`Procfile`, `*.plist`, `process-compose.yaml`,
//! `ecosystem.config.js`), then by what it holds (`[program:x]`, `<plist`,
//! a top-level `processes:` or `apps:`), else a clear error asking for the
//! format.

use std::path::Path;

use super::source::read_bytes;
use super::{Context, Format, ImportError, Origin};

pub fn detect(path: &Path, cx: &Context) -> Result<Format, ImportError> {
    if let Some(format) = by_name(path) {
        return Ok(format);
    }
    let bytes = read_bytes(path, cx)?;
    by_content(&bytes).ok_or_else(|| {
        let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
        ImportError::data(
            Origin::new(path, 0),
            format!(
                "cannot tell which format this is; name it: kelpie import FORMAT FILE… (FORMAT is one of {})",
                names.join(", ")
            ),
        )
    })
}

fn by_name(path: &Path) -> Option<Format> {
    let name = path.file_name()?.to_str()?;
    let lower = name.to_ascii_lowercase();
    if name == "Procfile" || name.starts_with("Procfile.") {
        return Some(Format::Procfile);
    }
    if lower.ends_with(".plist") {
        return Some(Format::Launchd);
    }
    if lower.starts_with("process-compose") && (lower.ends_with(".yaml") || lower.ends_with(".yml"))
    {
        return Some(Format::ProcessCompose);
    }
    if lower.starts_with("ecosystem") || lower.starts_with("pm2") {
        return Some(Format::Pm2);
    }
    if lower == "supervisord.conf" || lower.starts_with("supervisor") && lower.ends_with(".conf") {
        return Some(Format::Supervisord);
    }
    None
}

fn by_content(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(b"bplist00") {
        return Some(Format::Launchd);
    }
    let bytes = bytes.strip_prefix(super::source::UTF8_BOM).unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).ok()?;
    let head: String = text.chars().take(4096).collect();
    if head.contains("<plist") || head.contains("<!DOCTYPE plist") {
        return Some(Format::Launchd);
    }
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| {
            let t = l.trim_start();
            !t.is_empty() && !t.starts_with('#') && !t.starts_with(';')
        })
        .collect();
    let section = |l: &&str| {
        let t = l.trim();
        t.starts_with("[program:")
            || t.starts_with("[group:")
            || t.starts_with("[fcgi-program:")
            || t == "[supervisord]"
            || t == "[include]"
    };
    if lines.iter().any(section) {
        return Some(Format::Supervisord);
    }
    // A top-level YAML key starts in column 0 and ends the line with `:`.
    let top_level = |key: &str| {
        lines
            .iter()
            .any(|l| l.starts_with(key) && l[key.len()..].trim() == ":")
    };
    if top_level("processes") {
        return Some(Format::ProcessCompose);
    }
    if top_level("apps") || head.contains("\"apps\"") || head.contains("module.exports") {
        return Some(Format::Pm2);
    }
    let procfile_line = |l: &&str| {
        l.split_once(':').is_some_and(|(name, command)| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                && !command.trim().is_empty()
        })
    };
    if !lines.is_empty() && lines.iter().all(procfile_line) {
        return Some(Format::Procfile);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_decide_first() {
        let cases = [
            ("Procfile", Some(Format::Procfile)),
            ("Procfile.dev", Some(Format::Procfile)),
            ("com.example.web.plist", Some(Format::Launchd)),
            ("process-compose.yaml", Some(Format::ProcessCompose)),
            ("process-compose.override.yml", Some(Format::ProcessCompose)),
            ("ecosystem.config.js", Some(Format::Pm2)),
            ("ecosystem.json", Some(Format::Pm2)),
            ("supervisord.conf", Some(Format::Supervisord)),
            ("app.conf", None),
            ("config.yaml", None),
        ];
        for (name, want) in cases {
            assert_eq!(by_name(Path::new(name)), want, "{name}");
        }
    }

    #[test]
    fn content_decides_otherwise() {
        let cases: [(&[u8], Option<Format>); 9] = [
            (b"bplist00\x01\x02", Some(Format::Launchd)),
            (
                b"<?xml version=\"1.0\"?>\n<plist version=\"1.0\">",
                Some(Format::Launchd),
            ),
            (
                b"; comment\n[program:web]\ncommand=x\n",
                Some(Format::Supervisord),
            ),
            (
                b"[include]\nfiles = conf.d/*.conf\n",
                Some(Format::Supervisord),
            ),
            (
                b"version: \"0.5\"\nprocesses:\n  web:\n    command: x\n",
                Some(Format::ProcessCompose),
            ),
            (b"apps:\n  - name: web\n", Some(Format::Pm2)),
            (b"{\"apps\": [{\"name\": \"web\"}]}", Some(Format::Pm2)),
            (
                b"# dev\nweb: bundle exec puma\nworker: sidekiq\n",
                Some(Format::Procfile),
            ),
            (b"hello world\n", None),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                by_content(bytes),
                want,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn an_unknown_file_names_the_formats() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let file = dir.path().join("setup.txt");
        std::fs::write(&file, "hello world\n").unwrap_or_else(|e| panic!("write: {e}"));
        let cx = Context {
            env: Default::default(),
            cwd: dir.path().to_path_buf(),
        };
        let err = detect(&file, &cx)
            .err()
            .unwrap_or_else(|| panic!("detected a format"));
        assert_eq!(err.code, super::super::EXIT_DATAERR);
        assert!(err.to_string().contains("setup.txt: cannot tell which format this is; name it: kelpie import FORMAT FILE… (FORMAT is one of supervisord, launchd, procfile, process-compose, pm2)"), "{err}");
    }
}

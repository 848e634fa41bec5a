//! supervisord's ini dialect, as supervisor 4 reads it with Python 3's
//! `RawConfigParser`: `[section]` headers, `key = value` or `key: value`
//! (the first `=` or `:` splits; keys are lowercased), whole-line comments
//! starting `;` or `#`, inline comments starting `;` or `#` after
//! whitespace, and continuation lines: a line indented deeper than its
//! option's line continues the value (blank lines inside stay, trailing
//! ones go). A section or key seen again, in the same file or another,
//! merges: the last value wins, the first position stays. `[DEFAULT]`
//! holds fallbacks for every section.
//!
//! Nothing is expanded here; each value keeps the file and line it was
//! read at and the directory of that file (its `%(here)s`).

use std::path::{Path, PathBuf};

use crate::import::{ImportError, Origin};

/// One `key = value`, continuation lines joined with `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    /// The line of the key.
    pub origin: Origin,
    /// The directory of the file the value was read from.
    pub here: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    /// Where the header first appeared.
    pub origin: Origin,
    /// The directory of that file.
    pub here: PathBuf,
    pub entries: Vec<Entry>,
}

impl Section {
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    fn set(&mut self, entry: Entry) {
        match self.entries.iter_mut().find(|e| e.key == entry.key) {
            Some(existing) => *existing = entry,
            None => self.entries.push(entry),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ini {
    /// In the order they first appeared.
    pub sections: Vec<Section>,
    /// `[DEFAULT]`: every section's fallback values.
    pub defaults: Vec<Entry>,
}

const DEFAULT_SECTION: &str = "DEFAULT";

/// An option whose value may still get continuation lines.
struct Open {
    target: Target,
    key: String,
    lines: Vec<String>,
    origin: Origin,
    here: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Section(usize),
    Defaults,
}

impl Ini {
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// Reads one file's text into the sections read so far. `file` names
    /// the file in messages; `here` is its directory.
    pub fn read(&mut self, text: &str, file: &Path, here: &Path) -> Result<(), ImportError> {
        let mut current: Option<Target> = None;
        let mut open: Option<Open> = None;
        let mut indent_level = 0usize;
        for (index, line) in text.lines().enumerate() {
            let origin = Origin::new(file, index + 1);
            let comment = comment_start(line);
            let value = line[..comment.unwrap_or(line.len())].trim();
            if value.is_empty() {
                // A blank line may sit inside a multi-line value; a comment
                // line never adds to it.
                if comment.is_none() {
                    if let Some(open) = open.as_mut() {
                        open.lines.push(String::new());
                    }
                }
                continue;
            }
            let indent = line.len() - line.trim_start().len();
            if let Some(open) = open.as_mut() {
                if indent > indent_level {
                    open.lines.push(value.to_string());
                    continue;
                }
            }
            indent_level = indent;
            if let Some(name) = section_header(value, &origin)? {
                self.close(open.take());
                current = Some(if name == DEFAULT_SECTION {
                    Target::Defaults
                } else {
                    Target::Section(self.open_section(name, &origin, here))
                });
                continue;
            }
            let Some(target) = current else {
                return Err(ImportError::data(
                    origin,
                    format!("expected a [section] header before {value:?}"),
                ));
            };
            let Some(split) = value.find(['=', ':']) else {
                return Err(ImportError::data(
                    origin,
                    format!("expected \"key = value\" or a [section] header, found {value:?}"),
                ));
            };
            let key = value[..split].trim_end();
            if key.is_empty() {
                return Err(ImportError::data(
                    origin,
                    format!("a key is missing before the {:?}", &value[split..=split]),
                ));
            }
            self.close(open.take());
            open = Some(Open {
                target,
                key: key.to_lowercase(),
                lines: vec![value[split + 1..].trim().to_string()],
                origin,
                here: here.to_path_buf(),
            });
        }
        self.close(open.take());
        Ok(())
    }

    fn open_section(&mut self, name: &str, origin: &Origin, here: &Path) -> usize {
        if let Some(index) = self.sections.iter().position(|s| s.name == name) {
            return index;
        }
        self.sections.push(Section {
            name: name.to_string(),
            origin: origin.clone(),
            here: here.to_path_buf(),
            entries: Vec::new(),
        });
        self.sections.len() - 1
    }

    fn close(&mut self, open: Option<Open>) {
        let Some(open) = open else { return };
        let entry = Entry {
            key: open.key,
            value: open.lines.join("\n").trim_end().to_string(),
            origin: open.origin,
            here: open.here,
        };
        match open.target {
            Target::Section(index) => self.sections[index].set(entry),
            Target::Defaults => match self.defaults.iter_mut().find(|e| e.key == entry.key) {
                Some(existing) => *existing = entry,
                None => self.defaults.push(entry),
            },
        }
    }
}

/// Where a comment starts in `line`: a `;` or `#` as the first non-blank
/// character, or one preceded by whitespace.
fn comment_start(line: &str) -> Option<usize> {
    let trimmed = line.trim_start();
    if trimmed.starts_with([';', '#']) {
        return Some(0);
    }
    let mut previous_is_space = false;
    for (at, c) in line.char_indices() {
        if matches!(c, ';' | '#') && (at == 0 || previous_is_space) {
            return Some(at);
        }
        previous_is_space = c.is_whitespace();
    }
    None
}

/// `[name]` → `Some(name)`; anything not starting `[` → `None`.
fn section_header<'a>(value: &'a str, origin: &Origin) -> Result<Option<&'a str>, ImportError> {
    if !value.starts_with('[') {
        return Ok(None);
    }
    // configparser takes everything up to the last `]` as the name.
    match value.rfind(']') {
        Some(end) if end > 1 => {
            let rest = value[end + 1..].trim();
            if !rest.is_empty() {
                return Err(ImportError::data(
                    origin.clone(),
                    format!("unexpected {rest:?} after the section header"),
                ));
            }
            Ok(Some(&value[1..end]))
        }
        _ => Err(ImportError::data(
            origin.clone(),
            format!("invalid section header {value:?}: expected [name]"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Ini, ImportError> {
        let mut ini = Ini::default();
        ini.read(text, Path::new("s.conf"), Path::new("/etc/s"))?;
        Ok(ini)
    }

    fn values(ini: &Ini, section: &str) -> Vec<(String, String, usize)> {
        ini.section(section)
            .map(|s| {
                s.entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.clone(), e.origin.line))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn v(list: &[(&str, &str, usize)]) -> Vec<(String, String, usize)> {
        list.iter()
            .map(|(k, v, l)| (k.to_string(), v.to_string(), *l))
            .collect()
    }

    #[test]
    fn keys_values_and_comments_read_as_configparser_reads_them() {
        let text = "\
; a comment
# another
[program:web]
command = /usr/bin/web --flag ; the server
Directory: /srv/web
url=http://x:80/a;b
env=A=1 # inline, after a blank
  # an indented comment line
empty =
";
        let ini = read(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            values(&ini, "program:web"),
            v(&[
                ("command", "/usr/bin/web --flag", 4),
                ("directory", "/srv/web", 5),
                ("url", "http://x:80/a;b", 6),
                ("env", "A=1", 7),
                ("empty", "", 9),
            ])
        );
        let section = ini
            .section("program:web")
            .unwrap_or_else(|| panic!("no section"));
        assert_eq!(section.origin, Origin::new("s.conf", 3));
        assert_eq!(section.entries[0].here, Path::new("/etc/s"));
    }

    #[test]
    fn deeper_indented_lines_continue_a_value() {
        let text = "\
[program:w]
environment=
    A=\"1\",

    B=2
command=/bin/app
  --one ; not this
\t--two
priority=1
";
        let ini = read(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            values(&ini, "program:w"),
            v(&[
                ("environment", "\nA=\"1\",\n\nB=2", 2),
                ("command", "/bin/app\n--one\n--two", 6),
                ("priority", "1", 9),
            ])
        );
    }

    #[test]
    fn sections_and_keys_seen_again_merge_and_defaults_stay_apart() {
        let mut ini = Ini::default();
        let first = "[DEFAULT]\nautostart=false\n[program:a]\ncommand=x\nuser=me\n";
        let second = "[program:a]\ncommand=y\n[program:b]\ncommand=z\n";
        ini.read(first, Path::new("a.conf"), Path::new("/a"))
            .unwrap_or_else(|e| panic!("{e}"));
        ini.read(second, Path::new("conf.d/b.conf"), Path::new("/a/conf.d"))
            .unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = ini.sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["program:a", "program:b"]);
        let a = ini.section("program:a").unwrap_or_else(|| panic!("no a"));
        assert_eq!(a.entries[0].value, "y");
        assert_eq!(a.entries[0].origin, Origin::new("conf.d/b.conf", 2));
        assert_eq!(a.entries[0].here, Path::new("/a/conf.d"));
        assert_eq!(a.entries[1].key, "user");
        assert_eq!(ini.defaults.len(), 1);
        assert_eq!(ini.defaults[0].key, "autostart");
    }

    #[test]
    fn lines_that_are_neither_are_errors_at_their_line() {
        let cases = [
            (
                "command=x\n",
                "s.conf:1: expected a [section] header before \"command=x\"",
            ),
            (
                "[program:a]\ncommand=x\njust words\n",
                "s.conf:3: expected \"key = value\" or a [section] header, found \"just words\"",
            ),
            (
                "[program:a]\n= x\n",
                "s.conf:2: a key is missing before the \"=\"",
            ),
            (
                "[]\n",
                "s.conf:1: invalid section header \"[]\": expected [name]",
            ),
            (
                "[program:a\n",
                "s.conf:1: invalid section header \"[program:a\": expected [name]",
            ),
            (
                "[program:a] junk\n",
                "s.conf:1: unexpected \"junk\" after the section header",
            ),
        ];
        for (text, want) in cases {
            let err = read(text).err().unwrap_or_else(|| panic!("read {text:?}"));
            assert_eq!(err.to_string(), want);
        }
    }
}

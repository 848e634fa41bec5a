//! Problems found in a config file and how they are printed:
//! `file:line:col: [warning: ]key: message`, one line each, with the dotted
//! key and the source position of the value at fault.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in a config file, printed as
/// `file:line:col: [warning: ]key: message`. `line == 0` means the problem is
/// with the file as a whole (it cannot be read), printed as `file: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_one_line(f, &self.file.display().to_string())?;
        if self.line == 0 {
            write!(f, ": ")?;
        } else {
            write!(f, ":{}:{}: ", self.line, self.column)?;
        }
        if self.severity == Severity::Warning {
            write!(f, "warning: ")?;
        }
        if !self.key.is_empty() {
            write_one_line(f, &self.key)?;
            write!(f, ": ")?;
        }
        write_one_line(f, &self.message)
    }
}

/// Diagnostics quote what the user wrote, and a TOML string may hold a
/// newline or a terminal escape: one diagnostic must stay one line (scripts
/// and log collectors split on newlines) and must not drive the terminal.
fn write_one_line(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    for c in text.chars() {
        match c {
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                write!(f, "\\u{{{:x}}}", u32::from(c))?
            }
            c => fmt::Write::write_char(f, c)?,
        }
    }
    Ok(())
}

pub(super) struct Diags<'a> {
    pub(super) file: &'a Path,
    pub(super) source: &'a str,
    pub(super) list: Vec<Diagnostic>,
    /// Where each command was found, by (name, directory, PATH), for this
    /// one validation: thousands of programs often run the same command,
    /// and each PATH search is a stat per entry.
    pub(super) found_commands: CommandLookups,
}

pub(super) type CommandLookups =
    std::collections::HashMap<(String, Option<PathBuf>, Option<String>), Result<(), String>>;

impl Diags<'_> {
    fn push(&mut self, severity: Severity, span: &Range<usize>, key: &str, message: String) {
        let (line, column) = line_col(self.source, span.start);
        self.list.push(Diagnostic {
            severity,
            file: self.file.to_path_buf(),
            line,
            column,
            key: key.to_string(),
            message,
        });
    }

    pub(super) fn error(&mut self, span: &Range<usize>, key: &str, message: impl Into<String>) {
        self.push(Severity::Error, span, key, message.into());
    }

    pub(super) fn warn(&mut self, span: &Range<usize>, key: &str, message: impl Into<String>) {
        self.push(Severity::Warning, span, key, message.into());
    }

    pub(super) fn has_errors(&self) -> bool {
        self.list.iter().any(|d| d.severity == Severity::Error)
    }
}

/// The source text of a span, for quoting a value back in a message.
pub(super) fn source_text<'s>(source: &'s str, span: &Range<usize>) -> &'s str {
    source.get(span.clone()).unwrap_or("").trim()
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// `program.web`, or `program."a/b"` when the name is not a bare TOML key,
/// so the dotted path in a message is unambiguous.
pub(super) fn table_key(section: &str, name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        format!("{section}.{name}")
    } else {
        format!("{section}.{name:?}")
    }
}

/// The parser's message, made specific for duplicates: toml only says
/// "duplicate key", so name the key, and for a repeated `[table]` header the
/// line where it was first defined.
pub(super) fn syntax_message(source: &str, err: &toml::de::Error, span: &Range<usize>) -> String {
    let message = err.message().trim();
    if message != "duplicate key" {
        return format!("TOML syntax: {message}");
    }
    let key = source.get(span.clone()).unwrap_or("").trim();
    let line_start = source
        .get(..span.start)
        .and_then(|before| before.rfind('\n'))
        .map_or(0, |i| i + 1);
    let line = source
        .get(line_start..)
        .and_then(|rest| rest.lines().next())
        .unwrap_or("");
    let Some(header) = table_header(line) else {
        return format!("TOML syntax: duplicate key `{key}`");
    };
    let first = source
        .get(..line_start)
        .unwrap_or("")
        .lines()
        .position(|l| table_header(l).as_deref() == Some(header.as_str()));
    match first {
        Some(index) => format!(
            "TOML syntax: table [{header}] is defined twice (first on line {})",
            index + 1
        ),
        None => format!("TOML syntax: table [{header}] is defined twice"),
    }
}

/// `program.web` for a line `[program.web]  # comment` (whitespace removed).
fn table_header(line: &str) -> Option<String> {
    let rest = line.trim_start().strip_prefix('[')?;
    if rest.starts_with('[') {
        return None;
    }
    let end = rest.find(']')?;
    Some(rest[..end].split_whitespace().collect())
}

/// The closest candidate within a small edit distance, for "did you mean".
pub(super) fn did_you_mean<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (input.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (edit_distance(input, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: Levenshtein plus transposition of
/// two adjacent characters (`pre` → `per` is one typo, not two).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

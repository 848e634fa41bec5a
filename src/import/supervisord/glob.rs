//! `[include] files =` patterns, matched as Python's `glob.glob` matches
//! them (supervisord calls it): per path component, `*` (any run of
//! characters), `?` (one character) and `[...]` (a set: ranges `a-z`, `!`
//! first negates, a `]` first is literal; without a closing `]` the `[` is
//! literal). A wildcard matches a leading `.` only when the pattern
//! component starts with one, as in a shell. Matches come back sorted.
//! (Small enough not to need a crate, and Python's rules differ from the
//! glob crates' in those details.)

use std::path::{Path, PathBuf};

/// The paths matching `pattern`, relative patterns taken from `base`.
/// Each match is `(as_shown, actual)`: `shown_base` joined with the part
/// that matched (so messages name files as the user gave them), and the
/// path to read. Sorted; nothing matching is an empty list, not an error.
pub fn glob(pattern: &str, shown_base: &Path, base: &Path) -> Vec<(PathBuf, PathBuf)> {
    let (mut found, components) = match pattern.strip_prefix('/') {
        Some(rest) => (vec![(PathBuf::from("/"), PathBuf::from("/"))], rest),
        None => (
            vec![(shown_base.to_path_buf(), base.to_path_buf())],
            pattern,
        ),
    };
    let parts: Vec<&str> = components.split('/').filter(|p| !p.is_empty()).collect();
    for (index, part) in parts.iter().enumerate() {
        let last = index + 1 == parts.len();
        let mut next = Vec::new();
        for (shown, actual) in &found {
            if !has_magic(part) {
                let candidate = actual.join(part);
                let keep = if last {
                    candidate.symlink_metadata().is_ok()
                } else {
                    candidate.is_dir()
                };
                if keep {
                    next.push((shown.join(part), candidate));
                }
                continue;
            }
            let Ok(entries) = std::fs::read_dir(actual) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with('.') && !part.starts_with('.') {
                    continue;
                }
                if !matches(part, name) {
                    continue;
                }
                let candidate = actual.join(name);
                if last || candidate.is_dir() {
                    next.push((shown.join(name), candidate));
                }
            }
        }
        found = next;
    }
    if parts.is_empty() {
        return Vec::new();
    }
    // Python sorts the path strings, not component by component.
    found.sort_by(|a, b| a.1.as_os_str().cmp(b.1.as_os_str()));
    found
}

fn has_magic(part: &str) -> bool {
    part.contains(['*', '?', '['])
}

/// Whether `name` matches the pattern component `pattern` (fnmatch).
pub fn matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    match_from(&pattern, &name)
}

fn match_from(pattern: &[char], name: &[char]) -> bool {
    let Some((&first, rest)) = pattern.split_first() else {
        return name.is_empty();
    };
    match first {
        '*' => (0..=name.len()).any(|skip| match_from(rest, &name[skip..])),
        '?' => !name.is_empty() && match_from(rest, &name[1..]),
        '[' => match parse_set(rest) {
            Some((set, after)) => {
                !name.is_empty() && set.contains(name[0]) && match_from(after, &name[1..])
            }
            None => name.first() == Some(&'[') && match_from(rest, &name[1..]),
        },
        c => name.first() == Some(&c) && match_from(rest, &name[1..]),
    }
}

struct Set {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl Set {
    fn contains(&self, c: char) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated
    }
}

/// The set after a `[`, and the pattern after its `]`; `None` when there
/// is no closing `]` (the `[` is then literal).
fn parse_set(pattern: &[char]) -> Option<(Set, &[char])> {
    let mut at = 0;
    let negated = pattern.first() == Some(&'!');
    if negated {
        at += 1;
    }
    // A `]` right after `[` or `[!` belongs to the set.
    let start = at;
    let mut end = None;
    let mut scan = start;
    while scan < pattern.len() {
        if pattern[scan] == ']' && scan > start {
            end = Some(scan);
            break;
        }
        scan += 1;
    }
    let end = end?;
    let body = &pattern[start..end];
    let mut ranges = Vec::new();
    let mut i = 0;
    while i < body.len() {
        if i + 2 < body.len() && body[i + 1] == '-' {
            ranges.push((body[i], body[i + 2]));
            i += 3;
        } else {
            ranges.push((body[i], body[i]));
            i += 1;
        }
    }
    Some((Set { negated, ranges }, &pattern[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_match_as_fnmatch_does() {
        let cases = [
            ("*.conf", "web.conf", true),
            ("*.conf", "web.ini", false),
            ("*.conf", "web.conf.bak", false),
            ("w?b.conf", "web.conf", true),
            ("w?b.conf", "wb.conf", false),
            ("[abc]*.conf", "b.conf", true),
            ("[abc]*.conf", "d.conf", false),
            ("[!abc]*.conf", "d.conf", true),
            ("[!abc]*.conf", "a.conf", false),
            ("[a-c]x", "bx", true),
            ("[a-c]x", "dx", false),
            ("[]]x", "]x", true),
            ("[!]]x", "ax", true),
            ("[!]]x", "]x", false),
            ("[x", "[x", true),
            ("a[-]b", "a-b", true),
            ("*", "", true),
            ("**", "anything", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(matches(pattern, name), want, "{pattern} vs {name}");
        }
    }

    #[test]
    fn paths_are_matched_per_component_sorted_without_hidden_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let root = dir.path();
        for name in [
            "conf.d/b.conf",
            "conf.d/a.conf",
            "conf.d/.hidden.conf",
            "conf.d/notes.txt",
            "more/x/one.conf",
            "more/y/two.conf",
        ] {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().unwrap_or(root))
                .unwrap_or_else(|e| panic!("mkdir: {e}"));
            std::fs::write(&path, "").unwrap_or_else(|e| panic!("write: {e}"));
        }
        let shown = Path::new("etc");
        let names = |pattern: &str| -> Vec<String> {
            glob(pattern, shown, root)
                .into_iter()
                .map(|(shown, _)| shown.display().to_string())
                .collect()
        };
        assert_eq!(
            names("conf.d/*.conf"),
            ["etc/conf.d/a.conf", "etc/conf.d/b.conf"]
        );
        assert_eq!(names("conf.d/.*.conf"), ["etc/conf.d/.hidden.conf"]);
        assert_eq!(
            names("more/*/*.conf"),
            ["etc/more/x/one.conf", "etc/more/y/two.conf"]
        );
        assert_eq!(names("conf.d/notes.txt"), ["etc/conf.d/notes.txt"]);
        assert!(names("conf.d/missing.conf").is_empty());
        assert!(names("nowhere/*.conf").is_empty());
        let absolute = format!("{}/conf.d/a.*", root.display());
        let found = glob(&absolute, shown, root);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, root.join("conf.d/a.conf"));
        assert_eq!(found[0].0, found[0].1);
    }
}

//! Keeps the top-level modules layered: no module may reach itself through
//! `crate::` paths. A cycle means two concepts cannot be read, tested or
//! changed apart, which is how vocabulary types ended up in the wrong
//! modules before; this test names the modules and the files that close a
//! new cycle the moment one appears.
//!
//! Test-only code (`#[cfg(test)]` items and the files they declare) is left
//! out: a test may build its fixtures with any module without making the
//! program itself circular.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// `from → to → files of `from` that name `to``.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// Blanks comments, string and char literals (keeping newlines), so braces
/// and `crate::` inside them are not taken for code.
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && matches!(next, Some('"') | Some('#')) && !is_ident(prev(&chars, i)) {
            let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let body = i + 2 + hashes;
            let mut end = body;
            while end < chars.len()
                && !(chars[end] == '"'
                    && chars[end + 1..].iter().take_while(|&&h| h == '#').count() >= hashes)
            {
                end += 1;
            }
            let stop = (end + 1 + hashes).min(chars.len());
            out.extend(chars[i..stop].iter().map(|&c| blank(c)));
            i = stop;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{7f}'), else a lifetime.
            let close = if next == Some('\\') {
                chars[i + 2..]
                    .iter()
                    .position(|&q| q == '\'')
                    .map(|p| i + 2 + p)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match close {
                Some(end) => {
                    out.extend(std::iter::repeat_n(' ', end + 1 - i));
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev(chars: &[char], i: usize) -> Option<char> {
    i.checked_sub(1).map(|p| chars[p])
}

fn is_ident(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// Removes every `#[cfg(test)]` item (up to its `;` or its closing brace)
/// and returns the names of the `#[cfg(test)] mod name;` files it declares.
fn without_test_items(code: &str) -> (String, Vec<String>) {
    let mut kept = String::with_capacity(code.len());
    let mut test_files = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        kept.push_str(&rest[..at]);
        let item = &rest[at + "#[cfg(test)]".len()..];
        let mut depth = 0usize;
        let mut end = item.len();
        for (i, c) in item.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        let words: Vec<&str> = item[..end]
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ';'))
            .filter(|w| !w.is_empty())
            .collect();
        if let [.., "mod", name] = words.as_slice() {
            if let Some(name) = name.strip_suffix(';') {
                test_files.push(name.to_string());
            }
        }
        rest = &item[end..];
    }
    kept.push_str(rest);
    (kept, test_files)
}

/// The top-level modules a piece of code names through `crate::`, from
/// `crate::a::B`, `crate::a` and `crate::{a::B, b}`.
fn crate_references(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let preceded_by_ident = is_ident(rest[..at].chars().next_back());
        rest = &rest[at + "crate::".len()..];
        if preceded_by_ident {
            continue;
        }
        let tree = rest.trim_start();
        if let Some(inner) = tree.strip_prefix('{') {
            let mut depth = 0usize;
            let mut item = String::new();
            for c in inner.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => found.extend(first_segment(&std::mem::take(&mut item))),
                    c if depth == 0 => item.push(c),
                    _ => {}
                }
            }
            found.extend(first_segment(&item));
        } else {
            found.extend(first_segment(tree));
        }
    }
    found
}

fn first_segment(path: &str) -> Option<String> {
    let name: String = path
        .trim_start()
        .chars()
        .take_while(|&c| c.is_alphanumeric() || c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module_graph(src: &Path) -> (BTreeSet<String>, Graph) {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let top_of = |file: &Path| -> String {
        let relative = file.strip_prefix(src).unwrap_or(file);
        let first = relative
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default();
        first.trim_end_matches(".rs").to_string()
    };
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| top_of(f))
        .filter(|m| m != "lib" && m != "main")
        .collect();

    // A file is test-only when its own declaration, or an ancestor's, is.
    let mut test_only: Vec<PathBuf> = Vec::new();
    let mut graph = Graph::new();
    for file in &files {
        if test_only.iter().any(|t| file.starts_with(t)) {
            continue;
        }
        let from = top_of(file);
        let source =
            fs::read_to_string(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        let (code, test_modules) = without_test_items(&code_only(&source));
        let own_dir = if file.file_name().is_some_and(|n| n == "mod.rs") {
            file.parent().map(Path::to_path_buf)
        } else {
            Some(file.with_extension(""))
        };
        if let Some(own_dir) = own_dir {
            for name in test_modules {
                test_only.push(own_dir.join(format!("{name}.rs")));
                test_only.push(own_dir.join(name));
            }
        }
        if from == "lib" || from == "main" {
            continue;
        }
        let relative = file.strip_prefix(src).unwrap_or(file).display().to_string();
        for to in crate_references(&code) {
            if to != from && modules.contains(&to) {
                graph
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(relative.clone());
            }
        }
    }
    (modules, graph)
}

/// Groups of two or more modules that reach each other (strongly connected
/// components), each sorted.
fn cycles(modules: &BTreeSet<String>, graph: &Graph) -> Vec<BTreeSet<String>> {
    let reach = |start: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![start.clone()];
        while let Some(m) = todo.pop() {
            for next in graph.get(&m).into_iter().flat_map(|e| e.keys()) {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&String, BTreeSet<String>> =
        modules.iter().map(|m| (m, reach(m))).collect();
    let mut groups: Vec<BTreeSet<String>> = Vec::new();
    for m in modules {
        if !reachable[m].contains(m) || groups.iter().any(|g| g.contains(m)) {
            continue;
        }
        let group: BTreeSet<String> = modules
            .iter()
            .filter(|n| reachable[m].contains(*n) && reachable[*n].contains(m))
            .cloned()
            .collect();
        groups.push(group);
    }
    groups
}

fn describe(group: &BTreeSet<String>, graph: &Graph) -> String {
    let mut lines = Vec::new();
    for from in group {
        for (to, files) in graph.get(from).into_iter().flatten() {
            if group.contains(to) {
                let files: Vec<&str> = files.iter().map(String::as_str).collect();
                lines.push(format!("  {from} -> {to} (in {})", files.join(", ")));
            }
        }
    }
    lines.join("\n")
}

#[test]
fn src_modules_form_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (modules, graph) = module_graph(&src);
    // A parser that found nothing would pass vacuously.
    assert!(
        graph
            .get("daemon")
            .is_some_and(|e| e.contains_key("config")),
        "the scan did not see daemon's use of crate::config: {graph:#?}"
    );
    let found: Vec<String> = cycles(&modules, &graph)
        .into_iter()
        .map(|group| describe(&group, &graph))
        .collect();
    assert!(
        found.is_empty(),
        "modules that import each other in a cycle:\n{}",
        found.join("\n\n")
    );
}

#[test]
fn the_scan_reads_use_trees_and_skips_tests_comments_and_strings() {
    let code = r##"
        use crate::{alpha::A, beta::{B, C}, gamma};
        use crate::delta;
        fn f() { crate::epsilon::run(); let _ = "crate::in_string"; let _ = '{'; }
        // crate::in_comment
        /* crate::in_block /* nested */ still */
        let _ = r#"crate::in_raw "{" "#;
        fn g<'a>(x: &'a str) -> &'a str { x }
        use crate::zeta;
        #[cfg(test)]
        mod tests { use crate::test_only; fn h() { crate::also_test_only(); } }
        #[cfg(test)]
        use crate::test_only_use;
        #[cfg(test)]
        mod more_tests;
        struct S { v: my_crate::not_ours }
    "##;
    let (kept, test_files) = without_test_items(&code_only(code));
    let names: Vec<String> = crate_references(&kept).into_iter().collect();
    assert_eq!(
        names,
        ["alpha", "beta", "delta", "epsilon", "gamma", "zeta"],
        "from:\n{kept}"
    );
    assert_eq!(test_files, ["more_tests"]);
}

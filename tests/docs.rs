//! The docs are the contract, so they must hold up on their own: no page
//! sends the reader to a file that is not in the repository, and the
//! README's quick start shows commands that exist (the test command being
//! the one `.ci/run` runs).

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// README.md, every page under docs/ and the shipped packaging files (the
/// alert rules and the dashboard carry prose too).
fn documents() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut dirs = vec![root().join("docs"), root().join("packaging")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if std::fs::read_to_string(&path).is_ok() {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(files.len() > 10, "found too few documents: {files:?}");
    files
}

#[test]
fn no_document_cites_the_spec() {
    // Spelled in pieces so that this file does not match itself.
    let citations = [
        concat!("SPEC", ".md"),
        concat!("SPEC", " §"),
        concat!("SPEC", "§"),
    ];
    let mut found = Vec::new();
    for path in documents() {
        for (n, line) in read(&path).lines().enumerate() {
            if citations.iter().any(|c| line.contains(c)) {
                let shown = path.strip_prefix(root()).unwrap().display().to_string();
                found.push(format!("{shown}:{}: {line}", n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the spec is not in the repository; point at the doc page instead:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_docs_page_named_exists() {
    let mut missing = Vec::new();
    for path in documents() {
        let text = read(&path);
        for (at, _) in text.match_indices("docs/") {
            let name: String = text[at + 5..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-' || *c == '.')
                .collect();
            // A sentence may end right after the name.
            let page = name.trim_end_matches('.');
            if page.ends_with(".md") && !root().join("docs").join(page).is_file() {
                let shown = path.strip_prefix(root()).unwrap().display().to_string();
                missing.push(format!("{shown}: docs/{page}"));
            }
        }
    }
    assert!(missing.is_empty(), "no such page: {missing:?}");
}

/// The indented command lines of README's quick start.
fn quick_start() -> Vec<String> {
    let readme = read(&root().join("README.md"));
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Quick start"))
        .unwrap_or_else(|| panic!("README.md has no Quick start section"));
    section
        .lines()
        .filter_map(|l| l.strip_prefix("    "))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_quick_start_runs_from_cargo_and_from_the_built_binary() {
    let commands = quick_start();
    for wanted in [
        "cargo run --release -- run -c supervisor.toml.example",
        "cargo build --release",
        "./target/release/kelpie run -c supervisor.toml.example",
        "cargo test --locked",
    ] {
        assert!(
            commands.iter().any(|c| c == wanted),
            "README's quick start lacks `{wanted}`: {commands:#?}"
        );
    }
    assert!(root().join("supervisor.toml.example").is_file());
    // `.ci/run` runs exactly the README's test command.
    let ci = read(&root().join(".ci/run"));
    let last = ci
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap();
    assert_eq!(last, "cargo test --locked");
    // Every verb the quick start uses on the binary is one it has.
    for command in &commands {
        let Some(rest) = command.strip_prefix("./target/release/kelpie ") else {
            continue;
        };
        let verb = rest.split_whitespace().next().unwrap();
        let help = std::process::Command::new(env!("CARGO_BIN_EXE_kelpie"))
            .args([verb, "--help"])
            .output()
            .unwrap();
        assert!(help.status.success(), "`kelpie {verb}` is not a command");
        for flag in rest.split_whitespace().filter(|w| w.starts_with("--")) {
            let text = String::from_utf8_lossy(&help.stdout);
            assert!(text.contains(flag), "`kelpie {verb}` has no {flag}");
        }
    }
}

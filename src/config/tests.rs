//! Config validation: every message is asserted verbatim, as
//! `kelpie check` prints it (`file:line:col: key: message`).

use super::*;

use std::os::unix::fs::PermissionsExt;

mod commands_and_host;
mod grammars;
mod probes;
mod references;
mod syntax;
mod values;
mod whole_file;

/// Root, with a PATH where `sh` exists on every Unix.
fn root() -> Host {
    Host {
        is_root: true,
        path_var: Some("/bin:/usr/bin".into()),
        runtime_dir: None,
        open_files_limit: None,
    }
}

fn user() -> Host {
    Host {
        is_root: false,
        ..root()
    }
}

fn run_with(source: &str, mode: Mode, host: &Host) -> Validation {
    validate(source, Path::new("supervisor.toml"), mode, host)
}

/// Every diagnostic (errors and warnings) of `kelpie check`, as printed.
fn diags(source: &str) -> Vec<String> {
    printed(&run_with(source, Mode::Check, &root()))
}

fn printed(validation: &Validation) -> Vec<String> {
    validation
        .diagnostics
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// The single diagnostic of `source`; fails when there are more or none.
fn one(source: &str) -> String {
    let all = diags(source);
    assert_eq!(
        all.len(),
        1,
        "expected exactly one diagnostic, got {all:#?}"
    );
    all.into_iter().next().unwrap()
}

/// A config that must validate without errors or warnings.
fn valid(source: &str) -> Config {
    let validation = run_with(source, Mode::Check, &root());
    assert_eq!(printed(&validation), Vec::<String>::new());
    validation.config.expect("valid config")
}

/// `[program.a]` with a working command and `extra` lines; the extra lines
/// start on line 3.
fn program_a(extra: &str) -> String {
    format!("[program.a]\ncommand = [\"sh\"]\n{extra}\n")
}

/// A directory with an executable `app`, a non-executable `data` and a
/// subdirectory, to use as PATH.
fn bin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    std::fs::write(&app, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.path().join("data"), "").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    dir
}

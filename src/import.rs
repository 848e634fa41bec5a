//! `kelpie import`: an existing setup turned into supervisor.toml. Each
//! source format has its own module that reads its files into a `Draft`
//! (`draft`): kelpie's keys, plus every source key that has no kelpie
//! equivalent. `emit` writes the draft as TOML, the result is validated
//! as `kelpie check` would, and only then written (a temporary file
//! renamed into place, so a failure leaves nothing behind).
//!
//! - `detect`: which format a file is when none is named
//! - `procfile`, `supervisord`, `launchd`, `process_compose`, `pm2`: one
//!   module per source format
//! - `source`: reading input files (size cap, line numbers, errors)
//! - `yaml`: YAML and JSON as a tree of values with their lines

use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::config::{self, Host, Mode};

mod detect;
pub mod draft;
pub mod emit;
mod launchd;
mod pm2;
mod process_compose;
mod procfile;
mod source;
mod supervisord;
mod yaml;

pub use detect::detect;
pub use draft::{Draft, Dropped, Origin};

/// sysexits EX_DATAERR: the input is not valid for its format, or
/// `--strict` found something that could not be carried over.
pub const EXIT_DATAERR: i32 = 65;
/// sysexits EX_NOINPUT: an input file cannot be read.
pub const EXIT_NOINPUT: i32 = 66;
/// sysexits EX_CANTCREAT: the output file cannot be written.
pub const EXIT_CANTCREAT: i32 = 73;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Supervisord,
    Launchd,
    Procfile,
    ProcessCompose,
    Pm2,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Format::Supervisord,
        Format::Launchd,
        Format::Procfile,
        Format::ProcessCompose,
        Format::Pm2,
    ];

    /// The name `kelpie import NAME` takes.
    pub fn name(self) -> &'static str {
        match self {
            Format::Supervisord => "supervisord",
            Format::Launchd => "launchd",
            Format::Procfile => "procfile",
            Format::ProcessCompose => "process-compose",
            Format::Pm2 => "pm2",
        }
    }

    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// Why an import failed; printed as one line, `file:line: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    pub origin: Origin,
    pub message: String,
    /// The exit code: `EXIT_DATAERR` for bad input, `EXIT_NOINPUT` for a
    /// file that cannot be read.
    pub code: i32,
}

impl ImportError {
    /// The input is not valid: `origin` says where.
    pub fn data(origin: Origin, message: impl Into<String>) -> Self {
        Self {
            origin,
            message: message.into(),
            code: EXIT_DATAERR,
        }
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)
    }
}

/// What an importer may read besides its files: the environment
/// supervisord's `%(ENV_X)s` expands from, and the directory relative
/// paths were relative to. Tests build their own.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub env: HashMap<String, String>,
    pub cwd: PathBuf,
}

impl Context {
    pub fn current() -> Self {
        Self {
            env: std::env::vars().collect(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        }
    }
}

/// Reads `files` as `format` into a draft.
pub fn read(format: Format, files: &[PathBuf], cx: &Context) -> Result<Draft, ImportError> {
    let mut draft = match format {
        Format::Procfile => procfile::import(files, cx)?,
        Format::Supervisord => supervisord::import(files, cx)?,
        Format::Launchd => launchd::import(files, cx)?,
        Format::ProcessCompose => process_compose::import(files, cx)?,
        Format::Pm2 => pm2::import(files, cx)?,
    };
    draft::dedupe_names(&mut draft.programs);
    Ok(draft)
}

/// A finished import: the TOML text and what was left out.
pub struct Imported {
    pub format: Format,
    pub toml: String,
    pub programs: usize,
    pub dropped: Vec<Dropped>,
    /// `kelpie check`'s warnings on the result (`command` not found on
    /// this machine, say): worth reading, not failures.
    pub warnings: Vec<String>,
}

/// Reads, translates and validates. The result is checked as `kelpie
/// check` would check it at `config_path` (relative paths in it resolve
/// against that file's directory); an error there fails the import.
pub fn import(
    format: Option<Format>,
    files: &[PathBuf],
    config_path: &Path,
    cx: &Context,
) -> Result<Imported, ImportError> {
    let first = files.first().ok_or_else(|| {
        ImportError::data(Origin::new("kelpie import", 0), "no input files given")
    })?;
    let format = match format {
        Some(format) => format,
        None => detect(first, cx)?,
    };
    let draft = read(format, files, cx)?;
    if draft.programs.is_empty() {
        return Err(ImportError::data(
            Origin::new(first, 0),
            format!("no programs found in this {} file", format.name()),
        ));
    }
    let sources: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let toml = emit::to_toml(&draft, format, &sources);
    let validation = config::validate(&toml, config_path, Mode::Check, &Host::current());
    if let Some(error) = validation.errors().next() {
        return Err(ImportError::data(
            Origin::new(first, 0),
            format!("the translated config does not pass `kelpie check` on this machine: {error}"),
        ));
    }
    Ok(Imported {
        format,
        toml,
        programs: draft.programs.len(),
        dropped: draft.dropped,
        warnings: validation.warnings().map(|w| w.to_string()).collect(),
    })
}

/// Options of `kelpie import`, as the command line gives them.
pub struct Options {
    pub format: Option<Format>,
    pub files: Vec<PathBuf>,
    pub output: Option<PathBuf>,
    pub strict: bool,
    pub force: bool,
}

/// `kelpie import`: the report on stderr, the config on stdout or in
/// `-o FILE`; returns the exit code.
pub fn run(options: Options) -> i32 {
    let config_path = match &options.output {
        Some(path) => path.clone(),
        None => Context::current().cwd.join("supervisor.toml"),
    };
    if let Some(out) = &options.output {
        if out.exists() && !options.force {
            eprintln!(
                "kelpie: {} already exists; pass --force to replace it",
                out.display()
            );
            return EXIT_CANTCREAT;
        }
    }
    let imported = match import(
        options.format,
        &options.files,
        &config_path,
        &Context::current(),
    ) {
        Ok(imported) => imported,
        Err(err) => {
            eprintln!("kelpie: {err}");
            return err.code;
        }
    };
    for dropped in &imported.dropped {
        eprintln!("not carried over: {dropped}");
    }
    for warning in &imported.warnings {
        eprintln!("{warning}");
    }
    let programs = imported.programs;
    eprintln!(
        "kelpie: imported {programs} program{} from {}; {} key{} not carried over",
        if programs == 1 { "" } else { "s" },
        imported.format.name(),
        imported.dropped.len(),
        if imported.dropped.len() == 1 { "" } else { "s" },
    );
    if options.strict && !imported.dropped.is_empty() {
        eprintln!("kelpie: --strict: nothing written, as keys were not carried over");
        return EXIT_DATAERR;
    }
    match &options.output {
        None => {
            // A closed pipe (`| head`) just ends the output.
            let _ = std::io::stdout().lock().write_all(imported.toml.as_bytes());
            0
        }
        Some(path) => match write_atomically(path, imported.toml.as_bytes()) {
            Ok(()) => 0,
            Err(err) => {
                eprintln!(
                    "kelpie: cannot write {}: {}",
                    path.display(),
                    crate::os_lookup::io_reason(&err)
                );
                EXIT_CANTCREAT
            }
        },
    }
}

/// Writes a sibling temporary file and renames it over `path`, so `path`
/// is either untouched or complete.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "supervisor.toml".into());
    let temp = dir.join(format!(".{name}.kelpie-import.{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

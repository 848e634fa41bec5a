//! Procfile (Heroku, foreman, honcho): `name: command` lines. Each line is
//! one program run from the Procfile's directory; a `.env` beside it
//! becomes `env_file`. Commands are shell lines there, so one that needs a
//! shell (`$PORT`, `&&`, globs) runs under `/bin/sh -c`, with `exec` when
//! it is a single command so the stop signal reaches the program itself.
//! Heroku's `release` process type runs once before the others start (a
//! migration, say): it becomes a oneshot the other programs depend on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::draft::{program_name, Condition, Draft, Kind, Origin, Program};
use super::source::read_text;
use super::{Context, ImportError};

/// foreman gives the first process type PORT 5000, the next 5100, …
const FOREMAN_BASE_PORT: u32 = 5000;
const FOREMAN_PORT_STEP: u32 = 100;

/// Heroku runs this process type once per deploy, before the new
/// processes start, and does not deploy when it fails.
const RELEASE: &str = "release";

pub fn import(files: &[PathBuf], cx: &Context) -> Result<Draft, ImportError> {
    let mut draft = Draft::default();
    for file in files {
        import_file(file, cx, &mut draft)?;
    }
    Ok(draft)
}

fn import_file(file: &Path, cx: &Context, draft: &mut Draft) -> Result<(), ImportError> {
    let text = read_text(file, cx)?;
    let absolute = cx.cwd.join(file);
    let dir = absolute
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| cx.cwd.clone());
    let dot_env = dir.join(".env");
    let env_file = dot_env.is_file().then(|| dot_env.display().to_string());
    let env_defines_port = env_file.is_some()
        && std::fs::read_to_string(&dot_env)
            .ok()
            .and_then(|t| crate::config::parse_env_file(&t).ok())
            .is_some_and(|vars| vars.iter().any(|(key, _)| key == "PORT"));

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let first_program = draft.programs.len();
    let mut release = None;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let origin = Origin::new(file, line_no);
        let Some((name, command)) = line.split_once(':') else {
            return Err(ImportError::data(
                origin,
                format!("expected \"name: command\", found {line:?}"),
            ));
        };
        let (name, command) = (name.trim(), command.trim());
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
        if !valid_name {
            return Err(ImportError::data(
                origin,
                format!("invalid process type {name:?}: use letters, digits, _ and -"),
            ));
        }
        if command.is_empty() {
            return Err(ImportError::data(
                origin,
                format!("process type {name:?} has no command"),
            ));
        }
        if let Some(first) = seen.insert(name.to_string(), line_no) {
            return Err(ImportError::data(
                origin,
                format!("process type {name:?} is defined twice (first at line {first})"),
            ));
        }
        let Some(kelpie_name) = program_name(name) else {
            return Err(ImportError::data(
                origin,
                format!("invalid process type {name:?}"),
            ));
        };
        let mut program = Program {
            name: kelpie_name,
            origin: Some(origin.clone()),
            command: command_argv(command).map_err(|why| ImportError::data(origin, why))?,
            directory: Some(dir.display().to_string()),
            env_file: env_file.clone(),
            ..Program::default()
        };
        if mentions_port(command) && !env_defines_port {
            let port = FOREMAN_BASE_PORT + FOREMAN_PORT_STEP * (seen.len() as u32 - 1);
            program.environment.insert("PORT".into(), port.to_string());
            program.notes.push(format!(
                "PORT = {port} as foreman assigns it (5000 for the first process type, +100 for each next)"
            ));
        }
        if name == RELEASE {
            program.kind = Some(Kind::Oneshot);
            program.notes.push(
                "Heroku's release phase: run once before the other process types start, which depend on it completing".into(),
            );
            release = Some(program.name.clone());
        }
        draft.programs.push(program);
    }
    if let Some(release) = release {
        for program in &mut draft.programs[first_program..] {
            if program.name != release {
                program
                    .depends_on
                    .push((release.clone(), Condition::Completed));
            }
        }
    }
    Ok(())
}

fn mentions_port(command: &str) -> bool {
    command.contains("$PORT") || command.contains("${PORT")
}

/// A Procfile command as argv: split as is when it is a plain command
/// line, else run by `/bin/sh -c`.
fn command_argv(command: &str) -> Result<Vec<String>, String> {
    const SHELL: &[char] = &[
        '$', '`', ';', '&', '|', '<', '>', '(', ')', '*', '?', '[', ']', '~', '{', '}', '!', '#',
    ];
    let one_command = is_single_command(command);
    if !command.contains(SHELL) {
        if let Ok(argv) = shell_words::split(command) {
            if !argv.is_empty() && !argv[0].contains('=') {
                return Ok(argv);
            }
        }
    }
    // Unbalanced quotes would make sh fail at every start: refuse now.
    if shell_words::split(command).is_err() {
        return Err(format!("unbalanced quotes in command {command:?}"));
    }
    let script = if one_command && !command.starts_with("exec ") {
        format!("exec {command}")
    } else {
        command.to_string()
    };
    Ok(vec!["/bin/sh".into(), "-c".into(), script])
}

/// No `;`, `|`, `&&`, newline or background `&` outside quotes: `exec` in
/// front replaces the shell with the whole line. Redirections (`2>&1`,
/// `&>`) are part of one command.
fn is_single_command(command: &str) -> bool {
    let bytes = command.as_bytes();
    let mut quote = None;
    for (i, &b) in bytes.iter().enumerate() {
        match (quote, b) {
            (Some(q), _) if b == q => quote = None,
            (Some(_), _) => {}
            (None, b'\'' | b'"') => quote = Some(b),
            (None, b';' | b'|' | b'\n') => return false,
            (None, b'&') => {
                let after_redirect = i > 0 && matches!(bytes[i - 1], b'>' | b'<');
                let redirect = bytes.get(i + 1) == Some(&b'>');
                if !after_redirect && !redirect {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(dir: &Path) -> Context {
        Context {
            env: Default::default(),
            cwd: dir.to_path_buf(),
        }
    }

    #[test]
    fn commands_need_a_shell_only_when_they_use_one() {
        let cases: [(&str, &[&str]); 6] = [
            (
                "bundle exec puma -C config/puma.rb",
                &["bundle", "exec", "puma", "-C", "config/puma.rb"],
            ),
            ("python -m 'my app'", &["python", "-m", "my app"]),
            (
                "bin/web -p $PORT",
                &["/bin/sh", "-c", "exec bin/web -p $PORT"],
            ),
            (
                "rake db:migrate && rails s",
                &["/bin/sh", "-c", "rake db:migrate && rails s"],
            ),
            (
                "exec node server.js > /dev/null",
                &["/bin/sh", "-c", "exec node server.js > /dev/null"],
            ),
            (
                "RAILS_ENV=production rails s",
                &["/bin/sh", "-c", "exec RAILS_ENV=production rails s"],
            ),
        ];
        for (command, want) in cases {
            let argv = command_argv(command).unwrap_or_else(|e| panic!("{command}: {e}"));
            assert_eq!(argv, want, "{command}");
        }
        assert!(command_argv("echo 'oops").is_err());
        let single = [
            ("a 2>&1", true),
            ("a &> log", true),
            ("a <&3", true),
            ("echo 'a;b|c&d'", true),
            ("a; b", false),
            ("a | b", false),
            ("a && b", false),
            ("a &", false),
            ("a\nb", false),
        ];
        for (command, want) in single {
            assert_eq!(is_single_command(command), want, "{command:?}");
        }
    }

    #[test]
    fn each_line_is_a_program_with_the_env_file_beside_it() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let procfile = dir.path().join("Procfile");
        std::fs::write(
            &procfile,
            "# processes\nweb: bundle exec puma -p $PORT\n\nworker: bundle exec sidekiq\nclock:bin/clock\n",
        )
        .unwrap_or_else(|e| panic!("write: {e}"));
        std::fs::write(dir.path().join(".env"), "RACK_ENV=production\n")
            .unwrap_or_else(|e| panic!("write: {e}"));
        let draft =
            import(&[PathBuf::from("Procfile")], &cx(dir.path())).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = draft.programs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["web", "worker", "clock"]);
        let web = &draft.programs[0];
        assert_eq!(web.origin, Some(Origin::new("Procfile", 2)));
        assert_eq!(
            web.directory.as_deref(),
            Some(&*dir.path().display().to_string())
        );
        let env_file = dir.path().join(".env").display().to_string();
        assert_eq!(web.env_file.as_deref(), Some(env_file.as_str()));
        assert_eq!(
            web.environment.get("PORT").map(String::as_str),
            Some("5000")
        );
        assert!(draft.programs[1].environment.is_empty());
        assert_eq!(draft.programs[2].command, ["bin/clock"]);
        assert!(draft.dropped.is_empty());
    }

    #[test]
    fn release_runs_once_before_the_others() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        std::fs::write(
            dir.path().join("Procfile"),
            "\u{feff}web: serve\r\nrelease: migrate\r\nworker: work\r\n",
        )
        .unwrap_or_else(|e| panic!("write: {e}"));
        let draft =
            import(&[PathBuf::from("Procfile")], &cx(dir.path())).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = draft.programs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["web", "release", "worker"]);
        assert_eq!(draft.programs[0].command, ["serve"]);
        assert_eq!(draft.programs[1].kind, Some(Kind::Oneshot));
        assert!(draft.programs[1].depends_on.is_empty());
        for i in [0, 2] {
            assert_eq!(
                draft.programs[i].depends_on,
                [("release".to_string(), Condition::Completed)]
            );
        }
    }

    #[test]
    fn a_port_from_dot_env_is_left_to_it() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        std::fs::write(dir.path().join("Procfile"), "web: serve -p $PORT\n")
            .unwrap_or_else(|e| panic!("write: {e}"));
        std::fs::write(dir.path().join(".env"), "PORT=8080\n")
            .unwrap_or_else(|e| panic!("write: {e}"));
        let draft =
            import(&[PathBuf::from("Procfile")], &cx(dir.path())).unwrap_or_else(|e| panic!("{e}"));
        assert!(draft.programs[0].environment.is_empty());
    }

    #[test]
    fn bad_lines_are_errors_at_their_line() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let cases = [
            (
                "web: a\nno colon here\n",
                "Procfile:2: expected \"name: command\", found \"no colon here\"",
            ),
            (
                "web: a\nweb: b\n",
                "Procfile:2: process type \"web\" is defined twice (first at line 1)",
            ),
            (
                "my web: a\n",
                "Procfile:1: invalid process type \"my web\": use letters, digits, _ and -",
            ),
            ("web:\n", "Procfile:1: process type \"web\" has no command"),
            (
                "web: echo 'x\n",
                "Procfile:1: unbalanced quotes in command \"echo 'x\"",
            ),
        ];
        for (text, want) in cases {
            std::fs::write(dir.path().join("Procfile"), text)
                .unwrap_or_else(|e| panic!("write: {e}"));
            let err = import(&[PathBuf::from("Procfile")], &cx(dir.path()))
                .err()
                .unwrap_or_else(|| panic!("accepted {text:?}"));
            assert_eq!(err.to_string(), want);
        }
    }
}

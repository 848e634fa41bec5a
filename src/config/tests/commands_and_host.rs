//! Commands, and what depends on the host: PATH, users and groups, directories, the default socket, `env_file`.

use super::*;

// ---------------------------------------------------------------------------
// Commands

#[test]
fn empty_and_malformed_commands() {
    let source = "[program.a]\ncommand = []\n\
                  [program.b]\ncommand = \"\"\n\
                  [program.c]\ncommand = \"   \"\n\
                  [program.d]\ncommand = [\"\"]\n\
                  [program.e]\ncommand = \"echo 'hi\"\n\
                  [program.f]\nrestart = \"never\"\n";
    assert_eq!(
        diags(source),
        [
            "supervisor.toml:2:11: program.a.command: command is empty",
            "supervisor.toml:4:11: program.b.command: command is empty",
            "supervisor.toml:6:11: program.c.command: command is empty",
            "supervisor.toml:8:11: program.d.command: command is empty",
            "supervisor.toml:10:11: program.e.command: unbalanced quotes in command string",
            "supervisor.toml:11:10: program.f: missing key `command`",
        ]
    );
}

#[test]
fn command_string_is_split_shell_style() {
    let config =
        valid(&program_a("").replace("[\"sh\"]", "\"sh -c 'echo \\\"hello world\\\"' --x\""));
    assert_eq!(
        config.programs[0].command,
        ["sh", "-c", "echo \"hello world\"", "--x"]
    );
}

#[test]
fn command_not_found_is_a_warning_searched_in_host_path() {
    let bin = bin_dir();
    let dir = bin.path().display().to_string();
    let host = Host {
        path_var: Some(dir.clone()),
        ..root()
    };
    let source = format!(
        "[program.ok]\ncommand = [\"app\"]\n\
         [program.missing]\ncommand = [\"missing\"]\n\
         [program.plain]\ncommand = [\"{dir}/data\"]\n\
         [program.folder]\ncommand = [\"{dir}/sub\"]\n\
         [program.sh]\ncommand = [\"sh\"]\n"
    );
    let expected = [
        "supervisor.toml:4:11: warning: program.missing.command: command \"missing\" not found in PATH".to_string(),
        format!("supervisor.toml:6:11: warning: program.plain.command: \"{dir}/data\" is not executable"),
        format!("supervisor.toml:8:11: warning: program.folder.command: \"{dir}/sub\" is a directory"),
        "supervisor.toml:10:11: warning: program.sh.command: command \"sh\" not found in PATH".to_string(),
    ];
    for mode in [Mode::Check, Mode::Run] {
        let validation = run_with(&source, mode, &host);
        assert_eq!(printed(&validation), expected, "{mode:?}");
        // Warnings never block: the config is usable, the program fails at
        // start.
        let config = validation.config.expect("warnings only");
        assert_eq!(config.programs.len(), 5);
    }
}

#[test]
fn program_environment_path_wins_over_host_path() {
    let bin = bin_dir();
    let dir = bin.path().display();
    let host = Host {
        path_var: Some("/nonexistent".into()),
        ..root()
    };
    let source =
        format!("[program.a]\ncommand = [\"app\"]\nenvironment = {{ PATH = \"{dir}\" }}\n");
    let validation = run_with(&source, Mode::Check, &host);
    assert_eq!(printed(&validation), Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// Users and the host

#[test]
fn user_needs_root_at_run_time_only() {
    let source = program_a("user = \"nobody\"");
    let run = run_with(&source, Mode::Run, &user());
    assert_eq!(
        printed(&run),
        ["supervisor.toml:3:8: program.a.user: switching to user \"nobody\" needs root; kelpie is not running as root"]
    );
    assert!(run.config.is_none());

    let check = run_with(&source, Mode::Check, &user());
    assert_eq!(
        printed(&check),
        ["supervisor.toml:3:8: warning: program.a.user: switching to user \"nobody\" needs root; kelpie is not running as root"]
    );
    assert!(check.config.is_some());

    for mode in [Mode::Check, Mode::Run] {
        let as_root = run_with(&source, mode, &root());
        assert_eq!(printed(&as_root), Vec::<String>::new(), "{mode:?}");
        assert_eq!(
            as_root.config.unwrap().programs[0].user.as_deref(),
            Some("nobody")
        );
    }
}

#[test]
fn group_alone_needs_root_at_run_time() {
    let source = program_a("group = \"root\"");
    assert_eq!(
        printed(&run_with(&source, Mode::Run, &user())),
        ["supervisor.toml:3:9: program.a.group: switching to group \"root\" needs root; kelpie is not running as root"]
    );
    assert_eq!(
        printed(&run_with(&source, Mode::Check, &user())),
        ["supervisor.toml:3:9: warning: program.a.group: switching to group \"root\" needs root; kelpie is not running as root"]
    );
    assert_eq!(
        printed(&run_with(&source, Mode::Run, &root())),
        Vec::<String>::new()
    );
}

#[test]
fn unknown_user_and_group() {
    assert_eq!(
        diags(&program_a(
            "user = \"no-such-user-kelpie\"\ngroup = \"no-such-group-kelpie\""
        )),
        [
            "supervisor.toml:3:8: program.a.user: unknown user \"no-such-user-kelpie\"",
            "supervisor.toml:4:9: program.a.group: unknown group \"no-such-group-kelpie\"",
        ]
    );
}

#[test]
fn missing_directory_is_fatal_only_at_run() {
    let source = program_a("directory = \"/nonexistent/kelpie\"");
    let message = "program.a.directory: directory \"/nonexistent/kelpie\" does not exist";
    assert_eq!(
        printed(&run_with(&source, Mode::Check, &root())),
        [format!("supervisor.toml:3:13: warning: {message}")]
    );
    assert_eq!(
        printed(&run_with(&source, Mode::Run, &root())),
        [format!("supervisor.toml:3:13: {message}")]
    );
}

#[test]
fn default_control_socket_depends_on_host() {
    let source = program_a("");
    let socket = |host: &Host| {
        run_with(&source, Mode::Run, host)
            .config
            .unwrap()
            .supervisor
            .control_socket
    };
    let with_runtime = Host {
        runtime_dir: Some(PathBuf::from("/run/user/1000")),
        ..user()
    };
    assert_eq!(
        socket(&with_runtime),
        PathBuf::from("/run/user/1000/kelpie.sock")
    );
    assert_eq!(socket(&root()), PathBuf::from("/run/kelpie.sock"));
    assert_eq!(socket(&user()), PathBuf::from("kelpie.sock"));
}

// ---------------------------------------------------------------------------
// env_file

#[test]
fn env_file_is_resolved_against_the_config_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.env"),
        "# comment\n\nexport A=1\nB = \"two words\"\nC='x'\nD=from-file\n",
    )
    .unwrap();
    let path = dir.path().join("supervisor.toml");
    let source = program_a("env_file = \"app.env\"\nenvironment = { D = \"from-toml\" }");
    let validation = validate(&source, &path, Mode::Check, &root());
    assert_eq!(printed(&validation), Vec::<String>::new());
    let config = validation.config.unwrap();
    let env: Vec<(&str, &str)> = config.programs[0]
        .environment
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("A", "1"),
            ("B", "two words"),
            ("C", "x"),
            ("D", "from-toml")
        ]
    );
}

#[test]
fn env_file_missing_or_malformed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.env"), "A=1\nnot a pair\n").unwrap();
    let path = dir.path().join("supervisor.toml");
    let source = "[program.a]\ncommand = [\"sh\"]\nenv_file = \"missing.env\"\n\
                  [program.b]\ncommand = [\"sh\"]\nenv_file = \"bad.env\"\n";
    let shown = path.display();
    let base = dir.path().display();
    assert_eq!(
        printed(&validate(source, &path, Mode::Check, &root())),
        [
            format!("{shown}:3:12: program.a.env_file: cannot read \"{base}/missing.env\": No such file or directory"),
            format!("{shown}:6:12: program.b.env_file: {base}/bad.env:2: expected KEY=VALUE"),
        ]
    );
}

#[test]
fn invalid_environment_names() {
    assert_eq!(
        one(&program_a("environment = { \"A=B\" = \"1\" }")),
        "supervisor.toml:3:15: program.a.environment: invalid environment variable name \"A=B\""
    );
}

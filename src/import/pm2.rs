//! pm2 ecosystem files: each of `apps` becomes a program. Three ways in:
//! - `ecosystem.config.js` (`.cjs`, `.mjs`) is evaluated by node
//!   (`evaluate`): its JSON has no line numbers, so origins are the file
//!   (line 0) with the app's name in each message;
//! - `ecosystem.json` reads through the YAML reader (JSON is YAML's flow
//!   syntax), with lines;
//! - `ecosystem.yaml`/`.yml` likewise.
//!
//! What pm2 does that the translation keeps: it finds an interpreter for
//! the script by its extension (node for `.js`, python for `.py`, bash
//! for `.sh`, none for a binary), resolves the script and the log files
//! against the app's `cwd`, stops an app with SIGINT, and restarts it
//! unless `autorestart: false`.

mod evaluate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::draft::{program_name, Backoff, Draft, Group, Log, Origin, Program, Restart};
use super::source::{read_text, resolve};
use super::yaml::{self, Key, Node, Value};
use super::{Context, ImportError};

/// pm2's exponential backoff: ×1.5 per restart, at most 15 s.
const EXP_BACKOFF_MULTIPLIER: f64 = 1.5;
const EXP_BACKOFF_MAX: Duration = Duration::from_millis(15_000);

/// Interpreters pm2 picks by the script's extension (lib/API/interpreter.json).
const BY_EXTENSION: [(&str, &str); 11] = [
    ("sh", "bash"),
    ("py", "python"),
    ("rb", "ruby"),
    ("php", "php"),
    ("pl", "perl"),
    ("js", "node"),
    ("cjs", "node"),
    ("mjs", "node"),
    ("coffee", "coffee"),
    ("ls", "lsc"),
    ("ts", "bun"),
];

/// Keys with no kelpie equivalent, and why. A key whose value is off
/// (`false`, `0`, empty) changes nothing under pm2 either and is not
/// reported.
const DROPPED: &[(&str, &str)] = &[
    ("watch", "kelpie does not restart programs on file changes"),
    ("cron_restart", "kelpie does not restart on a schedule; use cron or a systemd timer calling `kelpie restart`"),
    ("source_map_support", "pm2 loads source-map-support into node apps; pass --enable-source-maps in node_args instead"),
    ("time", "a pm2 log format option; kelpie's log format is its own"),
    ("log_date_format", "a pm2 log format option; kelpie's log format is its own"),
    ("log_type", "a pm2 log format option; kelpie's log format is its own"),
    ("pid_file", "kelpie writes no pid files; `kelpie status` shows the pids"),
    ("instance_var", "pm2 names the instance number variable; kelpie always sets KELPIE_INSTANCE"),
    ("increment_var", "kelpie does not increment a variable per instance; use ${KELPIE_INSTANCE} in environment"),
    ("wait_ready", "process.send('ready') has no kelpie equivalent; use a readiness probe (notify, log, http, tcp, exec)"),
    ("shutdown_with_message", "kelpie stops programs with a signal (SIGINT here), not a message"),
    ("vizion", "pm2's version metadata; nothing to supervise"),
    ("pmx", "pm2's monitoring agent; kelpie's metrics are at /metrics"),
    ("automation", "pm2's monitoring agent; kelpie's metrics are at /metrics"),
    ("trace", "pm2's monitoring agent; kelpie's metrics are at /metrics"),
    ("v8", "pm2's monitoring agent; kelpie's metrics are at /metrics"),
    ("event_loop_inspector", "pm2's monitoring agent; kelpie's metrics are at /metrics"),
    ("deep_monitoring", "pm2's monitoring agent; kelpie's metrics are at /metrics"),
    ("io", "pm2's monitoring agent; kelpie's metrics are at /metrics"),
    ("force", "a pm2 start option; kelpie starts each program once"),
    ("append_env_to_name", "pm2's --env names; kelpie has one environment per program"),
    ("post_update", "pm2 deploy hooks; kelpie does not deploy"),
    ("filter_env", "kelpie passes its whole environment on; it cannot filter it per program"),
    ("name_prefix", "a pm2 naming option"),
    ("install_url", "a pm2 module option"),
    ("execute_command", "a pm2 internal option"),
    ("write", "a pm2 internal option"),
    ("windowsHide", "a Windows option"),
    ("username", "pm2 records who started the app; set `user` to run it as someone"),
    ("kill_retry_time", "pm2's interval between checks that a stopped app is gone; kelpie waits for the exit"),
];

/// pm2's other names for keys (lib/API/schema.json `alias`).
fn canonical(key: &str) -> &str {
    match key {
        "exec" => "script",
        "exec_interpreter" => "interpreter",
        "node_args" | "interpreterArgs" => "interpreter_args",
        "out" | "output" | "out_log" => "out_file",
        "error" | "err" | "err_file" | "err_log" => "error_file",
        "log" => "log_file",
        "cron" => "cron_restart",
        "combine_logs" => "merge_logs",
        "user" => "uid",
        "pid" => "pid_file",
        other => other,
    }
}

pub fn import(files: &[PathBuf], cx: &Context) -> Result<Draft, ImportError> {
    let mut draft = Draft::default();
    for file in files {
        import_file(file, cx, &mut draft)?;
    }
    Ok(draft)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    Js,
    Json,
    Yaml,
}

fn source_of(file: &Path, text: Option<&str>) -> Source {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if [".js", ".cjs", ".mjs"].iter().any(|e| name.ends_with(e)) {
        return Source::Js;
    }
    if name.ends_with(".json") {
        return Source::Json;
    }
    if name.ends_with(".yaml") || name.ends_with(".yml") {
        return Source::Yaml;
    }
    let text = text.unwrap_or_default();
    if text.trim_start().starts_with(['{', '[']) {
        Source::Json
    } else if text.contains("module.exports") || text.contains("export default") {
        Source::Js
    } else {
        Source::Yaml
    }
}

fn import_file(file: &Path, cx: &Context, draft: &mut Draft) -> Result<(), ImportError> {
    let absolute = resolve(&cx.cwd, file);
    let dir = absolute
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| cx.cwd.clone());
    let text = read_text(file, cx)?;
    let root = match source_of(file, Some(&text)) {
        Source::Json => yaml::parse_json(&text, file)?,
        Source::Yaml => yaml::parse(&text, file)?,
        Source::Js => {
            let path_var = cx.env.get("PATH").map(String::as_str);
            let Some(node) = evaluate::find_node(path_var) else {
                return Err(ImportError::data(
                    Origin::new(file, 0),
                    format!(
                        "`node` is not on PATH, and only node can evaluate a .js ecosystem file; export it as JSON and import that: node -e \"console.log(JSON.stringify(require('./{0}')))\" > ecosystem.json",
                        file.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
                    ),
                ));
            };
            let json = evaluate::evaluate(&node, &absolute, &dir, file)?;
            yaml::parse_json(&json, file)
                .map_err(|e| {
                    ImportError::data(
                        Origin::new(file, 0),
                        format!("node printed something that is not JSON: {}", e.message),
                    )
                })?
                .without_lines()
        }
    };

    let apps: Vec<&Node> = match &root.value {
        Value::Seq(items) => items.iter().collect(),
        Value::Map(entries) if root.get("apps").is_some() => {
            for (key, _) in entries {
                match key.name.as_str() {
                    "apps" => {}
                    "deploy" => draft.drop_key(
                        key.origin.clone(),
                        None,
                        "deploy",
                        "pm2 deploy fetches and installs code on servers; kelpie supervises what is installed",
                    ),
                    other => draft.drop_key(
                        key.origin.clone(),
                        None,
                        other,
                        "not a pm2 ecosystem key kelpie import knows",
                    ),
                }
            }
            match root.get("apps") {
                Some(Node {
                    value: Value::Seq(items),
                    ..
                }) => items.iter().collect(),
                Some(
                    one @ Node {
                        value: Value::Map(_),
                        ..
                    },
                ) => vec![one],
                Some(other) => {
                    return Err(ImportError::data(
                        other.origin.clone(),
                        format!("apps: expected a list of apps, found {}", other.describe()),
                    ))
                }
                None => Vec::new(),
            }
        }
        Value::Map(_) if root.get("script").is_some() => vec![&root],
        _ if root.is_null() => Vec::new(),
        _ => {
            return Err(ImportError::data(
                root.origin.clone(),
                "expected `apps: [...]`, a list of apps, or one app with a `script`",
            ))
        }
    };

    let home = cx.env.get("HOME").cloned();
    let mut groups: Vec<Group> = Vec::new();
    for (index, app) in apps.into_iter().enumerate() {
        let reader = App {
            cx,
            dir: &dir,
            home: home.as_deref(),
        };
        let (program, namespace) = reader.read(index, app, draft)?;
        if let Some((ns, origin)) = namespace {
            match groups.iter_mut().find(|g| g.name == ns) {
                Some(group) => group.programs.push(program.name.clone()),
                None => groups.push(Group {
                    name: ns,
                    origin: Some(origin),
                    programs: vec![program.name.clone()],
                }),
            }
        }
        draft.programs.push(program);
    }
    for group in groups {
        if draft.programs.iter().any(|p| p.name == group.name) {
            let origin = group.origin.clone().unwrap_or_else(|| Origin::new(file, 0));
            draft.drop_key(
                origin,
                None,
                format!("namespace: {}", group.name),
                "a kelpie group cannot share its name with a program, so this namespace is not made a group",
            );
        } else {
            draft.groups.push(group);
        }
    }
    Ok(())
}

struct App<'a> {
    cx: &'a Context,
    /// The ecosystem file's directory: pm2 resolves paths against the
    /// directory `pm2 start` runs in, which is where the file usually is.
    dir: &'a Path,
    home: Option<&'a str>,
}

enum Interpreter {
    /// The script is run as is (`interpreter: none`, or a binary).
    None,
    Program(String),
}

impl App<'_> {
    fn read(
        &self,
        index: usize,
        node: &Node,
        draft: &mut Draft,
    ) -> Result<(Program, Option<(String, Origin)>), ImportError> {
        let entries = node.map(&format!("app #{}", index + 1))?;
        let lookup = |want: &str| {
            entries
                .iter()
                .rev()
                .find(|(k, _)| canonical(&k.name) == want)
                .map(|(_, v)| v)
        };
        let script_node = lookup("script").filter(|n| !n.is_null());
        let pm2_name = match lookup("name").filter(|n| !n.is_null()) {
            Some(n) => n.str(&format!("app #{}: name", index + 1))?.to_string(),
            None => match script_node {
                Some(s) => {
                    let script = s.str(&format!("app #{}: script", index + 1))?;
                    Path::new(script)
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_else(|| script.to_string())
                }
                None => format!("app-{}", index + 1),
            },
        };
        let what = |key: &str| format!("app {pm2_name:?}: {key}");
        let Some(script_node) = script_node else {
            return Err(ImportError::data(
                node.origin.clone(),
                format!("app {pm2_name:?} has no script"),
            ));
        };
        let name = program_name(&pm2_name).ok_or_else(|| {
            ImportError::data(
                node.origin.clone(),
                format!("app name {pm2_name:?} has no letter or digit kelpie can use"),
            )
        })?;
        let mut p = Program {
            name: name.clone(),
            origin: Some(node.origin.clone()),
            // pm2 stops an app with SIGINT, then SIGKILL after kill_timeout.
            stop_signal: Some("INT".into()),
            ..Program::default()
        };
        if name != pm2_name {
            p.notes.push(format!("pm2 name: {pm2_name:?}"));
        }
        // Without line numbers (a .js file), the app's name goes in the key.
        let key_name = |key: &Key| {
            if key.origin.line == 0 {
                format!("{} (app {pm2_name:?})", key.name)
            } else {
                key.name.clone()
            }
        };
        let mut dropped = |key: &Key, why: &str| {
            draft.drop_key(key.origin.clone(), Some(&name), key_name(key), why);
        };

        let cwd = match lookup("cwd").filter(|n| !n.is_null()) {
            Some(n) => self.path(n.str(&what("cwd"))?, self.dir),
            None => self.dir.to_path_buf(),
        };
        p.directory = Some(cwd.display().to_string());

        let mut interpreter = None;
        let mut interpreter_args = Vec::new();
        let mut args = Vec::new();
        let mut instances_node = None;
        let mut exec_mode_cluster = false;
        let mut autorestart = true;
        let mut stop_codes = None;
        let mut restart_delay = None;
        let mut exp_backoff = None;
        let (mut out_file, mut error_file, mut log_file) = (None, None, None);
        let mut disable_logs = false;
        let mut merge_logs = false;
        let mut watch_on = false;
        let mut watch_extras: Vec<&Key> = Vec::new();
        let mut namespace = None;
        for (key, value) in entries {
            let canon = canonical(&key.name);
            let w = what(&key.name);
            if value.is_null() {
                continue;
            }
            match canon {
                "name" | "script" | "cwd" => {}
                "args" => args = self.words(value, &w)?,
                "interpreter" => interpreter = Some(value.str(&w)?.to_string()),
                "interpreter_args" => interpreter_args = self.words(value, &w)?,
                "env" => {
                    for (k, v) in value.map(&w)? {
                        let text = match &v.value {
                            Value::Scalar { text, .. } if !v.is_null() => text.clone(),
                            Value::Scalar { .. } => String::new(),
                            _ => v.str(&format!("{w}.{}", k.name))?.to_string(),
                        };
                        p.environment.insert(k.name.clone(), text);
                    }
                }
                "port" => {
                    p.environment
                        .entry("PORT".into())
                        .or_insert_with(|| value.str(&w).unwrap_or_default().to_string());
                }
                "instances" => instances_node = Some(value),
                "exec_mode" => match value.str(&w)? {
                    "fork" | "fork_mode" => {}
                    "cluster" | "cluster_mode" => {
                        exec_mode_cluster = true;
                        dropped(key, "kelpie has no cluster mode: its instances are separate processes, each needing its own port (${KELPIE_INSTANCE}), where pm2's cluster workers share one");
                    }
                    other => {
                        return Err(ImportError::data(
                            value.origin.clone(),
                            format!("{w}: expected fork or cluster, found {other:?}"),
                        ))
                    }
                },
                "autorestart" => autorestart = value.bool(&w)?,
                "autostart" => {
                    if !value.bool(&w)? {
                        p.autostart = Some(false);
                    }
                }
                "stop_exit_codes" => {
                    let items: Vec<&Node> = match &value.value {
                        Value::Seq(items) => items.iter().collect(),
                        _ => vec![value],
                    };
                    let codes = items
                        .into_iter()
                        .map(|n| {
                            let code = n.int(&w)?;
                            u8::try_from(code).map_err(|_| {
                                ImportError::data(
                                    n.origin.clone(),
                                    format!("{w}: {code} is not an exit code (0 to 255)"),
                                )
                            })
                        })
                        .collect::<Result<Vec<u8>, _>>()?;
                    stop_codes = Some(codes);
                }
                "max_restarts" => {
                    let n = value.uint(&w)?;
                    p.max_restarts = Some(n);
                    p.notes.push(format!("max_restarts = {n}: pm2 counts restarts in a row that each ran shorter than min_uptime; kelpie counts restarts within restart_window (60s by default)"));
                }
                "min_uptime" => p.start_seconds = Some(duration_ms(value, &w, true)?),
                "restart_delay" => restart_delay = Some(duration_ms(value, &w, false)?),
                "exp_backoff_restart_delay" => {
                    let d = duration_ms(value, &w, false)?;
                    if !d.is_zero() {
                        exp_backoff = Some(d);
                    }
                }
                "kill_timeout" => p.stop_timeout = Some(duration_ms(value, &w, false)?),
                "max_memory_restart" => {
                    // 0 turns it off in pm2 too.
                    let bytes = memory_bytes(value, &w)?;
                    if bytes > 0 {
                        p.memory_restart = Some(bytes);
                        p.notes.push(format!("max_memory_restart became memory_restart = {:?}: pm2 restarts the app when one check (every 30s) finds its main process above the limit; kelpie when the RSS of its whole process group stays above it for memory_restart_after (30s)", super::emit::size(bytes)));
                    }
                }
                "listen_timeout" => {
                    p.start_timeout = Some(duration_ms(value, &w, false)?);
                    p.notes.push("listen_timeout became start_timeout: a start that is not ready by then is restarted".into());
                }
                "out_file" => out_file = Some(self.log_path(value, &w, &cwd)?),
                "error_file" => error_file = Some(self.log_path(value, &w, &cwd)?),
                "log_file" => {
                    if !matches!(&value.value, Value::Scalar { text, plain: true } if text == "false" || text == "true")
                    {
                        log_file = Some(self.log_path(value, &w, &cwd)?);
                    } else if value.bool(&w)? {
                        dropped(key, "pm2 writes a combined log under ~/.pm2/logs; kelpie writes output to its own log unless log_file names a file");
                    }
                }
                "disable_logs" => disable_logs = value.bool(&w)?,
                "merge_logs" => merge_logs = value.bool(&w)?,
                "uid" => p.user = Some(value.str(&w)?.to_string()),
                "gid" => p.group = Some(value.str(&w)?.to_string()),
                "namespace" => {
                    let ns = value.str(&w)?;
                    if ns != "default" {
                        match program_name(ns) {
                            Some(group) => namespace = Some((group, key.origin.clone())),
                            None => dropped(key, "not a name kelpie can use for a group"),
                        }
                    }
                }
                "treekill" => {
                    if !value.bool(&w)? {
                        dropped(key, "kelpie always signals the whole process group");
                    }
                }
                "disable_source_map_support" | "disable_trace" => {}
                "ignore_watch" | "watch_options" | "watch_delay" => watch_extras.push(key),
                "watch" => {
                    if is_on(value) {
                        watch_on = true;
                        dropped(key, "kelpie does not restart programs on file changes");
                    }
                }
                env_name if env_name.starts_with("env_") => dropped(
                    key,
                    "a named environment pm2 applies with `pm2 start --env NAME`; kelpie has one environment per program: merge the values into `env` before importing if you deploy with it",
                ),
                other => match DROPPED.iter().find(|(k, _)| *k == other) {
                    Some((_, why)) => {
                        if is_on(value) {
                            dropped(key, why);
                        }
                    }
                    None => dropped(key, "not a pm2 app key kelpie import knows"),
                },
            }
        }
        if watch_on {
            for key in watch_extras {
                dropped(key, "kelpie does not restart programs on file changes");
            }
        }

        // Instances: a number, or one per CPU.
        if let Some(n) = instances_node {
            let count = match &n.value {
                Value::Scalar { text, .. } if text == "max" => None,
                _ => Some(n.int(&what("instances"))?),
            };
            match count {
                Some(c) if c >= 1 => {
                    p.instances = Some(u32::try_from(c).map_err(|_| {
                        ImportError::data(
                            n.origin.clone(),
                            format!("{}: {c} is too many", what("instances")),
                        )
                    })?);
                }
                _ => {
                    let key = entries
                        .iter()
                        .rev()
                        .find(|(k, _)| k.name == "instances")
                        .map(|(k, _)| k);
                    if let Some(key) = key {
                        dropped(key, "pm2 starts one instance per CPU (max, 0 or -1; -N is N fewer) of the machine it runs on; kelpie import keeps 1: set instances by hand");
                    }
                }
            }
        }

        // The command: interpreter, its arguments, the script, its arguments.
        let script = script_node.str(&what("script"))?;
        let resolved = self.script_path(script, &cwd);
        let chosen = match interpreter.as_deref() {
            Some("none") => Interpreter::None,
            Some(other) => Interpreter::Program(other.to_string()),
            None => self.default_interpreter(script, resolved.as_deref(), &mut p.notes),
        };
        p.command = match chosen {
            Interpreter::None => {
                let mut argv = vec![self.direct_script(script, &cwd, resolved.as_deref())];
                if !interpreter_args.is_empty() {
                    p.notes.push(
                        "interpreter_args are not used: the script runs without an interpreter"
                            .into(),
                    );
                }
                argv.extend(args);
                argv
            }
            Interpreter::Program(interp) => {
                if interp.contains("python") {
                    p.environment
                        .entry("PYTHONUNBUFFERED".into())
                        .or_insert_with(|| "1".into());
                }
                let script_arg = resolved
                    .clone()
                    .unwrap_or_else(|| resolve(&cwd, script))
                    .display()
                    .to_string();
                let implicit_cluster =
                    interp == "node" || interp.ends_with("/node") || interp == "bun";
                if implicit_cluster
                    && !exec_mode_cluster
                    && p.instances.is_some_and(|n| n > 1)
                    && lookup("exec_mode").is_none()
                {
                    p.notes.push("pm2 runs a node app with instances in cluster mode, its workers sharing one port; kelpie's instances are separate processes, each needing its own port (${KELPIE_INSTANCE})".into());
                }
                let mut argv = vec![interp];
                argv.extend(interpreter_args);
                argv.push(script_arg);
                argv.extend(args);
                argv
            }
        };
        // pm2 numbers its instances in NODE_APP_INSTANCE; apps read it to
        // pick a port or a leader.
        if p.instances.is_some_and(|n| n > 1) && !p.environment.contains_key("NODE_APP_INSTANCE") {
            p.instance_environment
                .insert("NODE_APP_INSTANCE".into(), "${KELPIE_INSTANCE}".into());
        }

        // Restarts.
        if !autorestart {
            p.restart = Some(Restart::Never);
        } else if let Some(codes) = stop_codes {
            p.restart = Some(Restart::OnFailure);
            p.success_codes = Some(codes);
        }
        match (exp_backoff, restart_delay) {
            (Some(initial), other) => {
                p.backoff = Some(Backoff {
                    initial,
                    max: EXP_BACKOFF_MAX.max(initial),
                    multiplier: Some(EXP_BACKOFF_MULTIPLIER),
                    jitter: None,
                });
                if other.is_some() {
                    p.notes.push("restart_delay is not used: pm2 uses exp_backoff_restart_delay when both are set".into());
                }
            }
            (None, Some(delay)) => p.backoff = Some(Backoff::fixed(delay)),
            (None, None) => {}
        }

        // Logs: kelpie keeps one file per program.
        p.log = self.logs(
            &mut p.notes,
            disable_logs,
            out_file,
            error_file,
            log_file,
            &mut dropped,
            entries,
        );
        if p.instances.is_some_and(|n| n > 1)
            && !merge_logs
            && matches!(p.log, Some(Log::File { .. }))
        {
            p.notes.push("pm2 writes one log file per instance unless merge_logs; kelpie writes all instances to one file".into());
        }
        Ok((p, namespace))
    }

    /// A list of words: an array as is, a string split as a shell would.
    fn words(&self, node: &Node, what: &str) -> Result<Vec<String>, ImportError> {
        match &node.value {
            Value::Seq(items) => items
                .iter()
                .map(|i| i.str(what).map(str::to_string))
                .collect(),
            _ => {
                let text = node.str(what)?;
                shell_words::split(text).map_err(|_| {
                    ImportError::data(
                        node.origin.clone(),
                        format!("{what}: unbalanced quotes in {text:?}"),
                    )
                })
            }
        }
    }

    /// `~` is the home directory; relative paths are against `base`.
    fn path(&self, text: &str, base: &Path) -> PathBuf {
        let expanded = match (text.strip_prefix('~'), self.home) {
            (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
                format!("{home}{rest}")
            }
            _ => text.to_string(),
        };
        resolve(base, expanded)
    }

    fn log_path(&self, node: &Node, what: &str, cwd: &Path) -> Result<Option<String>, ImportError> {
        let text = node.str(what)?;
        if text == "/dev/null" || text == "NULL" {
            return Ok(None);
        }
        Ok(Some(self.path(text, cwd).display().to_string()))
    }

    /// Where pm2 finds the script: in `cwd`, else on PATH.
    fn script_path(&self, script: &str, cwd: &Path) -> Option<PathBuf> {
        let in_cwd = self.path(script, cwd);
        if in_cwd.exists() {
            return Some(in_cwd);
        }
        if script.contains('/') {
            return None;
        }
        evaluate::find_program(script, self.cx.env.get("PATH").map(String::as_str))
    }

    /// The script as argv[0]: a path when pm2 would use one, else the bare
    /// name for kelpie to find on PATH.
    fn direct_script(&self, script: &str, cwd: &Path, resolved: Option<&Path>) -> String {
        let in_cwd = self.path(script, cwd);
        if resolved.is_some_and(|r| r == in_cwd) || script.contains('/') || script.starts_with('~')
        {
            in_cwd.display().to_string()
        } else {
            script.to_string()
        }
    }

    fn default_interpreter(
        &self,
        script: &str,
        resolved: Option<&Path>,
        notes: &mut Vec<String>,
    ) -> Interpreter {
        let extension = Path::new(script)
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        let path_var = self.cx.env.get("PATH").map(String::as_str);
        if let Some((ext, interp)) = BY_EXTENSION
            .iter()
            .find(|(e, _)| Some(*e) == extension.as_deref())
        {
            if *interp == "python" && evaluate::find_program("python", path_var).is_none() {
                // pm2 falls back to python3 when there is no `python`.
                return Interpreter::Program("python3".into());
            }
            if *ext == "ts" {
                notes
                    .push("pm2 runs .ts scripts with bun (older pm2 versions with ts-node)".into());
            }
            return Interpreter::Program(interp.to_string());
        }
        match resolved.and_then(is_binary) {
            Some(true) => Interpreter::None,
            Some(false) => Interpreter::Program("node".into()),
            None => {
                notes.push(format!("{script:?} is not readable here, so whether pm2 runs it directly (a binary) or with node cannot be told; node was assumed"));
                Interpreter::Program("node".into())
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn logs(
        &self,
        notes: &mut Vec<String>,
        disable_logs: bool,
        out_file: Option<Option<String>>,
        error_file: Option<Option<String>>,
        log_file: Option<Option<String>>,
        dropped: &mut impl FnMut(&Key, &str),
        entries: &[(Key, Node)],
    ) -> Option<Log> {
        let key = |want: &str| {
            entries
                .iter()
                .rev()
                .find(|(k, _)| canonical(&k.name) == want)
                .map(|(k, _)| k)
        };
        let file = |file: String| Log::File {
            file,
            max_size: None,
            keep: None,
        };
        if disable_logs {
            return Some(Log::Discard);
        }
        if let Some(Some(combined)) = log_file {
            for (name, value) in [("out_file", &out_file), ("error_file", &error_file)] {
                if matches!(value, Some(Some(f)) if *f != combined) {
                    if let Some(k) = key(name) {
                        dropped(
                            k,
                            "kelpie keeps one log per program, so both streams go to log_file",
                        );
                    }
                }
            }
            return Some(file(combined));
        }
        match (out_file, error_file) {
            (Some(Some(out)), err) => {
                if matches!(&err, Some(Some(e)) if *e != out) {
                    if let Some(k) = key("error_file") {
                        dropped(
                            k,
                            "kelpie keeps one log per program, so stderr goes to out_file too",
                        );
                    }
                }
                if matches!(err, Some(None)) {
                    notes.push(
                        "error_file is /dev/null, but kelpie writes stderr to out_file too".into(),
                    );
                }
                Some(file(out))
            }
            (Some(None), Some(Some(err))) => {
                notes.push(
                    "out_file is /dev/null, but kelpie writes stdout to error_file too".into(),
                );
                Some(file(err))
            }
            (Some(None), Some(None)) => Some(Log::Discard),
            (Some(None), None) => {
                notes.push("out_file is /dev/null; pm2 still kept stderr in ~/.pm2/logs, kelpie discards both".into());
                Some(Log::Discard)
            }
            (None, Some(Some(err))) => {
                notes.push("stdout goes to error_file too (pm2 wrote it under ~/.pm2/logs)".into());
                Some(file(err))
            }
            (None, Some(None)) => {
                notes.push(
                    "error_file is /dev/null; kelpie keeps both streams in its own log".into(),
                );
                None
            }
            (None, None) => None,
        }
    }
}

/// Whether a value turns its option on: not false, 0, "" or an empty list.
fn is_on(node: &Node) -> bool {
    match &node.value {
        Value::Scalar { text, .. } => {
            !(node.is_null() || matches!(text.to_ascii_lowercase().as_str(), "false" | "0" | ""))
        }
        Value::Seq(items) => !items.is_empty(),
        Value::Map(entries) => !entries.is_empty(),
    }
}

/// pm2's durations: milliseconds as a number, or (where `units`) a
/// string `N`, `Ns`, `Nm`, `Nh`.
fn duration_ms(node: &Node, what: &str, units: bool) -> Result<Duration, ImportError> {
    if let Value::Scalar { text, .. } = &node.value {
        let t = text.trim();
        let (digits, scale) = match t.chars().last() {
            Some('h') if units => (&t[..t.len() - 1], 3_600_000),
            Some('m') if units => (&t[..t.len() - 1], 60_000),
            Some('s') if units => (&t[..t.len() - 1], 1_000),
            _ => (t, 1),
        };
        if let Ok(n) = digits.parse::<u64>() {
            if let Some(ms) = n.checked_mul(scale) {
                return Ok(Duration::from_millis(ms));
            }
        }
        if let Ok(n) = node.int(what) {
            if let Ok(ms) = u64::try_from(n) {
                return Ok(Duration::from_millis(ms));
            }
        }
    }
    let expected = if units {
        "milliseconds, or a number with h, m or s"
    } else {
        "milliseconds (a whole number)"
    };
    Err(ImportError::data(
        node.origin.clone(),
        format!("{what}: expected {expected}, found {}", node.describe()),
    ))
}

/// `max_memory_restart`: bytes as a number, or a whole number with `K`,
/// `M` or `G` (pm2's 1024 multiples; lib/API/schema.json allows no other
/// spelling).
fn memory_bytes(node: &Node, what: &str) -> Result<u64, ImportError> {
    let wrong = || {
        ImportError::data(
            node.origin.clone(),
            format!(
                "{what}: expected bytes, or a whole number with K, M or G (1024 multiples, as pm2 reads them), found {}",
                node.describe()
            ),
        )
    };
    let Value::Scalar { text, .. } = &node.value else {
        return Err(wrong());
    };
    let t = text.trim();
    let (digits, shift) = match t.chars().last() {
        Some('K') => (&t[..t.len() - 1], 10),
        Some('M') => (&t[..t.len() - 1], 20),
        Some('G') => (&t[..t.len() - 1], 30),
        _ => {
            // A number (JSON may print whole numbers as `5.0`).
            let n = node.int(what).map_err(|_| wrong())?;
            return u64::try_from(n).map_err(|_| wrong());
        }
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(wrong());
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| {
            ImportError::data(node.origin.clone(), format!("{what}: {t:?} is too large"))
        })
}

/// pm2's test for "run it directly": a NUL byte early in the file.
fn is_binary(path: &Path) -> Option<bool> {
    use std::io::Read as _;
    let mut head = [0u8; 512];
    // Only a regular file is opened: opening a FIFO would wait for a writer.
    if !std::fs::metadata(path).ok()?.is_file() {
        return None;
    }
    let mut file = std::fs::File::open(path).ok()?;
    let n = file.read(&mut head).ok()?;
    Some(head[..n].contains(&0))
}

#[cfg(test)]
mod tests;

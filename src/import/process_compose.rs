//! process-compose (`process-compose.yaml`): `processes.NAME` become
//! programs. The file is read with its lines (`yaml`), so every error and
//! every key that is not carried over names `file:line`.
//!
//! How process-compose runs things, and so what the translation keeps:
//! - `command` is a shell line run as `bash -c COMMAND` (the `shell:` block
//!   names another shell); `entrypoint` is an argv run as is.
//! - Processes run in the directory process-compose was started in (taken
//!   to be the first file's), with `.env` from there in their environment.
//! - The file goes through `$VAR` expansion from process-compose's
//!   environment when it is loaded (`$$` escapes a `$`), and through Go
//!   templates (`{{.NAME}}` from `vars`, `{{.PC_REPLICA_NUM}}`) later.
//!   Commands keep their `$VAR` for the shell, which expands them when the
//!   program starts; other values are expanded here, from the environment
//!   kelpie import runs in. `{{.PC_REPLICA_NUM}}` becomes
//!   `${KELPIE_INSTANCE}`; other template actions are refused.
//! - A process is not restarted unless `availability.restart` says so
//!   (kelpie's default is to restart), and one that others wait for with
//!   `process_completed*` is a oneshot in kelpie.
//! - Several files (and `extends`) merge as process-compose merges them:
//!   mappings key by key, `environment` entry by entry, the later file
//!   winning.
//!
//! `text` holds the two expansions of values: `$VAR` and the templates.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use self::text::{expand_env, mentions_variable, render_templates};
use super::draft::{
    program_name, Backoff, Condition, Draft, Group, Kind, Log, Origin, Probe, ProbeTarget, Program,
    Restart,
};
use super::source::{read_text, resolve};
use super::yaml::{self, Key, Node, Value};
use super::{Context, ImportError};

/// process-compose's shell when the file names none (on Linux and macOS).
const DEFAULT_SHELL: [&str; 2] = ["bash", "-c"];
/// `extends` chains longer than this are taken to be a mistake.
const MAX_EXTENDS: usize = 16;

pub fn import(files: &[PathBuf], cx: &Context) -> Result<Draft, ImportError> {
    let mut root: Option<Node> = None;
    for file in files {
        let node = load(file, cx, &mut Vec::new())?;
        root = Some(match root {
            None => node,
            Some(base) => merge(base, node),
        });
    }
    let Some(root) = root else {
        return Ok(Draft::default());
    };
    let first = &files[0];
    let base_dir = resolve(&cx.cwd, first)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| cx.cwd.clone());
    Project::new(cx, base_dir, first).read(&root)
}

/// One file, with the files it `extends` merged under it.
fn load(file: &Path, cx: &Context, chain: &mut Vec<PathBuf>) -> Result<Node, ImportError> {
    let text = read_text(file, cx)?;
    let node = yaml::parse(&text, file)?;
    let Some(extends) = node.get("extends") else {
        return Ok(node);
    };
    let target = extends.str("extends")?;
    let base = file
        .parent()
        .map(|dir| dir.join(target))
        .unwrap_or_else(|| PathBuf::from(target));
    let canonical = std::fs::canonicalize(cx.cwd.join(file)).unwrap_or_else(|_| file.into());
    if chain.contains(&canonical) || chain.len() >= MAX_EXTENDS {
        return Err(ImportError::data(
            extends.origin.clone(),
            format!("extends {target:?} loops back to a file already being read"),
        ));
    }
    chain.push(canonical);
    let base_node = load(&base, cx, chain)?;
    Ok(merge(base_node, node))
}

/// `over` laid on `base` as process-compose merges files: mappings key by
/// key, `environment` lists by variable, anything else replaced.
fn merge(base: Node, over: Node) -> Node {
    match (base.value, over.value) {
        (Value::Map(mut entries), Value::Map(over_entries)) => {
            for (key, value) in over_entries {
                match entries.iter().position(|(k, _)| k.name == key.name) {
                    Some(at) => {
                        let old = entries.remove(at).1;
                        let new = if key.name == "environment" {
                            merge_environment(old, value)
                        } else {
                            merge(old, value)
                        };
                        entries.insert(at, (key, new));
                    }
                    None => entries.push((key, value)),
                }
            }
            Node {
                value: Value::Map(entries),
                origin: base.origin,
            }
        }
        (_, value) => Node {
            value,
            origin: over.origin,
        },
    }
}

fn merge_environment(base: Node, over: Node) -> Node {
    let (Value::Seq(mut items), Value::Seq(over_items)) = (base.value.clone(), &over.value) else {
        return over;
    };
    let name = |n: &Node| match &n.value {
        Value::Scalar { text, .. } => text.split('=').next().map(str::to_string),
        _ => None,
    };
    for item in over_items {
        match items
            .iter()
            .position(|i| name(i).is_some() && name(i) == name(item))
        {
            Some(at) => items[at] = item.clone(),
            None => items.push(item.clone()),
        }
    }
    Node {
        value: Value::Seq(items),
        origin: over.origin,
    }
}

struct Project<'a> {
    base_dir: PathBuf,
    first_file: &'a Path,
    /// For `$VAR` in values that no shell will see: the environment of
    /// kelpie import, with `.env` under it (as godotenv does not override).
    env: HashMap<String, String>,
    expand_env: bool,
    env_file: Option<String>,
    shell: Vec<String>,
    vars: BTreeMap<String, String>,
    global_env: BTreeMap<String, String>,
    draft: Draft,
}

/// What a string field is, for expansion: a shell line keeps its `$VAR`.
#[derive(Clone, Copy, PartialEq)]
enum Field {
    Shell,
    Plain,
}

impl<'a> Project<'a> {
    fn new(cx: &Context, base_dir: PathBuf, first_file: &'a Path) -> Self {
        let mut env = cx.env.clone();
        let dot_env = base_dir.join(".env");
        let mut env_file = None;
        if dot_env.is_file() {
            env_file = Some(dot_env.display().to_string());
            if let Some(vars) = std::fs::read_to_string(&dot_env)
                .ok()
                .and_then(|t| crate::config::parse_env_file(&t).ok())
            {
                for (key, value) in vars {
                    env.entry(key).or_insert(value);
                }
            }
        }
        Self {
            base_dir,
            first_file,
            env,
            expand_env: true,
            env_file,
            shell: DEFAULT_SHELL.iter().map(|s| s.to_string()).collect(),
            vars: BTreeMap::new(),
            global_env: BTreeMap::new(),
            draft: Draft::default(),
        }
    }

    fn read(mut self, root: &Node) -> Result<Draft, ImportError> {
        if root.is_null() {
            return Ok(self.draft);
        }
        let top = root.map("the file")?;
        // Settings every process depends on come first.
        if let Some(flag) = root.get("disable_env_expansion") {
            self.expand_env = !flag.bool("disable_env_expansion")?;
        }
        if let Some(vars) = root.get("vars") {
            self.vars = read_vars(vars, "vars")?;
        }
        let mut processes = None;
        for (key, value) in top {
            let at = key.origin.clone();
            match key.name.as_str() {
                "processes" => processes = Some(value),
                "version" | "is_strict" | "is_tui_disabled" | "vars" | "extends"
                | "disable_env_expansion" => {}
                "environment" => {
                    self.global_env = self.environment(value, "environment")?;
                }
                "shell" => self.read_shell(value)?,
                "log_location" | "log_level" | "log_length" | "log_format"
                | "log_configuration" => self.draft.drop_key(
                    at,
                    None,
                    &key.name,
                    "configures process-compose's own log; kelpie's is set in [supervisor] (log_level, log_format)",
                ),
                "env_cmds" => self.draft.drop_key(
                    at,
                    None,
                    &key.name,
                    "kelpie does not run commands to fill the environment; set the values in `environment` or an env_file",
                ),
                other if other.starts_with("x-") => {}
                other => self.draft.drop_key(
                    at,
                    None,
                    other,
                    "not a process-compose key kelpie import knows",
                ),
            }
        }
        let Some(processes) = processes else {
            return Ok(self.draft);
        };
        let procs = processes.map("processes")?;

        // Names first: dependencies refer to processes defined later.
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        let mut taken = BTreeSet::new();
        for (key, _) in procs {
            let Some(mut name) = program_name(&key.name) else {
                return Err(ImportError::data(
                    key.origin.clone(),
                    format!(
                        "process name {:?} has no letter or digit kelpie can use",
                        key.name
                    ),
                ));
            };
            let base = name.clone();
            let mut n = 2;
            while taken.contains(&name) {
                name = format!("{base}-{n}");
                n += 1;
            }
            taken.insert(name.clone());
            names.insert(key.name.clone(), name);
        }
        // Who must be a oneshot: a process others wait on to complete.
        let mut oneshots = BTreeSet::new();
        for (_, node) in procs {
            if let Some(deps) = node.get("depends_on") {
                for (dep, spec) in deps.map("depends_on")? {
                    if matches!(condition(spec)?.0, Condition::Completed) {
                        oneshots.insert(dep.name.clone());
                    }
                }
            }
        }
        let mut groups: Vec<Group> = Vec::new();
        for (key, node) in procs {
            let name = names[&key.name].clone();
            let oneshot = oneshots.contains(&key.name);
            let (program, namespace) = self.process(key, node, &name, oneshot, &names)?;
            if let Some((ns, origin)) = namespace {
                match groups.iter_mut().find(|g| g.name == ns) {
                    Some(group) => group.programs.push(name.clone()),
                    None => groups.push(Group {
                        name: ns,
                        origin: Some(origin),
                        programs: vec![name.clone()],
                    }),
                }
            }
            self.draft.programs.push(program);
        }
        for group in groups {
            if taken.contains(&group.name) {
                let origin = group
                    .origin
                    .clone()
                    .unwrap_or_else(|| Origin::new(self.first_file, 0));
                self.draft.drop_key(
                    origin,
                    None,
                    format!("namespace: {}", group.name),
                    "a kelpie group cannot share its name with a program, so this namespace is not made a group",
                );
            } else {
                self.draft.groups.push(group);
            }
        }
        Ok(self.draft)
    }

    fn read_shell(&mut self, node: &Node) -> Result<(), ImportError> {
        let mut command = None;
        let mut argument = None;
        for (key, value) in node.map("shell")? {
            match key.name.as_str() {
                "shell_command" => command = Some(value.str("shell.shell_command")?.to_string()),
                "shell_argument" => argument = Some(value.str("shell.shell_argument")?.to_string()),
                "elevated_shell_command" | "elevated_shell_argument" => {}
                other => self.draft.drop_key(
                    key.origin.clone(),
                    None,
                    format!("shell.{other}"),
                    "not a process-compose key kelpie import knows",
                ),
            }
        }
        self.shell = vec![
            command.unwrap_or_else(|| DEFAULT_SHELL[0].into()),
            argument.unwrap_or_else(|| DEFAULT_SHELL[1].into()),
        ];
        Ok(())
    }

    /// A string value with `$VAR` expanded (unless it is a shell line)
    /// and, for the fields process-compose renders, templates rendered.
    fn text(
        &self,
        node: &Node,
        what: &str,
        vars: &BTreeMap<String, String>,
        field: Field,
    ) -> Result<String, ImportError> {
        let raw = node.str(what)?;
        let expanded = match (self.expand_env, field) {
            (false, _) => raw.to_string(),
            (true, Field::Shell) => raw.replace("$$", "$"),
            (true, Field::Plain) => expand_env(raw, &self.env),
        };
        render_templates(&expanded, vars)
            .map_err(|why| ImportError::data(node.origin.clone(), format!("{what}: {why}")))
    }

    /// A string value process-compose expands but does not render as a
    /// template (`environment`, `entrypoint`): `{{` stays as written.
    fn literal(&self, node: &Node, what: &str) -> Result<String, ImportError> {
        let raw = node.str(what)?;
        Ok(if self.expand_env {
            expand_env(raw, &self.env)
        } else {
            raw.to_string()
        })
    }

    /// `environment`: a list of `KEY=VALUE` strings.
    fn environment(
        &self,
        node: &Node,
        what: &str,
    ) -> Result<BTreeMap<String, String>, ImportError> {
        let mut env = BTreeMap::new();
        for item in node.seq(what)? {
            let entry = self.literal(item, what)?;
            let Some((key, value)) = entry.split_once('=') else {
                return Err(ImportError::data(
                    item.origin.clone(),
                    format!("{what}: expected \"KEY=VALUE\", found {entry:?}"),
                ));
            };
            if key.is_empty() {
                return Err(ImportError::data(
                    item.origin.clone(),
                    format!("{what}: {entry:?} has no variable name before `=`"),
                ));
            }
            env.insert(key.to_string(), value.to_string());
        }
        Ok(env)
    }

    #[allow(clippy::type_complexity)]
    fn process(
        &mut self,
        key: &Key,
        node: &Node,
        name: &str,
        oneshot: bool,
        names: &BTreeMap<String, String>,
    ) -> Result<(Program, Option<(String, Origin)>), ImportError> {
        let pc_name = key.name.as_str();
        let path = |k: &str| format!("processes.{pc_name}.{k}");
        let entries = node.map(&format!("processes.{pc_name}"))?;
        let mut p = Program {
            name: name.to_string(),
            origin: Some(key.origin.clone()),
            directory: Some(self.base_dir.display().to_string()),
            env_file: self.env_file.clone(),
            environment: self.global_env.clone(),
            ..Program::default()
        };
        if oneshot {
            p.kind = Some(Kind::Oneshot);
        }
        if name != pc_name {
            p.notes.push(format!("process-compose name: {pc_name:?}"));
        }
        let mut vars = self.vars.clone();
        if let Some(v) = node.get("vars") {
            vars.extend(read_vars(v, &path("vars"))?);
        }
        vars.insert("PC_REPLICA_NUM".into(), "${KELPIE_INSTANCE}".into());

        let mut command = None;
        let mut entrypoint = None;
        let mut restart = None;
        let mut disabled = None;
        let mut is_disabled = None;
        let mut namespace = None;
        let mut log_location = None;
        let mut log_rotation = None;
        let mut ready_log_line = None;
        let mut drops: Vec<(Origin, String, String)> = Vec::new();
        let mut drop = |origin: &Origin, key: String, why: &str| {
            drops.push((origin.clone(), key, why.to_string()));
        };
        for (k, v) in entries {
            let at = &k.origin;
            let key = k.name.as_str();
            match key {
                "command" => {
                    if !v.is_null() {
                        command = Some(v);
                    }
                }
                "entrypoint" => entrypoint = Some(v),
                "working_dir" => {
                    let dir = self.text(v, &path(key), &vars, Field::Plain)?;
                    if dir.contains("${KELPIE_INSTANCE}") {
                        return Err(ImportError::data(
                            at.clone(),
                            format!("{}: a directory per replica cannot be translated", path(key)),
                        ));
                    }
                    if !dir.is_empty() {
                        p.directory = Some(resolve(&self.base_dir, dir).display().to_string());
                    }
                }
                "environment" => {
                    let env = self.environment(v, &path(key))?;
                    p.environment.extend(env);
                }
                "depends_on" => {
                    for (dep, spec) in v.map(&path(key))? {
                        let Some(target) = names.get(&dep.name) else {
                            return Err(ImportError::data(
                                dep.origin.clone(),
                                format!(
                                    "{}: {:?} is not a process in this file",
                                    path(key),
                                    dep.name
                                ),
                            ));
                        };
                        let (cond, how) = condition(spec)?;
                        if how == "process_completed" {
                            p.notes.push(format!(
                                "depends_on {}: process_completed waits for any exit; kelpie's \"completed\" waits for a successful one (an exit code in {target}'s success_codes)",
                                dep.name
                            ));
                        }
                        if how == "process_log_ready" {
                            p.notes.push(format!(
                                "depends_on {}: process_log_ready is \"ready\" here, which {target}'s log readiness probe (its ready_log_line) decides",
                                dep.name
                            ));
                        }
                        p.depends_on.push((target.clone(), cond));
                    }
                }
                "readiness_probe" => {
                    if !v.is_null() {
                        p.readiness = Some(self.probe(v, &path(key), &vars, &mut p.notes, &mut drop)?);
                    }
                }
                "liveness_probe" => {
                    if !v.is_null() {
                        p.liveness = Some(self.probe(v, &path(key), &vars, &mut p.notes, &mut drop)?);
                    }
                }
                "ready_log_line" => ready_log_line = Some((v.str(&path(key))?.to_string(), at.clone())),
                "availability" => restart = Some(v),
                "shutdown" => {
                    for (sk, sv) in v.map(&path(key))? {
                        let what = path(&format!("shutdown.{}", sk.name));
                        match sk.name.as_str() {
                            "signal" => {
                                let n = sv.int(&what)?;
                                match signal_name(n) {
                                    Some("KILL") | Some("STOP") => drop(
                                        &sk.origin,
                                        format!("shutdown.signal: {n}"),
                                        "kelpie refuses KILL and STOP as stop signals (SIGKILL is its escalation after stop_timeout); the default TERM is used",
                                    ),
                                    Some(signal) => p.stop_signal = Some(signal.to_string()),
                                    None => {
                                        return Err(ImportError::data(
                                            sv.origin.clone(),
                                            format!("{what}: {n} is not a signal number (1 to 31)"),
                                        ))
                                    }
                                }
                            }
                            "timeout_seconds" => {
                                p.stop_timeout = Some(Duration::from_secs(sv.uint(&what)?.into()))
                            }
                            "command" => drop(
                                &sk.origin,
                                "shutdown.command".into(),
                                "kelpie stops a program with its stop_signal, not a command; make the program handle the signal",
                            ),
                            "parent_only" => {
                                if sv.bool(&what)? {
                                    drop(
                                        &sk.origin,
                                        "shutdown.parent_only".into(),
                                        "kelpie always signals the whole process group",
                                    );
                                }
                            }
                            other => drop(
                                &sk.origin,
                                format!("shutdown.{other}"),
                                "not a process-compose key kelpie import knows",
                            ),
                        }
                    }
                }
                "replicas" => {
                    let n = v.uint(&path(key))?;
                    if n > 0 {
                        p.instances = Some(n);
                    }
                }
                "disabled" => disabled = Some(v.bool(&path(key))?),
                "is_disabled" => {
                    // A string in process-compose, so an override can say "false".
                    is_disabled = Some(v.bool(&path(key))?)
                }
                "namespace" => {
                    let ns = v.str(&path(key))?;
                    if ns != "default" {
                        match program_name(ns) {
                            Some(group) => namespace = Some((group, at.clone())),
                            None => drop(at, "namespace".into(), "not a name kelpie can use for a group"),
                        }
                    }
                }
                "log_location" => log_location = Some((self.text(v, &path(key), &vars, Field::Plain)?, at.clone())),
                "log_configuration" => log_rotation = Some(v),
                "description" => {
                    let text = self.text(v, &path(key), &vars, Field::Plain)?;
                    p.notes.push(format!("description: {text}"));
                }
                "vars" => {}
                "is_daemon" => {
                    if v.bool(&path(key))? {
                        drop(at, key.into(), "kelpie supervises a process that stays in the foreground; run the program without daemonizing (docker run without -d, say)");
                    }
                }
                "is_foreground" | "is_tty" => {
                    if v.bool(&path(key))? {
                        drop(at, key.into(), "kelpie gives programs no terminal; their output goes to its log");
                    }
                }
                "is_elevated" => {
                    if v.bool(&path(key))? {
                        drop(at, key.into(), "kelpie does not ask for a sudo password; run kelpie as root and set `user` instead");
                    }
                }
                "disable_ansi_colors" => {
                    if v.bool(&path(key))? {
                        drop(at, key.into(), "kelpie does not rewrite program output");
                    }
                }
                "launch_timeout_seconds" => drop(at, key.into(), "it bounds a daemon's launch; kelpie's nearest is start_timeout, which bounds readiness"),
                "schedule" => drop(at, key.into(), "kelpie does not run programs on a schedule; use cron or a systemd timer calling `kelpie start`"),
                "watch" => drop(at, key.into(), "kelpie does not restart programs on file changes"),
                other if other.starts_with("x-") => {}
                other => drop(at, other.into(), "not a process-compose key kelpie import knows"),
            }
        }

        p.command = match (command, entrypoint) {
            (Some(c), entry) => {
                if let Some(e) = entry {
                    drop(&e.origin, "entrypoint".into(), "process-compose runs `command` when both are set, and so does kelpie import");
                }
                let raw = c.str(&path("command"))?;
                let script = self.text(c, &path("command"), &vars, Field::Shell)?;
                if self.expand_env && mentions_variable(raw) {
                    p.notes.push(format!(
                        "process-compose replaces $VAR in the command from its own environment when it loads the file; here {} expands it when the program starts, from the program's environment",
                        self.shell[0]
                    ));
                }
                let mut argv = self.shell.clone();
                argv.push(script);
                argv
            }
            (None, Some(e)) => {
                let argv = e
                    .seq(&path("entrypoint"))?
                    .iter()
                    .map(|a| self.literal(a, &path("entrypoint")))
                    .collect::<Result<Vec<_>, _>>()?;
                if argv.is_empty() {
                    return Err(ImportError::data(
                        e.origin.clone(),
                        format!("{}: is empty", path("entrypoint")),
                    ));
                }
                argv
            }
            (None, None) => {
                return Err(ImportError::data(
                    key.origin.clone(),
                    format!("process {pc_name:?} has no command"),
                ))
            }
        };
        if p.command
            .iter()
            .skip(1)
            .any(|a| a.contains("${KELPIE_INSTANCE}"))
        {
            p.notes.push("{{.PC_REPLICA_NUM}} became ${KELPIE_INSTANCE}, the instance index (0, 1, …) that kelpie sets in the environment".into());
        }

        if let Some(disabled) = is_disabled.or(disabled) {
            if disabled {
                p.autostart = Some(false);
            }
        }

        if let Some((pattern, at)) = ready_log_line {
            if p.readiness.is_some() {
                return Err(ImportError::data(
                    at,
                    format!("{}: ready_log_line and readiness_probe cannot both be set (process-compose refuses it too)", path("ready_log_line")),
                ));
            }
            p.readiness = Some(Probe::new(ProbeTarget::Log(pattern)));
        }

        // Restart policy: process-compose restarts nothing by default.
        let mut policy = "no".to_string();
        if let Some(avail) = restart {
            for (ak, av) in avail.map(&path("availability"))? {
                let what = path(&format!("availability.{}", ak.name));
                match ak.name.as_str() {
                    "restart" => policy = av.str(&what)?.to_string(),
                    "backoff_seconds" => {
                        // process-compose waits at least a second.
                        let secs = Duration::from_secs(av.uint(&what)?.max(1).into());
                        p.backoff = Some(Backoff::fixed(secs));
                    }
                    "max_restarts" => {
                        let n = av.uint(&what)?;
                        if n > 0 {
                            p.max_restarts = Some(n);
                            p.notes.push(format!("max_restarts = {n}: process-compose counts restarts over the whole run, kelpie within restart_window (60s by default)"));
                        } else {
                            p.notes.push("availability.max_restarts: 0 is unlimited in process-compose; kelpie's default limit (10 restarts per 60s) applies".into());
                        }
                    }
                    "exit_on_end" | "exit_on_skipped" => {
                        if av.bool(&what)? {
                            drop(&ak.origin, format!("availability.{}", ak.name), "kelpie shuts down when a program fails (on_failure = \"shutdown\"), not when it ends or is skipped");
                        }
                    }
                    other => drop(
                        &ak.origin,
                        format!("availability.{other}"),
                        "not a process-compose key kelpie import knows",
                    ),
                }
            }
            if let Some(origin) = avail.get("restart").map(|n| n.origin.clone()) {
                self.restart_policy(&mut p, &policy, oneshot, &origin)?;
            } else {
                p.restart = Some(Restart::Never);
            }
        } else {
            p.restart = Some(Restart::Never);
        }

        if let Some((file, at)) = log_location {
            if file.contains("{PC_REPLICA_NUM}") && p.instances.unwrap_or(1) > 1 {
                drop(&at, "log_location".into(), "kelpie writes all instances of a program to one log file, so a file per replica cannot be kept");
            } else if !file.is_empty() {
                let file = file.replace("{PC_REPLICA_NUM}", "0");
                let mut log = (
                    resolve(&self.base_dir, file).display().to_string(),
                    None,
                    None,
                );
                if let Some(conf) = log_rotation.take() {
                    self.log_rotation(conf, &path("log_configuration"), &mut log, &mut drop)?;
                }
                p.log = Some(Log::File {
                    file: log.0,
                    max_size: log.1,
                    keep: log.2,
                });
            }
        }
        if let Some(conf) = log_rotation {
            drop(&conf.origin, "log_configuration".into(), "it shapes process-compose's per-process log file, and this process has no log_location");
        }

        for (origin, key, why) in drops {
            self.draft.drop_key(origin, Some(name), key, why);
        }
        // process-compose tells every process who it is; the same names
        // keep scripts that read them working.
        if !p.environment.contains_key("PC_PROC_NAME") {
            p.instance_environment.insert(
                "PC_PROC_NAME".into(),
                crate::config::template::escape(pc_name),
            );
        }
        if !p.environment.contains_key("PC_REPLICA_NUM") {
            p.instance_environment
                .insert("PC_REPLICA_NUM".into(), "${KELPIE_INSTANCE}".into());
        }
        Ok((p, namespace))
    }

    fn restart_policy(
        &self,
        p: &mut Program,
        policy: &str,
        oneshot: bool,
        origin: &Origin,
    ) -> Result<(), ImportError> {
        p.restart = Some(match policy {
            "no" => Restart::Never,
            "always" if oneshot => {
                p.notes.push("restart: always on a process others wait on to complete: kelpie restarts a oneshot only on failure".into());
                Restart::OnFailure
            }
            "always" => Restart::Always,
            "on_failure" => Restart::OnFailure,
            "exit_on_failure" => {
                p.max_restarts = Some(0);
                p.shutdown_on_failure = true;
                p.notes.push("exit_on_failure: the first failure fails the program (max_restarts = 0) and kelpie shuts down; kelpie exits 1, not with the program's exit code".into());
                Restart::OnFailure
            }
            other => {
                return Err(ImportError::data(
                    origin.clone(),
                    format!("availability.restart: unknown policy {other:?}; expected always, on_failure, exit_on_failure or no"),
                ))
            }
        });
        Ok(())
    }

    fn log_rotation(
        &self,
        node: &Node,
        what: &str,
        log: &mut (String, Option<u64>, Option<u32>),
        drop: &mut impl FnMut(&Origin, String, &str),
    ) -> Result<(), ImportError> {
        for (k, v) in node.map(what)? {
            if k.name != "rotation" {
                drop(
                    &k.origin,
                    format!("log_configuration.{}", k.name),
                    "kelpie writes program output as it comes, without reformatting",
                );
                continue;
            }
            for (rk, rv) in v.map(&format!("{what}.rotation"))? {
                let key = format!("log_configuration.rotation.{}", rk.name);
                match rk.name.as_str() {
                    // lumberjack's megabytes are MiB.
                    "max_size_mb" => log.1 = Some(u64::from(rv.uint(&key)?) * 1024 * 1024),
                    "max_backups" => log.2 = Some(rv.uint(&key)?),
                    "compress" if !rv.bool(&key)? => {}
                    _ => drop(&rk.origin, key, "kelpie rotates by size and keeps a number of files; it does not age or compress them"),
                }
            }
        }
        Ok(())
    }
}

/// A dependency's condition: `{condition: X}`, or the bare `X`
/// process-compose's docs also show.
fn condition(spec: &Node) -> Result<(Condition, String), ImportError> {
    let node = match &spec.value {
        Value::Map(_) => match spec.get("condition") {
            Some(c) => c,
            None => return Ok((Condition::Started, "process_started".into())),
        },
        _ if spec.is_null() => return Ok((Condition::Started, "process_started".into())),
        _ => spec,
    };
    let name = node.str("depends_on condition")?;
    let condition = match name {
        "process_started" => Condition::Started,
        "process_healthy" | "process_log_ready" => Condition::Ready,
        "process_completed_successfully" | "process_completed" => Condition::Completed,
        other => {
            return Err(ImportError::data(
                node.origin.clone(),
                format!("unknown depends_on condition {other:?}; expected process_started, process_healthy, process_log_ready, process_completed or process_completed_successfully"),
            ))
        }
    };
    Ok((condition, name.to_string()))
}

fn read_vars(node: &Node, what: &str) -> Result<BTreeMap<String, String>, ImportError> {
    let mut vars = BTreeMap::new();
    for (k, v) in node.map(what)? {
        if let Value::Scalar { text, .. } = &v.value {
            vars.insert(k.name.clone(), text.clone());
        }
    }
    Ok(vars)
}

/// Linux signal `n` by name without `SIG`.
fn signal_name(n: i64) -> Option<&'static str> {
    let n = i32::try_from(n).ok()?;
    let signal = nix::sys::signal::Signal::try_from(n).ok()?;
    signal.as_str().strip_prefix("SIG")
}

mod probes;
mod text;

#[cfg(test)]
mod tests;

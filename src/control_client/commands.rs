//! Running the control commands: find the socket, send the request, print
//! the reply with `render`, and map the outcome to the exit codes in
//! docs/cli.md.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::Method;
use serde::Serialize;

use super::render;
use crate::cli::{Command, ControlOpts, Targets};
use crate::config::{self, Host, Mode};
use crate::control::protocol::{
    self, ActionReply, ActionRequest, ConfigReply, DiffRequest, ErrorReply, HealthReply,
    HistoryReply, ProgramInfo, ProgramsReply, ReadyReply, ReloadReply, ShutdownEvent,
};
use crate::control_client::connection::{ApiError, Client, ClientError};
use crate::EXIT_CONFIG;

mod logs;

/// sysexits EX_UNAVAILABLE: no supervisor answers.
pub const EXIT_UNAVAILABLE: i32 = 69;

/// Requests that do not wait for an outcome give up after this long.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a command failed, and its exit code.
struct Failure {
    code: i32,
    lines: Vec<String>,
    /// The supervisor's error, printed as JSON on stdout under `--json`.
    reply: Option<Box<ErrorReply>>,
}

impl Failure {
    fn new(code: i32, line: impl Into<String>) -> Self {
        Self {
            code,
            lines: vec![line.into()],
            reply: None,
        }
    }
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Self {
        let code = match error {
            ClientError::Unavailable { .. } => EXIT_UNAVAILABLE,
            ClientError::Failed(_) => 1,
        };
        Failure::new(code, format!("kelpie: {error}"))
    }
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::Client(error) => error.into(),
            ApiError::Api { error, .. } => api_failure(&error),
        }
    }
}

fn api_failure(error: &ErrorReply) -> Failure {
    let code = if error.code == protocol::code::CONFIG_INVALID {
        EXIT_CONFIG
    } else {
        1
    };
    Failure {
        code,
        lines: render::error_lines(error),
        reply: Some(Box::new(error.clone())),
    }
}

type Outcome = Result<i32, Failure>;

/// Runs one control command and returns its exit code.
pub fn run(command: Command) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("kelpie: cannot start the async runtime: {err}");
            return 1;
        }
    };
    let json = wants_json(&command);
    match runtime.block_on(execute(command)) {
        Ok(code) => code,
        Err(Failure {
            code,
            reply: Some(reply),
            ..
        }) if json => {
            print_json(&reply);
            code
        }
        Err(failure) => {
            for line in failure.lines {
                eprintln!("{line}");
            }
            failure.code
        }
    }
}

fn wants_json(command: &Command) -> bool {
    match command {
        Command::Status { json, .. }
        | Command::Start { json, .. }
        | Command::Stop { json, .. }
        | Command::Restart { json, .. }
        | Command::Signal { json, .. }
        | Command::Reload { json, .. }
        | Command::Diff { json, .. }
        | Command::Logs { json, .. }
        | Command::Why { json, .. }
        | Command::Ready { json, .. }
        | Command::Health { json, .. } => *json,
        _ => false,
    }
}

async fn execute(command: Command) -> Outcome {
    match command {
        Command::Status {
            names,
            json,
            control,
        } => status(&names, json, &control).await,
        Command::Start {
            targets,
            no_wait,
            json,
            control,
        } => action("start", &targets, !no_wait, false, None, json, &control).await,
        Command::Stop {
            targets,
            no_wait,
            json,
            control,
        } => action("stop", &targets, !no_wait, false, None, json, &control).await,
        Command::Restart {
            targets,
            rolling,
            no_wait,
            json,
            control,
        } => action("restart", &targets, !no_wait, rolling, None, json, &control).await,
        Command::Signal {
            signal,
            targets,
            json,
            control,
        } => {
            let name = crate::signals::short_name(signal).to_string();
            action("signal", &targets, true, false, Some(name), json, &control).await
        }
        Command::Reload { json, control } => reload(json, &control).await,
        Command::Diff { json, control } => diff(json, &control).await,
        Command::Logs {
            name,
            follow,
            lines,
            prefix,
            timestamps,
            json,
            control,
        } => {
            let args = logs::LogsArgs {
                name,
                follow,
                lines,
                prefix,
                timestamps,
                json,
            };
            logs::logs(args, &control).await
        }
        Command::Why {
            name,
            json,
            control,
        } => why(&name, json, &control).await,
        Command::Shutdown { no_wait, control } => shutdown(no_wait, &control).await,
        Command::Ready {
            name,
            json,
            control,
        } => ready(name.as_deref(), json, &control).await,
        Command::Health { json, control } => health(json, &control).await,
        Command::Config {
            config,
            running: true,
            socket,
            timeout,
        } => {
            let control = ControlOpts {
                socket,
                config,
                timeout,
            };
            running_config(&control).await
        }
        Command::Run { .. }
        | Command::Check { .. }
        | Command::Config { .. }
        | Command::Exec { .. }
        | Command::Import { .. }
        | Command::Completions { .. } => Err(Failure::new(2, "kelpie: not a control command")),
        // Its own loop (`crate::top`), not a request and a reply.
        Command::Top { .. } => Err(Failure::new(2, "kelpie: top is not a one-shot command")),
    }
}

/// `-s PATH`, else `$KELPIE_SOCKET`, else the config's
/// `supervisor.control_socket` (config found like `run` finds it), else the
/// default path.
pub fn socket_path(control: &ControlOpts) -> PathBuf {
    if let Some(path) = &control.socket {
        return path.clone();
    }
    if let Some(path) = std::env::var_os("KELPIE_SOCKET").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let host = Host::current();
    let path = config::find_config(control.config.as_deref());
    if path.exists() {
        if let Some(config) = config::load(&path, Mode::Check, &host).config {
            return config.supervisor.control_socket;
        }
        // An invalid file (say, mid-edit before a reload) still names its
        // socket: `kelpie reload` must reach the supervisor to be refused
        // with the errors, not miss it.
        if let Some(socket) = config::control_socket_of(&path) {
            return socket;
        }
    }
    config::default_control_socket(&host)
}

fn client(control: &ControlOpts) -> Client {
    Client::new(socket_path(control))
}

/// A request that must answer promptly (`--timeout`, default 10 s).
async fn quick<T: serde::de::DeserializeOwned>(
    control: &ControlOpts,
    method: Method,
    path: &str,
) -> Result<T, Failure> {
    let limit = control.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let client = client(control);
    let reply = tokio::time::timeout(limit, client.request(method, path, None))
        .await
        .map_err(|_| timed_out(limit, &client))??;
    Ok(reply.json::<T>()?)
}

fn timed_out(limit: Duration, client: &Client) -> Failure {
    Failure::new(
        1,
        format!(
            "kelpie: no answer within {} from the supervisor at {}",
            humantime::format_duration(limit),
            client.socket().display()
        ),
    )
}

/// Prints to stdout; a closed pipe (`| head`) is not an error worth more
/// than stopping to write.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = out.write_all(b"\n");
    }
}

fn print_json(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => say(&text),
        Err(err) => eprintln!("kelpie: cannot print JSON: {err}"),
    }
}

/// A program name as one URL path segment.
pub(crate) fn segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Whether `name` addresses `program` as a whole (`web`) or one of its
/// instances (`web:1`, `Some(1)`).
fn addresses(name: &str, program: &ProgramInfo) -> Option<Option<u32>> {
    if name == program.name {
        return Some(None);
    }
    let (prefix, n) = name.rsplit_once(':')?;
    let n: u32 = n.parse().ok()?;
    (prefix == program.name && (n as usize) < program.instances.len()).then_some(Some(n))
}

async fn status(names: &[String], json: bool, control: &ControlOpts) -> Outcome {
    let mut reply: ProgramsReply = quick(control, Method::GET, "/v1/programs").await?;
    let unknown: Vec<&String> = names
        .iter()
        .filter(|n| !reply.programs.iter().any(|p| addresses(n, p).is_some()))
        .collect();
    if !names.is_empty() {
        reply
            .programs
            .retain(|p| names.iter().any(|n| addresses(n, p).is_some()));
    }
    if json {
        for program in &mut reply.programs {
            // Only instances named: the program keeps just those.
            if names.is_empty() || names.iter().any(|n| addresses(n, program) == Some(None)) {
                continue;
            }
            let wanted: Vec<u32> = names
                .iter()
                .filter_map(|n| addresses(n, program).flatten())
                .collect();
            program.instances.retain(|i| wanted.contains(&i.index));
        }
        print_json(&reply);
    } else if names.is_empty() || !reply.programs.is_empty() {
        // A row is `web`, or `web:1` of a program with several instances.
        let keep = |row: &str| {
            let program = row.rsplit_once(':').map_or(row, |(p, _)| p);
            names.is_empty()
                || names.iter().any(|n| n == row || n == program)
                || names
                    .iter()
                    .any(|n| n.rsplit_once(':').is_some_and(|(p, _)| p == row))
        };
        say(&render::status_table_of(
            &reply,
            render::use_color(false),
            keep,
        ));
    }
    match unknown.as_slice() {
        [] => Ok(0),
        [one] => Err(Failure::new(1, format!("kelpie: no such program: {one}"))),
        many => Err(Failure::new(
            1,
            format!(
                "kelpie: no such programs: {}",
                many.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

async fn action(
    verb: &str,
    targets: &Targets,
    wait: bool,
    rolling: bool,
    signal: Option<String>,
    json: bool,
    control: &ControlOpts,
) -> Outcome {
    let request = ActionRequest {
        programs: targets.names.clone(),
        all: targets.all,
        wait,
        timeout_ms: control.timeout.map(|t| t.as_millis() as u64),
        rolling,
        signal,
    };
    let body = serde_json::to_vec(&request)
        .map_err(|e| Failure::new(1, format!("kelpie: cannot encode the request: {e}")))?;
    let client = client(control);
    let reply = client
        .request(Method::POST, &format!("/v1/actions/{verb}"), Some(body))
        .await?;
    let reply: ActionReply = reply.json()?;
    if json {
        print_json(&reply);
    } else {
        for (line, result) in render::action_lines(verb, &reply)
            .iter()
            .zip(&reply.results)
        {
            if result.ok {
                say(line);
            } else {
                eprintln!("{line}");
            }
        }
    }
    Ok(if reply.ok { 0 } else { 1 })
}

async fn reload(json: bool, control: &ControlOpts) -> Outcome {
    let client = client(control);
    let reply = client.request(Method::POST, "/v1/reload", None).await?;
    print_plan(reply.json::<ReloadReply>()?, json)
}

async fn diff(json: bool, control: &ControlOpts) -> Outcome {
    // With -c, compare that file; otherwise the supervisor's own.
    let path = match &control.config {
        Some(path) => Some(absolute(path)?),
        None => None,
    };
    let body = serde_json::to_vec(&DiffRequest { path })
        .map_err(|e| Failure::new(1, format!("kelpie: cannot encode the request: {e}")))?;
    let client = client(control);
    let reply = client.request(Method::POST, "/v1/diff", Some(body)).await?;
    print_plan(reply.json::<ReloadReply>()?, json)
}

fn absolute(path: &Path) -> Result<String, Failure> {
    std::path::absolute(path)
        .map(|p| p.display().to_string())
        .map_err(|e| Failure::new(1, format!("kelpie: {}: {e}", path.display())))
}

fn print_plan(reply: ReloadReply, json: bool) -> Outcome {
    if json {
        print_json(&reply);
    } else {
        for line in render::plan_lines(&reply) {
            say(&line);
        }
    }
    Ok(0)
}

async fn shutdown(no_wait: bool, control: &ControlOpts) -> Outcome {
    let client = client(control);
    let mut stream = client.stream(Method::POST, "/v1/shutdown", None).await?;
    if !(200..300).contains(&stream.status) {
        return Err(stream.collect_error().await.into());
    }
    if no_wait {
        return Ok(0);
    }
    loop {
        match stream.next_line().await {
            Ok(Some(line)) => {
                let Ok(event) = serde_json::from_slice::<ShutdownEvent>(&line) else {
                    continue;
                };
                if event.status == "stopped" {
                    return Ok(0);
                }
            }
            // The supervisor exits right after its last answer; a
            // connection cut then means it is gone, which was the point.
            Ok(None) | Err(_) => return Ok(0),
        }
    }
}

async fn ready(name: Option<&str>, json: bool, control: &ControlOpts) -> Outcome {
    let path = match name {
        Some(name) => format!("/v1/ready/{}", segment(name)),
        None => "/v1/ready".to_string(),
    };
    let reply: ReadyReply = quick(control, Method::GET, &path).await?;
    if json {
        print_json(&reply);
    } else {
        say(&render::ready_line(&reply, name));
    }
    Ok(if reply.ready { 0 } else { 1 })
}

async fn why(name: &str, json: bool, control: &ControlOpts) -> Outcome {
    let path = format!("/v1/programs/{}/history", segment(name));
    let reply: HistoryReply = quick(control, Method::GET, &path).await?;
    if json {
        print_json(&reply);
    } else {
        for line in render::why_lines(&reply) {
            say(&line);
        }
    }
    Ok(0)
}

async fn health(json: bool, control: &ControlOpts) -> Outcome {
    let reply: HealthReply = quick(control, Method::GET, "/v1/health").await?;
    if json {
        print_json(&reply);
    } else {
        say(&render::health_line(&reply));
    }
    Ok(0)
}

async fn running_config(control: &ControlOpts) -> Outcome {
    let reply: ConfigReply = quick(control, Method::GET, "/v1/config").await?;
    say(&render::running_config_text(
        &reply,
        std::time::SystemTime::now(),
    ));
    Ok(0)
}

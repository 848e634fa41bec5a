//! The control API's routes (see `protocol` for the table). Reads come
//! from the status board; actions, reloads and shutdown are messages to the
//! Supervisor, whose outcome is then awaited on the board, so no request
//! ever holds up supervision.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper::{Method, StatusCode};
use ractor::ActorRef;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::protocol::{
    self, code, ActionOutcome, ActionReply, ActionRequest, DiffRequest, HealthReply, InstanceInfo,
    LastExit, LogEvent, PlanEntry, ProgramInfo, ProgramsReply, ReadyReply, ReloadReply,
    ShutdownEvent,
};
use super::server::{parse_json, ControlBody, ControlRequest, ControlResponse, Handler};
use super::wait::{progress, Progress, Target};
use crate::output::TailLine;
use crate::state::ExitStatus;
use crate::status::{Board, InstanceStatus, ProgramStatus, StatusReceiver};
use crate::supervisor::{
    Accepted, ActionCommand, ActionError, ReloadCommand, ReloadOutcome, ReloadRefused,
    SupervisorMsg, Verb,
};

/// `logs` without `lines`.
const DEFAULT_LOG_LINES: usize = 100;

pub struct ControlApi {
    pub supervisor: ActorRef<SupervisorMsg>,
    pub status: StatusReceiver,
    pub started: Instant,
    pub config_path: PathBuf,
    /// Set to kelpie's exit code once the supervisor is done.
    pub finished: watch::Receiver<Option<i32>>,
}

pub fn handler(api: Arc<ControlApi>) -> Handler {
    Arc::new(move |request| {
        let api = api.clone();
        Box::pin(async move { api.route(request).await })
    })
}

impl ControlApi {
    async fn route(&self, request: ControlRequest) -> ControlResponse {
        let id = request.request_id.clone();
        let Some(rest) = request
            .path
            .strip_prefix(protocol::API_PREFIX)
            .filter(|rest| rest.starts_with('/'))
        else {
            return not_found(&request.path, &id);
        };
        let segments: Vec<String> = rest
            .trim_start_matches('/')
            .split('/')
            .map(percent_decode)
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let get = request.method == Method::GET || request.method == Method::HEAD;
        let post = request.method == Method::POST;
        match segments.as_slice() {
            ["programs"] if get => self.programs(),
            ["programs", name] if get => self.program(name, &id),
            ["programs", name, "logs"] if get => self.logs(name, &request).await,
            ["programs", name, verb] if post && Verb::parse(verb).is_some() => {
                self.action(verb, Some(name), &request).await
            }
            ["actions", verb] if post && Verb::parse(verb).is_some() => {
                self.action(verb, None, &request).await
            }
            ["reload"] if post => self.reload(true, None, &id).await,
            ["diff"] if post => match parse_json::<DiffRequest>(&request) {
                Ok(body) => self.reload(false, body.path.map(PathBuf::from), &id).await,
                Err(response) => response,
            },
            ["shutdown"] if post => self.shutdown(&id),
            ["ready"] if get => {
                let board = self.board();
                let (ready, reason) = match board.ready() {
                    Ok(()) => (true, None),
                    Err(reason) => (false, Some(reason)),
                };
                ControlResponse::json(StatusCode::OK, &ReadyReply { ready, reason })
            }
            ["ready", name] if get => {
                let board = self.board();
                match board.program(name) {
                    Some(program) => {
                        let reason = if board.shutting_down {
                            Some("shutting down".to_string())
                        } else {
                            program.reason()
                        };
                        ControlResponse::json(
                            StatusCode::OK,
                            &ReadyReply {
                                ready: reason.is_none(),
                                reason,
                            },
                        )
                    }
                    None => no_such_program(name, &id),
                }
            }
            ["health"] if get => ControlResponse::json(
                StatusCode::OK,
                &HealthReply {
                    status: "ok".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    pid: std::process::id(),
                    uptime_seconds: self.started.elapsed().as_secs(),
                    config: self.config_path.display().to_string(),
                },
            ),
            ["programs"]
            | ["programs", _]
            | ["programs", _, "logs"]
            | ["ready"]
            | ["ready", _]
            | ["health"] => method_not_allowed("GET", &id),
            ["programs", _, verb] | ["actions", verb] if Verb::parse(verb).is_some() => {
                method_not_allowed("POST", &id)
            }
            ["reload"] | ["diff"] | ["shutdown"] => method_not_allowed("POST", &id),
            _ => not_found(&request.path, &id),
        }
    }

    fn board(&self) -> Arc<Board> {
        self.status.borrow().clone()
    }

    fn programs(&self) -> ControlResponse {
        let board = self.board();
        let now = SystemTime::now();
        ControlResponse::json(
            StatusCode::OK,
            &ProgramsReply {
                shutting_down: board.shutting_down,
                programs: board
                    .programs
                    .iter()
                    .map(|p| program_info(p, now))
                    .collect(),
            },
        )
    }

    fn program(&self, name: &str, id: &str) -> ControlResponse {
        match self.board().program(name) {
            Some(program) => {
                ControlResponse::json(StatusCode::OK, &program_info(program, SystemTime::now()))
            }
            None => no_such_program(name, id),
        }
    }

    async fn action(
        &self,
        verb: &str,
        name: Option<&str>,
        request: &ControlRequest,
    ) -> ControlResponse {
        let id = &request.request_id;
        let Some(verb) = Verb::parse(verb) else {
            return not_found(&request.path, id);
        };
        // An empty body means every default (`wait` is true).
        let body: ActionRequest = match parse_json(request) {
            Ok(body) => body,
            Err(response) => return response,
        };
        let mut programs = body.programs.clone();
        if let Some(name) = name {
            if !programs.is_empty() || body.all {
                return bad_request("name the program in the path or in the body, not both", id);
            }
            programs.push(name.to_string());
        }
        if programs.is_empty() && !body.all {
            return bad_request("name at least one program, or set \"all\": true", id);
        }
        if body.all && !programs.is_empty() {
            return bad_request("\"all\" and \"programs\" exclude each other", id);
        }
        if body.rolling && verb != Verb::Restart {
            return bad_request("\"rolling\" applies to restart only", id);
        }
        let signal = match (verb, &body.signal) {
            (Verb::Signal, Some(text)) => match crate::signals::parse(text) {
                Some(signal) => Some(signal),
                None => {
                    return bad_request(
                        &format!(
                            "unknown signal {text:?}; use a name like TERM or SIGHUP, or a number"
                        ),
                        id,
                    )
                }
            },
            (Verb::Signal, None) => return bad_request("\"signal\" is required", id),
            (_, Some(_)) => return bad_request("\"signal\" applies to the signal action only", id),
            (_, None) => None,
        };
        let (reply, accepted) = oneshot::channel();
        let command = ActionCommand {
            verb,
            programs,
            all: body.all,
            rolling: body.rolling,
            signal,
            cause: Some(Arc::from(id.as_str())),
            reply,
        };
        if self
            .supervisor
            .cast(SupervisorMsg::Action(command))
            .is_err()
        {
            return shutting_down(id);
        }
        let accepted = match accepted.await {
            Ok(Ok(accepted)) => accepted,
            Ok(Err(ActionError::NoSuchProgram(names))) => {
                return ControlResponse::error(
                    StatusCode::NOT_FOUND,
                    code::NO_SUCH_PROGRAM,
                    &ActionError::NoSuchProgram(names).to_string(),
                    id,
                )
            }
            Ok(Err(ActionError::ShuttingDown)) | Err(_) => return shutting_down(id),
        };
        let timeout = body.timeout_ms.map(Duration::from_millis);
        let results = self.outcomes(verb, accepted, body.wait, timeout).await;
        ControlResponse::json(
            StatusCode::OK,
            &ActionReply {
                ok: results.iter().all(|r| r.ok),
                results,
            },
        )
    }

    /// Waits (unless told not to) for each program's outcome, all at once.
    async fn outcomes(
        &self,
        verb: Verb,
        accepted: Accepted,
        wait: bool,
        timeout: Option<Duration>,
    ) -> Vec<ActionOutcome> {
        let target = match verb {
            Verb::Stop => Target::Down,
            _ => Target::Up,
        };
        let mut results: Vec<Option<ActionOutcome>> = Vec::new();
        let mut rolls = Vec::new();
        let mut watched: Vec<(usize, String, Instant)> = Vec::new();
        let now = Instant::now();
        for program in accepted.programs {
            let slot = results.len();
            results.push(None);
            let state = || {
                self.board()
                    .program(&program.name)
                    .map(|p| p.state().as_str().to_string())
                    .unwrap_or_else(|| "removed".into())
            };
            if let Some(outcome) = program.outcome {
                results[slot] = Some(finished(&program.name, state(), outcome));
            } else if !wait {
                results[slot] = Some(finished(&program.name, state(), Ok("accepted".into())));
            } else if let Some(roll) = program.roll {
                let limit = timeout.unwrap_or(program.timeout);
                rolls.push((slot, program.name, limit, roll));
            } else {
                watched.push((slot, program.name, now + timeout.unwrap_or(program.timeout)));
            }
        }
        let roll_waits = rolls
            .into_iter()
            .map(|(slot, name, limit, roll)| async move {
                let outcome = match tokio::time::timeout(limit, roll).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(_)) => Err("kelpie stopped before the rolling restart finished".into()),
                    Err(_) => Err(format!(
                        "still rolling after {}; it goes on in the background",
                        humantime::format_duration(limit)
                    )),
                };
                (slot, name, outcome)
            });
        let (rolled, waited) = tokio::join!(
            futures_join_all(roll_waits),
            self.wait_on_board(target, accepted.seq, watched)
        );
        for (slot, name, outcome) in rolled {
            let state = self
                .board()
                .program(&name)
                .map(|p| p.state().as_str().to_string())
                .unwrap_or_default();
            results[slot] = Some(finished(&name, state, outcome));
        }
        for (slot, outcome) in waited {
            results[slot] = Some(outcome);
        }
        results.into_iter().flatten().collect()
    }

    /// Watches the board until every program reached its target, failed,
    /// or ran out of time.
    async fn wait_on_board(
        &self,
        target: Target,
        seq: u64,
        mut watched: Vec<(usize, String, Instant)>,
    ) -> Vec<(usize, ActionOutcome)> {
        let mut done = Vec::new();
        let mut status = self.status.clone();
        while !watched.is_empty() {
            let board = status.borrow_and_update().clone();
            let now = Instant::now();
            watched.retain(|(slot, name, deadline)| {
                let Some(program) = board.program(name) else {
                    done.push((
                        *slot,
                        finished(
                            name,
                            "removed".into(),
                            Err("the program was removed".into()),
                        ),
                    ));
                    return false;
                };
                let state = program.state().as_str().to_string();
                match progress(target, seq, program) {
                    Progress::Done(message) => {
                        done.push((*slot, finished(name, state, Ok(message))))
                    }
                    Progress::Failed(reason) => {
                        done.push((*slot, finished(name, state, Err(reason))))
                    }
                    Progress::Pending if now >= *deadline => {
                        let why = program
                            .reason()
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default();
                        done.push((
                            *slot,
                            finished(
                                name,
                                state.clone(),
                                Err(format!("timed out; {name} is {state}{why}")),
                            ),
                        ));
                    }
                    Progress::Pending => return true,
                }
                false
            });
            let Some(deadline) = watched.iter().map(|(_, _, d)| *d).min() else {
                break;
            };
            match tokio::time::timeout_at(deadline, status.changed()).await {
                Ok(Ok(())) | Err(_) => {}
                Ok(Err(_)) => {
                    for (slot, name, _) in watched.drain(..) {
                        done.push((
                            slot,
                            finished(&name, "unknown".into(), Err("kelpie stopped".into())),
                        ));
                    }
                }
            }
        }
        done
    }

    async fn reload(&self, apply: bool, path: Option<PathBuf>, id: &str) -> ControlResponse {
        let (reply, outcome) = oneshot::channel();
        let command = ReloadCommand {
            apply,
            path,
            cause: Some(Arc::from(id)),
            reply: Some(reply),
        };
        if self
            .supervisor
            .cast(SupervisorMsg::Reload(command))
            .is_err()
        {
            return shutting_down(id);
        }
        match outcome.await {
            Ok(Ok(outcome)) => ControlResponse::json(StatusCode::OK, &reload_reply(apply, outcome)),
            Ok(Err(refused)) => refused_reply(refused, id),
            Err(_) => shutting_down(id),
        }
    }

    fn shutdown(&self, id: &str) -> ControlResponse {
        if self
            .supervisor
            .cast(SupervisorMsg::Shutdown {
                cause: Some(Arc::from(id)),
            })
            .is_err()
        {
            return shutting_down(id);
        }
        let (sender, receiver) = mpsc::channel(2);
        let mut finished = self.finished.clone();
        tokio::spawn(async move {
            let first = ShutdownEvent {
                status: "shutting_down".into(),
                exit_code: None,
            };
            if sender.send(ndjson(&first)).await.is_err() {
                return;
            }
            let code = tokio::select! {
                code = finished.wait_for(Option::is_some) => code.ok().and_then(|c| *c),
                () = sender.closed() => return,
            };
            let last = ShutdownEvent {
                status: "stopped".into(),
                exit_code: code,
            };
            let _ = sender.send(ndjson(&last)).await;
        });
        ControlResponse {
            status: StatusCode::OK,
            content_type: "application/x-ndjson",
            body: ControlBody::Stream(receiver),
        }
    }

    async fn logs(&self, name: &str, request: &ControlRequest) -> ControlResponse {
        let id = &request.request_id;
        let query = parse_query(request.query.as_deref().unwrap_or(""));
        let lines = match query.get("lines").map(|v| v.parse::<usize>()) {
            None => DEFAULT_LOG_LINES,
            Some(Ok(n)) => n.min(crate::output::TAIL_LINES),
            Some(Err(_)) => return bad_request("\"lines\" must be a number", id),
        };
        let follow = match query.get("follow").map(String::as_str) {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") | Some("") => true,
            Some(_) => return bad_request("\"follow\" must be true or false", id),
        };
        let (reply, output) = oneshot::channel();
        let asked = self.supervisor.cast(SupervisorMsg::Output {
            program: name.to_string(),
            reply,
        });
        let output = match (asked, output.await) {
            (Ok(()), Ok(Some(output))) => output,
            (Ok(()), Ok(None)) => return no_such_program(name, id),
            _ => return shutting_down(id),
        };
        if !follow {
            let mut body = Vec::new();
            for line in output.tail().last(lines) {
                body.extend_from_slice(&ndjson(&log_event(&line)));
            }
            return ControlResponse {
                status: StatusCode::OK,
                content_type: "application/x-ndjson",
                body: ControlBody::Full(Bytes::from(body)),
            };
        }
        let (recent, mut updates) = output.follow(lines);
        drop(output);
        let (sender, receiver) = mpsc::channel(64);
        let mut finished = self.finished.clone();
        tokio::spawn(async move {
            for line in &recent {
                if sender.send(ndjson(&log_event(line))).await.is_err() {
                    return;
                }
            }
            loop {
                let event = tokio::select! {
                    update = updates.recv() => match update {
                        Ok(line) => log_event(&line),
                        Err(broadcast::error::RecvError::Lagged(skipped)) => LogEvent::Skipped { skipped },
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    () = sender.closed() => return,
                    _ = finished.wait_for(Option::is_some) => return,
                };
                if sender.send(ndjson(&event)).await.is_err() {
                    return;
                }
            }
        });
        ControlResponse {
            status: StatusCode::OK,
            content_type: "application/x-ndjson",
            body: ControlBody::Stream(receiver),
        }
    }
}

/// Polls futures side by side; the std library has no join_all and the
/// futures crate is not worth a dependency for it.
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for future in futures {
        set.spawn(future);
    }
    let mut out = Vec::new();
    while let Some(result) = set.join_next().await {
        if let Ok(value) = result {
            out.push(value);
        }
    }
    out
}

fn finished(name: &str, state: String, outcome: Result<String, String>) -> ActionOutcome {
    let (ok, message) = match outcome {
        Ok(message) => (true, message),
        Err(message) => (false, message),
    };
    ActionOutcome {
        program: name.to_string(),
        ok,
        state,
        message,
    }
}

fn log_event(line: &TailLine) -> LogEvent {
    LogEvent::Line {
        instance: line.instance,
        stream: line.stream.as_str().to_string(),
        line: line.line.clone(),
    }
}

fn ndjson(value: &impl serde::Serialize) -> Bytes {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

pub fn reload_reply(applied: bool, outcome: ReloadOutcome) -> ReloadReply {
    ReloadReply {
        applied,
        path: outcome.path.display().to_string(),
        plan: outcome
            .plan
            .into_iter()
            .map(|item| PlanEntry {
                program: item.program,
                action: item.change.as_str().to_string(),
                changes: item.keys.iter().map(|k| k.to_string()).collect(),
            })
            .collect(),
        warnings: outcome.warnings,
    }
}

fn refused_reply(refused: ReloadRefused, id: &str) -> ControlResponse {
    if !refused.invalid {
        let message = refused.errors.join("; ");
        return ControlResponse::error(StatusCode::CONFLICT, code::SHUTTING_DOWN, &message, id);
    }
    let count = refused.errors.len();
    ControlResponse::error_with_details(
        StatusCode::UNPROCESSABLE_ENTITY,
        code::CONFIG_INVALID,
        &format!(
            "{}: invalid config ({count} error{}); still running the previous config",
            refused.path.display(),
            if count == 1 { "" } else { "s" }
        ),
        id,
        refused.errors,
    )
}

pub fn program_info(program: &ProgramStatus, now: SystemTime) -> ProgramInfo {
    ProgramInfo {
        name: program.name.clone(),
        state: program.state().as_str().to_string(),
        ready: program.ready(),
        required: program.required,
        kind: if program.oneshot {
            "oneshot"
        } else {
            "service"
        }
        .to_string(),
        restarts: program.restarts(),
        reason: program.reason(),
        stopped_by_user: program.stopped_by_user,
        instances: program
            .instances
            .iter()
            .enumerate()
            .map(|(n, instance)| {
                instance_info(&program.name, n as u32, instance, program.oneshot, now)
            })
            .collect(),
    }
}

fn instance_info(
    program: &str,
    index: u32,
    instance: &InstanceStatus,
    oneshot: bool,
    now: SystemTime,
) -> InstanceInfo {
    let s = &instance.snapshot;
    let started = instance.started_at.filter(|_| s.pid.is_some());
    InstanceInfo {
        name: format!("{program}:{index}"),
        index,
        state: s.phase.as_str().to_string(),
        pid: s.pid,
        ready: instance.is_ready(oneshot),
        uptime_seconds: started.map(|t| now.duration_since(t).unwrap_or_default().as_secs()),
        started_at: started
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_secs_f64()),
        restarts: s.restarts,
        last_exit: s.last_exit.map(|exit| LastExit {
            code: match exit {
                ExitStatus::Code(code) => Some(code),
                ExitStatus::Signal(_) => None,
            },
            signal: match exit {
                ExitStatus::Signal(n) => Some(
                    nix::sys::signal::Signal::try_from(n)
                        .map(|sig| crate::signals::short_name(sig).to_string())
                        .unwrap_or_else(|_| n.to_string()),
                ),
                ExitStatus::Code(_) => None,
            },
            kind: s
                .last_exit_kind
                .map(|k| k.as_str())
                .unwrap_or("failure")
                .to_string(),
            text: exit.to_string(),
        }),
        reason: s.reason.clone(),
        backoff_seconds: (s.phase == crate::state::Phase::Backoff)
            .then_some(s.backoff.as_secs_f64()),
        status_text: s.status_text.clone(),
    }
}

fn parse_query(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) => (percent_decode(key), percent_decode(value)),
            None => (percent_decode(pair), String::new()),
        })
        .collect()
}

/// `%XX` escapes in a path segment or query value; anything malformed is
/// kept as it is (it then simply names no program).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(value) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(value);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn not_found(path: &str, id: &str) -> ControlResponse {
    ControlResponse::error(
        StatusCode::NOT_FOUND,
        code::NOT_FOUND,
        &format!("no such endpoint: {path}"),
        id,
    )
}

fn no_such_program(name: &str, id: &str) -> ControlResponse {
    ControlResponse::error(
        StatusCode::NOT_FOUND,
        code::NO_SUCH_PROGRAM,
        &format!("no such program: {name}"),
        id,
    )
}

fn method_not_allowed(allowed: &str, id: &str) -> ControlResponse {
    ControlResponse::error(
        StatusCode::METHOD_NOT_ALLOWED,
        code::METHOD_NOT_ALLOWED,
        &format!("method not allowed; use {allowed}"),
        id,
    )
}

fn bad_request(message: &str, id: &str) -> ControlResponse {
    ControlResponse::error(StatusCode::BAD_REQUEST, code::BAD_REQUEST, message, id)
}

fn shutting_down(id: &str) -> ControlResponse {
    ControlResponse::error(
        StatusCode::CONFLICT,
        code::SHUTTING_DOWN,
        "kelpie is shutting down",
        id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_keeps_malformed_ones() {
        assert_eq!(percent_decode("web%2D1"), "web-1");
        assert_eq!(percent_decode("a%zzb"), "a%zzb");
        assert_eq!(percent_decode("trailing%2"), "trailing%2");
        assert_eq!(percent_decode("%"), "%");
    }

    #[test]
    fn parses_query_pairs() {
        let q = parse_query("lines=5&follow");
        assert_eq!(q.get("lines").map(String::as_str), Some("5"));
        assert_eq!(q.get("follow").map(String::as_str), Some(""));
    }
}

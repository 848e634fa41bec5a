//! `logs`: recent output lines from the tails, as NDJSON, of one program
//! (or one of its instances) or of every program merged in time order; and
//! with `follow` every new line after them until the client goes away or
//! kelpie stops. A follower goes on across a reload that rebuilds its
//! program, and is told when one removes it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::{bad_request, ndjson, no_such_program, percent_decode, shutting_down, ControlApi};
use crate::control::protocol::{log_event, LogEvent};
use crate::control::server::{ControlBody, ControlRequest, ControlResponse};
use crate::output::{LineKind, ProgramOutput, TailLine};
use crate::supervisor::SupervisorMsg;

/// `logs` without `lines`.
const DEFAULT_LOG_LINES: usize = 100;

/// Events queued for one client before the forwarders wait for it.
const CLIENT_QUEUE: usize = 64;

struct LogsQuery {
    lines: usize,
    follow: bool,
}

impl ControlApi {
    /// `GET /v1/programs/{name}/logs`; `name` may be one instance, `web:1`.
    pub(super) async fn logs(&self, name: &str, request: &ControlRequest) -> ControlResponse {
        let id = &request.request_id;
        let query = match logs_query(request) {
            Ok(query) => query,
            Err(response) => return response,
        };
        // Program names cannot contain ':', so `web:1` is always an
        // instance of `web`.
        let (program, instance) = match name.split_once(':') {
            None => (name, None),
            Some((program, index)) => match index.parse::<u32>() {
                Ok(index) => (program, Some(index)),
                Err(_) => return no_such_program(name, id),
            },
        };
        if let Some(index) = instance {
            let known = self
                .board()
                .program(program)
                .is_some_and(|p| (index as usize) < p.instances.len());
            if !known {
                return no_such_program(name, id);
            }
        }
        let output = match self.output(program).await {
            Ok(Some(output)) => output,
            Ok(None) => return no_such_program(name, id),
            Err(()) => return shutting_down(id),
        };
        if !query.follow {
            let mut body = Vec::new();
            for line in output.tail().last_of(query.lines, instance) {
                body.extend_from_slice(&ndjson(&event_of(program, &line)));
            }
            return full(body);
        }
        let (recent, updates) = output.follow(query.lines, instance);
        drop(output);
        let (sender, receiver) = mpsc::channel(CLIENT_QUEUE);
        let follower = Follower {
            program: program.to_string(),
            instance,
            updates,
            sender,
            finished: self.finished.clone(),
        };
        tokio::spawn(async move {
            for line in &recent {
                if follower
                    .send(&event_of(&follower.program, line))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            follower.run().await;
        });
        stream(receiver)
    }

    /// `GET /v1/logs`: every program, merged in time order.
    pub(super) async fn all_logs(&self, request: &ControlRequest) -> ControlResponse {
        let id = &request.request_id;
        let query = match logs_query(request) {
            Ok(query) => query,
            Err(response) => return response,
        };
        let (reply, outputs) = oneshot::channel();
        let outputs = match (
            self.supervisor.cast(SupervisorMsg::Outputs { reply }),
            outputs.await,
        ) {
            (Ok(()), Ok(outputs)) => outputs,
            _ => return shutting_down(id),
        };
        if !query.follow {
            let tails = outputs
                .iter()
                .map(|o| (o.program(), o.tail().last(query.lines)))
                .collect();
            let mut body = Vec::new();
            for (program, line) in merge(tails, query.lines) {
                body.extend_from_slice(&ndjson(&event_of(program, &line)));
            }
            return full(body);
        }
        let mut followed = Vec::new();
        for output in &outputs {
            let (recent, updates) = output.follow(query.lines, None);
            followed.push((output.program().to_string(), recent, updates));
        }
        drop(outputs);
        let (sender, receiver) = mpsc::channel(CLIENT_QUEUE);
        let mut programs = AllPrograms {
            api_supervisor: self.supervisor.clone(),
            status: self.status.clone(),
            finished: self.finished.clone(),
            sender,
            followed: HashSet::new(),
            ended: mpsc::unbounded_channel(),
        };
        tokio::spawn(async move {
            let tails = followed
                .iter()
                .map(|(program, recent, _)| (program.as_str(), recent.clone()))
                .collect();
            for (program, line) in merge(tails, query.lines) {
                if programs
                    .sender
                    .send(ndjson(&event_of(program, &line)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            for (program, _, updates) in followed {
                programs.follow(program, Vec::new(), updates);
            }
            programs.run().await;
        });
        stream(receiver)
    }

    /// The current output of `program`; `Err` when the supervisor is gone.
    async fn output(&self, program: &str) -> Result<Option<Arc<ProgramOutput>>, ()> {
        output_of(&self.supervisor, program).await
    }
}

pub(super) async fn output_of(
    supervisor: &ractor::ActorRef<SupervisorMsg>,
    program: &str,
) -> Result<Option<Arc<ProgramOutput>>, ()> {
    let (reply, output) = oneshot::channel();
    supervisor
        .cast(SupervisorMsg::Output {
            program: program.to_string(),
            reply,
        })
        .map_err(|_| ())?;
    output.await.map_err(|_| ())
}

/// Sends one program's new lines to a client, until the client goes away,
/// kelpie is done, or the program is removed. A reload that rebuilds the
/// program hands the subscription over to the new output, so following
/// simply goes on.
struct Follower {
    program: String,
    instance: Option<u32>,
    updates: broadcast::Receiver<Arc<TailLine>>,
    sender: mpsc::Sender<Bytes>,
    finished: watch::Receiver<Option<i32>>,
}

#[derive(PartialEq, Eq)]
enum FollowEnd {
    Removed,
    Gone,
}

impl Follower {
    async fn send(&self, event: &LogEvent) -> Result<(), ()> {
        self.sender.send(ndjson(event)).await.map_err(|_| ())
    }

    async fn run(mut self) -> FollowEnd {
        loop {
            let (event, end) = tokio::select! {
                update = self.updates.recv() => match update {
                    Ok(line) if line.kind == LineKind::Removed => {
                        (event_of(&self.program, &line), Some(FollowEnd::Removed))
                    }
                    Ok(line) if self.instance.is_some_and(|i| i != line.instance) => continue,
                    Ok(line) => (event_of(&self.program, &line), None),
                    Err(broadcast::error::RecvError::Lagged(skipped)) => (
                        LogEvent::Skipped {
                            skipped,
                            program: Some(self.program.clone()),
                        },
                        None,
                    ),
                    Err(broadcast::error::RecvError::Closed) => return FollowEnd::Gone,
                },
                () = self.sender.closed() => return FollowEnd::Gone,
                _ = self.finished.wait_for(Option::is_some) => return FollowEnd::Gone,
            };
            if self.send(&event).await.is_err() {
                return FollowEnd::Gone;
            }
            if let Some(end) = end {
                return end;
            }
        }
    }
}

/// Following every program: one `Follower` task per program, and this
/// task, which starts following programs a reload adds (and a name a reload
/// removed and a later one added again).
struct AllPrograms {
    api_supervisor: ractor::ActorRef<SupervisorMsg>,
    status: crate::status::StatusReceiver,
    finished: watch::Receiver<Option<i32>>,
    sender: mpsc::Sender<Bytes>,
    followed: HashSet<String>,
    ended: (
        mpsc::UnboundedSender<String>,
        mpsc::UnboundedReceiver<String>,
    ),
}

impl AllPrograms {
    fn follow(
        &mut self,
        program: String,
        recent: Vec<TailLine>,
        updates: broadcast::Receiver<Arc<TailLine>>,
    ) {
        self.followed.insert(program.clone());
        let follower = Follower {
            program,
            instance: None,
            updates,
            sender: self.sender.clone(),
            finished: self.finished.clone(),
        };
        let ended = self.ended.0.clone();
        tokio::spawn(async move {
            for line in &recent {
                if follower
                    .send(&event_of(&follower.program, line))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let program = follower.program.clone();
            if follower.run().await == FollowEnd::Removed {
                let _ = ended.send(program);
            }
        });
    }

    async fn run(mut self) {
        loop {
            tokio::select! {
                changed = self.status.changed() => if changed.is_err() { return },
                Some(program) = self.ended.1.recv() => { self.followed.remove(&program); }
                () = self.sender.closed() => return,
                _ = self.finished.wait_for(Option::is_some) => return,
            }
            let board = self.status.borrow_and_update().clone();
            for status in &board.programs {
                if self.followed.contains(&status.name) {
                    continue;
                }
                let Ok(output) = output_of(&self.api_supervisor, &status.name).await else {
                    return;
                };
                // Not there: a removed program still stopping.
                let Some(output) = output else { continue };
                // A program new to this follower: all of its lines are new.
                let (recent, updates) = output.follow(crate::output::TAIL_LINES, None);
                self.follow(status.name.clone(), recent, updates);
            }
        }
    }
}

/// Per-program tails (each oldest first) merged by time, the newest
/// `lines` of them. Lines of one program keep their order even if the
/// clock went back.
fn merge(tails: Vec<(&str, Vec<TailLine>)>, lines: usize) -> Vec<(&str, TailLine)> {
    let mut queues: Vec<(&str, std::vec::IntoIter<TailLine>)> = tails
        .into_iter()
        .map(|(program, tail)| (program, tail.into_iter()))
        .collect();
    let mut heads = BinaryHeap::new();
    let mut pending: Vec<Option<TailLine>> = Vec::with_capacity(queues.len());
    for (i, (_, queue)) in queues.iter_mut().enumerate() {
        let head = queue.next();
        if let Some(line) = &head {
            heads.push(Reverse((line.time, i)));
        }
        pending.push(head);
    }
    let mut merged = Vec::new();
    while let Some(Reverse((_, i))) = heads.pop() {
        let Some(line) = pending[i].take() else {
            continue;
        };
        let next = queues[i].1.next();
        if let Some(next) = &next {
            heads.push(Reverse((next.time, i)));
        }
        pending[i] = next;
        merged.push((queues[i].0, line));
    }
    let skip = merged.len().saturating_sub(lines);
    merged.drain(..skip);
    merged
}

fn event_of(program: &str, line: &TailLine) -> LogEvent {
    let time = Some(humantime::format_rfc3339_millis(line.time).to_string());
    match &line.kind {
        LineKind::Output { stream, line: text } => LogEvent::Line {
            program: program.to_string(),
            instance: line.instance,
            stream: stream.as_str().to_string(),
            time,
            line: text.clone(),
        },
        LineKind::Restarted { previous_pid, pid } => LogEvent::Event {
            event: log_event::RESTARTED.to_string(),
            program: program.to_string(),
            instance: Some(line.instance),
            time,
            pid: Some(*pid),
            previous_pid: Some(*previous_pid),
        },
        LineKind::Removed => LogEvent::Event {
            event: log_event::REMOVED.to_string(),
            program: program.to_string(),
            instance: None,
            time,
            pid: None,
            previous_pid: None,
        },
    }
}

fn logs_query(request: &ControlRequest) -> Result<LogsQuery, ControlResponse> {
    let id = &request.request_id;
    let query = parse_query(request.query.as_deref().unwrap_or(""));
    let lines = match query.get("lines").map(|v| v.parse::<usize>()) {
        None => DEFAULT_LOG_LINES,
        Some(Ok(n)) => n.min(crate::output::TAIL_LINES),
        Some(Err(_)) => return Err(bad_request("\"lines\" must be a number", id)),
    };
    let follow = match query.get("follow").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(_) => return Err(bad_request("\"follow\" must be true or false", id)),
    };
    Ok(LogsQuery { lines, follow })
}

fn full(body: Vec<u8>) -> ControlResponse {
    ControlResponse {
        status: StatusCode::OK,
        content_type: "application/x-ndjson",
        body: ControlBody::Full(Bytes::from(body)),
    }
}

fn stream(receiver: mpsc::Receiver<Bytes>) -> ControlResponse {
    ControlResponse {
        status: StatusCode::OK,
        content_type: "application/x-ndjson",
        body: ControlBody::Stream(receiver),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output_stream::Stream;
    use std::time::{Duration, SystemTime};

    #[test]
    fn parses_query_pairs() {
        let q = parse_query("lines=5&follow");
        assert_eq!(q.get("lines").map(String::as_str), Some("5"));
        assert_eq!(q.get("follow").map(String::as_str), Some(""));
    }

    fn at(millis: u64, text: &str) -> TailLine {
        TailLine {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(millis),
            instance: 0,
            kind: LineKind::Output {
                stream: Stream::Stdout,
                line: text.to_string(),
            },
        }
    }

    fn texts(merged: &[(&str, TailLine)]) -> Vec<String> {
        merged
            .iter()
            .map(|(program, line)| match &line.kind {
                LineKind::Output { line, .. } => format!("{program} {line}"),
                _ => String::new(),
            })
            .collect()
    }

    #[test]
    fn merge_orders_by_time_and_keeps_the_newest() {
        let a = vec![at(1, "a1"), at(4, "a4"), at(6, "a6")];
        let b = vec![at(2, "b2"), at(3, "b3"), at(7, "b7")];
        let merged = merge(vec![("a", a.clone()), ("b", b.clone())], 100);
        assert_eq!(
            texts(&merged),
            ["a a1", "b b2", "b b3", "a a4", "a a6", "b b7"]
        );
        let merged = merge(vec![("a", a), ("b", b)], 2);
        assert_eq!(texts(&merged), ["a a6", "b b7"]);
        // A clock that went back never reorders one program's lines.
        let c = vec![at(5, "c5"), at(1, "c1")];
        let merged = merge(vec![("c", c), ("d", vec![at(3, "d3")])], 100);
        assert_eq!(texts(&merged), ["d d3", "c c5", "c c1"]);
    }
}

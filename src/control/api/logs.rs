//! `logs`: a program's recent output lines from its tail, as NDJSON, and
//! with `follow` every new line after them until the client goes away or
//! kelpie stops.

use std::collections::HashMap;

use bytes::Bytes;
use hyper::StatusCode;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::{bad_request, ndjson, no_such_program, percent_decode, shutting_down, ControlApi};
use crate::control::protocol::LogEvent;
use crate::control::server::{ControlBody, ControlRequest, ControlResponse};
use crate::output::TailLine;
use crate::supervisor::SupervisorMsg;

/// `logs` without `lines`.
const DEFAULT_LOG_LINES: usize = 100;

impl ControlApi {
    pub(super) async fn logs(&self, name: &str, request: &ControlRequest) -> ControlResponse {
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

fn log_event(line: &TailLine) -> LogEvent {
    LogEvent::Line {
        instance: line.instance,
        stream: line.stream.as_str().to_string(),
        line: line.line.clone(),
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

    #[test]
    fn parses_query_pairs() {
        let q = parse_query("lines=5&follow");
        assert_eq!(q.get("lines").map(String::as_str), Some("5"));
        assert_eq!(q.get("follow").map(String::as_str), Some(""));
    }
}

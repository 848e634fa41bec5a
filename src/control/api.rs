//! The control API's routes (see `protocol` for the table). Reads come
//! from the status board; actions, reloads and shutdown are messages to the
//! Supervisor, whose outcome is then awaited on the board, so no request
//! ever holds up supervision.
//!
//! This file is the router and what every route shares (the error replies,
//! NDJSON framing, path decoding); each kind of request has its own module:
//! `reads` (programs, ready, health, config), `actions` (start/stop/restart/signal
//! and waiting for their outcome), `reload` (reload and diff), `shutdown`,
//! `logs`, `history` (the crash history of `kelpie why`) and `usage`
//! (CPU and memory, scanned when asked).

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use ractor::ActorRef;
use tokio::sync::watch;
use tokio::time::Instant;

use super::protocol::{self, code, DiffRequest};
use super::server::{parse_json, ControlRequest, ControlResponse, Handler};
use crate::status::{Board, ConfigReceiver, StatusReceiver};
use crate::supervisor::{SupervisorMsg, Verb};

mod actions;
mod history;
mod logs;
mod reads;
mod reload;
mod shutdown;
mod usage;

pub use reads::program_info;
pub use reload::reload_reply;
pub use usage::{usage_reply, UsageScanner};

pub struct ControlApi {
    pub supervisor: ActorRef<SupervisorMsg>,
    pub status: StatusReceiver,
    pub running_config: ConfigReceiver,
    pub started: Instant,
    pub config_path: PathBuf,
    /// Set to kelpie's exit code once the supervisor is done.
    pub finished: watch::Receiver<Option<i32>>,
    /// Scans `/proc` for `GET /v1/usage`.
    pub usage: UsageScanner,
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
            ["programs", name, "history"] if get => self.history(name, &id).await,
            ["logs"] if get => self.all_logs(&request).await,
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
            ["ready"] if get => self.ready(),
            ["ready", name] if get => self.program_ready(name, &id),
            ["health"] if get => self.health(),
            ["config"] if get => self.running_config(),
            ["usage"] if get => self.usage(&id).await,
            ["programs"]
            | ["programs", _]
            | ["programs", _, "logs"]
            | ["programs", _, "history"]
            | ["logs"]
            | ["ready"]
            | ["ready", _]
            | ["health"]
            | ["config"]
            | ["usage"] => method_not_allowed("GET", &id),
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
}

fn ndjson(value: &impl serde::Serialize) -> Bytes {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// `%XX` escapes in a path segment or query value; anything malformed is
/// kept as it is (it then simply names no program).
pub(crate) fn percent_decode(text: &str) -> String {
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
}

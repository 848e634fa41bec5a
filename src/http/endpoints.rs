//! What the endpoints answer: routing, `/health`, the readiness JSON of
//! `/ready` and `/ready/{program}`, `/metrics`, and the error bodies.
//! Every answer is computed from one `Arc` clone of the latest board, so
//! it never waits on anything.

use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::ser::{Serialize, SerializeMap, SerializeStruct, Serializer};

use super::HttpState;
use crate::http_server::{RequestId, ResponseBody};
use crate::status::{Board, InstanceStatus, ProgramStatus};

pub(super) const JSON: &str = "application/json";
const METRICS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Answers one request whose head is within the limit; never blocks on
/// anything but the dashboard's own requests to the Supervisor.
pub(super) async fn route(
    state: Arc<HttpState>,
    request: Request<Incoming>,
    id: RequestId,
) -> Response<ResponseBody> {
    if state
        .dashboard
        .serves(request.method(), request.uri().path())
    {
        return super::dashboard::respond(state.clone(), request, id).await;
    }
    let state = &*state;
    let id = &id;
    if request.uri().path().starts_with("/api/") {
        // Without `control_token_file` no action route exists, whatever
        // the method.
        return error(StatusCode::NOT_FOUND, "not_found", "no such endpoint", id);
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            &format!(
                "method {} is not allowed; this endpoint is read-only (GET, HEAD)",
                request.method()
            ),
            id,
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let path = request.uri().path();
    match path {
        "/health" => health(state),
        "/ready" => ready(&board(state)),
        "/metrics" => {
            let text = (state.render_metrics)(&board(state));
            body(StatusCode::OK, METRICS, Bytes::from(text))
        }
        _ => match path.strip_prefix("/ready/") {
            Some(name) => ready_program(&board(state), name, id),
            None => error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no such endpoint {path:?}; try /health, /ready, /ready/{{program}}, /metrics{}", if state.dashboard.serves(&Method::GET, "/") { " or /" } else { "" }),
                id,
            ),
        },
    }
}

/// The latest board. The watch channel's read lock is released before
/// this returns: rendering while holding it would block the Supervisor's
/// next publish (a `match` on a borrowed temporary would hold it to the
/// end of the function).
fn board(state: &HttpState) -> Arc<Board> {
    let latest = state.status.borrow();
    latest.clone()
}

/// The bounded `path` label of `kelpie_http_requests_total`.
pub fn path_label(path: &str) -> &'static str {
    match path {
        "/health" => "/health",
        "/ready" => "/ready",
        "/metrics" => "/metrics",
        "/" => "/",
        "/dashboard.json" => "/dashboard.json",
        "/dashboard.js" | "/dashboard.css" => "/dashboard.{asset}",
        p if p.starts_with("/ready/") => "/ready/{program}",
        p if p.starts_with("/api/") => "/api/{action}",
        _ => "other",
    }
}

fn health(state: &HttpState) -> Response<ResponseBody> {
    #[derive(serde::Serialize)]
    struct Health {
        status: &'static str,
        version: &'static str,
        uptime_seconds: u64,
    }
    json(
        StatusCode::OK,
        &Health {
            status: "ok",
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: state.started.elapsed().as_secs(),
        },
    )
}

#[derive(serde::Serialize)]
struct Readiness<'a> {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    programs: Programs<'a>,
}

impl<'a> Readiness<'a> {
    fn new(reason: Option<String>, programs: Vec<&'a ProgramStatus>) -> Self {
        Self {
            status: if reason.is_none() {
                "ready"
            } else {
                "not_ready"
            },
            reason,
            programs: Programs(programs),
        }
    }

    fn code(&self) -> StatusCode {
        if self.reason.is_none() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

fn ready(board: &Board) -> Response<ResponseBody> {
    let readiness = Readiness::new(
        board.ready().err(),
        board.programs.iter().map(|p| p.as_ref()).collect(),
    );
    json(readiness.code(), &readiness)
}

/// `/ready/web`, or `/ready/web:0` for one instance (the body still shows
/// the whole program; status and reason are the instance's).
fn ready_program(board: &Board, name: &str, id: &RequestId) -> Response<ResponseBody> {
    let Some((program, instance)) = board.lookup(name) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_program",
            &format!("no program or instance named {name:?}"),
            id,
        );
    };
    // Like /ready, a program's endpoint turns 503 when shutdown begins, so
    // a load balancer checking one program drains too.
    let reason = if board.shutting_down {
        Some("shutting down".to_string())
    } else {
        match instance {
            Some(n) => program.instance_reason(n),
            None => program.reason(),
        }
    };
    let readiness = Readiness::new(reason, vec![program]);
    json(readiness.code(), &readiness)
}

/// `{"name": {...}, ...}` in config order.
struct Programs<'a>(Vec<&'a ProgramStatus>);

impl Serialize for Programs<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for program in &self.0 {
            map.serialize_entry(&program.name, &ProgramJson(program))?;
        }
        map.end()
    }
}

struct ProgramJson<'a>(&'a ProgramStatus);

impl Serialize for ProgramJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let mut s = serializer.serialize_struct("Program", 7)?;
        s.serialize_field("state", p.state().as_str())?;
        s.serialize_field("ready", &p.ready())?;
        s.serialize_field("required", &p.required)?;
        s.serialize_field("enabled", &p.enabled)?;
        s.serialize_field("instances", &Instances(p))?;
        s.serialize_field("restarts", &p.restarts())?;
        s.serialize_field("reason", &p.reason())?;
        s.end()
    }
}

struct Instances<'a>(&'a ProgramStatus);

impl Serialize for Instances<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        serializer.collect_seq(
            p.instances
                .iter()
                .enumerate()
                .map(|(n, instance)| InstanceJson {
                    program: &p.name,
                    index: n,
                    oneshot: p.oneshot,
                    instance,
                }),
        )
    }
}

struct InstanceJson<'a> {
    program: &'a str,
    index: usize,
    oneshot: bool,
    instance: &'a InstanceStatus,
}

impl Serialize for InstanceJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Name<'a>(&'a str, usize);
        impl Serialize for Name<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(&format_args!("{}:{}", self.0, self.1))
            }
        }
        let snapshot = &self.instance.snapshot;
        let mut s = serializer.serialize_struct("Instance", 6)?;
        s.serialize_field("name", &Name(self.program, self.index))?;
        s.serialize_field("state", snapshot.phase.as_str())?;
        s.serialize_field("ready", &self.instance.is_ready(self.oneshot))?;
        s.serialize_field("pid", &snapshot.pid)?;
        s.serialize_field("restarts", &snapshot.restarts)?;
        s.serialize_field("reason", &snapshot.reason)?;
        s.end()
    }
}

fn json(status: StatusCode, value: &impl Serialize) -> Response<ResponseBody> {
    // Serializing these types cannot fail (string keys only); the fallback
    // keeps a bug from becoming a panic.
    let bytes = serde_json::to_vec(value)
        .unwrap_or_else(|_| br#"{"error":"internal error","code":"internal_error"}"#.to_vec());
    json_bytes(status, bytes)
}

pub(super) fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Response<ResponseBody> {
    body(status, JSON, Bytes::from(bytes))
}

pub(super) fn error(
    status: StatusCode,
    code: &'static str,
    message: &str,
    id: &RequestId,
) -> Response<ResponseBody> {
    #[derive(serde::Serialize)]
    struct Error<'a> {
        error: &'a str,
        code: &'static str,
        request_id: &'a str,
    }
    json(
        status,
        &Error {
            error: message,
            code,
            request_id: &id.text,
        },
    )
}

pub(super) fn body(
    status: StatusCode,
    content_type: &'static str,
    bytes: Bytes,
) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(bytes));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_labels_are_bounded() {
        for (path, label) in [
            ("/health", "/health"),
            ("/ready", "/ready"),
            ("/ready/web", "/ready/{program}"),
            ("/ready/", "/ready/{program}"),
            ("/metrics", "/metrics"),
            ("/health/", "other"),
            ("/x/y/z", "other"),
            ("*", "other"),
        ] {
            assert_eq!(path_label(path), label, "{path}");
        }
    }
}

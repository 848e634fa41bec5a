//! The web dashboard on `http_listen`: the page at `/` (HTML, CSS and
//! script shipped inside the binary), the JSON it polls
//! (`/dashboard.json`), and, only when `control_token_file` is set, the
//! action routes `POST /api/programs/{name}/{verb}` behind a bearer token.
//!
//! Nothing here runs unless a request comes in: no timer, no cache to
//! refresh. An open page polls once a second; each poll is answered on the
//! HTTP thread alone, from what the Supervisor publishes (the status board;
//! the programs' outputs, for the crash history and the log tail), plus one
//! pass over `/proc` (CPU and RSS): no other thread wakes up for it.
//!
//! Actions are forwarded to the control API's handler (the same code
//! `kelpie restart` reaches over the control socket), so they behave
//! exactly like the CLI's.

mod auth;
pub(crate) mod json;

use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::time::Instant;

use super::endpoints::{body, error, json_bytes};
use super::HttpState;
use crate::control::server::{ControlBody, ControlRequest, Handler};
use crate::exit_history::ExitOverview;
use crate::http_server::{read_body, PeerIp, RequestId, ResponseBody};
use crate::metrics::proc::{GroupScanner, Usage};
use crate::output::OutputsReceiver;
use crate::status::Board;
use crate::supervisor::Verb;

pub(crate) use auth::constant_time_eq;

const PAGE: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
const STYLE: &str = include_str!("dashboard/dashboard.css");

/// The page's policy: its script and style are the two files below, served
/// by kelpie itself; it may fetch only from kelpie; nothing may frame it.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; \
    base-uri 'none'; form-action 'none'";

/// An action's request body (`{"rolling": true}`, `{"signal": "HUP"}`).
const MAX_ACTION_BODY: usize = 1024;
/// How long an action waits for its outcome before answering (the action
/// itself goes on); under the server's 10 s write timeout.
const ACTION_WAIT: Duration = Duration::from_secs(8);

/// How the endpoints reach the Supervisor; set once it runs.
pub struct ControlLink {
    /// Every program's output, as the Supervisor last published it.
    pub outputs: OutputsReceiver,
    pub handler: Handler,
}

/// The dashboard's configuration and the little state it keeps.
pub struct Dashboard {
    enabled: bool,
    token: Option<String>,
    link: OnceLock<ControlLink>,
    failures: auth::FailureLimiter,
    usage: Mutex<UsageCache>,
}

/// How long a `/proc` pass is reused: several open pages (or a client
/// asking in a loop) cost at most two passes a second, while one page
/// polling every second always gets a fresh one.
const USAGE_FRESH: Duration = Duration::from_millis(500);

#[derive(Default)]
struct UsageCache {
    scanner: Option<GroupScanner>,
    /// When the last pass ran, over which programs, and what it found.
    last: Option<(Instant, Vec<String>, Vec<Usage>)>,
}

impl UsageCache {
    fn usage(&mut self, board: &Board, now: Instant) -> Vec<Usage> {
        if let Some((at, names, usage)) = &self.last {
            let same_programs = names.len() == board.programs.len()
                && names.iter().zip(&board.programs).all(|(n, p)| *n == p.name);
            if same_programs && now.duration_since(*at) < USAGE_FRESH {
                return usage.clone();
            }
        }
        let usage = self
            .scanner
            .get_or_insert_with(|| GroupScanner::new().on_one_thread())
            .scan(board);
        let names = board.programs.iter().map(|p| p.name.clone()).collect();
        self.last = Some((now, names, usage.clone()));
        usage
    }
}

impl Dashboard {
    /// `enabled` serves the page; `token` (from `control_token_file`)
    /// enables the action routes.
    pub fn new(enabled: bool, token: Option<String>) -> Self {
        Self {
            enabled,
            token,
            link: OnceLock::new(),
            failures: auth::FailureLimiter::default(),
            usage: Mutex::default(),
        }
    }

    pub fn disabled() -> Self {
        Self::new(false, None)
    }

    /// Connects the dashboard to the running Supervisor; later calls are
    /// ignored.
    pub fn link(&self, link: ControlLink) {
        let _ = self.link.set(link);
    }

    /// Whether the page (and so every program's output) is served.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether `path` is one of the dashboard's and so answered by
    /// [`respond`].
    pub(super) fn serves(&self, method: &Method, path: &str) -> bool {
        if path.starts_with("/api/") {
            return self.enabled && self.token.is_some();
        }
        self.enabled
            && (method == Method::GET || method == Method::HEAD)
            && matches!(
                path,
                "/" | "/dashboard.js" | "/dashboard.css" | "/dashboard.json"
            )
    }
}

/// Answers a request [`Dashboard::serves`].
pub(super) async fn respond(
    state: Arc<HttpState>,
    request: Request<Incoming>,
    id: RequestId,
) -> Response<ResponseBody> {
    let dashboard = &state.dashboard;
    let path = request.uri().path().to_string();
    match path.as_str() {
        "/" => asset(PAGE, "text/html; charset=utf-8"),
        "/dashboard.js" => asset(SCRIPT, "text/javascript; charset=utf-8"),
        "/dashboard.css" => asset(STYLE, "text/css; charset=utf-8"),
        "/dashboard.json" => {
            let selected = request.uri().query().and_then(|q| {
                q.split('&')
                    .find_map(|pair| pair.strip_prefix("program="))
                    .map(crate::control::api::percent_decode)
            });
            poll(&state, selected, &id).await
        }
        _ => {
            let peer = request.extensions().get::<PeerIp>().map(|p| p.0);
            if let Some(refusal) = refuse(dashboard, request.headers(), peer, &id) {
                return refusal;
            }
            action(dashboard, &path, request, &id).await
        }
    }
}

fn asset(text: &'static str, content_type: &'static str) -> Response<ResponseBody> {
    body(
        StatusCode::OK,
        content_type,
        Bytes::from_static(text.as_bytes()),
    )
}

/// The security headers of every answer on `http_listen`.
pub(super) fn secure(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// Checks the bearer token: `None` lets the action through, else the
/// refusal. A failure is counted against the client and logged (never with
/// what was sent).
fn refuse(
    dashboard: &Dashboard,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    id: &RequestId,
) -> Option<Response<ResponseBody>> {
    let Some(expected) = &dashboard.token else {
        return Some(not_found(id));
    };
    // Without a peer address (never on TCP) every such client shares one
    // bucket, which errs on the side of locking out.
    let client = peer.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let now = Instant::now();
    if let Some(retry_after) = dashboard.failures.locked_out(client, now) {
        tracing::debug!(event = "dashboard_auth_locked_out", client = %client, retry_after);
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_failures",
            &format!("too many failed attempts from {client}; try again in {retry_after}s"),
            id,
        );
        if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return Some(response);
    }
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| auth::bearer(value.as_bytes()));
    let failure = match sent {
        None => "no bearer token",
        Some(token) if constant_time_eq(token, expected.as_bytes()) => return None,
        Some(_) => "wrong token",
    };
    let failures = dashboard.failures.fail(client, now);
    tracing::warn!(
        event = "dashboard_auth_failed",
        client = %client,
        failures,
        request_id = %id.text,
        "dashboard action refused for {client}: {failure} ({failures} failed attempts in the last minute)"
    );
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "this action needs the control token: send `Authorization: Bearer TOKEN`",
        id,
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Some(response)
}

fn not_found(id: &RequestId) -> Response<ResponseBody> {
    error(StatusCode::NOT_FOUND, "not_found", "no such endpoint", id)
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    #[serde(default)]
    rolling: bool,
    signal: Option<String>,
}

/// `POST /api/programs/{name}/{verb}`, forwarded to the control API.
async fn action(
    dashboard: &Dashboard,
    path: &str,
    request: Request<Incoming>,
    id: &RequestId,
) -> Response<ResponseBody> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (name, verb) = match segments.as_slice() {
        ["api", "programs", name, verb] if Verb::parse(verb).is_some() => {
            (crate::control::api::percent_decode(name), *verb)
        }
        _ => return not_found(id),
    };
    if request.method() != Method::POST {
        let mut response = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "actions are POST requests",
            id,
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let (parts, incoming) = request.into_parts();
    let sent = match read_body(&parts.headers, incoming, MAX_ACTION_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("the body must be JSON of at most {MAX_ACTION_BODY} bytes"),
                id,
            )
        }
    };
    let parsed: ActionBody = if sent.iter().all(u8::is_ascii_whitespace) {
        ActionBody::default()
    } else {
        match serde_json::from_slice(&sent) {
            Ok(body) => body,
            Err(err) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    &format!("invalid body: {err}; expected {{\"rolling\": true}} or {{\"signal\": \"HUP\"}}"),
                    id,
                )
            }
        }
    };
    let Some(link) = dashboard.link.get() else {
        return starting(id);
    };
    let mut forwarded = serde_json::json!({
        "wait": true,
        "timeout_ms": ACTION_WAIT.as_millis() as u64,
    });
    if parsed.rolling {
        forwarded["rolling"] = true.into();
    }
    if let Some(signal) = parsed.signal {
        forwarded["signal"] = signal.into();
    }
    tracing::info!(
        event = "dashboard_action",
        program = %name,
        action = verb,
        request_id = %id.text,
        "dashboard: {verb} {name}"
    );
    let reply = (link.handler)(ControlRequest {
        method: Method::POST,
        path: format!("/v1/programs/{name}/{verb}"),
        query: None,
        body: Bytes::from(forwarded.to_string()),
        request_id: id.text.clone(),
    })
    .await;
    let mut response = Response::new(match reply.body {
        ControlBody::Full(bytes) => ResponseBody::full(bytes),
        ControlBody::Stream(chunks) => ResponseBody::Stream(chunks),
    });
    *response.status_mut() = reply.status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(reply.content_type),
    );
    response
}

fn starting(id: &RequestId) -> Response<ResponseBody> {
    let mut response = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "starting",
        "kelpie is still starting",
        id,
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// `GET /dashboard.json`.
async fn poll(
    state: &HttpState,
    selected: Option<String>,
    id: &RequestId,
) -> Response<ResponseBody> {
    let dashboard = &state.dashboard;
    let Some(link) = dashboard.link.get() else {
        return starting(id);
    };
    let outputs = link.outputs.borrow().clone();
    let board = state.status.borrow().clone();
    let usage = dashboard
        .usage
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .usage(&board, Instant::now());
    let by_name: std::collections::HashMap<&str, &crate::output::ProgramOutput> =
        outputs.iter().map(|o| (o.program(), o.as_ref())).collect();
    let now = SystemTime::now();
    let overviews: Vec<Option<ExitOverview>> = board
        .programs
        .iter()
        .map(|program| {
            by_name
                .get(program.name.as_str())
                .map(|o| o.exit_overview(program.state(), now))
        })
        .collect();
    let selected = selected.and_then(|name| {
        let (program, instance) = board.lookup(&name)?;
        let output = by_name.get(program.name.as_str())?;
        let instance = instance.map(|n| n as u32);
        let mut exits = output.exits();
        if let Some(n) = instance {
            exits.retain(|e| e.instance == n);
        }
        let log = output.tail().last_of(json::LOG_LINES, instance);
        Some(json::Selected { name, exits, log })
    });
    let bytes = json::render(&json::Inputs {
        board: &board,
        usage: &usage,
        overviews: &overviews,
        selected,
        actions: dashboard.token.is_some(),
        uptime_seconds: state.started.elapsed().as_secs(),
        now,
    });
    json_bytes(StatusCode::OK, bytes)
}

#[cfg(test)]
mod tests;

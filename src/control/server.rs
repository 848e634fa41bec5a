//! The control API's HTTP/1.1 server on the control socket.
//!
//! This is transport only: the [`Handler`] routes and answers; the server
//! makes sure every request that reaches it is allowed and bounded:
//!
//! - only kelpie's own (effective) uid and root are served (SO_PEERCRED);
//!   other users get a 403 `forbidden` and the connection is closed;
//! - request bodies above [`protocol::MAX_BODY_BYTES`] get a 413
//!   `body_too_large` (checked on `Content-Length` up front and while
//!   reading chunked bodies; never more than the limit is buffered);
//! - request heads above 8 KiB get a JSON 431, heads beyond hyper's own
//!   bound (16 KiB) hyper's bare 431; a head must arrive within 10 s of the
//!   connection becoming idle, which also closes idle keep-alive
//!   connections;
//! - at most 64 connections are served at once; the next ones get a 503
//!   `busy`. Refusals (403 and 503) are served by a small pool of their
//!   own with a short timeout, so a foreign user cannot take the owner's
//!   slots; beyond that pool a refusal is written at once, unread, and the
//!   connection closed;
//! - a panic in the handler costs that request a 500 `internal`.
//!
//! Unlike the TCP endpoints (src/http.rs) there is no write timeout: every
//! client here is the owner or root, and a paused `kelpie logs -f | less`
//! legitimately stops reading for as long as it likes.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::protocol::{self, code, ErrorReply};
use super::socket::ControlSocket;
use crate::http::request_id;

/// `Content-Type` of JSON replies.
pub const JSON: &str = "application/json";
/// `Content-Type` of newline-delimited JSON streams.
pub const NDJSON: &str = "application/x-ndjson";

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// One request, its body read completely (at most
/// [`protocol::MAX_BODY_BYTES`]).
#[derive(Debug, Clone)]
pub struct ControlRequest {
    pub method: Method,
    /// The path without the query, e.g. `/v1/programs/web`.
    pub path: String,
    pub query: Option<String>,
    pub body: Bytes,
    /// The client's sane `X-Request-Id`, or a generated one; also sent back
    /// as the response's `X-Request-Id`.
    pub request_id: String,
}

#[derive(Debug)]
pub enum ControlBody {
    Full(Bytes),
    /// Chunks sent as they arrive; the response ends when the sender is
    /// dropped. The receiver is dropped when the client goes away, so the
    /// producer's `send` fails (or `Sender::closed` completes).
    Stream(mpsc::Receiver<Bytes>),
}

#[derive(Debug)]
pub struct ControlResponse {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: ControlBody,
}

impl ControlResponse {
    /// `value` as a JSON body.
    pub fn json(status: StatusCode, value: &impl Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(bytes) => Self::full(status, JSON, Bytes::from(bytes)),
            Err(err) => {
                // A bug (e.g. a map with non-string keys), not a client's
                // doing; the reply says so instead of panicking.
                tracing::error!(event = "control_encode_failed", error = %err, "cannot encode a control reply: {err}");
                Self::full(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    JSON,
                    Bytes::from_static(
                        br#"{"error":"internal error: cannot encode the reply; see kelpie's log","code":"internal","request_id":""}"#,
                    ),
                )
            }
        }
    }

    /// An [`ErrorReply`] body.
    pub fn error(status: StatusCode, code: &str, message: &str, request_id: &str) -> Self {
        Self::error_with_details(status, code, message, request_id, Vec::new())
    }

    /// An [`ErrorReply`] body with further lines (e.g. every config error).
    pub fn error_with_details(
        status: StatusCode,
        code: &str,
        message: &str,
        request_id: &str,
        details: Vec<String>,
    ) -> Self {
        Self::json(
            status,
            &ErrorReply {
                error: message.to_string(),
                code: code.to_string(),
                request_id: request_id.to_string(),
                details,
            },
        )
    }

    pub fn full(status: StatusCode, content_type: &'static str, body: Bytes) -> Self {
        Self {
            status,
            content_type,
            body: ControlBody::Full(body),
        }
    }

    /// A streamed body (chunked), e.g. NDJSON with content type [`NDJSON`].
    pub fn stream(
        status: StatusCode,
        content_type: &'static str,
        chunks: mpsc::Receiver<Bytes>,
    ) -> Self {
        Self {
            status,
            content_type,
            body: ControlBody::Stream(chunks),
        }
    }
}

/// Answers every request the server lets through. If the client goes away
/// before the answer is ready, the future may be dropped unfinished.
pub type Handler = Arc<
    dyn Fn(ControlRequest) -> Pin<Box<dyn Future<Output = ControlResponse> + Send>> + Send + Sync,
>;

/// A [`Handler`] from an async function or closure.
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(ControlRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ControlResponse> + Send + 'static,
{
    Arc::new(move |request| Box::pin(f(request)))
}

/// The request body as JSON. An empty (or blank) body counts as `{}`, so
/// actions whose fields are all optional need no body. Invalid JSON → 400
/// `bad_json` with serde's message.
pub fn parse_json<T: DeserializeOwned>(req: &ControlRequest) -> Result<T, ControlResponse> {
    let body: &[u8] = if req.body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &req.body
    };
    serde_json::from_slice(body).map_err(|err| {
        let message = err.to_string().replace(['\n', '\r'], " ");
        ControlResponse::error(
            StatusCode::BAD_REQUEST,
            code::BAD_JSON,
            &format!("invalid JSON request body: {message}"),
            &req.request_id,
        )
    })
}

/// Resource bounds of the server. [`Limits::default`] is what kelpie uses;
/// the fields exist so the tests can exercise each bound quickly.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    /// Refused connections (403, 503) answered by hyper at once; beyond
    /// this the refusal is written without reading the request.
    pub(crate) max_refusals: usize,
    pub(crate) max_header_bytes: usize,
    pub(crate) header_read_timeout: Duration,
    /// Header read timeout of refused connections.
    pub(crate) refusal_timeout: Duration,
    /// How long `stop` lets in-flight requests (and streams) finish.
    pub(crate) shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 64,
            max_refusals: 16,
            max_header_bytes: 8 * 1024,
            header_read_timeout: Duration::from_secs(10),
            refusal_timeout: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(1),
        }
    }
}

impl Limits {
    /// hyper's own bound on a request head (and on its read buffer). Heads
    /// between our limit and this one get our JSON 431.
    fn hyper_head_limit(&self) -> usize {
        // hyper panics on a buffer limit below 8192.
        (self.max_header_bytes * 2).max(8192)
    }
}

/// The running server; see [`start`].
pub struct ControlServer {
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    #[cfg(test)]
    served: Tracker,
}

/// Serves `socket` with `handler` on the current tokio runtime until
/// [`ControlServer::stop`] (or until the `ControlServer` is dropped).
pub fn start(socket: ControlSocket, handler: Handler) -> ControlServer {
    start_with(socket, handler, Limits::default())
}

pub(crate) fn start_with(socket: ControlSocket, handler: Handler, limits: Limits) -> ControlServer {
    let (stop_tx, stop_rx) = oneshot::channel();
    let served = Tracker::default();
    let path = socket.path().to_path_buf();
    let task = tokio::spawn(accept_loop(
        socket,
        handler,
        Arc::new(limits),
        served.clone(),
        stop_rx,
    ));
    ControlServer {
        path,
        stop: Some(stop_tx),
        task,
        #[cfg(test)]
        served,
    }
}

impl ControlServer {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting and removes the socket file at once (a new client
    /// then finds no supervisor), gives requests in flight up to 1 s, then
    /// closes whatever is still open.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // The accept loop bounds its own grace period; this only guards
        // against a wedged task holding up kelpie's exit.
        let _ = tokio::time::timeout(Duration::from_secs(3), &mut self.task).await;
    }

    /// Open served (not refused) connections, for tests to wait on.
    #[cfg(test)]
    pub(crate) fn connections(&self) -> watch::Receiver<usize> {
        self.served.0.subscribe()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Finish the request in flight, then close.
    Draining,
    /// Close now.
    Closing,
}

async fn accept_loop(
    socket: ControlSocket,
    handler: Handler,
    limits: Arc<Limits>,
    served: Tracker,
    mut stop: oneshot::Receiver<()>,
) {
    let owner = nix::unistd::geteuid().as_raw();
    let head_limit = limits.hyper_head_limit();
    let mut http = http1::Builder::new();
    // Without a timer hyper silently ignores header_read_timeout.
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(head_limit)
        .max_buf_size(head_limit)
        .keep_alive(true);
    let http = Arc::new(http);
    let mut refusal_http = http1::Builder::new();
    refusal_http
        .timer(TokioTimer::new())
        .header_read_timeout(limits.refusal_timeout)
        .max_header_size(head_limit)
        .max_buf_size(head_limit)
        .keep_alive(false);
    let refusal_http = Arc::new(refusal_http);
    let refused = Tracker::default();
    let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
    let mut forbidden_gate = RateLimit::new(Duration::from_secs(1));
    let mut busy_gate = RateLimit::new(Duration::from_secs(10));
    let mut accept_gate = RateLimit::new(Duration::from_secs(10));
    let path = socket.path().display().to_string();

    loop {
        let accepted = tokio::select! {
            biased;
            _ = &mut stop => break,
            accepted = socket.listener().accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of fds or memory: accept fails until something
                // closes, and retrying at once would spin. Anything else
                // concerns one client only.
                if is_resource_exhaustion(&err) {
                    if let Some(suppressed) = accept_gate.allow() {
                        tracing::warn!(event = "control_accept_failed", error = %err, suppressed, "cannot accept control connections: {err}");
                    }
                    tokio::select! {
                        _ = &mut stop => break,
                        () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
                continue;
            }
        };

        let refusal = match stream.peer_cred() {
            Ok(cred) if cred.uid() == owner || cred.uid() == 0 => {
                (served.active() >= limits.max_connections).then(|| {
                    if let Some(suppressed) = busy_gate.allow() {
                        tracing::warn!(
                            event = "control_busy",
                            max_connections = limits.max_connections,
                            suppressed,
                            "control connection cap ({}) reached; refusing new connections",
                            limits.max_connections
                        );
                    }
                    Refusal::Busy
                })
            }
            Ok(cred) => {
                let uid = cred.uid();
                let pid = cred.pid().unwrap_or(0);
                if let Some(suppressed) = forbidden_gate.allow() {
                    tracing::warn!(
                        event = "control_forbidden",
                        uid,
                        pid,
                        suppressed,
                        "refused a control connection from uid {uid} (pid {pid}): only uid {owner} and root may use {path}"
                    );
                }
                Some(Refusal::Forbidden { uid, owner })
            }
            Err(err) => {
                if let Some(suppressed) = forbidden_gate.allow() {
                    tracing::warn!(
                        event = "control_forbidden",
                        error = %err,
                        suppressed,
                        "refused a control connection whose peer credentials cannot be read: {err}"
                    );
                }
                Some(Refusal::Unidentified)
            }
        };

        match refusal {
            None => {
                let guard = served.enter();
                let handler = handler.clone();
                let limits = limits.clone();
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let handler = handler.clone();
                    let limits = limits.clone();
                    async move { Ok::<_, Infallible>(respond(&handler, &limits, request).await) }
                });
                tokio::spawn(connection(
                    stream,
                    service,
                    http.clone(),
                    phase_rx.clone(),
                    guard,
                ));
            }
            Some(refusal) if refused.active() < limits.max_refusals => {
                let guard = refused.enter();
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let id = request_id(request.headers());
                    let reply = refusal.response(&id.text);
                    std::future::ready(Ok::<_, Infallible>(into_hyper(reply, id.header)))
                });
                tokio::spawn(connection(
                    stream,
                    service,
                    refusal_http.clone(),
                    phase_rx.clone(),
                    guard,
                ));
            }
            Some(refusal) => refuse_now(&stream, refusal),
        }
    }

    // Closing the listener and removing the file first: from now on a
    // client finds no supervisor instead of a connection nobody accepts.
    drop(socket);
    let _ = phase_tx.send(Phase::Draining);
    let idle = async {
        served.wait_idle().await;
        refused.wait_idle().await;
    };
    tokio::pin!(idle);
    if tokio::time::timeout(limits.shutdown_grace, idle.as_mut())
        .await
        .is_err()
    {
        let _ = phase_tx.send(Phase::Closing);
        let _ = tokio::time::timeout(Duration::from_millis(500), idle).await;
    }
}

fn is_resource_exhaustion(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

async fn connection<S>(
    stream: UnixStream,
    service: S,
    http: Arc<http1::Builder>,
    mut phase: watch::Receiver<Phase>,
    _guard: Guard,
) where
    S: hyper::service::Service<
        Request<Incoming>,
        Response = Response<ResponseBody>,
        Error = Infallible,
    >,
{
    let conn = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(err) = result {
                // Timeouts, disconnects and unparsable requests: the
                // client's business.
                tracing::trace!(event = "control_connection_error", error = %err);
            }
            return;
        }
        _ = phase.wait_for(|phase| *phase != Phase::Serving) => {}
    }
    conn.as_mut().graceful_shutdown();
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = phase.wait_for(|phase| *phase == Phase::Closing) => {}
    }
}

/// Answers one request; never fails.
async fn respond(
    handler: &Handler,
    limits: &Limits,
    request: Request<Incoming>,
) -> Response<ResponseBody> {
    let id = request_id(request.headers());
    let reply = answer(handler, limits, request, &id.text).await;
    into_hyper(reply, id.header)
}

async fn answer(
    handler: &Handler,
    limits: &Limits,
    request: Request<Incoming>,
    id: &str,
) -> ControlResponse {
    if head_size(&request) > limits.max_header_bytes {
        return ControlResponse::error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            code::HEADERS_TOO_LARGE,
            &format!(
                "request line and headers exceed {} bytes",
                limits.max_header_bytes
            ),
            id,
        );
    }
    let (parts, body) = request.into_parts();
    let body = match read_body(&parts.headers, body).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return ControlResponse::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                code::BODY_TOO_LARGE,
                &format!("request body exceeds {} bytes", protocol::MAX_BODY_BYTES),
                id,
            )
        }
        Err(BodyError::Read(message)) => {
            return ControlResponse::error(
                StatusCode::BAD_REQUEST,
                code::BAD_REQUEST,
                &format!("cannot read the request body: {message}"),
                id,
            )
        }
    };
    let path = parts.uri.path().to_string();
    let request = ControlRequest {
        method: parts.method,
        path: path.clone(),
        query: parts.uri.query().map(str::to_string),
        body,
        request_id: id.to_string(),
    };
    // A panic (a bug) costs this request a 500, not the connection or the
    // server. The panic hook logs the panic itself; this ties it to the
    // request.
    let reply = match std::panic::catch_unwind(AssertUnwindSafe(|| handler(request))) {
        Ok(future) => catch_unwind(future).await,
        Err(_) => None,
    };
    reply.unwrap_or_else(|| {
        tracing::error!(
            event = "control_handler_panic",
            request_id = id,
            path = %path,
            "the control handler panicked while answering {path} (request {id})"
        );
        ControlResponse::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            code::INTERNAL,
            "internal error; see kelpie's log",
            id,
        )
    })
}

/// Polls `future` to completion; `None` if it panicked. A panicked future
/// is never polled again.
async fn catch_unwind<T>(mut future: Pin<Box<dyn Future<Output = T> + Send>>) -> Option<T> {
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Some(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(None),
        }
    })
    .await
}

enum BodyError {
    TooLarge,
    Read(String),
}

async fn read_body(headers: &HeaderMap, body: Incoming) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > protocol::MAX_BODY_BYTES as u64) {
        return Err(BodyError::TooLarge);
    }
    match Limited::new(body, protocol::MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => Err(BodyError::TooLarge),
        Err(err) => Err(BodyError::Read(err.to_string())),
    }
}

/// The request head's size on the wire (modulo optional whitespace).
fn head_size<B>(request: &Request<B>) -> usize {
    let uri = request.uri();
    let target = uri.path_and_query().map_or(1, |p| p.as_str().len())
        + uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len());
    let line = request.method().as_str().len() + 1 + target + 1 + "HTTP/1.1\r\n".len();
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    line + headers + 2
}

fn into_hyper(reply: ControlResponse, id: HeaderValue) -> Response<ResponseBody> {
    let body = match reply.body {
        ControlBody::Full(bytes) => ResponseBody::Full(Some(bytes)),
        ControlBody::Stream(chunks) => ResponseBody::Stream(chunks),
    };
    let mut response = Response::new(body);
    *response.status_mut() = reply.status;
    let headers = response.headers_mut();
    // from_static would panic on a malformed content type from a handler.
    let content_type = HeaderValue::from_str(reply.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(REQUEST_ID, id);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The response body hyper writes: whole, or chunk by chunk (chunked
/// transfer encoding) until the handler drops its sender. hyper drops it,
/// and so the receiver, when the connection ends for any reason.
enum ResponseBody {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut *self {
            ResponseBody::Full(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|bytes| !bytes.is_empty())
                    .map(|bytes| Ok(Frame::data(bytes))),
            ),
            ResponseBody::Stream(chunks) => loop {
                // An empty chunk would read as the chunked terminator.
                match std::task::ready!(chunks.poll_recv(cx)) {
                    Some(chunk) if chunk.is_empty() => continue,
                    Some(chunk) => return Poll::Ready(Some(Ok(Frame::data(chunk)))),
                    None => return Poll::Ready(None),
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            ResponseBody::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |bytes| bytes.len() as u64))
            }
            ResponseBody::Stream(_) => SizeHint::default(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Refusal {
    Forbidden { uid: u32, owner: u32 },
    Unidentified,
    Busy,
}

impl Refusal {
    fn response(&self, id: &str) -> ControlResponse {
        match self {
            Refusal::Forbidden { uid, owner } => ControlResponse::error(
                StatusCode::FORBIDDEN,
                code::FORBIDDEN,
                &format!(
                    "uid {uid} may not use this control socket; only uid {owner} and root may"
                ),
                id,
            ),
            Refusal::Unidentified => ControlResponse::error(
                StatusCode::FORBIDDEN,
                code::FORBIDDEN,
                "kelpie cannot identify the user of this connection",
                id,
            ),
            Refusal::Busy => ControlResponse::error(
                StatusCode::SERVICE_UNAVAILABLE,
                code::BUSY,
                "the supervisor is serving too many control connections; try again",
                id,
            ),
        }
    }
}

/// Beyond the refusal pool: one best-effort reply (if the socket takes it
/// at once), then close. Nothing is read, so this costs no more than the
/// accept.
fn refuse_now(stream: &UnixStream, refusal: Refusal) {
    let id = crate::http::generate_request_id();
    let reply = refusal.response(&id);
    let ControlBody::Full(body) = reply.body else {
        return;
    };
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nx-request-id: {id}\r\n\
         cache-control: no-store\r\nconnection: close\r\n\r\n",
        reply.status.as_u16(),
        reply.status.canonical_reason().unwrap_or(""),
        reply.content_type,
        body.len(),
    );
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&body);
    let _ = stream.try_write(&bytes);
}

/// Counts open connections; watchable, so shutdown (and tests) can wait
/// for a count instead of polling it.
#[derive(Clone)]
struct Tracker(Arc<watch::Sender<usize>>);

impl Default for Tracker {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(0)))
    }
}

impl Tracker {
    fn active(&self) -> usize {
        *self.0.borrow()
    }

    fn enter(&self) -> Guard {
        self.0.send_modify(|n| *n += 1);
        Guard(self.0.clone())
    }

    async fn wait_idle(&self) {
        let mut count = self.0.subscribe();
        let _ = count.wait_for(|n| *n == 0).await;
    }
}

/// Held by a connection task; released even if the task panics or is
/// cancelled, so the count never leaks.
struct Guard(Arc<watch::Sender<usize>>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Lets a warning through at most once per `every`, counting the ones it
/// held back, so a flood of connections cannot flood the log.
struct RateLimit {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(warnings suppressed since the last one)` when one may be
    /// logged now.
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(at) if now.duration_since(at) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

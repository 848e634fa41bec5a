//! The control API's HTTP/1.1 server on the control socket.
//!
//! This is transport only: the [`Handler`] routes and answers; the shared
//! `http_server` bounds every connection, and this module adds what is
//! the control socket's own:
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

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::protocol::{self, code, ErrorReply};
use super::socket::ControlSocket;
use crate::http_server::{
    self, read_body, BodyError, Connection, Limits, RateLimit, RequestId, ResponseBody, Site,
    Tracker,
};

/// `Content-Type` of JSON replies.
pub const JSON: &str = "application/json";
/// `Content-Type` of newline-delimited JSON streams.
pub const NDJSON: &str = "application/x-ndjson";

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
    start_with(socket, handler, Limits::control())
}

pub(crate) fn start_with(socket: ControlSocket, handler: Handler, limits: Limits) -> ControlServer {
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let served = Tracker::default();
    let path = socket.path().to_path_buf();
    let site = Arc::new(ControlSite {
        handler,
        owner: nix::unistd::geteuid().as_raw(),
        path: path.display().to_string(),
        max_connections: limits.max_connections,
        forbidden_gate: RateLimit::new(Duration::from_secs(1)),
        busy_gate: RateLimit::new(Duration::from_secs(10)),
        accept_gate: RateLimit::new(Duration::from_secs(10)),
    });
    // The socket is the listener: dropping it when serving ends removes
    // the socket file before requests in flight are drained, so a new
    // client finds no supervisor.
    let task = tokio::spawn(http_server::serve(
        socket,
        site,
        limits,
        served.clone(),
        async {
            // Completes on stop() and also when the ControlServer is
            // dropped.
            let _ = stop_rx.await;
        },
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
        // The server bounds its own grace period; this only guards
        // against a wedged task holding up kelpie's exit.
        let _ = tokio::time::timeout(Duration::from_secs(3), &mut self.task).await;
    }

    /// Open served (not refused) connections, for tests to wait on.
    #[cfg(test)]
    pub(crate) fn connections(&self) -> tokio::sync::watch::Receiver<usize> {
        self.served.subscribe()
    }
}

impl http_server::Listener for ControlSocket {
    type Stream = UnixStream;

    async fn accept(&self) -> io::Result<UnixStream> {
        self.listener().accept().await.map(|(stream, _peer)| stream)
    }
}

impl Connection for UnixStream {
    fn try_write_now(&self, bytes: &[u8]) -> io::Result<usize> {
        self.try_write(bytes)
    }
}

/// The control socket as a [`Site`] of the shared server.
struct ControlSite {
    handler: Handler,
    /// kelpie's effective uid: with root, the only peer served.
    owner: u32,
    /// The socket's path, for log lines.
    path: String,
    max_connections: usize,
    forbidden_gate: RateLimit,
    busy_gate: RateLimit,
    accept_gate: RateLimit,
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

impl Site for ControlSite {
    type Stream = UnixStream;
    type Refusal = Refusal;

    fn screen(&self, stream: &UnixStream) -> Result<(), Refusal> {
        let owner = self.owner;
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == owner || cred.uid() == 0 => Ok(()),
            Ok(cred) => {
                let uid = cred.uid();
                let pid = cred.pid().unwrap_or(0);
                if let Some(suppressed) = self.forbidden_gate.allow() {
                    let path = &self.path;
                    tracing::warn!(
                        event = "control_forbidden",
                        uid,
                        pid,
                        suppressed,
                        "refused a control connection from uid {uid} (pid {pid}): only uid {owner} and root may use {path}"
                    );
                }
                Err(Refusal::Forbidden { uid, owner })
            }
            Err(err) => {
                if let Some(suppressed) = self.forbidden_gate.allow() {
                    tracing::warn!(
                        event = "control_forbidden",
                        error = %err,
                        suppressed,
                        "refused a control connection whose peer credentials cannot be read: {err}"
                    );
                }
                Err(Refusal::Unidentified)
            }
        }
    }

    fn busy(&self) -> Refusal {
        if let Some(suppressed) = self.busy_gate.allow() {
            tracing::warn!(
                event = "control_busy",
                max_connections = self.max_connections,
                suppressed,
                "control connection cap ({}) reached; refusing new connections",
                self.max_connections
            );
        }
        Refusal::Busy
    }

    fn refusal(&self, refusal: &Refusal, id: &str) -> Response<Bytes> {
        let reply = refusal.response(id);
        let body = match reply.body {
            ControlBody::Full(bytes) => bytes,
            // Refusals are always whole JSON bodies.
            ControlBody::Stream(_) => Bytes::new(),
        };
        with_content_type(Response::new(body), reply.status, reply.content_type)
    }

    fn accept_failed(&self, err: &io::Error) {
        if let Some(suppressed) = self.accept_gate.allow() {
            tracing::warn!(event = "control_accept_failed", error = %err, suppressed, "cannot accept control connections: {err}");
        }
    }

    fn connection_failed(&self, err: &hyper::Error) {
        tracing::trace!(event = "control_connection_error", error = %err);
    }

    fn respond(
        &self,
        request: Request<Incoming>,
        id: &RequestId,
    ) -> impl Future<Output = Response<ResponseBody>> + Send + 'static {
        let handler = self.handler.clone();
        let id = id.text.clone();
        async move { into_hyper(answer(&handler, request, id).await) }
    }

    fn head_too_large(&self, limit: usize, id: &RequestId) -> Response<ResponseBody> {
        into_hyper(ControlResponse::error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            code::HEADERS_TOO_LARGE,
            &format!("request line and headers exceed {limit} bytes"),
            &id.text,
        ))
    }

    fn panicked(&self, path: &str, id: &RequestId) -> Response<ResponseBody> {
        // The panic hook logs the panic itself; this ties it to the
        // request.
        let id = id.text.as_str();
        tracing::error!(
            event = "control_handler_panic",
            request_id = id,
            path = %path,
            "the control handler panicked while answering {path} (request {id})"
        );
        into_hyper(ControlResponse::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            code::INTERNAL,
            "internal error; see kelpie's log",
            id,
        ))
    }
}

/// Reads the body and hands the request to the handler.
async fn answer(handler: &Handler, request: Request<Incoming>, id: String) -> ControlResponse {
    let (parts, body) = request.into_parts();
    let body = match read_body(&parts.headers, body, protocol::MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return ControlResponse::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                code::BODY_TOO_LARGE,
                &format!("request body exceeds {} bytes", protocol::MAX_BODY_BYTES),
                &id,
            )
        }
        Err(BodyError::Read(message)) => {
            return ControlResponse::error(
                StatusCode::BAD_REQUEST,
                code::BAD_REQUEST,
                &format!("cannot read the request body: {message}"),
                &id,
            )
        }
    };
    let request = ControlRequest {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        body,
        request_id: id,
    };
    handler(request).await
}

fn into_hyper(reply: ControlResponse) -> Response<ResponseBody> {
    let body = match reply.body {
        ControlBody::Full(bytes) => ResponseBody::Full(Some(bytes)),
        ControlBody::Stream(chunks) => ResponseBody::Stream(chunks),
    };
    with_content_type(Response::new(body), reply.status, reply.content_type)
}

fn with_content_type<B>(
    mut response: Response<B>,
    status: StatusCode,
    content_type: &'static str,
) -> Response<B> {
    *response.status_mut() = status;
    // from_static would panic on a malformed content type from a handler.
    let content_type = HeaderValue::from_str(content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}

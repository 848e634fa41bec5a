//! The HTTP endpoints (`http_listen`): `/health`, `/ready`,
//! `/ready/{program}` and `/metrics`.
//!
//! Read-only and isolated from the supervisor:
//!
//! - handlers only read the latest [`Board`] from the status watch channel
//!   (one `Arc` clone); they never call an actor, so a slow or hostile
//!   client cannot delay supervision;
//! - [`start`] runs the server on a thread with a current-thread runtime of
//!   its own, so even a request flood competes with the supervisor only for
//!   CPU at the OS level, never for its two tokio workers;
//! - every resource a client can hold is bounded: connections (a cap;
//!   excess ones are answered 503 and closed at once so the kernel backlog
//!   never fills), header bytes (8 KiB, 431), time to send a request head
//!   (10 s, also closes idle keep-alive connections) and time a client may
//!   leave a response unread (10 s);
//! - a panic while answering becomes a 500 for that request; the connection
//!   task, the server and the supervisor carry on.
//!
//! hyper answers what it cannot parse by itself (400 for garbage, 431 for a
//! head over twice our header limit) with a bare status line and no body:
//! those responses never reach our code. docs/http.md lists every case.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::ser::{Serialize, SerializeMap, SerializeStruct, Serializer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{oneshot, watch, Notify};
use tokio::time::{Instant, Sleep};

use crate::status::{Board, InstanceStatus, ProgramStatus, StatusReceiver};

/// Renders `/metrics` (Prometheus text exposition) for a board.
pub type RenderMetrics = Arc<dyn Fn(&Board) -> String + Send + Sync>;
/// Counts one answered request: (path label, status code).
pub type OnRequest = Arc<dyn Fn(&str, u16) + Send + Sync>;

/// What the endpoints read and report to.
pub struct HttpState {
    pub status: StatusReceiver,
    /// Renders `/metrics` (Prometheus text exposition) for a board.
    pub render_metrics: RenderMetrics,
    /// Called once per answered request with a bounded path label
    /// (`/health`, `/ready`, `/ready/{program}`, `/metrics`, `other`) and
    /// the status code, for `kelpie_http_requests_total`.
    pub on_request: OnRequest,
    /// When kelpie started, for `uptime_seconds`.
    pub started: Instant,
}

/// The default cap on concurrent connections (SPEC §4).
pub const MAX_CONNECTIONS: usize = 4096;

/// Pending connections the kernel may queue before kelpie accepts them
/// (Linux caps this at `net.core.somaxconn`). The accept loop drains the
/// queue quickly, connections over the cap included.
const BACKLOG: u32 = 4096;

/// Resource bounds of the server. [`Limits::default`] is what kelpie uses;
/// the fields exist so the in-process tests can exercise each bound
/// quickly.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    /// Request line plus headers, in bytes; above this → 431 (JSON).
    pub max_header_bytes: usize,
    /// A request head must arrive completely within this time after the
    /// connection became idle (connect, or the previous response); else
    /// the connection is closed. This also bounds idle keep-alive.
    pub header_read_timeout: Duration,
    /// A client that accepts no byte of its response for this long is
    /// disconnected (a client that never reads would otherwise hold its
    /// connection forever).
    pub write_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: MAX_CONNECTIONS,
            max_header_bytes: 8 * 1024,
            header_read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(1),
        }
    }
}

impl Limits {
    /// hyper's own bound on a request head. Heads between our limit and
    /// this one reach the router and get a proper JSON 431; only heads
    /// beyond it get hyper's bare 431. It also bounds hyper's read buffer,
    /// i.e. the memory a connection can make kelpie hold (hyper's default
    /// is ~400 KiB, ~1.6 GiB over 4096 connections).
    fn hyper_head_limit(&self) -> usize {
        // hyper panics on a buffer limit below 8192.
        (self.max_header_bytes * 2).max(8192)
    }
}

const JSON: &str = "application/json";
const METRICS: &str = "text/plain; version=0.0.4; charset=utf-8";
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Binds the listening socket, with one clear line on failure, e.g.
/// `cannot listen on 127.0.0.1:9100: address already in use`.
pub async fn bind(addr: &str) -> Result<TcpListener, String> {
    let fail = |err: io::Error| format!("cannot listen on {addr}: {}", describe(&err));
    let parsed: SocketAddr = addr
        .parse()
        .map_err(|_| format!("cannot listen on {addr}: not an IP:PORT address"))?;
    let socket = match parsed {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(fail)?;
    // A restarted kelpie can bind while the previous one's connections
    // linger in TIME_WAIT; a live listener still makes bind fail.
    socket.set_reuseaddr(true).map_err(fail)?;
    socket.bind(parsed).map_err(fail)?;
    socket.listen(BACKLOG).map_err(fail)
}

/// An OS error as a short lower-case phrase without "(os error N)".
fn describe(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::AddrInUse => "address already in use".into(),
        io::ErrorKind::AddrNotAvailable => "address not available on this host".into(),
        io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)".into()
        }
        _ => {
            let text = err.to_string();
            let text = text.split(" (os error").next().unwrap_or_default();
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => "unknown error".into(),
            }
        }
    }
}

/// Makes room in the soft `RLIMIT_NOFILE` for `connections` sockets plus
/// `other` descriptors kelpie needs anyway, and returns the connection cap
/// that fits. The soft limit is raised only as far as needed (never
/// lowered, and not to the hard limit: programs inherit it, and some
/// programs misbehave with huge limits, e.g. closing every possible fd
/// one by one). If even the hard limit is too low, the cap shrinks and a
/// warning says so.
pub fn reserve_fds(connections: usize, other: usize) -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let needed = (connections + other) as u64;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return connections;
    };
    if soft >= needed {
        return connections;
    }
    let target = needed.min(hard);
    let limit = if target > soft && setrlimit(Resource::RLIMIT_NOFILE, target, hard).is_ok() {
        tracing::debug!(
            event = "fd_limit_raised",
            from = soft,
            to = target,
            "raised the open-file limit from {soft} to {target} for HTTP connections"
        );
        target
    } else {
        soft
    };
    if limit >= needed {
        return connections;
    }
    let cap = (limit as usize).saturating_sub(other).max(1);
    tracing::warn!(
        event = "http_connection_cap_reduced",
        cap,
        fd_limit = limit,
        "the open-file limit ({limit}) leaves room for only {cap} HTTP connections instead of {connections}; raise the hard RLIMIT_NOFILE"
    );
    cap
}

/// A server running on its own thread; see [`start`].
pub struct Server {
    stop: Option<oneshot::Sender<()>>,
    done: oneshot::Receiver<()>,
}

/// Starts serving `listener` on a dedicated thread ("kelpie-http") with a
/// current-thread runtime of its own, and returns once it serves.
pub async fn start(
    listener: TcpListener,
    state: Arc<HttpState>,
    limits: Limits,
) -> Result<Server, String> {
    // Deregistered from the caller's reactor here, registered with the
    // server's on its thread.
    let listener = listener
        .into_std()
        .map_err(|err| format!("cannot hand the HTTP socket to its thread: {err}"))?;
    let (ready_tx, ready_rx) = oneshot::channel::<Result<(), String>>();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("kelpie-http".into())
        .spawn(move || {
            // Built here, not by the caller: a runtime must not be dropped
            // inside another one's async context, which an error path
            // there would do.
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    let _ = ready_tx.send(Err(format!("cannot start the HTTP runtime: {err}")));
                    return;
                }
            };
            let listener = {
                let _context = runtime.enter();
                TcpListener::from_std(listener)
            };
            let listener = match listener {
                Ok(listener) => listener,
                Err(err) => {
                    let _ = ready_tx.send(Err(format!("cannot register the HTTP socket: {err}")));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            runtime.block_on(serve_with(listener, state, limits, async {
                // Completes on stop() and also when the Server is dropped.
                let _ = stop_rx.await;
            }));
            // Dropping the runtime cancels connections still open after
            // the grace period.
            drop(runtime);
            let _ = done_tx.send(());
        })
        .map_err(|err| format!("cannot start the HTTP thread: {err}"))?;
    ready_rx
        .await
        .map_err(|_| "the HTTP thread ended while starting".to_string())??;
    Ok(Server {
        stop: Some(stop_tx),
        done: done_rx,
    })
}

impl Server {
    /// Stops accepting, lets in-flight requests finish (bounded by the
    /// grace period) and waits for the thread to wind down.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // The server bounds its own grace period; this only guards against
        // a wedged thread holding up kelpie's exit.
        let _ = tokio::time::timeout(Duration::from_secs(3), &mut self.done).await;
    }
}

/// Serves until `shutdown` completes, with the default [`Limits`].
pub async fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(listener, state, Limits::default(), shutdown).await
}

/// Serves until `shutdown` completes, then closes idle connections, lets
/// in-flight requests finish for at most `limits.shutdown_grace` and
/// returns.
pub async fn serve_with(
    listener: TcpListener,
    state: Arc<HttpState>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    // Without a timer hyper silently disables header_read_timeout.
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.hyper_head_limit())
        .max_buf_size(limits.hyper_head_limit())
        .keep_alive(true);
    let http = Arc::new(http);
    let limits = Arc::new(limits);
    let tracker = Arc::new(Tracker::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let warn_gate = RateLimit::default();

    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            event = "http_listening",
            addr = %addr,
            max_connections = limits.max_connections,
            "serving /health, /ready and /metrics on http://{addr}"
        );
    }

    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                if tracker.active() >= limits.max_connections {
                    reject(&stream);
                    if warn_gate.allow() {
                        tracing::warn!(
                            event = "http_connection_cap",
                            max_connections = limits.max_connections,
                            "HTTP connection cap ({}) reached; refusing new connections",
                            limits.max_connections
                        );
                    }
                    continue;
                }
                // Responses are written whole; no reason to let Nagle
                // delay the last segment of a keep-alive exchange.
                let _ = stream.set_nodelay(true);
                let guard = tracker.enter();
                tokio::spawn(connection(
                    stream,
                    state.clone(),
                    http.clone(),
                    limits.clone(),
                    stop_rx.clone(),
                    guard,
                ));
            }
            Err(err) => {
                // Out of fds or memory: accept fails until something
                // closes, and retrying at once would spin. Anything else
                // (a connection reset before it was accepted) concerns one
                // client only.
                if is_resource_exhaustion(&err) {
                    if warn_gate.allow() {
                        tracing::warn!(event = "http_accept_failed", error = %err, "cannot accept HTTP connections: {err}");
                    }
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(limits.shutdown_grace, tracker.wait_idle()).await;
}

fn is_resource_exhaustion(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Over the cap: one best-effort 503 (if the socket takes it at once),
/// then close. Nothing is read, so this costs no more than the accept.
fn reject(stream: &TcpStream) {
    let id = generate_request_id();
    let body = format!(
        r#"{{"error":"too many connections","code":"too_many_connections","request_id":"{id}"}}"#
    );
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: {JSON}\r\ncontent-length: {}\r\n\
         x-request-id: {id}\r\ncache-control: no-store\r\nx-content-type-options: nosniff\r\n\
         retry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(response.as_bytes());
}

async fn connection(
    stream: TcpStream,
    state: Arc<HttpState>,
    http: Arc<hyper::server::conn::http1::Builder>,
    limits: Arc<Limits>,
    mut stop: watch::Receiver<bool>,
    _guard: Guard,
) {
    let io = TokioIo::new(WriteDeadline::new(stream, limits.write_timeout));
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let response = respond(&state, &limits, &request);
        std::future::ready(Ok::<_, Infallible>(response))
    });
    let conn = http.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(err) = result {
                // Timeouts, resets and unparsable requests: the client's
                // problem, and possibly thousands of them under attack.
                tracing::trace!(event = "http_connection_error", error = %err);
            }
            return;
        }
        _ = stop.wait_for(|stopping| *stopping) => {}
    }
    // Shutdown: finish the request in flight, close once idle.
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Counts open connections; shutdown waits for zero.
#[derive(Default)]
struct Tracker {
    active: AtomicUsize,
    idle: Notify,
}

impl Tracker {
    fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    fn enter(self: &Arc<Self>) -> Guard {
        self.active.fetch_add(1, Ordering::AcqRel);
        Guard(self.clone())
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a wake-up in between is kept.
            notified.as_mut().enable();
            if self.active() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Held by a connection task; released even if the task panics or is
/// cancelled, so the count never leaks.
struct Guard(Arc<Tracker>);

impl Drop for Guard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// At most one warning per 10 s, so an attack cannot flood the log.
#[derive(Default)]
struct RateLimit(Mutex<Option<Instant>>);

impl RateLimit {
    fn allow(&self) -> bool {
        let Ok(mut last) = self.0.lock() else {
            return false;
        };
        let now = Instant::now();
        match *last {
            Some(at) if now.duration_since(at) < Duration::from_secs(10) => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

/// The client socket, failing a write that has made no progress for
/// `timeout` (hyper itself has no write timeout).
struct WriteDeadline {
    stream: TcpStream,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl WriteDeadline {
    fn new(stream: TcpStream, timeout: Duration) -> Self {
        Self {
            stream,
            timeout,
            stalled: None,
        }
    }

    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let timeout = self.timeout;
                // Allocated only when the client stops reading.
                let sleep = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client did not read its response",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncRead for WriteDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.watch(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.watch(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.stream).poll_flush(cx);
        this.watch(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.stream).poll_shutdown(cx);
        this.watch(cx, result)
    }
}

// ---------------------------------------------------------------------------
// Requests and responses

type Body = Full<Bytes>;

/// Answers one request; never fails and never blocks.
fn respond(state: &HttpState, limits: &Limits, request: &Request<Incoming>) -> Response<Body> {
    let id = request_id(request.headers());
    let label = path_label(request.uri().path());
    // A panic (a bug, e.g. in a metrics renderer) costs this request a 500,
    // not the connection or the server. The panic hook logs it.
    let mut response =
        std::panic::catch_unwind(AssertUnwindSafe(|| route(state, limits, request, &id)))
            .unwrap_or_else(|_| {
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "internal error; see kelpie's log",
                    &id,
                )
            });
    let headers = response.headers_mut();
    headers.insert(REQUEST_ID, id.header);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let code = response.status().as_u16();
    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| (state.on_request)(label, code)));
    response
}

fn route(
    state: &HttpState,
    limits: &Limits,
    request: &Request<Incoming>,
    id: &RequestId,
) -> Response<Body> {
    if head_size(request) > limits.max_header_bytes {
        return error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            &format!(
                "request line and headers exceed {} bytes",
                limits.max_header_bytes
            ),
            id,
        );
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
                &format!("no such endpoint {path:?}; try /health, /ready, /ready/{{program}} or /metrics"),
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
        p if p.starts_with("/ready/") => "/ready/{program}",
        _ => "other",
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

fn health(state: &HttpState) -> Response<Body> {
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

fn ready(board: &Board) -> Response<Body> {
    let readiness = Readiness::new(
        board.ready().err(),
        board.programs.iter().map(|p| p.as_ref()).collect(),
    );
    json(readiness.code(), &readiness)
}

fn ready_program(board: &Board, name: &str, id: &RequestId) -> Response<Body> {
    let Some(program) = board.program(name) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_program",
            &format!("no program named {name:?}"),
            id,
        );
    };
    // Like /ready, a program's endpoint turns 503 when shutdown begins, so
    // a load balancer checking one program drains too.
    let reason = if board.shutting_down {
        Some("shutting down".to_string())
    } else {
        program.reason()
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
        let mut s = serializer.serialize_struct("Program", 6)?;
        s.serialize_field("state", p.state().as_str())?;
        s.serialize_field("ready", &p.ready())?;
        s.serialize_field("required", &p.required)?;
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

fn json(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    // Serializing these types cannot fail (string keys only); the fallback
    // keeps a bug from becoming a panic.
    let bytes = serde_json::to_vec(value)
        .unwrap_or_else(|_| br#"{"error":"internal error","code":"internal_error"}"#.to_vec());
    body(status, JSON, Bytes::from(bytes))
}

fn error(status: StatusCode, code: &'static str, message: &str, id: &RequestId) -> Response<Body> {
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

fn body(status: StatusCode, content_type: &'static str, bytes: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(bytes));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

// ---------------------------------------------------------------------------
// Request ids

pub(crate) struct RequestId {
    pub(crate) text: String,
    pub(crate) header: HeaderValue,
}

/// The client's `X-Request-Id` when it is sane (1 to 128 visible ASCII
/// characters, so it is safe to log and to echo), else a generated one.
pub(crate) fn request_id(headers: &HeaderMap) -> RequestId {
    if let Some(value) = headers.get(REQUEST_ID) {
        let bytes = value.as_bytes();
        if (1..=128).contains(&bytes.len()) && bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
            if let Ok(text) = value.to_str() {
                return RequestId {
                    text: text.to_string(),
                    header: value.clone(),
                };
            }
        }
    }
    let text = generate_request_id();
    let header = HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("0"));
    RequestId { text, header }
}

/// 16 hex digits, unique within this process: a counter run through the
/// splitmix64 finalizer (a bijection, so distinct counters never collide),
/// offset by a per-process seed from the clock and pid so ids differ
/// between kelpie runs too.
pub(crate) fn generate_request_id() -> String {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        nanos ^ (u64::from(std::process::id()) << 40)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:016x}",
        splitmix64(seed.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
    )
}

fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    //! In-process tests of the server with small limits, so each bound is
    //! exercised in milliseconds. tests/http.rs and tests/http_abuse.rs
    //! drive the real binary with the real limits.
    use super::*;
    use crate::state::Phase;
    use crate::status::StatusSender;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct TestServer {
        addr: SocketAddr,
        status: StatusSender,
        stop: Option<oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl TestServer {
        async fn start(board: Board, limits: Limits) -> Self {
            Self::start_with(
                board,
                limits,
                Arc::new(|_: &Board| "kelpie_up 1\n".to_string()),
            )
            .await
        }

        async fn start_with(board: Board, limits: Limits, render_metrics: RenderMetrics) -> Self {
            let listener = bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (status, receiver) = crate::status::channel(board);
            let state = Arc::new(HttpState {
                status: receiver,
                render_metrics,
                on_request: Arc::new(|_, _| {}),
                started: Instant::now(),
            });
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(serve_with(listener, state, limits, async {
                let _ = stopped.await;
            }));
            Self {
                addr,
                status,
                stop: Some(stop),
                task,
            }
        }

        async fn shutdown(mut self) {
            let _ = self.stop.take().unwrap().send(());
            self.task.await.unwrap();
        }
    }

    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        fn json(&self) -> serde_json::Value {
            serde_json::from_str(&self.body).unwrap()
        }
    }

    fn parse(raw: &[u8]) -> Reply {
        let text = String::from_utf8_lossy(raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        Reply {
            status,
            headers,
            body: body.to_string(),
        }
    }

    /// Sends `raw` on a fresh connection and reads until the server closes.
    async fn exchange(addr: SocketAddr, raw: &[u8]) -> Reply {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let _ = stream.write_all(raw).await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf))
            .await
            .expect("the server closes the connection");
        parse(&buf)
    }

    async fn get(addr: SocketAddr, path: &str) -> Reply {
        exchange(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
    }

    fn program(name: &str, required: bool, phases: &[(Phase, bool)]) -> Arc<ProgramStatus> {
        let mut p = ProgramStatus::new(name, required, false, phases.len());
        for (i, (phase, ready)) in phases.iter().enumerate() {
            p.instances[i].snapshot.phase = *phase;
            p.instances[i].snapshot.ready = *ready;
            p.instances[i].snapshot.pid = (*phase == Phase::Running).then_some(100 + i as i32);
        }
        Arc::new(p)
    }

    fn board(programs: Vec<Arc<ProgramStatus>>) -> Board {
        Board {
            shutting_down: false,
            programs,
        }
    }

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

    #[test]
    fn request_ids_are_echoed_only_when_sane() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_static("abc-123_XYZ"));
        assert_eq!(request_id(&headers).text, "abc-123_XYZ");
        for bad in ["", "has space", &"x".repeat(129)] {
            headers.insert(REQUEST_ID, HeaderValue::from_str(bad).unwrap());
            let id = request_id(&headers).text;
            assert_ne!(id, bad);
            assert_eq!(id.len(), 16, "generated instead of {bad:?}");
        }
        headers.insert(REQUEST_ID, HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        assert_eq!(request_id(&headers).text.len(), 16);
        headers.insert(REQUEST_ID, HeaderValue::from_str(&"y".repeat(128)).unwrap());
        assert_eq!(request_id(&headers).text, "y".repeat(128));
    }

    #[test]
    fn generated_request_ids_are_distinct_hex() {
        let ids: std::collections::HashSet<String> =
            (0..10_000).map(|_| generate_request_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids
            .iter()
            .all(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())));
    }

    #[tokio::test]
    async fn bind_errors_are_one_clear_line() {
        let taken = bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let err = bind(&addr).await.unwrap_err();
        assert_eq!(
            err,
            format!("cannot listen on {addr}: address already in use")
        );
        let err = bind("localhost:80").await.unwrap_err();
        assert_eq!(err, "cannot listen on localhost:80: not an IP:PORT address");
    }

    #[tokio::test]
    async fn ready_shows_every_program_and_the_first_reason() {
        let server = TestServer::start(
            board(vec![
                program(
                    "web",
                    true,
                    &[(Phase::Running, true), (Phase::Starting, false)],
                ),
                program("batch", false, &[(Phase::Backoff, false)]),
            ]),
            Limits::default(),
        )
        .await;
        let reply = get(server.addr, "/ready").await;
        assert_eq!(reply.status, 503);
        assert_eq!(reply.header("content-type"), Some(JSON));
        let body = reply.json();
        assert_eq!(body["status"], "not_ready");
        assert_eq!(body["reason"], "web:1 is starting");
        let web = &body["programs"]["web"];
        assert_eq!(web["state"], "starting");
        assert_eq!(web["ready"], false);
        assert_eq!(web["required"], true);
        assert_eq!(web["restarts"], 0);
        assert_eq!(web["reason"], "web:1 is starting");
        assert_eq!(
            web["instances"],
            serde_json::json!([
                {"name": "web:0", "state": "running", "ready": true, "pid": 100, "restarts": 0, "reason": null},
                {"name": "web:1", "state": "starting", "ready": false, "pid": null, "restarts": 0, "reason": null},
            ])
        );
        assert_eq!(body["programs"]["batch"]["state"], "backoff");
        // Config order, not alphabetical.
        assert!(reply.body.find("\"web\"").unwrap() < reply.body.find("\"batch\"").unwrap());

        // Only required programs count.
        server.status.send_replace(Arc::new(board(vec![
            program("web", true, &[(Phase::Running, true)]),
            program("batch", false, &[(Phase::Backoff, false)]),
        ])));
        let reply = get(server.addr, "/ready").await;
        assert_eq!(reply.status, 200);
        let body = reply.json();
        assert_eq!(body["status"], "ready");
        assert!(body.get("reason").is_none());
        assert_eq!(body["programs"]["web"]["reason"], serde_json::Value::Null);

        let reply = get(server.addr, "/ready/web").await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.json()["programs"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["web"]
        );
        let reply = get(server.addr, "/ready/batch").await;
        assert_eq!(reply.status, 503);
        assert_eq!(reply.json()["reason"], "batch:0 is backoff");
        let reply = get(server.addr, "/ready/nope").await;
        assert_eq!(reply.status, 404);
        assert_eq!(reply.json()["code"], "unknown_program");

        // Shutdown turns both endpoints 503 while the programs still run.
        let mut shutting = board(vec![program("web", true, &[(Phase::Running, true)])]);
        shutting.shutting_down = true;
        server.status.send_replace(Arc::new(shutting));
        for path in ["/ready", "/ready/web"] {
            let reply = get(server.addr, path).await;
            assert_eq!(reply.status, 503, "{path}");
            assert_eq!(reply.json()["reason"], "shutting down", "{path}");
            assert_eq!(reply.json()["programs"]["web"]["state"], "running");
        }
        server.shutdown().await;
    }

    #[tokio::test]
    async fn headers_between_our_limit_and_hypers_get_a_json_431() {
        let server = TestServer::start(board(vec![]), Limits::default()).await;
        let big = "a".repeat(9 * 1024);
        let reply = exchange(
            server.addr,
            format!("GET /health HTTP/1.1\r\nX-Big: {big}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(reply.status, 431);
        assert_eq!(reply.json()["code"], "headers_too_large");
        assert!(reply.header("x-request-id").is_some());

        // Beyond hyper's own bound: hyper's bare 431, no body.
        let huge = "a".repeat(17 * 1024);
        let reply = exchange(
            server.addr,
            format!("GET /health HTTP/1.1\r\nX-Big: {huge}\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(reply.status, 431);
        assert_eq!(reply.body, "");

        // Just under the limit is fine.
        let fits = "a".repeat(7 * 1024);
        let reply = exchange(
            server.addr,
            format!("GET /health HTTP/1.1\r\nX-Big: {fits}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert_eq!(reply.status, 200);
        server.shutdown().await;
    }

    #[tokio::test]
    async fn a_panicking_renderer_costs_one_500() {
        let server = TestServer::start_with(
            board(vec![]),
            Limits::default(),
            Arc::new(|_: &Board| panic!("renderer bug")),
        )
        .await;
        let reply = get(server.addr, "/metrics").await;
        assert_eq!(reply.status, 500);
        assert_eq!(reply.json()["code"], "internal_error");
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        assert_eq!(get(server.addr, "/health").await.status, 200);
        server.shutdown().await;
    }

    #[tokio::test]
    async fn connections_over_the_cap_get_503_and_are_closed() {
        let limits = Limits {
            max_connections: 2,
            ..Limits::default()
        };
        let server = TestServer::start(board(vec![]), limits).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(server.addr).await.unwrap();
            // A full exchange proves the server accepted it.
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 512];
            let n = stream.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            held.push(stream);
        }
        let mut extra = TcpStream::connect(server.addr).await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), extra.read_to_end(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let reply = parse(&buf);
        assert_eq!(reply.status, 503);
        assert_eq!(reply.json()["code"], "too_many_connections");
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));

        // A slot frees up when a client leaves.
        drop(held.pop());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let reply = get(server.addr, "/health").await;
            if reply.status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "the slot was never released");
            tokio::task::yield_now().await;
        }
        server.shutdown().await;
    }

    #[tokio::test]
    async fn idle_and_slow_heads_are_closed_by_the_header_timeout() {
        let limits = Limits {
            header_read_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let server = TestServer::start(board(vec![]), limits).await;
        let started = Instant::now();
        let mut idle = TcpStream::connect(server.addr).await.unwrap();
        let mut slow = TcpStream::connect(server.addr).await.unwrap();
        slow.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
        let mut buf = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0, "closed without a response");
        let n = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0);
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");

        // Keep-alive: an idle connection after a response is closed too.
        let mut kept = TcpStream::connect(server.addr).await.unwrap();
        kept.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), kept.read_to_end(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(buf.starts_with(b"HTTP/1.1 200"));
        server.shutdown().await;
    }

    #[tokio::test]
    async fn a_client_that_never_reads_is_disconnected() {
        let limits = Limits {
            write_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        // Far more than the socket buffers hold, so the write stalls.
        let big = Arc::new("x".repeat(64 << 20));
        let server = TestServer::start_with(
            board(vec![]),
            limits,
            Arc::new(move |_: &Board| big.as_str().to_string()),
        )
        .await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        // Not reading for a while; then everything that arrives is less than
        // the body and ends early.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut buf = Vec::new();
        let result = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf))
            .await
            .expect("the server closed the connection");
        assert!(
            result.is_err() || buf.len() < 64 << 20,
            "got {} bytes",
            buf.len()
        );
        server.shutdown().await;
    }

    #[tokio::test]
    async fn every_answer_is_counted_with_a_bounded_label() {
        let listener = bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_status, receiver) =
            crate::status::channel(board(vec![program("web", true, &[(Phase::Running, true)])]));
        let seen: Arc<Mutex<Vec<(String, u16)>>> = Arc::default();
        let record = seen.clone();
        let state = Arc::new(HttpState {
            status: receiver,
            render_metrics: Arc::new(|_: &Board| String::new()),
            on_request: Arc::new(move |path, code| {
                record.lock().unwrap().push((path.to_string(), code));
            }),
            started: Instant::now(),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state, async {
            let _ = stopped.await;
        }));
        for path in [
            "/health",
            "/ready",
            "/ready/web",
            "/ready/zzz",
            "/metrics",
            "/x?y",
        ] {
            get(addr, path).await;
        }
        exchange(addr, b"POST /health HTTP/1.1\r\nConnection: close\r\n\r\n").await;
        let _ = stop.send(());
        task.await.unwrap();
        let seen = seen.lock().unwrap().clone();
        let expected: Vec<(String, u16)> = [
            ("/health", 200),
            ("/ready", 200),
            ("/ready/{program}", 200),
            ("/ready/{program}", 404),
            ("/metrics", 200),
            ("other", 404),
            ("/health", 405),
        ]
        .iter()
        .map(|(p, c)| (p.to_string(), *c))
        .collect();
        assert_eq!(seen, expected);
    }

    #[tokio::test]
    async fn the_server_thread_serves_until_stopped() {
        let listener = bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_status, receiver) = crate::status::channel(board(vec![]));
        let state = Arc::new(HttpState {
            status: receiver,
            render_metrics: Arc::new(|_: &Board| String::new()),
            on_request: Arc::new(|_, _| {}),
            started: Instant::now(),
        });
        let server = start(listener, state, Limits::default()).await.unwrap();
        assert_eq!(get(addr, "/health").await.status, 200);
        server.stop().await;
        assert!(TcpStream::connect(addr).await.is_err(), "still listening");
    }

    #[tokio::test]
    async fn shutdown_closes_idle_keep_alive_connections_promptly() {
        let server = TestServer::start(board(vec![]), Limits::default()).await;
        let mut kept = TcpStream::connect(server.addr).await.unwrap();
        kept.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = kept.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        let started = Instant::now();
        server.shutdown().await;
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
        let n = tokio::time::timeout(Duration::from_secs(2), kept.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0);
    }
}

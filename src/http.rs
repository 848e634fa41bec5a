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
//! - every resource a client can hold is bounded (the shared
//!   `http_server` enforces it): connections (a cap; excess ones are
//!   answered 503 and closed at once so the kernel backlog never fills),
//!   header bytes (8 KiB, 431), time to send a request head (10 s, also
//!   closes idle keep-alive connections) and time a client may leave a
//!   response unread (10 s);
//! - a panic while answering becomes a 500 for that request; the connection
//!   task, the server and the supervisor carry on.
//!
//! This module keeps what is TCP's own: binding the port, the fd budget,
//! the thread, the 503 for connections over the cap and the request count.
//! `endpoints` answers. hyper answers what it cannot parse by itself (400
//! for garbage, 431 for a head over twice our header limit) with a bare
//! status line and no body: those responses never reach our code.
//! docs/http.md lists every case.

mod dashboard;
mod endpoints;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::http_server::{
    self, Connection, Limits, RateLimit, RequestId, ResponseBody, Site, Tracker,
};
use crate::status::{Board, StatusReceiver};

pub use dashboard::{ControlLink, Dashboard, CONTENT_SECURITY_POLICY};
pub use endpoints::path_label;

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
    /// The web dashboard at `/` and its action routes.
    pub dashboard: Arc<Dashboard>,
}

/// The default cap on concurrent connections (docs/http.md, limits).
pub const MAX_CONNECTIONS: usize = 4096;

/// Pending connections the kernel may queue before kelpie accepts them
/// (Linux caps this at `net.core.somaxconn`). The accept loop drains the
/// queue quickly, connections over the cap included.
const BACKLOG: u32 = 4096;

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

/// A server running on its own thread; see [`start`].
pub struct Server {
    stop: Option<oneshot::Sender<()>>,
    done: oneshot::Receiver<()>,
}

/// Starts serving `listener` on a dedicated thread ("kelpie-http") with a
/// current-thread runtime of its own, and returns once it serves.
pub(crate) async fn start(
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

/// The HTTP endpoints' [`Limits`] with the default connection cap.
pub(crate) fn default_limits() -> Limits {
    Limits::http(MAX_CONNECTIONS)
}

/// Serves until `shutdown` completes, with [`default_limits`].
pub async fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(listener, state, default_limits(), shutdown).await
}

/// Serves until `shutdown` completes, then closes idle connections, lets
/// in-flight requests finish for at most `limits.shutdown_grace` and
/// returns.
pub(crate) async fn serve_with(
    listener: TcpListener,
    state: Arc<HttpState>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            event = "http_listening",
            addr = %addr,
            max_connections = limits.max_connections,
            "serving /health, /ready and /metrics on http://{addr}"
        );
        if state.dashboard.enabled() && !addr.ip().is_loopback() {
            // Often meant for probes and scrapes only (0.0.0.0 in a pod),
            // where the page would show program output to the network.
            tracing::warn!(
                event = "dashboard_exposed",
                addr = %addr,
                "the dashboard at http://{addr}/ shows every program's output to whoever can reach {addr}; bind http_listen to loopback or set dashboard = false"
            );
        }
    }
    let site = Arc::new(Endpoints {
        state,
        max_connections: limits.max_connections,
        warn_gate: RateLimit::new(Duration::from_secs(10)),
    });
    http_server::serve(listener, site, limits, Tracker::default(), shutdown).await
}

impl http_server::Listener for TcpListener {
    type Stream = TcpStream;

    async fn accept(&self) -> io::Result<TcpStream> {
        TcpListener::accept(self)
            .await
            .map(|(stream, _peer)| stream)
    }
}

impl Connection for TcpStream {
    fn try_write_now(&self, bytes: &[u8]) -> io::Result<usize> {
        self.try_write(bytes)
    }

    fn prepare(&self) {
        // Responses are written whole; no reason to let Nagle delay the
        // last segment of a keep-alive exchange.
        let _ = self.set_nodelay(true);
    }

    fn peer_ip(&self) -> Option<std::net::IpAddr> {
        self.peer_addr().ok().map(|addr| addr.ip())
    }
}

/// The endpoints as a [`Site`] of the shared server.
struct Endpoints {
    state: Arc<HttpState>,
    max_connections: usize,
    /// One gate for every warning, so an attack cannot flood the log.
    warn_gate: RateLimit,
}

impl Site for Endpoints {
    type Stream = TcpStream;
    type Refusal = ();

    fn screen(&self, _stream: &TcpStream) -> Result<(), ()> {
        Ok(())
    }

    fn busy(&self) {
        if self.warn_gate.allow().is_some() {
            tracing::warn!(
                event = "http_connection_cap",
                max_connections = self.max_connections,
                "HTTP connection cap ({}) reached; refusing new connections",
                self.max_connections
            );
        }
    }

    fn refusal(&self, _refusal: &(), id: &str) -> Response<Bytes> {
        let body = format!(
            r#"{{"error":"too many connections","code":"too_many_connections","request_id":"{id}"}}"#
        );
        let mut response = Response::new(Bytes::from(body));
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(endpoints::JSON),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    }

    fn accept_failed(&self, err: &io::Error) {
        if self.warn_gate.allow().is_some() {
            tracing::warn!(event = "http_accept_failed", error = %err, "cannot accept HTTP connections: {err}");
        }
    }

    fn connection_failed(&self, err: &hyper::Error) {
        // Possibly thousands of them under attack.
        tracing::trace!(event = "http_connection_error", error = %err);
    }

    fn respond(
        &self,
        request: Request<Incoming>,
        id: &RequestId,
    ) -> impl Future<Output = Response<ResponseBody>> + Send + 'static {
        let id = RequestId {
            text: id.text.clone(),
            header: id.header.clone(),
        };
        endpoints::route(self.state.clone(), request, id)
    }

    fn head_too_large(&self, limit: usize, id: &RequestId) -> Response<ResponseBody> {
        endpoints::error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            &format!("request line and headers exceed {limit} bytes"),
            id,
        )
    }

    fn panicked(&self, _path: &str, id: &RequestId) -> Response<ResponseBody> {
        // A bug, e.g. in a metrics renderer; the panic hook logged it.
        endpoints::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error; see kelpie's log",
            id,
        )
    }

    fn finish(&self, path: &str, response: &mut Response<ResponseBody>) {
        response.headers_mut().insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        dashboard::secure(response.headers_mut());
        let label = path_label(path);
        let code = response.status().as_u16();
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| (self.state.on_request)(label, code)));
    }
}

#[cfg(test)]
mod tests;

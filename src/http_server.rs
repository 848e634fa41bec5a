//! The hardened HTTP/1.1 server both of kelpie's servers run on: the
//! `/health` `/ready` `/metrics` endpoints on TCP (`http`) and the control
//! API on its Unix socket (`control::server`).
//!
//! A [`Site`] says what is its own: the socket, which peers it serves, how
//! it answers, and the events it logs (under its own names and tracing
//! target, so log filters keep working per server). This module owns what
//! makes a server safe to expose, the same for both:
//!
//! - the accept loop, which never spins on fd or memory exhaustion;
//! - a cap on served connections; a connection over it, or one the site
//!   refuses, is answered by a small refusal pool with a short header
//!   timeout, and beyond that pool the refusal is written at once, unread,
//!   and the connection closed, so a flood never fills the kernel backlog;
//! - request heads: a JSON 431 above the limit (hyper's bare 431 beyond
//!   twice that, which also bounds hyper's read buffer), and a header read
//!   timeout that also closes idle keep-alive connections;
//! - an optional write deadline for clients that stop reading;
//! - `X-Request-Id` and `Cache-Control: no-store` on every answer;
//! - a panic while answering costs that request a 500; the connection, the
//!   server and the supervisor carry on;
//! - shutdown: stop accepting (dropping the listener), let requests in
//!   flight finish within a grace period, then close what is left.
//!
//! hyper answers what it cannot parse by itself (400 for garbage, 431 for
//! a head beyond its own bound) with a bare status line and no body: those
//! responses never reach a site.

mod body;
mod io;
mod request_id;

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;
use tokio::time::Instant;

pub(crate) use body::{read_body, BodyError, ResponseBody};
pub(crate) use io::Connection;
pub(crate) use request_id::{request_id, RequestId, REQUEST_ID};

use io::{write_now, WriteDeadline};

/// The client's address, in a request's extensions when the socket has
/// one (TCP), e.g. for rate-limiting failed logins per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerIp(pub(crate) std::net::IpAddr);

/// Resource bounds of one server.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Connections served at once.
    pub(crate) max_connections: usize,
    /// Refused connections answered by hyper at once; beyond this the
    /// refusal is written without reading the request.
    pub(crate) max_refusals: usize,
    /// Request line plus headers, in bytes; above this → the site's 431.
    pub(crate) max_header_bytes: usize,
    /// A request head must arrive completely within this time after the
    /// connection became idle (connect, or the previous response); else
    /// the connection is closed. This also bounds idle keep-alive.
    pub(crate) header_read_timeout: Duration,
    /// Header read timeout of refused connections.
    pub(crate) refusal_timeout: Duration,
    /// A client that accepts no byte of its response for this long is
    /// disconnected; `None` lets a client pause reading indefinitely.
    pub(crate) write_timeout: Option<Duration>,
    /// How long shutdown lets in-flight requests (and streams) finish.
    pub(crate) shutdown_grace: Duration,
}

impl Limits {
    /// The HTTP endpoints (`http_listen`): reachable over TCP, so a client
    /// that stops reading is dropped, and over the connection cap the 503
    /// is written at once (no client there is trusted enough to be read
    /// from).
    pub(crate) fn http(max_connections: usize) -> Self {
        Self {
            max_connections,
            max_refusals: 0,
            max_header_bytes: 8 * 1024,
            header_read_timeout: Duration::from_secs(10),
            refusal_timeout: Duration::from_secs(10),
            write_timeout: Some(Duration::from_secs(10)),
            shutdown_grace: Duration::from_secs(1),
        }
    }

    /// The control socket: local, owner-only clients; `logs -f` streams
    /// may pause reading indefinitely, and refusals (403, 503) are
    /// answered properly up to a few at a time.
    pub(crate) fn control() -> Self {
        Self {
            max_connections: 64,
            max_refusals: 16,
            max_header_bytes: 8 * 1024,
            header_read_timeout: Duration::from_secs(10),
            refusal_timeout: Duration::from_secs(2),
            write_timeout: None,
            shutdown_grace: Duration::from_secs(1),
        }
    }

    /// hyper's own bound on a request head. Heads between our limit and
    /// this one reach the site's 431; only heads beyond it get hyper's
    /// bare 431. It also bounds hyper's read buffer, i.e. the memory a
    /// connection can make kelpie hold (hyper's default is ~400 KiB).
    fn hyper_head_limit(&self) -> usize {
        // hyper panics on a buffer limit below 8192.
        (self.max_header_bytes * 2).max(8192)
    }
}

/// A listening socket.
pub(crate) trait Listener: Send + 'static {
    type Stream: Connection;

    fn accept(&self) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;
}

/// What one server has of its own; see the module documentation.
pub(crate) trait Site: Send + Sync + 'static {
    type Stream: Connection;
    /// Why a connection is not served.
    type Refusal: Send + Sync + 'static;

    /// Checked first on every accepted connection; `Err` refuses it.
    fn screen(&self, stream: &Self::Stream) -> Result<(), Self::Refusal>;

    /// The connection cap is reached: the refusal the next connection
    /// gets (the site logs the event, rate-limited).
    fn busy(&self) -> Self::Refusal;

    /// The reply to every request on a refused connection, with its
    /// `Content-Type`; the server adds the request id.
    fn refusal(&self, refusal: &Self::Refusal, id: &str) -> Response<Bytes>;

    /// `accept` failed for lack of fds or memory; the server pauses
    /// accepting for 100 ms.
    fn accept_failed(&self, err: &std::io::Error);

    /// A connection ended with an error: a timeout, a reset or an
    /// unparsable request; the client's business.
    fn connection_failed(&self, err: &hyper::Error);

    /// Answers a request whose head is within the limit. It may panic,
    /// while called or while polled.
    fn respond(
        &self,
        request: Request<Incoming>,
        id: &RequestId,
    ) -> impl Future<Output = Response<ResponseBody>> + Send + 'static;

    /// The reply to a head over `limit` bytes.
    fn head_too_large(&self, limit: usize, id: &RequestId) -> Response<ResponseBody>;

    /// The reply when answering `path` panicked.
    fn panicked(&self, path: &str, id: &RequestId) -> Response<ResponseBody>;

    /// Called with every answer just before it is sent.
    fn finish(&self, _path: &str, _response: &mut Response<ResponseBody>) {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Finish the request in flight, then close.
    Draining,
    /// Close now.
    Closing,
}

/// Serves `listener` until `shutdown` completes, then drops the listener,
/// lets requests in flight finish for at most `limits.shutdown_grace`,
/// closes what is still open and returns. `served` counts the served
/// (not refused) connections.
pub(crate) async fn serve<L, S>(
    listener: L,
    site: Arc<S>,
    limits: Limits,
    served: Tracker,
    shutdown: impl Future<Output = ()>,
) where
    L: Listener<Stream = S::Stream>,
    S: Site,
{
    let head_limit = limits.hyper_head_limit();
    let builder = |header_read_timeout: Duration, keep_alive: bool| {
        let mut http = http1::Builder::new();
        // Without a timer hyper silently ignores header_read_timeout.
        http.timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .max_header_size(head_limit)
            .max_buf_size(head_limit)
            .keep_alive(keep_alive);
        Arc::new(http)
    };
    let http = builder(limits.header_read_timeout, true);
    let refusal_http = builder(limits.refusal_timeout, false);
    let limits = Arc::new(limits);
    let refused = Tracker::default();
    let (phase_tx, phase_rx) = watch::channel(Phase::Serving);

    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(err) => {
                // Out of fds or memory: accept fails until something
                // closes, and retrying at once would spin. Anything else
                // (a connection reset before it was accepted) concerns one
                // client only.
                if is_resource_exhaustion(&err) {
                    site.accept_failed(&err);
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
                continue;
            }
        };

        let refusal = match site.screen(&stream) {
            Err(refusal) => Some(refusal),
            Ok(()) => (served.active() >= limits.max_connections).then(|| site.busy()),
        };
        match refusal {
            None => {
                stream.prepare();
                let peer = stream.peer_ip().map(PeerIp);
                let guard = served.enter();
                let service = {
                    let site = site.clone();
                    let limits = limits.clone();
                    hyper::service::service_fn(move |mut request: Request<Incoming>| {
                        let site = site.clone();
                        let limits = limits.clone();
                        if let Some(peer) = peer {
                            request.extensions_mut().insert(peer);
                        }
                        async move { Ok::<_, Infallible>(answer(&*site, &limits, request).await) }
                    })
                };
                let io = WriteDeadline::new(stream, limits.write_timeout);
                tokio::spawn(connection(
                    site.clone(),
                    io,
                    service,
                    http.clone(),
                    phase_rx.clone(),
                    guard,
                ));
            }
            Some(refusal) if refused.active() < limits.max_refusals => {
                let guard = refused.enter();
                let service = {
                    let site = site.clone();
                    hyper::service::service_fn(move |request: Request<Incoming>| {
                        let id = request_id(request.headers());
                        let reply = refused_reply(&*site, &refusal, id);
                        std::future::ready(Ok::<_, Infallible>(reply.map(ResponseBody::full)))
                    })
                };
                tokio::spawn(connection(
                    site.clone(),
                    stream,
                    service,
                    refusal_http.clone(),
                    phase_rx.clone(),
                    guard,
                ));
            }
            Some(refusal) => {
                write_now(
                    &stream,
                    &refused_reply(&*site, &refusal, RequestId::generate()),
                );
            }
        }
    }

    // Closing the listener first: from now on a client finds nobody
    // listening instead of a connection nobody accepts.
    drop(listener);
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

fn is_resource_exhaustion(err: &std::io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

fn refused_reply<S: Site>(site: &S, refusal: &S::Refusal, id: RequestId) -> Response<Bytes> {
    let mut reply = site.refusal(refusal, &id.text);
    let headers = reply.headers_mut();
    headers.insert(REQUEST_ID, id.header);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    reply
}

async fn connection<S, I, Sv>(
    site: Arc<S>,
    io: I,
    service: Sv,
    http: Arc<http1::Builder>,
    mut phase: watch::Receiver<Phase>,
    _guard: Guard,
) where
    S: Site,
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    Sv: hyper::service::Service<
        Request<Incoming>,
        Response = Response<ResponseBody>,
        Error = Infallible,
    >,
{
    let conn = http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(err) = result {
                site.connection_failed(&err);
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
async fn answer<S: Site>(
    site: &S,
    limits: &Limits,
    request: Request<Incoming>,
) -> Response<ResponseBody> {
    let id = request_id(request.headers());
    let uri = request.uri().clone();
    let mut response = if head_size(&request) > limits.max_header_bytes {
        site.head_too_large(limits.max_header_bytes, &id)
    } else {
        // A panic (a bug) costs this request a 500, not the connection or
        // the server. The panic hook logs the panic itself.
        let reply = match std::panic::catch_unwind(AssertUnwindSafe(|| site.respond(request, &id)))
        {
            Ok(future) => catch_unwind(future).await,
            Err(_) => None,
        };
        reply.unwrap_or_else(|| site.panicked(uri.path(), &id))
    };
    let headers = response.headers_mut();
    headers.insert(REQUEST_ID, id.header);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    site.finish(uri.path(), &mut response);
    response
}

/// Polls `future` to completion; `None` if it panicked. A panicked future
/// is never polled again.
async fn catch_unwind<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Some(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(None),
        }
    })
    .await
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

/// Counts open connections; watchable, so shutdown (and tests) can wait
/// for a count instead of polling it.
#[derive(Clone)]
pub(crate) struct Tracker(Arc<watch::Sender<usize>>);

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

    /// The open connection count, for tests to wait on.
    #[cfg(test)]
    pub(crate) fn subscribe(&self) -> watch::Receiver<usize> {
        self.0.subscribe()
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
pub(crate) struct RateLimit {
    every: Duration,
    state: Mutex<RateState>,
}

struct RateState {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    pub(crate) fn new(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new(RateState {
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// `Some(warnings suppressed since the last one)` when one may be
    /// logged now.
    pub(crate) fn allow(&self) -> Option<u64> {
        let Ok(mut state) = self.state.lock() else {
            return None;
        };
        let now = Instant::now();
        match state.last {
            Some(at) if now.duration_since(at) < self.every => {
                state.suppressed += 1;
                None
            }
            _ => {
                state.last = Some(now);
                Some(std::mem::take(&mut state.suppressed))
            }
        }
    }
}

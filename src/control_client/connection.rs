//! The control socket's client, used by every control command: one
//! HTTP/1.1 request per connection, no retries.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;
use tokio::task::JoinHandle;

use crate::control::protocol::ErrorReply;
use crate::control::socket::describe;

/// sysexits EX_UNAVAILABLE: no supervisor answers.
pub const EXIT_UNAVAILABLE: i32 = 69;

/// Connecting (and the HTTP handshake) on a local socket is immediate
/// unless the supervisor is wedged; waiting longer would not help.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest whole reply [`Client::request`] reads.
const MAX_REPLY_BYTES: usize = 64 * 1024 * 1024;

/// Longest line [`LineStream::next_line`] accepts.
const MAX_LINE_BYTES: usize = 1024 * 1024;

#[derive(Debug)]
pub enum ClientError {
    /// No supervisor answers at this path (no such file, connection
    /// refused, not a socket). Exit 69.
    Unavailable { path: PathBuf, reason: String },
    /// Connected (or could not for another reason, e.g. permission denied)
    /// but the exchange failed: timeouts, bad HTTP, undecodable JSON. Exit 1.
    Failed(String),
}

impl ClientError {
    /// The exit status docs/cli.md gives this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Unavailable { .. } => EXIT_UNAVAILABLE,
            ClientError::Failed(_) => 1,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Unavailable { path, reason } => write!(
                f,
                "no kelpie supervisor is running at {}: {reason}",
                path.display()
            ),
            ClientError::Failed(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ClientError {}

/// A reply that is not what the caller asked for.
#[derive(Debug)]
pub enum ApiError {
    /// The supervisor answered with an error (non-2xx).
    Api {
        status: u16,
        error: ErrorReply,
    },
    Client(ClientError),
}

impl ApiError {
    /// 69 when no supervisor answered, else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            ApiError::Api { .. } => 1,
            ApiError::Client(err) => err.exit_code(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Api { error, .. } => f.write_str(error.error.trim_end()),
            ApiError::Client(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for ApiError {}

impl From<ClientError> for ApiError {
    fn from(err: ClientError) -> Self {
        ApiError::Client(err)
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    request_id: Option<String>,
    timeout: Option<Duration>,
}

/// A whole reply. Non-2xx is not an error here; see [`Reply::json`].
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
}

impl Reply {
    /// 2xx → the body as `T`; non-2xx → the [`ErrorReply`] as
    /// [`ApiError::Api`].
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if (200..300).contains(&self.status) {
            serde_json::from_slice(&self.body).map_err(|err| {
                ApiError::Client(ClientError::Failed(format!(
                    "cannot decode the supervisor's reply: {}",
                    one_line(&err.to_string())
                )))
            })
        } else {
            Err(decode_error(self.status, &self.body))
        }
    }
}

/// A streamed reply (NDJSON), read line by line as it arrives.
pub struct LineStream {
    pub status: u16,
    body: Incoming,
    buffer: BytesMut,
    /// Bytes at the start of `buffer` already known to hold no newline.
    scanned: usize,
    ended: bool,
    _connection: AbortOnDrop,
}

impl fmt::Debug for LineStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineStream")
            .field("status", &self.status)
            .field("buffered", &self.buffer.len())
            .field("ended", &self.ended)
            .finish()
    }
}

impl LineStream {
    /// The next line without its `\n` (or `\r\n`); `None` once the reply
    /// has ended. A last line without a newline is returned too.
    pub async fn next_line(&mut self) -> Result<Option<Bytes>, ClientError> {
        loop {
            if let Some(at) = self.buffer[self.scanned..].iter().position(|b| *b == b'\n') {
                let end = self.scanned + at;
                let mut line = self.buffer.split_to(end + 1);
                self.scanned = 0;
                line.truncate(end);
                if line.last() == Some(&b'\r') {
                    line.truncate(end - 1);
                }
                return Ok(Some(line.freeze()));
            }
            self.scanned = self.buffer.len();
            if self.buffer.len() > MAX_LINE_BYTES {
                return Err(ClientError::Failed(format!(
                    "a line of the supervisor's reply is longer than {MAX_LINE_BYTES} bytes"
                )));
            }
            if self.ended {
                if self.buffer.is_empty() {
                    return Ok(None);
                }
                self.scanned = 0;
                return Ok(Some(self.buffer.split().freeze()));
            }
            match self.body.frame().await {
                None => self.ended = true,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
                Some(Err(err)) => {
                    return Err(ClientError::Failed(format!(
                        "the supervisor's reply broke off: {}",
                        hyper_error(&err)
                    )))
                }
            }
        }
    }

    /// For a non-2xx stream: the rest of the body as an [`ErrorReply`].
    pub async fn collect_error(self) -> ApiError {
        let status = self.status;
        let mut body = self.buffer;
        let rest = match Limited::new(self.body, MAX_LINE_BYTES).collect().await {
            Ok(rest) => rest.to_bytes(),
            Err(err) => {
                return ApiError::Client(ClientError::Failed(format!(
                    "cannot read the supervisor's error reply ({status}): {}",
                    one_line(&err.to_string())
                )))
            }
        };
        body.extend_from_slice(&rest);
        decode_error(status, &body)
    }
}

impl Client {
    pub fn new(socket: PathBuf) -> Self {
        Self {
            socket,
            request_id: None,
            timeout: None,
        }
    }

    /// Sent as `X-Request-Id` when set.
    pub fn with_request_id(mut self, id: Option<String>) -> Self {
        self.request_id = id;
        self
    }

    /// Gives up on a request after this long (connect to the end of the
    /// reply for [`Client::request`], to the reply's head for
    /// [`Client::stream`]). Default: none beyond a 5 s connect timeout, as
    /// actions may wait for programs.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// One request; returns status and body. Non-2xx is not an error here.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Reply, ClientError> {
        self.bounded(async {
            let (response, connection) = self.send(method, path, body).await?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_REPLY_BYTES)
                .collect()
                .await
                .map_err(|err| {
                    if err.downcast_ref::<LengthLimitError>().is_some() {
                        ClientError::Failed(format!(
                            "the supervisor's reply is larger than {MAX_REPLY_BYTES} bytes"
                        ))
                    } else {
                        ClientError::Failed(format!(
                            "the supervisor's reply broke off: {}",
                            one_line(&err.to_string())
                        ))
                    }
                })?
                .to_bytes();
            drop(connection);
            Ok(Reply { status, body })
        })
        .await
    }

    /// A request whose reply body is read incrementally as lines (NDJSON).
    pub async fn stream(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<LineStream, ClientError> {
        self.bounded(async {
            let (response, connection) = self.send(method, path, body).await?;
            Ok(LineStream {
                status: response.status().as_u16(),
                body: response.into_body(),
                buffer: BytesMut::new(),
                scanned: 0,
                ended: false,
                _connection: connection,
            })
        })
        .await
    }

    async fn bounded<T>(
        &self,
        exchange: impl std::future::Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        match self.timeout {
            None => exchange.await,
            Some(limit) => tokio::time::timeout(limit, exchange).await.map_err(|_| {
                ClientError::Failed(format!(
                    "the supervisor at {} did not answer within {}",
                    self.socket.display(),
                    humantime::format_duration(limit)
                ))
            })?,
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(Response<Incoming>, AbortOnDrop), ClientError> {
        let shown = self.socket.display();
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "localhost");
        if let Some(id) = &self.request_id {
            let value = HeaderValue::from_str(id).map_err(|_| {
                ClientError::Failed(format!("request id {id:?} is not a valid header value"))
            })?;
            request = request.header("x-request-id", value);
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|err| ClientError::Failed(format!("invalid request {path:?}: {err}")))?;

        let (mut sender, connection) = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let stream = UnixStream::connect(&self.socket)
                .await
                .map_err(|err| connect_error(&self.socket, &err))?;
            http1::handshake(TokioIo::new(stream)).await.map_err(|err| {
                ClientError::Failed(format!(
                    "cannot talk to the supervisor at {shown}: {}",
                    hyper_error(&err)
                ))
            })
        })
        .await
        .map_err(|_| {
            ClientError::Failed(format!("timed out connecting to the supervisor at {shown}"))
        })??;
        let connection = AbortOnDrop(tokio::spawn(async move {
            let _ = connection.await;
        }));
        let response = sender.send_request(request).await.map_err(|err| {
            ClientError::Failed(format!(
                "the supervisor at {shown} did not answer: {}",
                hyper_error(&err)
            ))
        })?;
        Ok((response, connection))
    }
}

/// What a failed connect means for the user, naming the path.
fn connect_error(path: &Path, err: &io::Error) -> ClientError {
    let unavailable = |reason: &str| ClientError::Unavailable {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let shown = path.display();
    match err.raw_os_error() {
        Some(libc::ENOENT) => unavailable("no such socket"),
        Some(libc::ECONNREFUSED) => {
            unavailable("connection refused (a stale socket, or not a socket)")
        }
        Some(libc::ENOTDIR) => unavailable("a parent of the path is not a directory"),
        Some(libc::ENOTSOCK | libc::EPROTOTYPE) => unavailable("not a kelpie control socket"),
        Some(libc::EACCES | libc::EPERM) => ClientError::Failed(format!(
            "permission denied connecting to {shown}; the control socket belongs to another user (run as that user or root)"
        )),
        Some(libc::EAGAIN) => ClientError::Failed(format!(
            "the supervisor at {shown} is not accepting connections (its queue is full)"
        )),
        _ if err.kind() == io::ErrorKind::InvalidInput => ClientError::Failed(format!(
            "control socket path {shown} is too long for a Unix socket"
        )),
        _ => ClientError::Failed(format!("cannot connect to {shown}: {}", describe(err))),
    }
}

fn decode_error(status: u16, body: &[u8]) -> ApiError {
    match serde_json::from_slice::<ErrorReply>(body) {
        Ok(error) => ApiError::Api { status, error },
        Err(_) => {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
            let text = one_line(text.trim());
            ApiError::Client(ClientError::Failed(if text.is_empty() {
                format!("the supervisor answered {status} without an error description")
            } else {
                format!("the supervisor answered {status} with an undecodable error: {text}")
            }))
        }
    }
}

/// hyper's message plus its cause ("connection closed before message
/// completed", "error reading a body from connection: …").
fn hyper_error(err: &hyper::Error) -> String {
    use std::error::Error as _;
    match err.source() {
        Some(source) => format!("{err}: {}", one_line(&source.to_string())),
        None => err.to_string(),
    }
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// The connection task lives exactly as long as the exchange needs it.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

//! The control transport end to end in-process: a real socket in a
//! tempdir, the real server with a tiny handler, the real client.

// The cross-user tests reap their helper with waitpid by pid: kelpie's
// clippy.toml disallows `Child::wait`.
#![allow(clippy::zombie_processes)]

use std::future::Future;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::protocol::{self, code};
use super::server::{self, parse_json, ControlRequest, ControlResponse, ControlServer};
use super::socket;
use crate::control_client::connection::{ApiError, Client, ClientError};
use crate::http_server::Limits;

const DEADLINE: Duration = Duration::from_secs(10);

/// `future`'s output, or a panic naming what was awaited.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {DEADLINE:?} waiting for {what}"))
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Echo {
    #[serde(default)]
    method: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    body: String,
    #[serde(default)]
    request_id: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Greeting {
    #[serde(default)]
    name: String,
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    server: Option<ControlServer>,
    /// The sender of every `/stream` request, for the test to produce with.
    streams: mpsc::UnboundedReceiver<mpsc::Sender<Bytes>>,
}

impl Fixture {
    async fn start() -> Self {
        Self::start_with(Limits::control(), 0o600).await
    }

    async fn start_with(limits: Limits, mode: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let socket = socket::bind(&path, mode).unwrap();
        let (streams_tx, streams) = mpsc::unbounded_channel();
        let handler: server::Handler = std::sync::Arc::new(move |request: ControlRequest| {
            if request.path == "/panic-at-once" {
                panic!("handler bug before the future");
            }
            let streams_tx = streams_tx.clone();
            Box::pin(async move { answer(request, streams_tx).await })
        });
        let server = server::start_with(socket, handler, limits);
        Self {
            _dir: dir,
            path,
            server: Some(server),
            streams,
        }
    }

    fn client(&self) -> Client {
        Client::new(self.path.clone())
    }

    fn server(&self) -> &ControlServer {
        self.server.as_ref().unwrap()
    }

    async fn next_stream(&mut self) -> mpsc::Sender<Bytes> {
        within("the handler to start a stream", self.streams.recv())
            .await
            .unwrap()
    }

    async fn stop(mut self) {
        within("the server to stop", self.server.take().unwrap().stop()).await;
    }

    /// A request that must succeed with 200.
    async fn echo(&self) -> Echo {
        let reply = within("an echo", self.client().request(Method::GET, "/echo", None))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        reply.json().unwrap()
    }
}

async fn answer(
    request: ControlRequest,
    streams: mpsc::UnboundedSender<mpsc::Sender<Bytes>>,
) -> ControlResponse {
    match request.path.as_str() {
        "/echo" => ControlResponse::json(
            StatusCode::OK,
            &Echo {
                method: request.method.to_string(),
                path: request.path.clone(),
                query: request.query.clone(),
                body: String::from_utf8_lossy(&request.body).into_owned(),
                request_id: request.request_id.clone(),
            },
        ),
        "/greet" => match parse_json::<Greeting>(&request) {
            Ok(greeting) => ControlResponse::json(StatusCode::OK, &greeting),
            Err(reply) => reply,
        },
        "/panic" => {
            // Panics on the first poll, after an await point.
            tokio::task::yield_now().await;
            panic!("handler bug inside the future");
        }
        "/stream" => {
            let (tx, rx) = mpsc::channel(4);
            let _ = streams.send(tx);
            ControlResponse::stream(StatusCode::OK, server::NDJSON, rx)
        }
        "/stream-error" => {
            let (tx, rx) = mpsc::channel(1);
            let _ = tx
                .send(Bytes::from(
                    serde_json::to_vec(&protocol::ErrorReply {
                        error: "no program named \"x\"".into(),
                        code: code::NO_SUCH_PROGRAM.into(),
                        request_id: request.request_id.clone(),
                        details: vec![],
                    })
                    .unwrap(),
                ))
                .await;
            ControlResponse::stream(StatusCode::NOT_FOUND, server::JSON, rx)
        }
        _ => ControlResponse::error(
            StatusCode::NOT_FOUND,
            code::NOT_FOUND,
            "no such path",
            &request.request_id,
        ),
    }
}

#[derive(Debug)]
struct RawReply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl RawReply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {:?}", self.body))
    }
}

fn parse(raw: &[u8]) -> RawReply {
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
    RawReply {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Sends `raw` on a fresh connection and reads until the server closes.
async fn exchange(path: &Path, raw: &[u8]) -> RawReply {
    let mut stream = UnixStream::connect(path).await.unwrap();
    // The server may answer and close before reading everything.
    let _ = stream.write_all(raw).await;
    let mut buf = Vec::new();
    let _ = within(
        "the server to close the connection",
        stream.read_to_end(&mut buf),
    )
    .await;
    parse(&buf)
}

fn api_error(result: Result<serde_json::Value, ApiError>) -> (u16, protocol::ErrorReply) {
    match result {
        Err(ApiError::Api { status, error }) => (status, error),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_json_round_trip() {
    let fixture = Fixture::start().await;
    let reply = fixture
        .client()
        .with_request_id(Some("trace-42".into()))
        .request(Method::POST, "/echo?x=1&y=2", Some(br#"{"a":1}"#.to_vec()))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let echo: Echo = reply.json().unwrap();
    assert_eq!(
        echo,
        Echo {
            method: "POST".into(),
            path: "/echo".into(),
            query: Some("x=1&y=2".into()),
            body: r#"{"a":1}"#.into(),
            request_id: "trace-42".into(),
        }
    );

    // parse_json: valid, empty (as {}), invalid.
    let client = fixture.client();
    let reply = client
        .request(
            Method::POST,
            "/greet",
            Some(br#"{"name":"kelpie"}"#.to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(
        reply.json::<Greeting>().unwrap(),
        Greeting {
            name: "kelpie".into()
        }
    );
    let reply = client.request(Method::POST, "/greet", None).await.unwrap();
    assert_eq!(reply.json::<Greeting>().unwrap().name, "");
    let reply = client
        .request(Method::POST, "/greet", Some(b"{\"name\":\n".to_vec()))
        .await
        .unwrap();
    let (status, error) = api_error(reply.json());
    assert_eq!(status, 400);
    assert_eq!(error.code, code::BAD_JSON);
    assert!(
        error
            .error
            .starts_with("invalid JSON request body: EOF while parsing"),
        "{}",
        error.error
    );
    let reply = client
        .request(Method::POST, "/greet", Some(br#"{"nmae":"x"}"#.to_vec()))
        .await
        .unwrap();
    let (_, error) = api_error(reply.json());
    assert!(
        error.error.contains("unknown field `nmae`"),
        "{}",
        error.error
    );
    assert!(!error.error.contains('\n'));

    // A 2xx body that is not the expected type is a client failure.
    let reply = client.request(Method::GET, "/echo", None).await.unwrap();
    match reply.json::<Vec<u32>>() {
        Err(ApiError::Client(ClientError::Failed(message))) => {
            assert!(
                message.starts_with("cannot decode the supervisor's reply"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    fixture.stop().await;
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated_and_headers_set() {
    let fixture = Fixture::start().await;
    let reply = exchange(
        &fixture.path,
        b"GET /echo HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: my-id-1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-request-id"), Some("my-id-1"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.json()["request_id"], "my-id-1");

    // Not sane (a space): a generated one instead, also on errors.
    let reply = exchange(
        &fixture.path,
        b"GET /nope HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: a b\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 404);
    let id = reply.header("x-request-id").unwrap().to_string();
    assert_eq!(id.len(), 16, "{id}");
    assert_eq!(reply.json()["request_id"], id.as_str());
    assert_eq!(reply.json()["code"], "not_found");
    fixture.stop().await;
}

#[tokio::test]
async fn an_oversized_body_with_content_length_gets_413_and_the_server_carries_on() {
    let fixture = Fixture::start().await;
    let body = vec![b'a'; protocol::MAX_BODY_BYTES + 1];
    let reply = within(
        "the 413",
        fixture.client().request(Method::POST, "/echo", Some(body)),
    )
    .await
    .unwrap();
    let (status, error) = api_error(reply.json());
    assert_eq!(status, 413);
    assert_eq!(error.code, code::BODY_TOO_LARGE);
    assert_eq!(error.error, "request body exceeds 1048576 bytes");

    // Exactly the limit is fine.
    let body = vec![b'b'; protocol::MAX_BODY_BYTES];
    let reply = fixture
        .client()
        .request(Method::POST, "/echo", Some(body))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json::<Echo>().unwrap().body.len(),
        protocol::MAX_BODY_BYTES
    );
    fixture.echo().await;
    fixture.stop().await;
}

#[tokio::test]
async fn an_oversized_chunked_body_gets_413_and_the_server_carries_on() {
    let fixture = Fixture::start().await;
    let mut raw = b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    let chunk = vec![b'c'; 64 * 1024];
    for _ in 0..protocol::MAX_BODY_BYTES / chunk.len() {
        raw.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        raw.extend_from_slice(&chunk);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"1\r\nc\r\n0\r\n\r\n");
    let reply = exchange(&fixture.path, &raw).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["code"], "body_too_large");
    fixture.echo().await;
    fixture.stop().await;
}

#[tokio::test]
async fn garbage_on_the_socket_does_not_hurt_the_server() {
    let fixture = Fixture::start().await;
    for garbage in [
        &b"\x00\x01\x02\xff garbage \r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nab",
        b"",
    ] {
        let mut stream = UnixStream::connect(&fixture.path).await.unwrap();
        let _ = stream.write_all(garbage).await;
        // The end of the request: nothing more is coming.
        let _ = stream.shutdown().await;
        let mut buf = Vec::new();
        let _ = within(
            "the server to close the connection",
            stream.read_to_end(&mut buf),
        )
        .await;
        let reply = parse(&buf);
        assert!(
            reply.status == 0 || reply.status == 400,
            "{garbage:?}: {reply:?}"
        );
    }
    fixture.echo().await;
    fixture.stop().await;
}

#[tokio::test]
async fn a_panicking_handler_costs_one_500() {
    let fixture = Fixture::start().await;
    for path in ["/panic", "/panic-at-once"] {
        let reply = fixture
            .client()
            .request(Method::GET, path, None)
            .await
            .unwrap();
        let (status, error) = api_error(reply.json());
        assert_eq!(status, 500, "{path}");
        assert_eq!(error.code, code::INTERNAL);
        fixture.echo().await;
    }
    fixture.stop().await;
}

#[tokio::test]
async fn headers_over_the_limit_get_a_json_431() {
    let fixture = Fixture::start().await;
    let big = "a".repeat(9 * 1024);
    let reply = exchange(
        &fixture.path,
        format!("GET /echo HTTP/1.1\r\nX-Big: {big}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 431);
    assert_eq!(reply.json()["code"], "headers_too_large");
    assert!(reply.header("x-request-id").is_some());
    fixture.echo().await;
    fixture.stop().await;
}

#[tokio::test]
async fn idle_connections_are_closed_by_the_header_timeout() {
    let limits = Limits {
        header_read_timeout: Duration::from_millis(200),
        ..Limits::control()
    };
    let fixture = Fixture::start_with(limits, 0o600).await;
    let mut idle = UnixStream::connect(&fixture.path).await.unwrap();
    let mut slow = UnixStream::connect(&fixture.path).await.unwrap();
    slow.write_all(b"GET /echo HTTP/1.1\r\n").await.unwrap();
    for stream in [&mut idle, &mut slow] {
        let mut buf = Vec::new();
        let n = within("the header timeout", stream.read_to_end(&mut buf))
            .await
            .unwrap();
        assert_eq!(n, 0, "closed without a response");
    }
    fixture.stop().await;
}

#[tokio::test]
async fn a_stream_is_delivered_line_by_line_as_it_is_produced() {
    let mut fixture = Fixture::start().await;
    let mut lines = fixture
        .client()
        .stream(Method::GET, "/stream", None)
        .await
        .unwrap();
    assert_eq!(lines.status, 200);
    let producer = fixture.next_stream().await;
    producer.send(Bytes::from("one\n")).await.unwrap();
    assert_eq!(
        within("line one", lines.next_line())
            .await
            .unwrap()
            .unwrap(),
        "one"
    );
    // Lines split across chunks, several lines in one chunk, empty chunks
    // (which must not end the chunked body), CRLF.
    producer.send(Bytes::from("tw")).await.unwrap();
    producer.send(Bytes::new()).await.unwrap();
    producer
        .send(Bytes::from("o\r\nthree\nfour"))
        .await
        .unwrap();
    assert_eq!(lines.next_line().await.unwrap().unwrap(), "two");
    assert_eq!(lines.next_line().await.unwrap().unwrap(), "three");
    producer.send(Bytes::from("\n")).await.unwrap();
    assert_eq!(lines.next_line().await.unwrap().unwrap(), "four");
    producer
        .send(Bytes::from("last, no newline"))
        .await
        .unwrap();
    drop(producer);
    assert_eq!(
        within("the last line", lines.next_line())
            .await
            .unwrap()
            .unwrap(),
        "last, no newline"
    );
    assert_eq!(lines.next_line().await.unwrap(), None);
    assert_eq!(lines.next_line().await.unwrap(), None);
    fixture.stop().await;
}

#[tokio::test]
async fn a_line_over_1_mib_is_an_error() {
    let mut fixture = Fixture::start().await;
    let mut lines = fixture
        .client()
        .stream(Method::GET, "/stream", None)
        .await
        .unwrap();
    let producer = fixture.next_stream().await;
    let chunk = Bytes::from(vec![b'x'; 256 * 1024]);
    let feed = tokio::spawn(async move {
        for _ in 0..5 {
            if producer.send(chunk.clone()).await.is_err() {
                break;
            }
        }
    });
    match within("the long line", lines.next_line()).await {
        Err(ClientError::Failed(message)) => {
            assert!(message.contains("longer than 1048576 bytes"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    drop(lines);
    within("the producer to notice", feed).await.unwrap();
    fixture.stop().await;
}

#[tokio::test]
async fn a_client_leaving_mid_stream_drops_the_producers_receiver() {
    let mut fixture = Fixture::start().await;
    let mut lines = fixture
        .client()
        .stream(Method::GET, "/stream", None)
        .await
        .unwrap();
    let producer = fixture.next_stream().await;
    producer.send(Bytes::from("hello\n")).await.unwrap();
    assert_eq!(lines.next_line().await.unwrap().unwrap(), "hello");
    let mut connections = fixture.server().connections();
    assert_eq!(*connections.borrow(), 1);

    // The producer is idle: only the server noticing the hang-up can tell it.
    drop(lines);
    within("the stream's receiver to be dropped", producer.closed()).await;
    assert!(producer.send(Bytes::from("anyone?\n")).await.is_err());
    within(
        "the connection task to end",
        connections.wait_for(|n| *n == 0),
    )
    .await
    .unwrap();
    fixture.stop().await;
}

#[tokio::test]
async fn a_streamed_error_is_collected() {
    let fixture = Fixture::start().await;
    let lines = fixture
        .client()
        .stream(Method::GET, "/stream-error", None)
        .await
        .unwrap();
    assert_eq!(lines.status, 404);
    match lines.collect_error().await {
        ApiError::Api { status, error } => {
            assert_eq!(status, 404);
            assert_eq!(error.code, "no_such_program");
        }
        other => panic!("{other:?}"),
    }
    fixture.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_told_busy() {
    let limits = Limits {
        max_connections: 2,
        ..Limits::control()
    };
    let fixture = Fixture::start_with(limits, 0o600).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = UnixStream::connect(&fixture.path).await.unwrap();
        // A full exchange proves the server counts it.
        stream
            .write_all(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(stream);
    }
    let reply = fixture
        .client()
        .request(Method::GET, "/echo", None)
        .await
        .unwrap();
    let (status, error) = api_error(reply.json());
    assert_eq!(status, 503);
    assert_eq!(error.code, code::BUSY);

    // A slot frees up when a client leaves.
    let mut connections = fixture.server().connections();
    drop(held.pop());
    within(
        "a connection slot to free up",
        connections.wait_for(|n| *n < 2),
    )
    .await
    .unwrap();
    fixture.echo().await;
    fixture.stop().await;
}

#[tokio::test]
async fn beyond_the_refusal_pool_the_refusal_is_written_at_once() {
    let limits = Limits {
        max_connections: 1,
        max_refusals: 0,
        ..Limits::control()
    };
    let fixture = Fixture::start_with(limits, 0o600).await;
    let mut held = UnixStream::connect(&fixture.path).await.unwrap();
    held.write_all(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = held.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let reply = exchange(&fixture.path, b"").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["code"], "busy");
    drop(held);
    fixture.stop().await;
}

#[tokio::test]
async fn stop_removes_the_socket_and_ends_streams_after_the_grace_period() {
    let limits = Limits {
        shutdown_grace: Duration::from_millis(200),
        ..Limits::control()
    };
    let mut fixture = Fixture::start_with(limits, 0o600).await;
    let mut lines = fixture
        .client()
        .stream(Method::GET, "/stream", None)
        .await
        .unwrap();
    let producer = fixture.next_stream().await;
    let path = fixture.path.clone();
    let client = fixture.client();
    fixture.stop().await;
    assert!(
        std::fs::symlink_metadata(&path).is_err(),
        "socket file kept"
    );
    within("the stream's receiver to be dropped", producer.closed()).await;
    assert!(within("the stream to end", lines.next_line())
        .await
        .is_err());

    let err = client
        .request(Method::GET, "/echo", None)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 69);
    assert_eq!(
        err.to_string(),
        format!(
            "no kelpie supervisor is running at {}: no such socket",
            path.display()
        )
    );
}

#[tokio::test]
async fn no_supervisor_is_unavailable_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let err = Client::new(path.clone())
        .request(Method::GET, "/v1/health", None)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Unavailable { .. }), "{err:?}");
    assert_eq!(err.exit_code(), 69);
    assert_eq!(
        err.to_string(),
        format!(
            "no kelpie supervisor is running at {}: connection refused (a stale socket, or not a socket)",
            path.display()
        )
    );
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let err = Client::new(file)
        .stream(Method::GET, "/", None)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 69, "{err}");
}

#[tokio::test]
async fn a_client_timeout_is_one_line() {
    let mut fixture = Fixture::start().await;
    let client = fixture
        .client()
        .with_timeout(Some(Duration::from_millis(100)));
    // A stream whose head is sent at once does not time out...
    let lines = client.stream(Method::GET, "/stream", None).await.unwrap();
    let _producer = fixture.next_stream().await;
    drop(lines);
    // ...but a whole reply that never ends does.
    let err = client
        .request(Method::GET, "/stream", None)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the supervisor at {} did not answer within 100ms",
            fixture.path.display()
        )
    );
    assert_eq!(err.exit_code(), 1);
    fixture.stop().await;
}

// ---------------------------------------------------------------------------
// Other users. The test binary re-runs itself as uid 65534 (setpriv) to
// act as the foreign client, with the real `Client`.

const HELPER_ENV: &str = "KELPIE_CONTROL_TEST_HELPER_SOCKET";

/// Not a test of its own: the foreign client, run by the tests below.
#[test]
#[ignore = "helper run by other_users_are_refused (as another uid)"]
fn other_user_helper() {
    let Some(path) = std::env::var_os(HELPER_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let line = runtime.block_on(async {
        match Client::new(PathBuf::from(path))
            .request(Method::GET, "/echo", None)
            .await
        {
            Ok(reply) => match reply.json::<serde_json::Value>() {
                Err(ApiError::Api { status, error }) => {
                    format!("status={status} code={}", error.code)
                }
                other => format!("unexpected={other:?}"),
            },
            Err(err) => format!("exit={} error={err}", err.exit_code()),
        }
    });
    println!("HELPER-RESULT {line}");
}

/// Why the cross-user tests cannot run here, if they cannot.
fn cannot_switch_users() -> Option<&'static str> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not running as root, cannot run a client as another uid");
    }
    let found = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("setpriv").is_file())
    });
    if !found {
        return Some("setpriv (util-linux) is not on PATH");
    }
    None
}

/// Runs [`other_user_helper`] as uid/gid 65534 against `socket` and returns
/// its result line.
async fn as_nobody(socket: &Path) -> String {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args([
            "--exact",
            "control::tests::other_user_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run setpriv");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let read = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        let mut err = String::new();
        let _ = stdout.read_to_string(&mut out);
        let _ = stderr.read_to_string(&mut err);
        (out, err)
    });
    let (out, err) = match tokio::time::timeout(Duration::from_secs(60), read).await {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
            panic!("timed out after 60 s waiting for the helper client (uid 65534) to finish");
        }
    };
    let _ = nix::sys::wait::waitpid(pid, None);
    out.lines()
        // libtest prints the test's name on the same line.
        .find_map(|line| line.split_once("HELPER-RESULT "))
        .map(|(_, result)| result.to_string())
        .unwrap_or_else(|| {
            panic!("the helper client did not report (can uid 65534 run {exe:?}?)\nstdout:\n{out}\nstderr:\n{err}")
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_users_are_refused_with_403() {
    if let Some(reason) = cannot_switch_users() {
        println!("SKIPPED: {reason}");
        return;
    }
    // The socket must let uid 65534 connect, so the refusal is kelpie's.
    let fixture = Fixture::start_with(Limits::control(), 0o666).await;
    let dir = fixture.path.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let result = as_nobody(&fixture.path).await;
    assert_eq!(result, "status=403 code=forbidden");
    // The owner is still served.
    fixture.echo().await;
    fixture.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_of_another_user_is_permission_denied() {
    if let Some(reason) = cannot_switch_users() {
        println!("SKIPPED: {reason}");
        return;
    }
    let fixture = Fixture::start_with(Limits::control(), 0o600).await;
    let dir = fixture.path.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let result = as_nobody(&fixture.path).await;
    assert_eq!(
        result,
        format!(
            "exit=1 error=permission denied connecting to {}; the control socket belongs to another user (run as that user or root)",
            fixture.path.display()
        )
    );
    fixture.stop().await;
}

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
mod hardening;
mod streams;
mod users;

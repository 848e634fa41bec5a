//! In-process tests of the server with small limits, so each bound is
//! exercised in milliseconds. tests/http.rs and tests/http_abuse.rs
//! drive the real binary with the real limits.
use std::sync::Mutex;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::endpoints::JSON;
use super::*;
use crate::state::Phase;
use crate::status::{ProgramStatus, StatusSender};

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
            dashboard: Arc::new(super::Dashboard::disabled()),
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
        default_limits(),
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
    let server = TestServer::start(board(vec![]), default_limits()).await;
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
        format!("GET /health HTTP/1.1\r\nX-Big: {fits}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn a_panicking_renderer_costs_one_500() {
    let server = TestServer::start_with(
        board(vec![]),
        default_limits(),
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
        ..default_limits()
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
        ..default_limits()
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
        write_timeout: Some(Duration::from_millis(300)),
        ..default_limits()
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
        dashboard: Arc::new(super::Dashboard::disabled()),
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
        dashboard: Arc::new(super::Dashboard::disabled()),
    });
    let server = start(listener, state, default_limits()).await.unwrap();
    assert_eq!(get(addr, "/health").await.status, 200);
    server.stop().await;
    assert!(TcpStream::connect(addr).await.is_err(), "still listening");
}

#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections_promptly() {
    let server = TestServer::start(board(vec![]), default_limits()).await;
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

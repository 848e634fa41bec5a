//! Bounds of the control server: body and header sizes, garbage, panics, idle and busy connections, refusals, stop.

use super::*;

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

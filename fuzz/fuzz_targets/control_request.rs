//! Any bytes as one connection to the control socket's server (peer
//! credentials, head and body limits, request ids, chunked bodies) with a
//! handler that decodes JSON bodies as the API does: the answer is nothing
//! (an incomplete request) or HTTP with no 5xx, and the server never panics
//! (libFuzzer's panic hook aborts on a panic in any thread).
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use hyper_status::check;
use kelpie::control::protocol::ActionRequest;
use kelpie::control::server::{self, parse_json, ControlResponse, ControlServer};
use kelpie::control::socket;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

struct Fixture {
    runtime: Runtime,
    path: std::path::PathBuf,
    _server: ControlServer,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let dir = std::env::temp_dir().join(format!("kelpie-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a socket directory");
        let path = dir.join("control.sock");
        let server = runtime.block_on(async {
            let bound = socket::bind(&path, 0o600).expect("bind the control socket");
            server::start(
                bound,
                server::handler(|request| async move {
                    match parse_json::<ActionRequest>(&request) {
                        Ok(action) => ControlResponse::json(
                            hyper::StatusCode::OK,
                            &serde_json::json!({ "path": request.path, "all": action.all }),
                        ),
                        Err(error) => error,
                    }
                }),
            )
        });
        Fixture {
            runtime,
            path,
            _server: server,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let reply = fixture.runtime.block_on(async {
        let mut stream = tokio::net::UnixStream::connect(&fixture.path)
            .await
            .expect("connect");
        let _ = stream.write_all(data).await;
        let _ = stream.shutdown().await;
        let mut reply = Vec::new();
        match tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut reply)).await {
            Ok(_) => reply,
            Err(_) => panic!("no answer within 15 s"),
        }
    });
    check(&reply);
});

mod hyper_status {
    /// Nothing, or an HTTP/1.x status line; never a 5xx but 503.
    pub fn check(reply: &[u8]) {
        if reply.is_empty() {
            return;
        }
        assert!(
            reply.starts_with(b"HTTP/1."),
            "not HTTP: {:?}",
            String::from_utf8_lossy(reply)
        );
        let status: u16 = std::str::from_utf8(&reply[9..12.min(reply.len())])
            .ok()
            .and_then(|s| s.parse().ok())
            .expect("a status code");
        assert!(status < 500 || status == 503, "server error {status}");
    }
}

//! `shutdown`: asks the Supervisor to shut down and streams two NDJSON
//! events, `shutting_down` at once and `stopped` with kelpie's exit code
//! once the supervisor is done, so a client can wait for the end.

use std::sync::Arc;

use hyper::StatusCode;
use tokio::sync::mpsc;

use super::{ndjson, shutting_down, ControlApi};
use crate::control::protocol::ShutdownEvent;
use crate::control::server::{ControlBody, ControlResponse};
use crate::supervisor::SupervisorMsg;

impl ControlApi {
    pub(super) fn shutdown(&self, id: &str) -> ControlResponse {
        if self
            .supervisor
            .cast(SupervisorMsg::Shutdown {
                cause: Some(Arc::from(id)),
            })
            .is_err()
        {
            return shutting_down(id);
        }
        let (sender, receiver) = mpsc::channel(2);
        let mut finished = self.finished.clone();
        tokio::spawn(async move {
            let first = ShutdownEvent {
                status: "shutting_down".into(),
                exit_code: None,
            };
            if sender.send(ndjson(&first)).await.is_err() {
                return;
            }
            let code = tokio::select! {
                code = finished.wait_for(Option::is_some) => code.ok().and_then(|c| *c),
                () = sender.closed() => return,
            };
            let last = ShutdownEvent {
                status: "stopped".into(),
                exit_code: code,
            };
            let _ = sender.send(ndjson(&last)).await;
        });
        ControlResponse {
            status: StatusCode::OK,
            content_type: "application/x-ndjson",
            body: ControlBody::Stream(receiver),
        }
    }
}

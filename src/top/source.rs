//! Where `kelpie top` gets its data and sends its actions: the control
//! API, through the same requests the other commands make.

use std::time::Duration;

use hyper::Method;
use tokio::time::Instant;

use super::model::Sample;
use crate::control::protocol::{ActionReply, ActionRequest, LogEvent, ProgramsReply, UsageReply};
use crate::control_client::connection::{ApiError, Client, ClientError};
use crate::control_client::segment;

/// Reads give up after this long without `--timeout`.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Lines of the log tail view.
pub const LOG_LINES: u32 = 500;

#[derive(Debug, Clone)]
pub struct Source {
    /// For the status, usage and log reads.
    reads: Client,
    /// For actions: they wait for their outcome as long as the supervisor
    /// says (`timeout_ms`), like `kelpie restart`.
    actions: Client,
    timeout: Option<Duration>,
}

impl Source {
    pub fn new(client: Client, timeout: Option<Duration>) -> Self {
        Self {
            reads: client
                .clone()
                .with_timeout(Some(timeout.unwrap_or(READ_TIMEOUT))),
            actions: client,
            timeout,
        }
    }

    pub fn socket(&self) -> &std::path::Path {
        self.reads.socket()
    }

    /// The status board and the usage scan, asked for together.
    pub async fn sample(&self) -> Result<Sample, ApiError> {
        let programs = async {
            self.reads
                .request(Method::GET, "/v1/programs", None)
                .await?
                .json::<ProgramsReply>()
        };
        let usage = async {
            let reply = self.reads.request(Method::GET, "/v1/usage", None).await?;
            let at = Instant::now();
            match reply.json::<UsageReply>() {
                Ok(usage) => Ok((Some(usage), at)),
                // A supervisor from before the route: no figures.
                Err(ApiError::Api { status: 404, .. }) => Ok((None, at)),
                Err(err) => Err(err),
            }
        };
        let (programs, usage) = tokio::join!(programs, usage);
        let (usage, at) = usage?;
        Ok(Sample {
            programs: programs?,
            usage,
            at,
        })
    }

    /// `verb` (`start`, `stop`, `restart`) on one program or instance: the
    /// request `kelpie VERB NAME` sends, waiting for the outcome.
    pub async fn action(&self, verb: &str, name: &str) -> Result<ActionReply, ApiError> {
        let request = ActionRequest {
            programs: vec![name.to_string()],
            all: false,
            wait: true,
            timeout_ms: self.timeout.map(|t| t.as_millis() as u64),
            rolling: false,
            signal: None,
        };
        let body = serde_json::to_vec(&request).map_err(|err| {
            ApiError::Client(ClientError::Failed(format!(
                "cannot encode the request: {err}"
            )))
        })?;
        self.actions
            .request(Method::POST, &format!("/v1/actions/{verb}"), Some(body))
            .await?
            .json()
    }

    /// The last `LOG_LINES` records of a program or instance, oldest first.
    pub async fn log_tail(&self, name: &str) -> Result<Vec<LogEvent>, ApiError> {
        let path = format!("/v1/programs/{}/logs?lines={LOG_LINES}", segment(name));
        let reply = self.reads.request(Method::GET, &path, None).await?;
        if !(200..300).contains(&reply.status) {
            return Err(reply.json::<()>().err().unwrap_or_else(|| {
                ApiError::Client(ClientError::Failed(format!(
                    "unexpected reply {}",
                    reply.status
                )))
            }));
        }
        let mut events = Vec::new();
        for line in reply.body.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let event = serde_json::from_slice(line).map_err(|err| {
                ApiError::Client(ClientError::Failed(format!(
                    "bad log record from the supervisor: {err}"
                )))
            })?;
            events.push(event);
        }
        Ok(events)
    }
}

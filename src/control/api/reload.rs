//! `reload` (re-read and apply) and `diff` (the plan only): one message to
//! the Supervisor, whose reply is the plan, or the reasons it refused.

use std::path::PathBuf;
use std::sync::Arc;

use hyper::StatusCode;
use tokio::sync::oneshot;

use super::{shutting_down, ControlApi};
use crate::control::protocol::{code, PlanEntry, ReloadReply};
use crate::control::server::ControlResponse;
use crate::supervisor::{ReloadCommand, ReloadOutcome, ReloadRefused, SupervisorMsg};

impl ControlApi {
    pub(super) async fn reload(
        &self,
        apply: bool,
        path: Option<PathBuf>,
        id: &str,
    ) -> ControlResponse {
        let (reply, outcome) = oneshot::channel();
        let command = ReloadCommand {
            apply,
            path,
            cause: Some(Arc::from(id)),
            reply: Some(reply),
        };
        if self
            .supervisor
            .cast(SupervisorMsg::Reload(command))
            .is_err()
        {
            return shutting_down(id);
        }
        match outcome.await {
            Ok(Ok(outcome)) => ControlResponse::json(StatusCode::OK, &reload_reply(apply, outcome)),
            Ok(Err(refused)) => refused_reply(refused, id),
            Err(_) => shutting_down(id),
        }
    }
}

pub fn reload_reply(applied: bool, outcome: ReloadOutcome) -> ReloadReply {
    ReloadReply {
        applied,
        path: outcome.path.display().to_string(),
        plan: outcome
            .plan
            .into_iter()
            .map(|item| PlanEntry {
                program: item.program,
                action: item.change.as_str().to_string(),
                changes: item.keys.iter().map(|k| k.to_string()).collect(),
            })
            .collect(),
        warnings: outcome.warnings,
    }
}

fn refused_reply(refused: ReloadRefused, id: &str) -> ControlResponse {
    if !refused.invalid {
        let message = refused.errors.join("; ");
        return ControlResponse::error(StatusCode::CONFLICT, code::SHUTTING_DOWN, &message, id);
    }
    let count = refused.errors.len();
    ControlResponse::error_with_details(
        StatusCode::UNPROCESSABLE_ENTITY,
        code::CONFIG_INVALID,
        &format!(
            "{}: invalid config ({count} error{}); still running the previous config",
            refused.path.display(),
            if count == 1 { "" } else { "s" }
        ),
        id,
        refused.errors,
    )
}

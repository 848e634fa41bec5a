//! `history`: a program's (or one instance's) crash history with its
//! verdict, read on demand from the program's output, where the instance
//! actors record their exits. Costs the Supervisor one message (to find
//! the program's output), like `logs`.

use std::time::SystemTime;

use hyper::StatusCode;

use super::logs::output_of;
use super::reads::{code_of, signal_of};
use super::{no_such_program, shutting_down, ControlApi};
use crate::control::protocol::{ExitDecision, ExitInfo, ExitLine, HistoryReply};
use crate::control::server::ControlResponse;
use crate::exit_history::{verdict, ExitRecord};

impl ControlApi {
    /// `GET /v1/programs/{name}/history`; `name` may be one instance, `web:1`.
    pub(super) async fn history(&self, name: &str, id: &str) -> ControlResponse {
        let board = self.board();
        let Some((program, instance)) = board.lookup(name) else {
            return no_such_program(name, id);
        };
        let state = match instance.and_then(|n| program.instances.get(n)) {
            Some(status) => status.snapshot.phase,
            None => program.state(),
        };
        let output = match output_of(&self.supervisor, &program.name).await {
            Ok(Some(output)) => output,
            Ok(None) => return no_such_program(name, id),
            Err(()) => return shutting_down(id),
        };
        let mut exits = output.exits();
        if let Some(n) = instance {
            exits.retain(|e| e.instance as usize == n);
        }
        let reply = HistoryReply {
            program: program.name.clone(),
            instance: instance.map(|n| n as u32),
            state: state.as_str().to_string(),
            verdict: verdict::verdict(&exits, state, SystemTime::now()),
            exits: exits.iter().map(exit_info).collect(),
        };
        ControlResponse::json(StatusCode::OK, &reply)
    }
}

fn exit_info(exit: &ExitRecord) -> ExitInfo {
    ExitInfo {
        time: humantime::format_rfc3339_millis(exit.at).to_string(),
        instance: exit.instance,
        pid: exit.pid,
        code: code_of(exit.status),
        signal: signal_of(exit.status),
        kind: exit.kind.as_str().to_string(),
        text: exit.status.to_string(),
        by_kelpie: exit.by_kelpie,
        kelpie_reason: exit.kelpie_reason.clone(),
        oom: exit.oom.is_some(),
        oom_evidence: exit.oom.as_ref().map(|o| o.source.as_str().to_string()),
        oom_memcg: exit.oom.as_ref().and_then(|o| o.memcg.clone()),
        ran_seconds: exit.ran.as_secs_f64(),
        decision: ExitDecision {
            action: exit.decision.action().to_string(),
            delay_seconds: exit.decision.delay().map(|d| d.as_secs_f64()),
            reason: match &exit.decision {
                crate::exit_history::Decision::Failed { reason } => Some(reason.clone()),
                _ => None,
            },
            text: exit.decision.text(),
        },
        output: exit
            .output
            .iter()
            .map(|line| ExitLine {
                stream: line.stream.as_str().to_string(),
                line: line.text.to_string(),
            })
            .collect(),
    }
}

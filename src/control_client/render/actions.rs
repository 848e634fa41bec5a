//! What `start`, `stop`, `restart` and `signal` print: one line per
//! program acted on.

use crate::control::protocol::ActionReply;

/// One line per program acted on, in the reply's order:
/// `web: started` when it succeeded, `web: ERROR <why>` when it did not,
/// so `grep ': ERROR '` finds every failure. When the supervisor sent no
/// message, the line is made from `verb` (`web: restarted`,
/// `web: ERROR restart failed (state failed)`).
pub fn action_lines(verb: &str, reply: &ActionReply) -> Vec<String> {
    if reply.results.is_empty() {
        return vec![format!("{verb}: no programs to act on")];
    }
    reply
        .results
        .iter()
        .map(|result| {
            let message = result.message.trim();
            match (result.ok, message.is_empty()) {
                (true, false) => format!("{}: {message}", result.program),
                (true, true) => format!("{}: {}", result.program, past_tense(verb)),
                (false, false) => format!("{}: ERROR {message}", result.program),
                (false, true) => format!(
                    "{}: ERROR {verb} failed (state {})",
                    result.program, result.state
                ),
            }
        })
        .collect()
}

fn past_tense(verb: &str) -> String {
    match verb {
        "start" => "started".to_string(),
        "stop" => "stopped".to_string(),
        "restart" => "restarted".to_string(),
        "signal" => "signalled".to_string(),
        other => format!("{other}: done"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::ActionOutcome;

    fn outcome(program: &str, ok: bool, state: &str, message: &str) -> ActionOutcome {
        ActionOutcome {
            program: program.to_string(),
            ok,
            state: state.to_string(),
            message: message.to_string(),
        }
    }

    #[test]
    fn action_lines_are_greppable() {
        let reply = ActionReply {
            ok: false,
            results: vec![
                outcome("web", true, "running", "started"),
                outcome("cache", true, "running", "already running"),
                outcome("db", false, "failed", "web:0 exited with exit code 1"),
                outcome("api", true, "running", ""),
                outcome("job", false, "backoff", ""),
            ],
        };
        assert_eq!(
            action_lines("start", &reply),
            [
                "web: started",
                "cache: already running",
                "db: ERROR web:0 exited with exit code 1",
                "api: started",
                "job: ERROR start failed (state backoff)",
            ]
        );
        let empty = ActionReply {
            ok: true,
            results: vec![],
        };
        assert_eq!(
            action_lines("stop", &empty),
            ["stop: no programs to act on"]
        );
    }
}

//! `start`, `stop`, `restart` and `signal` (per program or for several):
//! check the request, hand it to the Supervisor, then wait for each
//! program's outcome — on the board for most, on the roll's end for a
//! rolling restart — all at once, each with its own deadline.

use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{bad_request, not_found, shutting_down, ControlApi};
use crate::control::protocol::{code, ActionOutcome, ActionReply, ActionRequest};
use crate::control::server::{parse_json, ControlRequest, ControlResponse};
use crate::control::wait::{progress, Progress, Target};
use crate::status::ProgramStatus;
use crate::supervisor::{Accepted, ActionCommand, ActionError, SupervisorMsg, Verb};

impl ControlApi {
    pub(super) async fn action(
        &self,
        verb: &str,
        name: Option<&str>,
        request: &ControlRequest,
    ) -> ControlResponse {
        let id = &request.request_id;
        let Some(verb) = Verb::parse(verb) else {
            return not_found(&request.path, id);
        };
        // An empty body means every default (`wait` is true).
        let body: ActionRequest = match parse_json(request) {
            Ok(body) => body,
            Err(response) => return response,
        };
        let mut programs = body.programs.clone();
        if let Some(name) = name {
            if !programs.is_empty() || body.all {
                return bad_request("name the program in the path or in the body, not both", id);
            }
            programs.push(name.to_string());
        }
        if programs.is_empty() && !body.all {
            return bad_request("name at least one program, or set \"all\": true", id);
        }
        if body.all && !programs.is_empty() {
            return bad_request("\"all\" and \"programs\" exclude each other", id);
        }
        if body.rolling && verb != Verb::Restart {
            return bad_request("\"rolling\" applies to restart only", id);
        }
        let signal = match (verb, &body.signal) {
            (Verb::Signal, Some(text)) => match crate::signals::parse(text) {
                Some(signal) => Some(signal),
                None => {
                    return bad_request(
                        &format!(
                            "unknown signal {text:?}; use a name like TERM or SIGHUP, or a number"
                        ),
                        id,
                    )
                }
            },
            (Verb::Signal, None) => return bad_request("\"signal\" is required", id),
            (_, Some(_)) => return bad_request("\"signal\" applies to the signal action only", id),
            (_, None) => None,
        };
        let (reply, accepted) = oneshot::channel();
        let command = ActionCommand {
            verb,
            programs,
            all: body.all,
            rolling: body.rolling,
            signal,
            cause: Some(Arc::from(id.as_str())),
            reply,
        };
        if self
            .supervisor
            .cast(SupervisorMsg::Action(command))
            .is_err()
        {
            return shutting_down(id);
        }
        let accepted = match accepted.await {
            Ok(Ok(accepted)) => accepted,
            Ok(Err(
                error @ (ActionError::NoSuchProgram(_) | ActionError::NoSuchInstance { .. }),
            )) => {
                return ControlResponse::error(
                    StatusCode::NOT_FOUND,
                    code::NO_SUCH_PROGRAM,
                    &error.to_string(),
                    id,
                )
            }
            Ok(Err(error @ ActionError::RollingInstance { .. })) => {
                return bad_request(&error.to_string(), id)
            }
            Ok(Err(ActionError::ShuttingDown)) | Err(_) => return shutting_down(id),
        };
        let timeout = body.timeout_ms.map(Duration::from_millis);
        let results = self.outcomes(verb, accepted, body.wait, timeout).await;
        ControlResponse::json(
            StatusCode::OK,
            &ActionReply {
                ok: results.iter().all(|r| r.ok),
                results,
            },
        )
    }

    /// Waits (unless told not to) for each program's outcome, all at once.
    async fn outcomes(
        &self,
        verb: Verb,
        accepted: Accepted,
        wait: bool,
        timeout: Option<Duration>,
    ) -> Vec<ActionOutcome> {
        let target = match verb {
            Verb::Stop => Target::Down,
            _ => Target::Up,
        };
        let mut results: Vec<Option<ActionOutcome>> = Vec::new();
        let mut rolls = Vec::new();
        let mut watched: Vec<Watched> = Vec::new();
        let now = Instant::now();
        for program in accepted.programs {
            let slot = results.len();
            results.push(None);
            let addressed = Addressed {
                program: program.name,
                instance: program.instance.map(|n| n as usize),
            };
            let state = || {
                self.board()
                    .program(&addressed.program)
                    .map(|p| addressed.state(p))
                    .unwrap_or_else(|| "removed".into())
            };
            if let Some(outcome) = program.outcome {
                results[slot] = Some(finished(&addressed.name(), state(), outcome));
            } else if !wait {
                results[slot] = Some(finished(&addressed.name(), state(), Ok("accepted".into())));
            } else if let Some(roll) = program.roll {
                let limit = timeout.unwrap_or(program.timeout);
                rolls.push((slot, addressed.program, limit, roll));
            } else {
                let deadline = now + timeout.unwrap_or(program.timeout);
                watched.push((slot, addressed, deadline));
            }
        }
        let roll_waits = rolls
            .into_iter()
            .map(|(slot, name, limit, roll)| async move {
                let outcome = match tokio::time::timeout(limit, roll).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(_)) => Err("kelpie stopped before the rolling restart finished".into()),
                    Err(_) => Err(format!(
                        "still rolling after {}; it goes on in the background",
                        humantime::format_duration(limit)
                    )),
                };
                (slot, name, outcome)
            });
        let (rolled, waited) = tokio::join!(
            futures_join_all(roll_waits),
            self.wait_on_board(target, accepted.seq, watched)
        );
        for (slot, name, outcome) in rolled {
            let state = self
                .board()
                .program(&name)
                .map(|p| p.state().as_str().to_string())
                .unwrap_or_default();
            results[slot] = Some(finished(&name, state, outcome));
        }
        for (slot, outcome) in waited {
            results[slot] = Some(outcome);
        }
        results.into_iter().flatten().collect()
    }

    /// Watches the board until every program reached its target, failed,
    /// or ran out of time.
    async fn wait_on_board(
        &self,
        target: Target,
        seq: u64,
        mut watched: Vec<Watched>,
    ) -> Vec<(usize, ActionOutcome)> {
        let mut done = Vec::new();
        let mut status = self.status.clone();
        while !watched.is_empty() {
            let board = status.borrow_and_update().clone();
            let now = Instant::now();
            watched.retain(|(slot, addressed, deadline)| {
                let name = &addressed.name();
                let Some(program) = board.program(&addressed.program) else {
                    done.push((
                        *slot,
                        finished(
                            name,
                            "removed".into(),
                            Err("the program was removed".into()),
                        ),
                    ));
                    return false;
                };
                let state = addressed.state(program);
                match progress(target, seq, program, addressed.instance) {
                    Progress::Done(message) => {
                        done.push((*slot, finished(name, state, Ok(message))))
                    }
                    Progress::Failed(reason) => {
                        done.push((*slot, finished(name, state, Err(reason))))
                    }
                    Progress::Pending if now >= *deadline => {
                        let why = match addressed.instance {
                            Some(n) => program.instance_reason(n),
                            None => program.reason(),
                        }
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default();
                        done.push((
                            *slot,
                            finished(
                                name,
                                state.clone(),
                                Err(format!("timed out; {name} is {state}{why}")),
                            ),
                        ));
                    }
                    Progress::Pending => return true,
                }
                false
            });
            let Some(deadline) = watched.iter().map(|(_, _, d)| *d).min() else {
                break;
            };
            match tokio::time::timeout_at(deadline, status.changed()).await {
                Ok(Ok(())) | Err(_) => {}
                Ok(Err(_)) => {
                    for (slot, addressed, _) in watched.drain(..) {
                        done.push((
                            slot,
                            finished(
                                &addressed.name(),
                                "unknown".into(),
                                Err("kelpie stopped".into()),
                            ),
                        ));
                    }
                }
            }
        }
        done
    }
}

/// A program, or one of its instances, whose outcome is awaited.
struct Addressed {
    program: String,
    instance: Option<usize>,
}

impl Addressed {
    /// As the outcome names it: `web`, or `web:1`.
    fn name(&self) -> String {
        match self.instance {
            Some(n) => format!("{}:{n}", self.program),
            None => self.program.clone(),
        }
    }

    /// The program's state, or the instance's.
    fn state(&self, program: &ProgramStatus) -> String {
        match self.instance {
            Some(n) => program
                .instances
                .get(n)
                .map(|i| i.snapshot.phase.as_str().to_string())
                .unwrap_or_else(|| "removed".into()),
            None => program.state().as_str().to_string(),
        }
    }
}

/// The outcome's slot in the reply, what is awaited, and until when.
type Watched = (usize, Addressed, Instant);

/// Polls futures side by side; the std library has no join_all and the
/// futures crate is not worth a dependency for it.
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for future in futures {
        set.spawn(future);
    }
    let mut out = Vec::new();
    while let Some(result) = set.join_next().await {
        if let Ok(value) = result {
            out.push(value);
        }
    }
    out
}

fn finished(name: &str, state: String, outcome: Result<String, String>) -> ActionOutcome {
    let (ok, message) = match outcome {
        Ok(message) => (true, message),
        Err(message) => (false, message),
    };
    ActionOutcome {
        program: name.to_string(),
        ok,
        state,
        message,
    }
}

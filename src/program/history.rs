//! What the actor writes into its program's crash history
//! (`exit_history`): each exit when the reaper reports it, then the
//! decision the state machine takes after it, from the lifecycle `Note`s
//! that follow (`RestartScheduled`, `Failed`, `Stopped`, `Completed`, or
//! the phase `Exited`). A SIGKILL kelpie did not send is checked against
//! the kernel's OOM reports off the actor (`exit_history::oom`).

use std::time::{Duration, SystemTime};

use ractor::ActorRef;

use super::{ProgramMsg, ProgramState};
use crate::exit_history::{Decision, ExitRecord, Oom};
use crate::state::{ExitKind, ExitStatus, Note, Phase};

/// What the actor remembers between an exit and its decision.
#[derive(Debug, Default)]
pub(super) struct ExitTracking {
    /// The exit of the current event came while kelpie was stopping the
    /// process (`Phase::Stopping` before the event).
    pub(super) stopping: bool,
    /// Why kelpie is ending the current run on its own (liveness,
    /// start_timeout), until the next start.
    reason: Option<String>,
    /// The signal last relayed to the current run (`kelpie signal`,
    /// forward_signals), until the next start.
    relayed: Option<nix::sys::signal::Signal>,
    /// The recorded exit still waiting for its decision.
    undecided: Option<u64>,
    /// The last recorded exit, for a decision amended later (the restart
    /// budget).
    last: Option<u64>,
    /// An exit to put to the OOM check once the step is carried out: a
    /// restart's spawn goes first.
    oom_question: Option<(u64, i32, Duration)>,
}

impl ExitTracking {
    /// The exit of `pid` is to be put to the OOM check.
    pub(super) fn awaits_oom_answer(&self, pid: i32) -> bool {
        self.oom_question.is_some_and(|(_, asked, _)| asked == pid)
    }
}

impl ProgramState {
    /// The exit bookkeeping, made on the first exit (or the first thing
    /// said about one): an instance that never exits keeps none.
    pub(super) fn exits_mut(&mut self) -> &mut ExitTracking {
        self.exits.get_or_insert_with(Box::default)
    }

    /// Records what `note` says about an exit; called for every note,
    /// before it is logged, so a test that sees the log line finds the
    /// history already written.
    pub(super) fn record(&mut self, note: &Note) {
        match note {
            Note::Started { .. } => {
                if let Some(exits) = self.exits.as_mut() {
                    exits.reason = None;
                    exits.relayed = None;
                }
            }
            Note::LivenessFailed { .. } | Note::StartTimedOut => {
                self.exits_mut().reason = self.instance.snapshot().reason;
            }
            Note::Exited {
                pid,
                status,
                kind,
                ran,
            } => self.record_exit(*pid, *status, *kind, *ran),
            Note::RestartScheduled { delay, .. } => {
                self.decide(Decision::Restart { delay: *delay });
            }
            Note::Failed { reason } => self.decide(Decision::Failed {
                reason: reason.clone(),
            }),
            // A stop of `kelpie restart` is followed by a start at once.
            Note::Stopped => self.decide(match self.instance.phase() {
                Phase::Starting => Decision::Restarted,
                _ => Decision::Stopped,
            }),
            Note::Completed => self.decide(Decision::Exited),
            _ => {}
        }
    }

    /// After a step's actions: an exit the policy does not answer with a
    /// restart ends in `exited` without a note of its own; and a SIGKILL
    /// nobody at kelpie sent is put to the OOM check now that the restart
    /// (if any) is spawned.
    pub(super) fn record_settled(&mut self, myself: &ActorRef<ProgramMsg>) {
        if self.instance.phase() == Phase::Exited {
            self.decide(Decision::Exited);
        }
        if let Some((seq, pid, ran)) = self.exits.as_mut().and_then(|e| e.oom_question.take()) {
            self.check_oom(myself, seq, pid, ran);
        }
    }

    /// The restart budget is spent: the restart decided after the last
    /// exit now waits for it.
    pub(super) fn record_budget_wait(&mut self) {
        let Some(seq) = self.exits.as_ref().and_then(|e| e.last) else {
            return;
        };
        if self.instance.phase() != Phase::Backoff {
            return;
        }
        self.args.output.amend_exit(seq, |record| {
            if let Decision::Restart { delay } = record.decision {
                record.decision = Decision::BudgetWait { delay };
            }
        });
    }

    /// A signal was relayed to the running process: if it dies of it,
    /// kelpie sent it.
    pub(super) fn record_relayed(&mut self, signal: nix::sys::signal::Signal) {
        self.exits_mut().relayed = Some(signal);
    }

    fn record_exit(&mut self, pid: i32, status: ExitStatus, kind: ExitKind, ran: Duration) {
        let exits = self.exits_mut();
        let relayed = exits
            .relayed
            .filter(|signal| status == ExitStatus::Signal(*signal as i32));
        let by_kelpie = exits.stopping || relayed.is_some();
        if let (Some(signal), false) = (relayed, exits.stopping) {
            exits.reason = Some(format!(
                "SIG{} relayed by `kelpie signal` or forward_signals",
                crate::signals::short_name(signal)
            ));
        }
        let kelpie_reason = exits.reason.clone().filter(|_| by_kelpie);
        let seq = self.args.output.record_exit(ExitRecord {
            seq: 0,
            at: SystemTime::now(),
            instance: self.args.index,
            pid,
            status,
            kind,
            by_kelpie,
            kelpie_reason,
            ran,
            decision: Decision::Pending,
            oom: None,
            output: Vec::new(),
        });
        let exits = self.exits_mut();
        exits.undecided = Some(seq);
        exits.last = Some(seq);
        if status == ExitStatus::Signal(libc::SIGKILL) && !by_kelpie {
            exits.oom_question = Some((seq, pid, ran));
        }
    }

    fn decide(&mut self, decision: Decision) {
        if let Some(seq) = self.exits.as_mut().and_then(|e| e.undecided.take()) {
            self.args
                .output
                .amend_exit(seq, |record| record.decision = decision);
        }
    }

    /// Asks the kernel, off the actor, whether its OOM killer sent the
    /// SIGKILL; the answer goes straight into the history and the exit
    /// counter, and to the actor for its status.
    fn check_oom(&self, myself: &ActorRef<ProgramMsg>, seq: u64, pid: i32, ran: Duration) {
        let output = self.args.output.clone();
        let metrics = self.args.metrics.clone();
        let me = myself.clone();
        let program = self.args.config.name.clone();
        let instance = self.args.index;
        let name = self.name();
        let killed = ExitStatus::Signal(libc::SIGKILL);
        let answer = Box::new(move |oom: Option<Oom>| {
            let Some(oom) = oom else {
                metrics.program_exited(&program, ExitKind::Signal, killed);
                return;
            };
            metrics.program_exited(&program, ExitKind::Oom, killed);
            let _ = me.cast(ProgramMsg::OomKilled { pid });
            // Into the history before the log line, which tests wait for.
            output.amend_exit(seq, |record| record.oom = Some(oom.clone()));
            tracing::warn!(
                event = "program_oom_killed",
                program = %program,
                instance,
                pid,
                evidence = oom.source.as_str(),
                memcg = oom.memcg.as_deref(),
                "{name} (pid {pid}) was killed by the kernel OOM killer{}",
                oom.memcg
                    .as_deref()
                    .map(|cg| format!(" (memory cgroup {cg} at its limit)"))
                    .unwrap_or_default()
            );
        });
        self.launcher.check_oom(pid, ran, answer);
    }
}

//! What an instance actor tells the fleet: its state after a change (with
//! what happened since its previous report) and its wish to restart when
//! a global restart budget applies. The Program actor gets a `Reports`
//! sink instead of the Supervisor's address, so the actor layer does not
//! depend on the supervisor layer above it.

use std::sync::Arc;

use crate::state::{Phase, Snapshot};
use crate::status::InstanceStatus;

/// What an instance reports as having happened since its previous report.
/// The core reacts to these, never to differences between snapshots: a
/// slot taken over by a replacement or a new actor starts its counters
/// anew, and a difference would read as a crash or a lost restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceEvent {
    /// An unplanned end of a run that the policy restarts, or a failure:
    /// what supervision groups react to.
    Crashed,
    /// It restarted `count` times (for `kelpie_restarts_total`).
    Restarted { count: u64 },
    /// It entered `failed`.
    Failed,
}

impl InstanceEvent {
    /// The events between two consecutive snapshots of one instance, as
    /// its owner (the Program actor) publishes them.
    pub fn between(previous: Option<&Snapshot>, next: &Snapshot) -> Vec<InstanceEvent> {
        let (crashes, restarts, failed) = previous
            .map(|p| (p.crashes, p.restarts, p.phase == Phase::Failed))
            .unwrap_or((0, 0, false));
        let mut events = Vec::new();
        if next.crashes > crashes {
            events.push(InstanceEvent::Crashed);
        }
        if next.restarts > restarts {
            events.push(InstanceEvent::Restarted {
                count: next.restarts - restarts,
            });
        }
        if next.phase == Phase::Failed && !failed {
            events.push(InstanceEvent::Failed);
        }
        events
    }
}

/// Which instance actor is reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reporter {
    pub program: String,
    pub index: u32,
    /// Unique per actor ever spawned.
    pub incarnation: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceReport {
    Changed {
        from: Reporter,
        /// Shown on the board; decisions use `events`.
        status: InstanceStatus,
        events: Vec<InstanceEvent>,
    },
    /// The backoff is over; the restart waits for the budget's grant.
    RestartWanted { from: Reporter },
}

/// Where an instance actor sends its reports.
pub type Reports = Arc<dyn Fn(InstanceReport) + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(phase: Phase, crashes: u64, restarts: u64) -> Snapshot {
        Snapshot {
            phase,
            crashes,
            restarts,
            ..Snapshot::initial()
        }
    }

    #[test]
    fn events_are_what_changed_between_two_snapshots() {
        let running = snapshot(Phase::Running, 0, 0);
        let backoff = snapshot(Phase::Backoff, 1, 0);
        let restarted = snapshot(Phase::Starting, 1, 1);
        let failed = snapshot(Phase::Failed, 2, 1);
        let table: [(Option<&Snapshot>, &Snapshot, &[InstanceEvent]); 6] = [
            (None, &running, &[]),
            (Some(&running), &running, &[]),
            (Some(&running), &backoff, &[InstanceEvent::Crashed]),
            (
                Some(&backoff),
                &restarted,
                &[InstanceEvent::Restarted { count: 1 }],
            ),
            (
                Some(&restarted),
                &failed,
                &[InstanceEvent::Crashed, InstanceEvent::Failed],
            ),
            // Still failed: nothing new.
            (Some(&failed), &failed, &[]),
        ];
        for (row, (previous, next, expected)) in table.iter().enumerate() {
            assert_eq!(
                InstanceEvent::between(*previous, next),
                *expected,
                "row {row}"
            );
        }
    }
}

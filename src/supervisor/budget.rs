//! The global restart budget (`restart_budget = { max, per }`): all
//! programs together restart at most `max` times in any window of `per`.
//! A restart over the budget is not dropped: it waits (its instance stays
//! in `backoff`, reason "restart budget exhausted") in a queue, and queued
//! restarts are granted in the order they asked as grants age out of the
//! window. A crash storm therefore costs `max` restarts per `per`, and
//! every program is restarted once the storm is over.
//!
//! `Budget` is pure bookkeeping over monotonic instants; the fleet core
//! owns it, answers `RestartWanted`, and asks for a timer for the next
//! refill only while a grant is in the window (an idle supervisor sets
//! none).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::core::{Command, Fleet, FleetAction, FleetTimer, Incarnation, MetricUpdate};
use crate::config::RestartBudget;

/// Who asked: the program and the asking actor's incarnation.
pub(super) type Asker = (String, Incarnation);

#[derive(Debug)]
pub(super) struct Budget {
    max: u32,
    per: Duration,
    /// When each restart in the current window was granted, oldest first.
    grants: VecDeque<Instant>,
    waiting: VecDeque<Asker>,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decision {
    Grant,
    /// Queued; `first` when the queue was empty (a new exhaustion).
    Wait {
        first: bool,
    },
}

impl Budget {
    pub fn new(config: RestartBudget) -> Self {
        Self {
            max: config.max,
            per: config.per,
            grants: VecDeque::new(),
            waiting: VecDeque::new(),
        }
    }

    /// Takes a new size, keeping the grants in the window and the queue.
    pub fn resize(&mut self, config: RestartBudget) {
        self.max = config.max;
        self.per = config.per;
    }

    fn expire(&mut self, now: Instant) {
        while self
            .grants
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.per)
        {
            self.grants.pop_front();
        }
    }

    /// Restarts allowed right now.
    pub fn available(&mut self, now: Instant) -> u64 {
        self.expire(now);
        u64::from(self.max).saturating_sub(self.grants.len() as u64)
    }

    /// A restart is wanted. Earlier waiters go first.
    pub fn request(&mut self, now: Instant, asker: Asker) -> Decision {
        if self.waiting.is_empty() && self.available(now) > 0 {
            self.grants.push_back(now);
            return Decision::Grant;
        }
        let first = self.waiting.is_empty();
        if !self.waiting.contains(&asker) {
            self.waiting.push_back(asker);
        }
        Decision::Wait { first }
    }

    /// Grants as many waiting restarts as the window allows now, in order.
    pub fn refill(&mut self, now: Instant) -> Vec<Asker> {
        let mut granted = Vec::new();
        while !self.waiting.is_empty() && self.available(now) > 0 {
            if let Some(asker) = self.waiting.pop_front() {
                self.grants.push_back(now);
                granted.push(asker);
            }
        }
        granted
    }

    /// Everyone waiting, for when the budget is removed by a reload.
    pub fn drain(&mut self) -> Vec<Asker> {
        self.waiting.drain(..).collect()
    }

    /// When the oldest grant leaves the window (a restart becomes
    /// available again); `None` when the window is empty.
    pub fn next_refill(&self) -> Option<Instant> {
        self.grants.front().map(|t| *t + self.per)
    }
}

impl Fleet {
    pub(super) fn on_restart_wanted(&mut self, program: String, incarnation: Incarnation) {
        let now = self.now;
        let Some(budget) = self.budget.as_mut() else {
            // No budget (a reload removed it): restart at once.
            self.grant(&program, incarnation);
            return;
        };
        let (max, per) = (budget.max, budget.per);
        match budget.request(now, (program.clone(), incarnation)) {
            Decision::Grant => {
                self.grant(&program, incarnation);
            }
            Decision::Wait { first } => {
                self.out
                    .push(FleetAction::Metric(MetricUpdate::RestartDelayed {
                        program: program.clone(),
                    }));
                if self.holds(&program, incarnation) {
                    self.out.push(FleetAction::Send {
                        to: incarnation,
                        command: Command::BudgetExhausted,
                    });
                }
                if first {
                    tracing::warn!(
                        event = "restart_budget_exhausted",
                        program = %program,
                        max,
                        per_ms = per.as_millis() as u64,
                        "restart budget exhausted ({max} restarts per {}); further restarts wait their turn",
                        humantime::format_duration(per)
                    );
                }
            }
        }
        self.arm_refill();
    }

    pub(super) fn on_budget_refill(&mut self) {
        self.refill_armed = None;
        let now = self.now;
        let granted = match self.budget.as_mut() {
            Some(budget) => budget.refill(now),
            None => return,
        };
        for (program, incarnation) in granted {
            self.grant(&program, incarnation);
        }
        self.arm_refill();
    }

    /// Applies a (re)loaded `restart_budget`.
    pub(super) fn set_budget(&mut self, config: Option<RestartBudget>) {
        let now = self.now;
        match (self.budget.as_mut(), config) {
            (Some(budget), Some(config)) => {
                budget.resize(config);
                // A larger budget lets waiters go now, not at the next refill.
                let granted = budget.refill(now);
                for (program, incarnation) in granted {
                    self.grant(&program, incarnation);
                }
            }
            (None, Some(config)) => self.budget = Some(Budget::new(config)),
            (Some(budget), None) => {
                let waiting = budget.drain();
                self.budget = None;
                for (program, incarnation) in waiting {
                    self.grant(&program, incarnation);
                }
            }
            (None, None) => {}
        }
        self.arm_refill();
    }

    /// Updates the gauge and makes sure a timer fires when the oldest
    /// grant leaves the window (only while there is one).
    fn arm_refill(&mut self) {
        let now = self.now;
        let Some(budget) = self.budget.as_mut() else {
            self.out
                .push(FleetAction::Metric(MetricUpdate::BudgetAvailable(None)));
            return;
        };
        let available = budget.available(now);
        self.out
            .push(FleetAction::Metric(MetricUpdate::BudgetAvailable(Some(
                available,
            ))));
        let Some(at) = budget.next_refill() else {
            return;
        };
        if self.refill_armed.is_some_and(|armed| armed <= at) {
            return;
        }
        self.refill_armed = Some(at);
        self.out.push(FleetAction::After {
            delay: at.saturating_duration_since(now),
            timer: FleetTimer::BudgetRefill,
        });
    }

    fn grant(&mut self, program: &str, incarnation: Incarnation) {
        if self.holds(program, incarnation) {
            self.out.push(FleetAction::Send {
                to: incarnation,
                command: Command::RestartGranted,
            });
        }
    }

    /// Whether the live actor `incarnation` belongs to `program`, wherever
    /// it sits (slot, retiring, roll replacement).
    fn holds(&self, program: &str, incarnation: Incarnation) -> bool {
        self.entries
            .iter()
            .chain(&self.retired)
            .filter(|e| e.name() == program)
            .any(|e| e.holds(incarnation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(max: u32, per_ms: u64) -> Budget {
        Budget::new(RestartBudget {
            max,
            per: Duration::from_millis(per_ms),
        })
    }

    fn asker(n: u64) -> Asker {
        (format!("p{n}"), n)
    }

    #[test]
    fn grants_up_to_max_per_window_then_queues_in_order() {
        let start = Instant::now();
        let mut b = budget(2, 1000);
        assert_eq!(b.request(start, asker(1)), Decision::Grant);
        assert_eq!(b.request(start, asker(2)), Decision::Grant);
        assert_eq!(b.request(start, asker(3)), Decision::Wait { first: true });
        assert_eq!(b.request(start, asker(4)), Decision::Wait { first: false });
        assert_eq!(b.request(start, asker(3)), Decision::Wait { first: false });
        assert_eq!(b.available(start), 0);
        assert_eq!(b.next_refill(), Some(start + Duration::from_millis(1000)));
        // Nothing ages out early.
        assert!(b.refill(start + Duration::from_millis(999)).is_empty());
        // Both grants leave the window: both waiters, in order, once each.
        let later = start + Duration::from_millis(1000);
        assert_eq!(b.refill(later), vec![asker(3), asker(4)]);
        assert_eq!(b.available(later), 0);
        assert!(b.refill(later).is_empty());
    }

    #[test]
    fn a_newcomer_never_overtakes_a_waiter() {
        let start = Instant::now();
        let mut b = budget(1, 100);
        assert_eq!(b.request(start, asker(1)), Decision::Grant);
        assert_eq!(b.request(start, asker(2)), Decision::Wait { first: true });
        // The window has room again, but asker 2 waited first.
        let later = start + Duration::from_millis(100);
        assert_eq!(b.request(later, asker(3)), Decision::Wait { first: false });
        assert_eq!(b.refill(later), vec![asker(2)]);
        let after = later + Duration::from_millis(100);
        assert_eq!(b.refill(after), vec![asker(3)]);
    }

    #[test]
    fn the_rate_over_a_long_storm_is_max_per_window() {
        // 20 programs crash every 100 ms for 5 s, budget 5 per second.
        let start = Instant::now();
        let mut b = budget(5, 1000);
        let mut granted = 0;
        for tick in 0..50u64 {
            let now = start + Duration::from_millis(100 * tick);
            granted += b.refill(now).len();
            for p in 0..20 {
                if b.request(now, asker(p)) == Decision::Grant {
                    granted += 1;
                }
            }
        }
        assert_eq!(granted, 25);
        // When the storm stops, everyone still waiting gets a turn.
        let mut now = start + Duration::from_secs(5);
        let mut rest = 0;
        while let Some(at) = b.next_refill() {
            now = now.max(at);
            let batch = b.refill(now);
            if batch.is_empty() && b.waiting.is_empty() {
                break;
            }
            rest += batch.len();
        }
        assert_eq!(rest, 20, "each waiting program restarts once");
    }
}

//! What a program is (a long-running service or a run-to-completion job)
//! and when it is restarted. Plain vocabulary: the config parses into it,
//! the lifecycle decides with it, and neither has to know the other.
//!
//! The two live together because the kind changes what a policy means: a
//! service under `always` restarts after every exit, a oneshot under
//! `always` only after a failure (see `state`).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramKind {
    Service,
    Oneshot,
}

/// Also `kelpie exec --restart`, where the command is a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RestartPolicy {
    /// Restart after every exit (a oneshot: after every failure).
    Always,
    /// Restart after an exit that is not a success (a signal counts as
    /// failure).
    OnFailure,
    /// Never restart: the exit is final.
    Never,
}

impl RestartPolicy {
    /// Whether an unplanned end of a run of a `kind` program is answered
    /// with a restart. `success`: the run ended in one of its success codes.
    pub fn restarts(self, kind: ProgramKind, success: bool) -> bool {
        match (kind, self) {
            (ProgramKind::Service, RestartPolicy::Always) => true,
            (_, RestartPolicy::OnFailure) => !success,
            (_, RestartPolicy::Never) => false,
            (ProgramKind::Oneshot, RestartPolicy::Always) => !success,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_decisions_by_kind_policy_and_outcome() {
        use ProgramKind::*;
        use RestartPolicy::*;
        // (kind, policy, restarts after a success, after a failure)
        let table = [
            (Service, Always, true, true),
            (Service, OnFailure, false, true),
            (Service, Never, false, false),
            (Oneshot, Always, false, true),
            (Oneshot, OnFailure, false, true),
            (Oneshot, Never, false, false),
        ];
        for (kind, policy, after_success, after_failure) in table {
            assert_eq!(
                (policy.restarts(kind, true), policy.restarts(kind, false)),
                (after_success, after_failure),
                "{kind:?} {policy:?}"
            );
        }
    }
}

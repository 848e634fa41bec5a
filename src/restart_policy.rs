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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

//! Deadlines: every wait names what it waited for when it times out.

use std::time::{Duration, Instant};

pub fn secs(n: f64) -> Duration {
    Duration::from_secs_f64(n)
}

/// Waits until `condition` holds, checking every few milliseconds, for
/// states that announce themselves nowhere but /proc. Panics naming `what`
/// at the deadline.
pub fn wait_until<T>(what: &str, timeout: Duration, mut condition: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

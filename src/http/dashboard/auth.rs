//! Who may act through the dashboard: the bearer token of
//! `control_token_file`, compared in constant time, and a per-client cap on
//! failed attempts so the token cannot be guessed at network speed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Failed attempts a client may make within [`WINDOW`]; the next ones get
/// a 429 until the window ends.
pub(crate) const MAX_FAILURES: u32 = 10;
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Clients tracked at once. A flood of addresses (IPv6 makes that cheap)
/// evicts the oldest windows instead of growing the table.
const MAX_CLIENTS: usize = 4096;

/// `a == b` without an early exit: the time taken depends on the lengths
/// only, never on where the first differing byte is.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    // Keep the optimizer from turning the loop into an early-exit compare.
    std::hint::black_box(diff) == 0
}

/// The token of an `Authorization: Bearer TOKEN` header value.
pub(crate) fn bearer(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = value[7..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    since: Instant,
    count: u32,
}

/// Failed attempts per client address, in fixed windows.
#[derive(Default)]
pub(crate) struct FailureLimiter {
    clients: Mutex<HashMap<IpAddr, Failures>>,
}

impl FailureLimiter {
    /// `Some(seconds until it may try again)` while `ip` is locked out.
    pub(crate) fn locked_out(&self, ip: IpAddr, now: Instant) -> Option<u64> {
        let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let failures = clients.get(&ip)?;
        let ends = failures.since + WINDOW;
        (failures.count >= MAX_FAILURES && now < ends)
            .then(|| ends.duration_since(now).as_secs().max(1))
    }

    /// Counts one failed attempt of `ip`; returns its count in the window.
    pub(crate) fn fail(&self, ip: IpAddr, now: Instant) -> u32 {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if !clients.contains_key(&ip) && clients.len() >= MAX_CLIENTS {
            clients.retain(|_, f| now.duration_since(f.since) < WINDOW);
            if clients.len() >= MAX_CLIENTS {
                if let Some(oldest) = clients
                    .iter()
                    .min_by_key(|(_, f)| f.since)
                    .map(|(ip, _)| *ip)
                {
                    clients.remove(&oldest);
                }
            }
        }
        let entry = clients.entry(ip).or_insert(Failures {
            since: now,
            count: 0,
        });
        if now.duration_since(entry.since) >= WINDOW {
            *entry = Failures {
                since: now,
                count: 0,
            };
        }
        entry.count = entry.count.saturating_add(1);
        entry.count
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.clients.lock().map(|c| c.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn compares_whole_tokens() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
        // A token that is a prefix of the other (padding with zeros must
        // not make them equal).
        assert!(!constant_time_eq(b"ab\0", b"ab"));
    }

    #[test]
    fn reads_bearer_headers() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"Bear"), None);
    }

    #[test]
    fn locks_out_after_the_failures_of_a_window_and_forgives_after_it() {
        let limiter = FailureLimiter::default();
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let start = Instant::now();
        for n in 1..=MAX_FAILURES {
            assert_eq!(limiter.locked_out(ip, start), None, "before failure {n}");
            assert_eq!(limiter.fail(ip, start), n);
        }
        assert_eq!(limiter.locked_out(ip, start), Some(60));
        assert_eq!(limiter.locked_out(other, start), None);
        let later = start + Duration::from_secs(59);
        assert_eq!(limiter.locked_out(ip, later), Some(1));
        assert_eq!(limiter.locked_out(ip, start + WINDOW), None);
        assert_eq!(limiter.fail(ip, start + WINDOW), 1);
    }

    #[test]
    fn the_client_table_is_bounded() {
        let limiter = FailureLimiter::default();
        let now = Instant::now();
        for n in 0..(MAX_CLIENTS as u32 + 100) {
            limiter.fail(IpAddr::V4(Ipv4Addr::from(n)), now);
        }
        assert_eq!(limiter.len(), MAX_CLIENTS);
    }
}

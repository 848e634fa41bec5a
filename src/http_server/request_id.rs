//! `X-Request-Id`: echoed when the client's is sane, generated otherwise.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::SystemTime;

use hyper::header::{HeaderMap, HeaderName, HeaderValue};

pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub(crate) struct RequestId {
    pub(crate) text: String,
    pub(crate) header: HeaderValue,
}

impl RequestId {
    /// A fresh id, for a reply written before any request was read.
    pub(crate) fn generate() -> Self {
        let text = generate_request_id();
        let header = HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("0"));
        Self { text, header }
    }
}

/// The client's `X-Request-Id` when it is sane (1 to 128 visible ASCII
/// characters, so it is safe to log and to echo), else a generated one.
pub(crate) fn request_id(headers: &HeaderMap) -> RequestId {
    if let Some(value) = headers.get(REQUEST_ID) {
        let bytes = value.as_bytes();
        if (1..=128).contains(&bytes.len()) && bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
            if let Ok(text) = value.to_str() {
                return RequestId {
                    text: text.to_string(),
                    header: value.clone(),
                };
            }
        }
    }
    RequestId::generate()
}

/// 16 hex digits, unique within this process: a counter run through the
/// splitmix64 finalizer (a bijection, so distinct counters never collide),
/// offset by a per-process seed from the clock and pid so ids differ
/// between kelpie runs too.
fn generate_request_id() -> String {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        nanos ^ (u64::from(std::process::id()) << 40)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:016x}",
        splitmix64(seed.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
    )
}

fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_echoed_only_when_sane() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_static("abc-123_XYZ"));
        assert_eq!(request_id(&headers).text, "abc-123_XYZ");
        for bad in ["", "has space", &"x".repeat(129)] {
            headers.insert(REQUEST_ID, HeaderValue::from_str(bad).unwrap());
            let id = request_id(&headers).text;
            assert_ne!(id, bad);
            assert_eq!(id.len(), 16, "generated instead of {bad:?}");
        }
        headers.insert(REQUEST_ID, HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        assert_eq!(request_id(&headers).text.len(), 16);
        headers.insert(REQUEST_ID, HeaderValue::from_str(&"y".repeat(128)).unwrap());
        assert_eq!(request_id(&headers).text, "y".repeat(128));
    }

    #[test]
    fn generated_request_ids_are_distinct_hex() {
        let ids: std::collections::HashSet<String> =
            (0..10_000).map(|_| generate_request_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids
            .iter()
            .all(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())));
    }
}

//! Pure restart arithmetic: the exponential backoff curve with jitter, and
//! the restart-intensity window. No clocks are read here; callers pass `now`.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffConfig {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
    /// Fraction of the delay added or removed at random (0.2 = ±20 %).
    pub jitter: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

impl Eq for BackoffConfig {}

impl BackoffConfig {
    /// The un-jittered delay before restart number `attempt` (0-based):
    /// `initial * multiplier^attempt`, capped at `max`.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        // 0 × multiplier^k stays 0; the float path would reach 0 × ∞ = NaN
        // after ~1024 attempts and jump to `max`.
        if self.initial.is_zero() {
            return Duration::ZERO;
        }
        let initial = self.initial.as_secs_f64();
        let cap = self.max.as_secs_f64();
        let exponent = i32::try_from(attempt).unwrap_or(i32::MAX);
        let grown = initial * self.multiplier.powi(exponent);
        if !grown.is_finite() || grown >= cap {
            self.max
        } else {
            Duration::from_secs_f64(grown)
        }
    }

    /// The delay with jitter applied. `unit` is a sample in `[-1, 1]`. The
    /// result never exceeds `max`, so `max` is a true upper bound operators
    /// can rely on.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let base = self.base_delay(attempt).as_secs_f64();
        let factor = 1.0 + self.jitter * unit.clamp(-1.0, 1.0);
        let jittered = (base * factor).clamp(0.0, self.max.as_secs_f64());
        Duration::from_secs_f64(jittered)
    }
}

/// Counts restarts inside a sliding window (OTP's restart intensity).
#[derive(Debug, Clone, Default)]
pub struct RestartWindow {
    restarts: VecDeque<Instant>,
}

impl RestartWindow {
    /// Would one more restart at `now` stay within `max` restarts per
    /// `window`? Old entries are dropped as a side effect.
    pub fn allows(&mut self, now: Instant, max: u32, window: Duration) -> bool {
        while let Some(&oldest) = self.restarts.front() {
            if now.saturating_duration_since(oldest) >= window {
                self.restarts.pop_front();
            } else {
                break;
            }
        }
        self.restarts.len() < max as usize
    }

    pub fn record(&mut self, now: Instant) {
        self.restarts.push_back(now);
    }

    pub fn clear(&mut self) {
        self.restarts.clear();
    }

    pub fn len(&self) -> usize {
        self.restarts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.restarts.is_empty()
    }
}

/// A small deterministic generator for jitter (SplitMix64). Seeded per
/// instance so that instances that crash together do not restart together.
#[derive(Debug, Clone)]
pub struct Jitter {
    state: u64,
}

impl Jitter {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A seed that differs between instances and between runs.
    pub fn seed_from(name: &str) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in name.bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        hash ^ nanos ^ u64::from(std::process::id())
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform sample in `[-1, 1]`.
    pub fn unit(&mut self) -> f64 {
        let fraction = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        fraction * 2.0 - 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_initial_delay_stays_zero_forever() {
        let config = BackoffConfig {
            initial: Duration::ZERO,
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.2,
        };
        for attempt in [0, 1, 1023, 1024, 5000, u32::MAX] {
            assert_eq!(
                config.base_delay(attempt),
                Duration::ZERO,
                "attempt {attempt}"
            );
            assert_eq!(
                config.delay(attempt, 1.0),
                Duration::ZERO,
                "attempt {attempt}"
            );
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn grows_geometrically_then_caps() {
        let cfg = BackoffConfig {
            initial: ms(100),
            max: ms(1000),
            multiplier: 2.0,
            jitter: 0.0,
        };
        let delays: Vec<Duration> = (0..7).map(|k| cfg.delay(k, 0.7)).collect();
        assert_eq!(
            delays,
            vec![
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1000),
                ms(1000),
                ms(1000)
            ]
        );
    }

    #[test]
    fn huge_attempts_do_not_overflow() {
        let cfg = BackoffConfig::default();
        assert_eq!(cfg.base_delay(u32::MAX), cfg.max);
        assert_eq!(cfg.base_delay(5000), cfg.max);
    }

    #[test]
    fn zero_initial_means_immediate_restart() {
        let cfg = BackoffConfig {
            initial: Duration::ZERO,
            ..BackoffConfig::default()
        };
        for k in 0..10 {
            assert_eq!(cfg.delay(k, 1.0), Duration::ZERO);
        }
    }

    #[test]
    fn jitter_stays_within_bounds_and_under_max() {
        let cfg = BackoffConfig {
            initial: ms(1000),
            max: ms(4000),
            multiplier: 2.0,
            jitter: 0.2,
        };
        assert_eq!(cfg.delay(0, -1.0), ms(800));
        assert_eq!(cfg.delay(0, 1.0), ms(1200));
        // At the cap, positive jitter is clipped so max stays a bound.
        assert_eq!(cfg.delay(5, 1.0), ms(4000));
        assert_eq!(cfg.delay(5, -1.0), ms(3200));
        let mut rng = Jitter::new(7);
        let mut low = false;
        let mut high = false;
        for _ in 0..10_000 {
            let d = cfg.delay(0, rng.unit());
            assert!(d >= ms(800) && d <= ms(1200), "{d:?}");
            low |= d < ms(850);
            high |= d > ms(1150);
        }
        assert!(low && high, "samples should cover the jitter range");
    }

    #[test]
    fn jitter_samples_are_uniform_in_unit_interval() {
        let mut rng = Jitter::new(42);
        let samples: Vec<f64> = (0..20_000).map(|_| rng.unit()).collect();
        assert!(samples.iter().all(|s| (-1.0..=1.0).contains(s)));
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        assert!(mean.abs() < 0.03, "mean {mean}");
    }

    #[test]
    fn different_seeds_give_different_sequences() {
        let mut a = Jitter::new(1);
        let mut b = Jitter::new(2);
        assert_ne!(a.unit(), b.unit());
    }

    #[test]
    fn window_limits_restarts_and_forgets_old_ones() {
        let start = Instant::now();
        let window = Duration::from_secs(60);
        let mut w = RestartWindow::default();
        for i in 0..3 {
            let now = start + Duration::from_secs(i);
            assert!(w.allows(now, 3, window));
            w.record(now);
        }
        assert!(!w.allows(start + Duration::from_secs(10), 3, window));
        // The first restart (t=0) leaves the window at t=60.
        assert!(w.allows(start + Duration::from_secs(60), 3, window));
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn zero_max_restarts_allows_none() {
        let mut w = RestartWindow::default();
        assert!(!w.allows(Instant::now(), 0, Duration::from_secs(60)));
    }
}

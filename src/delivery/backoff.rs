//! How long to wait before retrying a transient failure: exponential backoff with full jitter.
//!
//! The delay before retry number `attempt + 1` is drawn uniformly from
//! `[0, min(cap, base * 2^attempt)]` ("full jitter"): the ceiling doubles with each failure up to
//! `cap`, and the randomness spreads the retries of many messages (or of several dingrelay
//! instances behind one egress IP) instead of synchronising them.
//!
//! Invariants:
//! - the delay is never more than `cap` and never more than `base * 2^attempt`;
//! - the arithmetic saturates: any `attempt` (even `u32::MAX`) and any `base` or `cap` (even
//!   [`Duration::MAX`]) give a delay within those bounds, without overflow or panic;
//! - the schedule itself lives in the outbox row (`attempts`, `next_attempt_at`), so a restart
//!   carries on from where it was; this module only computes one delay.

use std::time::Duration;

/// The first retry waits at most this long (the ceiling for `attempt` 0).
pub const DEFAULT_BASE: Duration = Duration::from_secs(2);

/// No retry waits longer than this, however many attempts failed. It bounds how long alerts
/// wait after DingTalk recovers from an outage (`scripts/outage.sh` once measured 171 s with a
/// 5-minute cap), and one attempt a minute is far below DingTalk's 20 a minute.
pub const DEFAULT_CAP: Duration = Duration::from_secs(60);

/// The delay before the next retry, after `attempt` failed attempts (0 for the first retry):
/// uniform in `[0, min(cap, base * 2^attempt)]`.
///
/// Saturating: a ceiling that would overflow is `cap`; a `cap` beyond what nanoseconds in a
/// `u64` can hold (about 584 years) is treated as that much.
pub fn retry_delay(
    attempt: u32,
    base: Duration,
    cap: Duration,
    rng: &mut impl rand::Rng,
) -> Duration {
    // `None` when `base * 2^attempt` overflows (a zero base never does).
    let exponential = match 2u32.checked_pow(attempt) {
        Some(factor) => base.checked_mul(factor),
        None if base.is_zero() => Some(Duration::ZERO),
        None => None,
    };
    let ceiling = exponential.map_or(cap, |exponential| exponential.min(cap));
    let max_nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(0..=max_nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn ceiling(attempt: u32, base: Duration, cap: Duration) -> Duration {
        // The same bound, computed independently (and slowly) for the assertion.
        let mut ceiling = base;
        for _ in 0..attempt {
            ceiling = ceiling.saturating_mul(2);
            if ceiling >= cap {
                return cap;
            }
        }
        ceiling.min(cap)
    }

    #[test]
    fn bounds_hold_for_many_attempts() {
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 0..100 {
            let bound = ceiling(attempt, DEFAULT_BASE, DEFAULT_CAP);
            for _ in 0..200 {
                let delay = retry_delay(attempt, DEFAULT_BASE, DEFAULT_CAP, &mut rng);
                assert!(delay <= bound, "attempt {attempt}: {delay:?} > {bound:?}");
                assert!(delay <= DEFAULT_CAP);
            }
        }
    }

    #[test]
    fn ceiling_doubles_until_the_cap() {
        assert_eq!(
            ceiling(0, DEFAULT_BASE, DEFAULT_CAP),
            Duration::from_secs(2)
        );
        assert_eq!(
            ceiling(3, DEFAULT_BASE, DEFAULT_CAP),
            Duration::from_secs(16)
        );
        assert_eq!(
            ceiling(4, DEFAULT_BASE, DEFAULT_CAP),
            Duration::from_secs(32)
        );
        // 64 s would pass the cap: from the sixth retry on, at most a minute.
        assert_eq!(ceiling(5, DEFAULT_BASE, DEFAULT_CAP), DEFAULT_CAP);
        assert_eq!(DEFAULT_CAP, Duration::from_secs(60));
        assert_eq!(
            ceiling(7, DEFAULT_BASE, Duration::from_secs(300)),
            Duration::from_secs(256)
        );
        // Late attempts use the whole [0, cap] range: some delays come close to the cap.
        let mut rng = StdRng::seed_from_u64(1);
        let longest = (0..1000)
            .map(|_| retry_delay(50, DEFAULT_BASE, DEFAULT_CAP, &mut rng))
            .max()
            .unwrap_or_default();
        assert!(longest > DEFAULT_CAP * 9 / 10, "{longest:?}");
        assert!(longest <= DEFAULT_CAP);
    }

    #[test]
    fn delays_spread_over_the_range() {
        let mut rng = StdRng::seed_from_u64(42);
        let attempt = 4; // ceiling 32 s
        let delays: Vec<Duration> = (0..1000)
            .map(|_| retry_delay(attempt, DEFAULT_BASE, DEFAULT_CAP, &mut rng))
            .collect();
        let first = delays[0];
        assert!(delays.iter().any(|d| *d != first), "all delays equal");
        // Full jitter: every quarter of [0, 32 s] gets a fair share of 1000 draws.
        for quarter in 0..4u32 {
            let low = Duration::from_secs(8) * quarter;
            let high = low + Duration::from_secs(8);
            let count = delays.iter().filter(|d| **d >= low && **d < high).count();
            assert!(
                (150..350).contains(&count),
                "quarter {quarter}: {count} of 1000"
            );
        }
        let mean = delays.iter().sum::<Duration>() / 1000;
        assert!(
            mean > Duration::from_secs(14) && mean < Duration::from_secs(18),
            "{mean:?}"
        );
    }

    #[test]
    fn same_seed_same_delays() {
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..10)
                .map(|attempt| retry_delay(attempt, DEFAULT_BASE, DEFAULT_CAP, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }

    #[test]
    fn saturates_instead_of_overflowing() {
        let mut rng = StdRng::seed_from_u64(9);
        for attempt in [31, 32, 33, 63, 64, 1000, u32::MAX] {
            let delay = retry_delay(attempt, DEFAULT_BASE, DEFAULT_CAP, &mut rng);
            assert!(delay <= DEFAULT_CAP);
            let delay = retry_delay(attempt, Duration::MAX, Duration::MAX, &mut rng);
            assert!(delay <= Duration::from_nanos(u64::MAX));
        }
        let huge = retry_delay(0, Duration::MAX, Duration::from_secs(10), &mut rng);
        assert!(huge <= Duration::from_secs(10));
    }

    #[test]
    fn zero_base_or_cap_gives_zero() {
        let mut rng = StdRng::seed_from_u64(5);
        for attempt in 0..70 {
            assert_eq!(
                retry_delay(attempt, Duration::ZERO, DEFAULT_CAP, &mut rng),
                Duration::ZERO
            );
            assert_eq!(
                retry_delay(attempt, DEFAULT_BASE, Duration::ZERO, &mut rng),
                Duration::ZERO
            );
        }
    }
}

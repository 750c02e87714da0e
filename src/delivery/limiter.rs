//! Pacing one robot so that DingTalk never sees more than its rate in any 60-second window.
//!
//! DingTalk lets a robot send 20 messages a minute; the 21st is refused (errcode 130101 or
//! 410100) and the robot is then blocked for 10 minutes. The window's kind (sliding or fixed) is
//! not documented, so the limiter assumes the worst: a **sliding** window, measured by DingTalk
//! on arrival, where network delays can move messages closer together.
//!
//! # The governor trap
//!
//! governor's `Quota::per_minute(20)` is a GCRA with a burst of 20 and one cell every 3 s: it
//! lets **39** messages through in the first minute (20 at once, then one every 3 s), which
//! earns the 10-minute ban. A GCRA with burst `b` and period `p` sends at most
//! `b + ceil(W / p) - 1` cells in any window `W` (the test `per_minute_quota_is_the_trap` shows
//! it), so the quota is derived from that bound instead.
//!
//! # The quota
//!
//! For a rate of `r` messages per minute (`r >= 2`), one message is kept as a safety margin
//! (clock skew, network jitter): with burst `b` the period is `p = 60 s / (r - b)`, rounded
//! **up** to the nanosecond. That allows at most `b + ceil(60 / p) - 1 = r - 1` messages in any
//! 60 s window ([`RateLimiter::max_in_window`]) whatever `b` is, and `r - b` a minute sustained.
//! [`RateLimiter::new`] uses `b = 1`: one message every 60/19 s for `r = 20`, at most 19 in any
//! window and 19 a minute sustained, which is what drains a storm fastest. A larger burst
//! ([`RateLimiter::with_burst`]) sends the first few at once but is paid for with sustained
//! throughput (`with_burst(20, 5)`: 5 at once, then one every 4 s, 15 a minute).
//!
//! Edge rates:
//! - `r = 1` leaves no room for a margin of one message: the limiter sends one message per 61 s
//!   (burst 1), i.e. at most 1 in any 60 s window, with one second of margin instead.
//! - `r = 0` would never send anything, which would lose messages silently; it is treated as
//!   `r = 1`. The configuration refuses anything below 2 (`rate_per_minute` must be at least 2,
//!   so that one below it still sends), so the operator learns about it; this clamp only keeps
//!   the limiter total.
//!
//! # Time
//!
//! The limiter's clock is tokio's (`tokio::time::Instant`), so `tokio::time::pause()` and
//! `advance()` drive it and tests run ten minutes of traffic in no real time. governor's own
//! `until_ready` sleeps on a timer tokio cannot see, so it is never used: [`RateLimiter::check`]
//! asks governor, and [`RateLimiter::until_ready`] sleeps with `tokio::time::sleep`.
//!
//! # Restarts
//!
//! A new limiter has its whole burst available. After a restart the outbox knows how many
//! requests went out in the last 60 s; [`RateLimiter::preconsume`] counts them as if they had
//! all just been sent, so a restart loop cannot multiply the rate.
//!
//! One limiter per robot and one worker per robot: governor does not serve concurrent waiters in
//! order, and nothing here needs it to.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use governor::Quota;
use governor::clock::Clock as GovernorClock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use tokio::time::Instant;

/// The window DingTalk counts messages in.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The period used for a rate of 1 (or 0) per minute: one message per 61 s.
const SINGLE_PERIOD: Duration = Duration::from_secs(61);

/// governor's clock, reading tokio's: nanoseconds since the limiter was made.
///
/// governor's [`Nanos`] is already a `governor::clock::Reference` (ordered, saturating,
/// `Add<Nanos>`), so it serves as the instant type; unlike `tokio::time::Instant + Duration` its
/// arithmetic cannot panic on overflow.
#[derive(Debug, Clone, Copy)]
struct TokioClock {
    origin: Instant,
}

impl TokioClock {
    fn new() -> TokioClock {
        TokioClock {
            origin: Instant::now(),
        }
    }
}

impl GovernorClock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }
}

type Gcra = governor::RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>;

/// Paces one robot: at most [`max_in_window`](RateLimiter::max_in_window) messages in any 60 s
/// window. See the module documentation for the quota and why.
pub struct RateLimiter {
    rate_per_minute: u32,
    burst: u32,
    period: Duration,
    clock: TokioClock,
    gcra: Gcra,
    /// Set by [`preconsume`](RateLimiter::preconsume) when more than a burst went out before a
    /// restart: nothing is allowed before this instant, then the GCRA starts with its full burst.
    blocked_until: Mutex<Option<Instant>>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("rate_per_minute", &self.rate_per_minute)
            .field("burst", &self.burst)
            .field("period", &self.period)
            .field("max_in_window", &self.max_in_window())
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A limiter for a robot allowed `rate_per_minute` messages a minute by DingTalk, without a
    /// burst: one message every `60 s / (rate - 1)`, so at most `rate - 1` in any 60 s window and
    /// `rate - 1` a minute sustained (a burst would be paid for with sustained throughput, which
    /// is what drains a storm). A rate of 1 sends one message per 61 s; 0 is treated as 1 (see
    /// the module documentation).
    pub fn new(rate_per_minute: u32) -> RateLimiter {
        RateLimiter::with_burst(rate_per_minute, 1)
    }

    /// Like [`new`](RateLimiter::new) with a chosen burst, clamped to `1..=rate - 1` (1 for a
    /// rate of 0 or 1). The period is `60 s / (rate - burst)`, so any burst keeps the window at
    /// `rate - 1` at most, and the long-run rate is `rate - burst` a minute.
    pub fn with_burst(rate_per_minute: u32, burst: u32) -> RateLimiter {
        let rate = rate_per_minute.max(1);
        let (burst, period) = if rate == 1 {
            (1, SINGLE_PERIOD)
        } else {
            let burst = burst.clamp(1, rate - 1);
            (burst, period_for(rate - burst))
        };
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_minute(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        let clock = TokioClock::new();
        RateLimiter {
            rate_per_minute: rate,
            burst,
            period,
            clock,
            gcra: governor::RateLimiter::direct_with_clock(quota, clock),
            blocked_until: Mutex::new(None),
        }
    }

    /// Takes one permit now, or says how long to wait before asking again. A permit taken is a
    /// message sent: ask only when about to send.
    ///
    /// # Errors
    ///
    /// The time to wait (never zero) when no permit is available now.
    pub fn check(&self) -> Result<(), Duration> {
        let now = Instant::now();
        {
            let mut blocked = self
                .blocked_until
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(until) = *blocked {
                if now < until {
                    return Err(until - now);
                }
                *blocked = None;
            }
        }
        self.gcra.check().map_err(|not_until| {
            not_until
                .wait_time_from(self.clock.now())
                .max(Duration::from_millis(1))
        })
    }

    /// Waits (on tokio's clock) until a permit is available, and takes it.
    ///
    /// Cancel-safe: a permit is only taken when this returns, so dropping the future (e.g. in a
    /// `select!` with shutdown) takes nothing.
    pub async fn until_ready(&self) {
        loop {
            match self.check() {
                Ok(()) => return,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// Counts `n` requests that went out in the last 60 s (before a restart) as if they had
    /// all been sent just now. Meant for a fresh limiter; it can only delay permits, never allow
    /// more.
    ///
    /// Up to a burst, the cells are taken from the GCRA (exactly the state it would have had,
    /// had they gone through it now). Beyond a burst, nothing is allowed for
    /// `min(n * period, 60 s)`, after which the full burst is available again: any window that
    /// still holds the `n` then holds at most `max_in_window - n` new messages.
    pub fn preconsume(&self, n: usize) {
        if n == 0 {
            return;
        }
        if n <= self.burst as usize && (0..n).all(|_| self.gcra.check().is_ok()) {
            return;
        }
        let cells = u32::try_from(n).unwrap_or(u32::MAX);
        let wait = self.period.saturating_mul(cells).min(WINDOW);
        let until = Instant::now() + wait;
        let mut blocked = self
            .blocked_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *blocked = Some(blocked.map_or(until, |current| current.max(until)));
    }

    /// The most messages this limiter lets through in any 60 s window: `rate - 1` for a rate of
    /// 2 or more, 1 for a rate of 1. Computed from the quota (`burst + ceil(60 s / period) - 1`).
    pub fn max_in_window(&self) -> u32 {
        let window = WINDOW.as_nanos();
        let period = self.period.as_nanos().max(1);
        let per_window = u32::try_from(window.div_ceil(period)).unwrap_or(u32::MAX);
        self.burst.saturating_add(per_window).saturating_sub(1)
    }

    /// The rate this limiter was made for (the config demands at least 2; 0 is taken as 1).
    pub fn rate_per_minute(&self) -> u32 {
        self.rate_per_minute
    }

    /// How many messages can go at once after a quiet minute.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// One permit per period in the long run: a backlog of `n` takes about `n * period` to
    /// drain (after the burst).
    pub fn period(&self) -> Duration {
        self.period
    }
}

/// `60 s / n`, rounded up to the nanosecond, so that `ceil(60 s / period) <= n`.
fn period_for(n: u32) -> Duration {
    let window = u64::try_from(WINDOW.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(window.div_ceil(u64::from(n.max(1))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs continuous demand for `total` and returns each permit's time since the start.
    async fn permits(limiter: &RateLimiter, total: Duration) -> Vec<Duration> {
        let start = Instant::now();
        let mut times = Vec::new();
        loop {
            limiter.until_ready().await;
            let at = start.elapsed();
            if at >= total {
                return times;
            }
            times.push(at);
        }
    }

    /// The most permits in any half-open window `[s, s + 60 s)`. The maximum over all `s` is
    /// reached at a window starting at a permit (sliding such a window right up to the next
    /// permit loses nothing), so every permit's time is tried as a start.
    fn max_in_any_window(times: &[Duration]) -> usize {
        times
            .iter()
            .map(|&start| {
                times
                    .iter()
                    .filter(|&&t| t >= start && t < start + WINDOW)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    /// The same for closed windows `[s, s + 60 s]` (a DingTalk that counts both ends).
    fn max_in_any_closed_window(times: &[Duration]) -> usize {
        times
            .iter()
            .map(|&start| {
                times
                    .iter()
                    .filter(|&&t| t >= start && t <= start + WINDOW)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    const TEN_MINUTES: Duration = Duration::from_secs(600);

    #[tokio::test(start_paused = true)]
    async fn no_window_holds_more_than_rate_minus_one() {
        for rate in [20u32, 5, 2, 60, 3, 4, 7, 30, 100] {
            let limiter = RateLimiter::new(rate);
            assert_eq!(limiter.max_in_window(), rate - 1, "rate {rate}");
            let times = permits(&limiter, TEN_MINUTES).await;
            let max = max_in_any_window(&times);
            let closed = max_in_any_closed_window(&times);
            eprintln!(
                "rate {rate}: burst {}, period {:?}: {} permits in 10 min, at most {max} in any \
                 [s, s+60s), {closed} in any [s, s+60s]",
                limiter.burst(),
                limiter.period(),
                times.len(),
            );
            assert!(
                max <= (rate - 1) as usize,
                "rate {rate}: {max} in one window"
            );
            // The bound is tight: the limiter does use what it promises.
            assert_eq!(max, (rate - 1) as usize, "rate {rate}");
            // Even a DingTalk counting both ends of the window sees no more than its rate.
            assert!(
                closed <= rate as usize,
                "rate {rate}: {closed} in a closed window"
            );
            // Long-run throughput: `rate - burst` a minute (the last period may end just past
            // the ten minutes, hence one less).
            let sustained = (rate - limiter.burst()) as usize * 10 - 1;
            assert!(
                times.len() >= sustained,
                "rate {rate}: {} permits",
                times.len()
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn twenty_per_minute_is_a_burst_of_five_then_one_every_four_seconds() {
        let limiter = RateLimiter::with_burst(20, 5);
        assert_eq!(limiter.burst(), 5);
        assert_eq!(limiter.period(), Duration::from_secs(4));
        let times = permits(&limiter, Duration::from_secs(60)).await;
        let mut expected = vec![Duration::ZERO; 5];
        expected.extend((1..15).map(|k| Duration::from_secs(4 * k)));
        assert_eq!(times, expected);
        assert_eq!(times.len(), 19);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_burst_throughput_is_rate_minus_one() {
        // The alternative quota: no burst, `rate - 1` a minute sustained.
        for rate in [20u32, 5, 2, 60] {
            let limiter = RateLimiter::with_burst(rate, 1);
            assert_eq!(limiter.max_in_window(), rate - 1);
            let times = permits(&limiter, TEN_MINUTES).await;
            assert!(
                max_in_any_window(&times) <= (rate - 1) as usize,
                "rate {rate}"
            );
            assert!(
                times.len() >= (rate - 1) as usize * 9,
                "rate {rate}: {} permits",
                times.len()
            );
            eprintln!(
                "with_burst({rate}, 1): {} permits in 10 min, at most {} in any window",
                times.len(),
                max_in_any_window(&times)
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn any_burst_keeps_the_window() {
        for (rate, burst) in [(20u32, 10u32), (20, 19), (20, 50), (60, 30), (2, 0)] {
            let limiter = RateLimiter::with_burst(rate, burst);
            let times = permits(&limiter, Duration::from_secs(300)).await;
            assert!(
                max_in_any_window(&times) <= (rate - 1) as usize,
                "rate {rate} burst {burst}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_per_minute_and_zero() {
        for rate in [1u32, 0] {
            let limiter = RateLimiter::new(rate);
            assert_eq!(limiter.max_in_window(), 1);
            assert_eq!(limiter.rate_per_minute(), 1);
            let times = permits(&limiter, TEN_MINUTES).await;
            assert_eq!(max_in_any_window(&times), 1);
            assert_eq!(max_in_any_closed_window(&times), 1);
            assert_eq!(times.len(), 10); // 0, 61, ..., 549 s
        }
    }

    #[tokio::test(start_paused = true)]
    async fn huge_rates_do_not_panic() {
        for rate in [u32::MAX, u32::MAX - 1, 1_000_000] {
            let limiter = RateLimiter::new(rate);
            // Below `rate - 1` when the period rounds up by a whole nanosecond.
            assert!(limiter.max_in_window() < rate);
            assert!(limiter.check().is_ok());
            limiter.preconsume(usize::MAX);
            assert!(limiter.check().is_err());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn check_says_how_long_to_wait() {
        let limiter = RateLimiter::with_burst(20, 5);
        for _ in 0..5 {
            assert_eq!(limiter.check(), Ok(()));
        }
        assert_eq!(limiter.check(), Err(Duration::from_secs(4)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(limiter.check(), Err(Duration::from_secs(3)));
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(limiter.check(), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn preconsume_after_a_restart() {
        // The outbox says 19 went out in the last minute: the next permit waits.
        let limiter = RateLimiter::with_burst(20, 5);
        limiter.preconsume(19);
        let wait = limiter.check().expect_err("must wait");
        assert_eq!(wait, WINDOW);
        let start = Instant::now();
        limiter.until_ready().await;
        assert_eq!(start.elapsed(), WINDOW);

        // Up to a burst, exactly the GCRA's state after that many sends.
        let limiter = RateLimiter::with_burst(20, 5);
        limiter.preconsume(3);
        assert_eq!(limiter.check(), Ok(()));
        assert_eq!(limiter.check(), Ok(()));
        assert_eq!(limiter.check(), Err(Duration::from_secs(4)));

        // Nothing to count: the full burst.
        let limiter = RateLimiter::with_burst(20, 5);
        limiter.preconsume(0);
        for _ in 0..5 {
            assert_eq!(limiter.check(), Ok(()));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn preconsumed_sends_count_in_every_window() {
        // The n earlier sends are put at the worst place, just before the restart, and the
        // windows are checked with them included.
        for rate in [20u32, 5, 2, 60] {
            for n in 0..=(rate as usize + 5) {
                let limiter = RateLimiter::new(rate);
                limiter.preconsume(n);
                let mut times = vec![Duration::ZERO; n];
                times.extend(permits(&limiter, Duration::from_secs(240)).await);
                let max = max_in_any_window(&times);
                assert!(
                    max <= (rate as usize - 1).max(n),
                    "rate {rate}, {n} preconsumed: {max} in one window"
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn per_minute_quota_is_the_trap() {
        // Why the quota is derived by hand: governor's obvious quota lets 39 through in the
        // first minute, and DingTalk bans the robot for 10 minutes after the 21st.
        let clock = TokioClock::new();
        let naive = governor::RateLimiter::direct_with_clock(
            Quota::per_minute(NonZeroU32::new(20).expect("nonzero")),
            clock,
        );
        let start = Instant::now();
        let mut times = Vec::new();
        while start.elapsed() < WINDOW {
            match naive.check() {
                Ok(()) => times.push(start.elapsed()),
                Err(not_until) => {
                    tokio::time::sleep(not_until.wait_time_from(clock.now())).await;
                }
            }
        }
        eprintln!("Quota::per_minute(20): {} in the first minute", times.len());
        assert_eq!(times.len(), 39);
        assert_eq!(max_in_any_window(&times), 39);
    }
}

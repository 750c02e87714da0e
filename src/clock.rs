//! The daemon's one notion of time.
//!
//! Wall-clock milliseconds (what the outbox stores: when a message was accepted, when it is due)
//! are derived from tokio's monotonic clock and a wall-clock reading taken once at start. So the
//! whole daemon runs on `tokio::time`: tests pause and advance it (`tokio::time::pause`,
//! `advance`) and every timestamp, sleep, backoff and rate window follows, with no real waiting.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// A clock: cheap to clone, shared by intake, outbox and workers.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Wall-clock milliseconds at `base`.
    base_ms: i64,
    /// The tokio instant the wall-clock reading was taken at.
    base: Instant,
}

impl Clock {
    /// A clock reading the real wall time now.
    pub fn system() -> Clock {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Clock::starting_at(ms)
    }

    /// A clock whose current wall time is `ms` (tests, with tokio's paused time).
    pub fn starting_at(ms: i64) -> Clock {
        Clock {
            base_ms: ms,
            base: Instant::now(),
        }
    }

    /// Wall-clock milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.base_ms + self.base.elapsed().as_millis() as i64
    }

    /// The current time, for templates (`now`).
    pub fn timestamp(&self) -> jiff::Timestamp {
        jiff::Timestamp::from_millisecond(self.now_ms()).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }

    /// The tokio instant at which the wall clock reads `ms`.
    pub fn instant_at(&self, ms: i64) -> Instant {
        let offset = ms - self.base_ms;
        if offset <= 0 {
            self.base
        } else {
            self.base + Duration::from_millis(offset as u64)
        }
    }

    /// Sleeps until the wall clock reads `ms` (returns at once if it already does).
    pub async fn sleep_until_ms(&self, ms: i64) {
        tokio::time::sleep_until(self.instant_at(ms)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_tokio_time() {
        let clock = Clock::starting_at(1_000_000);
        assert_eq!(clock.now_ms(), 1_000_000);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now_ms(), 1_090_000);
        clock.sleep_until_ms(1_100_000).await;
        assert_eq!(clock.now_ms(), 1_100_000);
        clock.sleep_until_ms(0).await;
        assert_eq!(clock.now_ms(), 1_100_000);
    }
}

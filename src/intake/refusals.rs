//! Logging refused webhooks without flooding the journal.
//!
//! Anyone who can reach the port can send bad requests, and one WARN line per refusal let a
//! flood fill the journal (journald then rate-limits and drops lines, useful ones with them).
//! So per source and status, the first refusal of a period (a minute in the daemon) is a WARN
//! line with its reason; later refusals of that period are DEBUG lines, and one WARN line
//! reports how many there were (with the last reason) once the period is over: at the next
//! refusal, or at the latest when [`RefusalLog::flush`] runs (the daemon calls it every period).
//! Every refusal is still counted in `dingrelay_requests_total{source,status}`.
//!
//! Memory is bounded: one entry per (source, status) pair, and sources come from the config
//! (unknown paths are not logged here).

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::Mutex;
use std::time::Duration;

use http::StatusCode;

/// A period's refusals for one source and status.
struct Window {
    /// When the period ends (wall-clock ms).
    until_ms: i64,
    /// Refusals after the first one, logged at DEBUG only.
    suppressed: u64,
    /// What the last of them was told (for the summary line).
    last_reason: String,
}

/// See the [module documentation](self).
pub struct RefusalLog {
    period: Duration,
    windows: Mutex<HashMap<(String, u16), Window>>,
}

impl RefusalLog {
    /// A log whose periods last `period`.
    pub fn new(period: Duration) -> RefusalLog {
        RefusalLog {
            period,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Logs a refusal: `message` is the log line's sentence ("Refused a webhook."), `reason`
    /// what the sender was told.
    pub fn refused(
        &self,
        now_ms: i64,
        source: &str,
        status: StatusCode,
        message: &str,
        reason: &dyn Display,
    ) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let key = (source.to_owned(), status.as_u16());
        if let Some(window) = windows.get_mut(&key)
            && now_ms < window.until_ms
        {
            window.suppressed += 1;
            window.last_reason = reason.to_string();
            tracing::debug!(source, status = status.as_u16(), %reason, "{message}");
            return;
        }
        if let Some(window) = windows.remove(&key) {
            self.summarize(source, status.as_u16(), &window);
        }
        tracing::warn!(
            source,
            status = status.as_u16(),
            %reason,
            "{message} Further refusals like it are counted for {} s and reported in one line.",
            self.period.as_secs()
        );
        windows.insert(
            key,
            Window {
                until_ms: now_ms + self.period.as_millis() as i64,
                suppressed: 0,
                last_reason: String::new(),
            },
        );
    }

    /// Reports the periods that are over, and forgets them.
    pub fn flush(&self, now_ms: i64) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        windows.retain(|(source, status), window| {
            if now_ms < window.until_ms {
                return true;
            }
            self.summarize(source, *status, window);
            false
        });
    }

    fn summarize(&self, source: &str, status: u16, window: &Window) {
        if window.suppressed == 0 {
            return;
        }
        tracing::warn!(
            source,
            status,
            refused = window.suppressed,
            last_reason = %window.last_reason,
            "Refused {} more webhook(s) of this source with status {status} within {} s; the last was told: {}",
            window.suppressed,
            self.period.as_secs(),
            window.last_reason
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Runs `f` with a subscriber that writes WARN and DEBUG lines to a buffer; returns them.
    fn logged(f: impl FnOnce()) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .without_time()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    fn warns(lines: &[String]) -> Vec<&String> {
        lines.iter().filter(|l| l.contains("WARN")).collect()
    }

    #[test]
    fn a_flood_is_one_line_then_one_summary_per_period() {
        let log = RefusalLog::new(Duration::from_secs(60));
        let lines = logged(|| {
            for i in 0..1000 {
                let reason = format!("bad token {i}");
                log.refused(
                    i,
                    "am",
                    StatusCode::UNAUTHORIZED,
                    "Refused an unauthenticated webhook.",
                    &reason,
                );
            }
            log.flush(59_999); // the period is not over yet
            log.flush(60_000);
            log.flush(120_000); // nothing more to say
        });
        let warns = warns(&lines);
        assert_eq!(warns.len(), 2, "{lines:#?}");
        assert!(warns[0].contains("Refused an unauthenticated webhook."));
        assert!(warns[0].contains("bad token 0"));
        assert!(
            warns[1].contains("Refused 999 more webhook(s)"),
            "{}",
            warns[1]
        );
        assert!(warns[1].contains("bad token 999"), "{}", warns[1]);
        // Every refusal is still in the DEBUG lines.
        assert_eq!(lines.iter().filter(|l| l.contains("DEBUG")).count(), 999);
    }

    #[test]
    fn sources_and_statuses_are_counted_apart_and_a_new_period_starts_with_a_full_line() {
        let log = RefusalLog::new(Duration::from_secs(60));
        let lines = logged(|| {
            log.refused(0, "am", StatusCode::UNAUTHORIZED, "A.", &"r1");
            log.refused(1, "am", StatusCode::BAD_REQUEST, "B.", &"r2");
            log.refused(2, "gh", StatusCode::UNAUTHORIZED, "C.", &"r3");
            log.refused(3, "am", StatusCode::UNAUTHORIZED, "A.", &"r4");
            // The next period: the summary of the last one, then this refusal in full.
            log.refused(61_000, "am", StatusCode::UNAUTHORIZED, "A.", &"r5");
        });
        let warns = warns(&lines);
        assert_eq!(warns.len(), 5, "{lines:#?}");
        assert!(warns[0].contains("r1") && warns[1].contains("r2") && warns[2].contains("r3"));
        assert!(warns[3].contains("Refused 1 more webhook(s)") && warns[3].contains("r4"));
        assert!(warns[4].contains("A.") && warns[4].contains("r5"));
    }
}

//! Logging refused requests without flooding the journal.
//!
//! Anyone who can reach the port can send bad requests, and one WARN line per refusal let a
//! flood fill the journal (journald then rate-limits and drops lines, useful ones with them).
//! So per subject (a webhook source, or `POST /-/reload`) and status, the first refusal of a
//! period (a minute in the daemon) is a WARN line with its reason; later refusals of that period
//! are DEBUG lines, and one WARN line reports how many there were (with the last reason) once
//! the period is over: at the next refusal, or at the latest when [`RefusalLog::flush`] runs
//! (the daemon calls it every period). Every refused webhook is still counted in
//! `dingrelay_requests_total{source,status}`.
//!
//! Memory is bounded: one entry per (subject, status) pair; sources come from the config
//! (unknown paths are not logged here), and reload requests are one subject whatever they
//! carry. A reason never holds a presented token.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::Mutex;
use std::time::Duration;

use http::StatusCode;

/// What was refused: a webhook to a configured source, or a reload request. Kept apart, so no
/// source name can share a period with the reload route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    Source(String),
    Reload,
}

/// The route of reload requests, as their log lines name it.
const RELOAD_ROUTE: &str = "/-/reload";

/// A period's refusals for one subject and status.
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
    windows: Mutex<HashMap<(Subject, u16), Window>>,
}

impl RefusalLog {
    /// A log whose periods last `period`.
    pub fn new(period: Duration) -> RefusalLog {
        RefusalLog {
            period,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Logs a refused webhook of `source`: `message` is the log line's sentence ("Refused a
    /// webhook."), `reason` what the sender was told.
    pub fn refused(
        &self,
        now_ms: i64,
        source: &str,
        status: StatusCode,
        message: &str,
        reason: &dyn Display,
    ) {
        let subject = Subject::Source(source.to_owned());
        self.log(now_ms, subject, status, message, reason);
    }

    /// Logs a refused `POST /-/reload`: `message` is the log line's sentence, `reason` what the
    /// caller was told (never the token it presented).
    pub fn refused_reload(
        &self,
        now_ms: i64,
        status: StatusCode,
        message: &str,
        reason: &dyn Display,
    ) {
        self.log(now_ms, Subject::Reload, status, message, reason);
    }

    fn log(
        &self,
        now_ms: i64,
        subject: Subject,
        status: StatusCode,
        message: &str,
        reason: &dyn Display,
    ) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let key = (subject, status.as_u16());
        let status = status.as_u16();
        if let Some(window) = windows.get_mut(&key)
            && now_ms < window.until_ms
        {
            window.suppressed += 1;
            window.last_reason = reason.to_string();
            match &key.0 {
                Subject::Source(source) => tracing::debug!(source, status, %reason, "{message}"),
                Subject::Reload => {
                    tracing::debug!(route = RELOAD_ROUTE, status, %reason, "{message}")
                }
            }
            return;
        }
        if let Some(window) = windows.remove(&key) {
            self.summarize(&key.0, status, &window);
        }
        let period = self.period.as_secs();
        match &key.0 {
            Subject::Source(source) => tracing::warn!(
                source,
                status,
                %reason,
                "{message} Further refusals like it are counted for {period} s and reported in one line."
            ),
            Subject::Reload => tracing::warn!(
                route = RELOAD_ROUTE,
                status,
                %reason,
                "{message} Further refusals like it are counted for {period} s and reported in one line."
            ),
        }
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
        windows.retain(|(subject, status), window| {
            if now_ms < window.until_ms {
                return true;
            }
            self.summarize(subject, *status, window);
            false
        });
    }

    fn summarize(&self, subject: &Subject, status: u16, window: &Window) {
        if window.suppressed == 0 {
            return;
        }
        let (refused, period) = (window.suppressed, self.period.as_secs());
        let last_reason = &window.last_reason;
        match subject {
            Subject::Source(source) => tracing::warn!(
                source,
                status,
                refused,
                last_reason = %last_reason,
                "Refused {refused} more webhook(s) of this source with status {status} within {period} s; the last was told: {last_reason}"
            ),
            Subject::Reload => tracing::warn!(
                route = RELOAD_ROUTE,
                status,
                refused,
                last_reason = %last_reason,
                "Refused {refused} more reload request(s) with status {status} within {period} s; the last was told: {last_reason}"
            ),
        }
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

    #[test]
    fn a_flood_of_wrong_reload_tokens_is_one_line_then_one_summary_per_period() {
        let log = RefusalLog::new(Duration::from_secs(60));
        let lines = logged(|| {
            for i in 0..10_000 {
                log.refused_reload(
                    i * 5, // 10,000 requests over 50 s: one period
                    StatusCode::UNAUTHORIZED,
                    "Refused a reload request: wrong or missing bearer token.",
                    &"a valid bearer token is needed",
                );
            }
            // A webhook source refused meanwhile is counted apart, even one named like the route.
            log.refused(
                100,
                "/-/reload",
                StatusCode::UNAUTHORIZED,
                "Refused a webhook.",
                &"bad",
            );
            log.flush(59_999);
            log.flush(60_000);
            // The next period starts with a full line again.
            log.refused_reload(
                61_000,
                StatusCode::UNAUTHORIZED,
                "Refused a reload request: wrong or missing bearer token.",
                &"a valid bearer token is needed",
            );
        });
        let reload: Vec<&String> = warns(&lines)
            .into_iter()
            .filter(|l| l.contains("route=\"/-/reload\""))
            .collect();
        assert_eq!(reload.len(), 3, "{lines:#?}");
        assert!(
            reload[0].contains("Refused a reload request: wrong or missing bearer token."),
            "{}",
            reload[0]
        );
        assert!(reload[0].contains("status=401"), "{}", reload[0]);
        assert!(
            reload[1].contains("Refused 9999 more reload request(s) with status 401 within 60 s"),
            "{}",
            reload[1]
        );
        assert!(reload[1].contains("refused=9999"), "{}", reload[1]);
        assert!(
            reload[2].contains("Refused a reload request"),
            "{}",
            reload[2]
        );
        let webhook: Vec<&String> = warns(&lines)
            .into_iter()
            .filter(|l| l.contains("Refused a webhook."))
            .collect();
        assert_eq!(webhook.len(), 1, "{lines:#?}");
        assert_eq!(warns(&lines).len(), 4, "{lines:#?}");
        assert_eq!(lines.iter().filter(|l| l.contains("DEBUG")).count(), 9_999);
    }
}

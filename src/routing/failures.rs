//! Logging rules that fail without flooding the journal: at most one WARN line a minute per rule.
//!
//! A rule that fails on one event usually fails on every event like it, and a storm brings
//! hundreds. The first failure of a rule in a period is a WARN line with its reason; later ones
//! in the period are DEBUG lines, counted, and the rule's next WARN line (after the period) says
//! how many there were. Every failure is counted in `dingrelay_rule_failures_total{rule}`, and
//! its reason is kept with the event (`dingrelay outbox events`).
//!
//! Memory is bounded by the number of rules in the config.

use std::collections::HashMap;
use std::time::Duration;

/// See the [module documentation](self).
#[derive(Debug)]
pub struct FailureLog {
    period_ms: i64,
    /// Per rule: when its period ends (ms), and failures since its last WARN line.
    rules: HashMap<String, (i64, u64)>,
}

impl FailureLog {
    pub fn new(period: Duration) -> FailureLog {
        FailureLog {
            period_ms: i64::try_from(period.as_millis()).unwrap_or(i64::MAX),
            rules: HashMap::new(),
        }
    }

    /// Logs that `rule` failed on `event` (its id) at `now_ms`; its robots got a fallback.
    /// Returns whether a WARN line was written.
    pub fn failed(&mut self, now_ms: i64, rule: &str, event: i64, reason: &str) -> bool {
        if let Some((until, suppressed)) = self.rules.get_mut(rule)
            && now_ms < *until
        {
            *suppressed += 1;
            tracing::debug!(rule, event, %reason, "A rule failed; its robots got a fallback message.");
            return false;
        }
        let earlier = self
            .rules
            .get(rule)
            .map_or(0, |(_, suppressed)| *suppressed);
        let also = if earlier > 0 {
            format!(" It also failed {earlier} more times in the last period.")
        } else {
            String::new()
        };
        tracing::warn!(
            rule,
            event,
            %reason,
            "A rule failed on an event; its robots got a fallback message instead (`dingrelay outbox events` keeps the reason). Fix the rule, then re-route the event with `dingrelay outbox reroute`.{also}"
        );
        self.rules
            .insert(rule.to_owned(), (now_ms.saturating_add(self.period_ms), 0));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warn_line_a_minute_per_rule() {
        let mut log = FailureLog::new(Duration::from_secs(60));
        assert!(log.failed(0, "a", 1, "x"));
        assert!(!log.failed(1_000, "a", 2, "x"), "same minute: suppressed");
        assert!(
            log.failed(1_000, "b", 3, "x"),
            "another rule has its own minute"
        );
        assert!(!log.failed(59_999, "a", 4, "x"));
        assert!(log.failed(60_000, "a", 5, "x"), "the next minute");
        assert_eq!(log.rules["a"], (120_000, 0));
    }
}

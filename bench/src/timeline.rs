//! send→deliver by the second the message was sent in. A p99 alone cannot
//! tell a tail spread thinly over the run from a few bad seconds (a broker
//! pause, a rebalance); the seconds can.

use serde::{Deserialize, Serialize};

/// One second of sends: its deliveries, how many took longer than the
/// threshold, and the slowest.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Second {
    pub deliveries: u64,
    pub over: u64,
    pub max_ms: f64,
}

/// Seconds since the timed phase began, recorded by one reader and merged.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    threshold_ns: u64,
    /// The run's length in seconds: a send whose timer fired just after
    /// the end counts in the last second, not in a second of its own.
    length: usize,
    seconds: Vec<Second>,
}

impl Timeline {
    pub fn new(threshold_ms: f64, length: std::time::Duration) -> Self {
        let length = (length.as_secs_f64().ceil() as usize).max(1);
        Timeline { threshold_ns: (threshold_ms * 1e6) as u64, length, seconds: Vec::new() }
    }

    /// A delivery of a message sent `sent_ns` after the timed phase began,
    /// `latency_ns` after its send.
    pub fn record(&mut self, sent_ns: u64, latency_ns: u64) {
        let i = ((sent_ns / 1_000_000_000) as usize).min(self.length - 1);
        if self.seconds.len() <= i {
            self.seconds.resize(i + 1, Second::default());
        }
        let s = &mut self.seconds[i];
        s.deliveries += 1;
        s.over += u64::from(latency_ns > self.threshold_ns);
        s.max_ms = s.max_ms.max(latency_ns as f64 / 1e6);
    }

    pub fn merge(&mut self, other: &Timeline) {
        if self.seconds.len() < other.seconds.len() {
            self.seconds.resize(other.seconds.len(), Second::default());
        }
        for (s, o) in self.seconds.iter_mut().zip(&other.seconds) {
            s.deliveries += o.deliveries;
            s.over += o.over;
            s.max_ms = s.max_ms.max(o.max_ms);
        }
    }

    pub fn summary(&self, started_unix_ms: f64) -> TimelineSummary {
        let total_over: u64 = self.seconds.iter().map(|s| s.over).sum();
        let mut overs: Vec<u64> = self.seconds.iter().map(|s| s.over).collect();
        overs.sort_unstable_by(|a, b| b.cmp(a));
        let worst: u64 = overs.iter().take(WORST).sum();
        TimelineSummary {
            started_unix_ms: started_unix_ms.round(),
            threshold_ms: self.threshold_ns as f64 / 1e6,
            seconds_over: self.seconds.iter().filter(|s| s.over > 0).count() as u32,
            over: total_over,
            over_in_worst_seconds: worst,
            per_second: self.seconds.iter().map(|s| Second { max_ms: round1(s.max_ms), ..*s }).collect(),
        }
    }
}

/// How many of the worst seconds the summary sums up.
pub const WORST: usize = 5;

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The timeline as a run's result keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TimelineSummary {
    /// Wall-clock start of second 0 (Unix ms), to line seconds up with
    /// other logs (a broker's GC log, say).
    #[serde(default)]
    pub started_unix_ms: f64,
    pub threshold_ms: f64,
    /// Seconds in which at least one delivery took longer than the threshold.
    pub seconds_over: u32,
    /// Deliveries over the threshold, in all seconds and in the `WORST` ones.
    pub over: u64,
    pub over_in_worst_seconds: u64,
    pub per_second: Vec<Second>,
}

impl TimelineSummary {
    /// One line for the report, e.g. "3 of 60 seconds had deliveries over
    /// 50 ms; the worst 5 seconds hold 96% of the 5,120 such deliveries".
    pub fn line(&self) -> String {
        let share = if self.over == 0 { 0.0 } else { 100.0 * self.over_in_worst_seconds as f64 / self.over as f64 };
        format!(
            "{} of {} seconds had deliveries over {} ms; the worst {WORST} seconds hold {share:.0}% of the {} such deliveries",
            self.seconds_over,
            self.per_second.len(),
            self.threshold_ms,
            self.over
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    const MS: u64 = 1_000_000;
    const RUN: Duration = Duration::from_secs(60);
    const S: u64 = 1_000_000_000;

    #[test]
    fn deliveries_are_binned_by_send_second_and_counted_over_the_threshold() {
        let mut t = Timeline::new(50.0, RUN);
        t.record(0, 10 * MS);
        t.record(S - 1, 51 * MS);
        t.record(2 * S + 5, 50 * MS); // at the threshold is not over it
        let s = t.summary(0.0);
        assert_eq!(s.per_second.len(), 3);
        assert_eq!(s.per_second[0], Second { deliveries: 2, over: 1, max_ms: 51.0 });
        assert_eq!(s.per_second[1], Second::default());
        assert_eq!(s.per_second[2], Second { deliveries: 1, over: 0, max_ms: 50.0 });
        assert_eq!((s.seconds_over, s.over), (1, 1));
    }

    #[test]
    fn merging_adds_counts_and_keeps_the_larger_maximum() {
        let mut a = Timeline::new(50.0, RUN);
        a.record(0, 60 * MS);
        let mut b = Timeline::new(50.0, RUN);
        b.record(0, 70 * MS);
        b.record(3 * S, MS);
        a.merge(&b);
        let s = a.summary(0.0);
        assert_eq!(s.per_second[0], Second { deliveries: 2, over: 2, max_ms: 70.0 });
        assert_eq!(s.per_second[3].deliveries, 1);
    }

    #[test]
    fn the_worst_seconds_share_is_of_all_slow_deliveries() {
        let mut t = Timeline::new(50.0, RUN);
        for sec in 0..10u64 {
            // second 9 has 91 slow deliveries, the others one each
            let n = if sec == 9 { 91 } else { 1 };
            for _ in 0..n {
                t.record(sec * S, 100 * MS);
            }
        }
        let s = t.summary(0.0);
        assert_eq!((s.seconds_over, s.over, s.over_in_worst_seconds), (10, 100, 95));
        assert_eq!(
            s.line(),
            "10 of 10 seconds had deliveries over 50 ms; the worst 5 seconds hold 95% of the 100 such deliveries"
        );
    }

    #[test]
    fn sends_after_the_end_count_in_the_last_second() {
        let mut t = Timeline::new(50.0, Duration::from_secs(2));
        t.record(2 * S + 1, 100 * MS);
        t.record(u64::MAX, 10 * MS);
        let s = t.summary(0.0);
        assert_eq!(s.per_second.len(), 2);
        assert_eq!(s.per_second[1], Second { deliveries: 2, over: 1, max_ms: 100.0 });
    }
}

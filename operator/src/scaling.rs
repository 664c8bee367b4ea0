//! Consumer replicas from Kafka lag. Pure: the caller supplies the lag it
//! read, the replicas running now, the recent history of desires and the
//! clock; this module decides.
//!
//! ```text
//! desired = clamp(ceil(lag / lagThreshold), minReplicas, min(maxReplicas, partitions))
//! ```
//! While scaling up, replicas beyond the partitions that currently have lag
//! would sit idle, so that count bounds the step (never below
//! `minReplicas`). Scale-up takes effect at once; scale-down only when every
//! desire within the stabilization window was lower (the highest of them is
//! taken, as the HorizontalPodAutoscaler does).

use std::collections::VecDeque;
use std::time::Duration;

use crate::crd::ConsumerSpec;

/// Where a consumer starts in a partition its group has never committed.
/// Parley's consumers use `earliest` (a storage consumer must not skip
/// messages), so uncommitted partitions count their whole retained backlog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
}

/// Offsets of one topic-partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub low: i64,
    pub high: i64,
    /// The group's committed offset; `None` if it never committed here.
    pub committed: Option<i64>,
}

/// Messages the group has yet to consume in one partition.
pub fn partition_lag(p: PartitionOffsets, reset: OffsetReset) -> i64 {
    let position = match (p.committed, reset) {
        (Some(c), _) => c.max(p.low),
        (None, OffsetReset::Earliest) => p.low,
        (None, OffsetReset::Latest) => p.high,
    };
    (p.high - position).max(0)
}

/// Lag of one consumer group over the topic-partitions it consumes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupLag {
    pub total: i64,
    pub partitions_with_lag: i32,
}

pub fn group_lag(partitions: &[PartitionOffsets], reset: OffsetReset) -> GroupLag {
    partitions.iter().fold(GroupLag::default(), |acc, p| {
        let lag = partition_lag(*p, reset);
        GroupLag {
            total: acc.total.saturating_add(lag),
            partitions_with_lag: acc.partitions_with_lag + i32::from(lag > 0),
        }
    })
}

/// Why the replicas are what they are; also the status' `reason`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// Lag asks for this many (after bounds).
    Lag,
    /// A lower desire has not yet held for the whole window.
    Stabilizing { lowest: i32 },
    /// `parley.dev/pause-autoscaling: "true"`.
    Paused,
    /// Lag could not be read (why, as shown in the reason); replicas are held.
    LagUnknown(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Replicas to run.
    pub replicas: i32,
    /// What lag alone asks for, after bounds (what status calls desired).
    pub desired: i32,
    pub why: Why,
}

impl Decision {
    /// Human-readable reason for status and Events.
    pub fn reason(&self, lag: Option<GroupLag>, partitions: i32, threshold: i64) -> String {
        match &self.why {
            Why::Paused => format!("autoscaling paused by annotation; holding {} replicas", self.replicas),
            Why::LagUnknown(err) => format!("lag unknown ({err}); holding {} replicas", self.replicas),
            Why::Stabilizing { lowest } => format!(
                "lag asks for {} (lowest {lowest}); scale-down waits for the stabilization window",
                self.desired
            ),
            Why::Lag => {
                let lag = lag.unwrap_or_default();
                format!(
                    "lag {} over {} partitions ({} with lag), threshold {}",
                    group(lag.total),
                    partitions,
                    lag.partitions_with_lag,
                    group(threshold)
                )
            }
        }
    }
}

/// Thousands separators, for reasons people read.
pub fn group(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Desires seen recently, newest last, for the scale-down window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    entries: VecDeque<(Duration, i32)>,
    /// When recording began: a window is only complete once it reaches back
    /// this far, so a restarted operator does not scale down on a few samples.
    since: Option<Duration>,
}

impl History {
    /// Record `desired` at `now` (time since any fixed origin) and forget
    /// entries older than `window`.
    pub fn record(&mut self, now: Duration, desired: i32, window: Duration) {
        self.since.get_or_insert(now);
        self.entries.push_back((now, desired));
        while let Some(&(t, _)) = self.entries.front() {
            if now.saturating_sub(t) > window {
                self.entries.pop_front();
            } else {
                break;
            }
        }
    }

    /// Highest desire recorded within the window, and whether the history
    /// reaches back a whole window (otherwise a scale-down is premature).
    fn max_over(&self, now: Duration, window: Duration) -> (i32, bool) {
        let max = self.entries.iter().map(|&(_, d)| d).max().unwrap_or(i32::MAX);
        let since = self.since.unwrap_or(now);
        (max, now.saturating_sub(since) >= window)
    }
}

/// Replicas that lag alone asks for, within every bound.
pub fn desired_from_lag(spec: &ConsumerSpec, partitions: i32, lag: GroupLag) -> i32 {
    let min = spec.min_replicas.max(0);
    let cap = spec.max_replicas.min(partitions).max(min);
    let threshold = spec.lag_threshold.max(1);
    let total = lag.total.max(0);
    let wanted = i32::try_from(total / threshold + i64::from(total % threshold != 0)).unwrap_or(i32::MAX);
    // Consumers beyond the partitions that have lag would get nothing to do.
    let useful = lag.partitions_with_lag.max(min);
    let desired = wanted.clamp(min, cap).min(useful).max(min);
    if spec.even_partition_spread { even_spread(desired, partitions, cap) } else { desired }
}

/// Round up to a divisor of `partitions` so each consumer gets the same
/// share; if that exceeds `cap`, the largest divisor within it.
fn even_spread(desired: i32, partitions: i32, cap: i32) -> i32 {
    if desired <= 0 || partitions <= 0 {
        return desired;
    }
    let divisors = (1..=partitions).filter(|d| partitions % d == 0);
    match divisors.clone().find(|&d| d >= desired) {
        Some(d) if d <= cap => d,
        _ => divisors.filter(|&d| d <= cap).max().unwrap_or(desired),
    }
}

/// Inputs of one decision.
pub struct Input<'a> {
    pub spec: &'a ConsumerSpec,
    pub partitions: i32,
    /// Replicas the Deployment has now (`None` before it exists).
    pub current: Option<i32>,
    /// `Err` when Kafka could not be asked: why, for the reason shown. Only
    /// the standard trait, so this module stays free of the I/O types.
    pub lag: Result<GroupLag, &'a dyn std::error::Error>,
    pub paused: bool,
}

/// Decide replicas; records the desire in `history`.
pub fn decide(input: &Input, history: &mut History, now: Duration) -> Decision {
    let spec = input.spec;
    let window: Duration = spec.scale_down_stabilization.into();
    let start = spec.min_replicas.max(0);
    let current = input.current.unwrap_or(start);
    if input.paused {
        return Decision { replicas: current, desired: current, why: Why::Paused };
    }
    let lag = match &input.lag {
        Ok(lag) => *lag,
        // Never act on missing data: a blind scale-down could stop consumers
        // exactly when Kafka comes back with a backlog.
        Err(err) => return Decision { replicas: current, desired: current, why: Why::LagUnknown(err.to_string()) },
    };
    let desired = desired_from_lag(spec, input.partitions, lag);
    history.record(now, desired, window);
    if desired >= current {
        return Decision { replicas: desired, desired, why: Why::Lag };
    }
    let (highest, full_window) = history.max_over(now, window);
    if full_window || window.is_zero() {
        let replicas = highest.min(current).max(desired);
        let why = if replicas == desired { Why::Lag } else { Why::Stabilizing { lowest: desired } };
        Decision { replicas, desired, why }
    } else {
        Decision { replicas: current, desired, why: Why::Stabilizing { lowest: desired } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(min: i32, max: i32, threshold: i64, window_secs: u64, even: bool) -> ConsumerSpec {
        ConsumerSpec {
            min_replicas: min,
            max_replicas: max,
            lag_threshold: threshold,
            scale_down_stabilization: Duration::from_secs(window_secs).into(),
            even_partition_spread: even,
            ..ConsumerSpec::default()
        }
    }

    fn lag(total: i64, with_lag: i32) -> GroupLag {
        GroupLag { total, partitions_with_lag: with_lag }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn lag_per_partition_follows_committed_offsets_and_reset_policy() {
        let p = |low, high, committed| PartitionOffsets { low, high, committed };
        assert_eq!(partition_lag(p(0, 100, Some(40)), OffsetReset::Earliest), 60);
        assert_eq!(partition_lag(p(0, 100, None), OffsetReset::Earliest), 100, "never committed: whole backlog");
        assert_eq!(partition_lag(p(0, 100, None), OffsetReset::Latest), 0, "never committed, latest: nothing");
        assert_eq!(partition_lag(p(50, 100, Some(10)), OffsetReset::Earliest), 50, "committed below retention");
        assert_eq!(partition_lag(p(0, 100, Some(100)), OffsetReset::Earliest), 0);
        let all = [p(0, 10, Some(10)), p(0, 10, None), p(5, 8, Some(6))];
        assert_eq!(group_lag(&all, OffsetReset::Earliest), lag(12, 2));
    }

    #[test]
    fn desired_table() {
        // (min, max, threshold, partitions, lag, partitions with lag, even) -> desired
        let cases = [
            ((1, 20, 1000, 12, 0, 0, false), 1),         // idle: the minimum
            ((1, 20, 1000, 12, 10_000, 12, false), 10),  // ceil(10000/1000)
            ((1, 20, 1000, 12, 10_001, 12, false), 11),  // ceil rounds up
            ((1, 20, 1000, 12, 110_000, 12, false), 12), // capped at partitions
            ((1, 5, 1000, 12, 110_000, 12, false), 5),   // capped at maxReplicas
            ((1, 20, 1000, 12, 10_000, 3, false), 3),    // only 3 partitions have lag
            ((4, 20, 1000, 12, 10_000, 2, false), 4),    // ... but never below min
            ((0, 20, 1000, 12, 0, 0, false), 0),         // min 0 allows zero when idle
            ((1, 20, 1000, 12, 5_000, 12, true), 6),     // 5 -> next divisor of 12
            ((1, 20, 1000, 12, 7_000, 12, true), 12),    // 7 -> 12
            ((1, 10, 1000, 12, 7_000, 12, true), 6),     // 12 above max: largest divisor within
            ((1, 20, 1000, 12, 4_000, 12, true), 4),     // already a divisor
        ];
        for ((min, max, threshold, partitions, total, with_lag, even), want) in cases {
            let s = spec(min, max, threshold, 300, even);
            let got = desired_from_lag(&s, partitions, lag(total, with_lag));
            assert_eq!(
                got, want,
                "min {min} max {max} threshold {threshold} partitions {partitions} lag {total}/{with_lag} even {even}"
            );
        }
    }

    #[test]
    fn scale_up_is_immediate() {
        let s = spec(1, 20, 1000, 300, false);
        let mut h = History::default();
        let input = Input { spec: &s, partitions: 12, current: Some(2), lag: Ok(lag(5_800, 12)), paused: false };
        let d = decide(&input, &mut h, secs(0));
        assert_eq!((d.replicas, d.desired, d.why.clone()), (6, 6, Why::Lag));
        assert_eq!(
            d.reason(Some(lag(5_800, 12)), 12, 1000),
            "lag 5,800 over 12 partitions (12 with lag), threshold 1,000"
        );
    }

    #[test]
    fn scale_down_waits_for_the_window() {
        let s = spec(1, 20, 1000, 300, false);
        let mut h = History::default();
        let busy = Input { spec: &s, partitions: 12, current: Some(10), lag: Ok(lag(10_000, 12)), paused: false };
        assert_eq!(decide(&busy, &mut h, secs(0)).replicas, 10);
        let idle = Input { lag: Ok(lag(0, 0)), ..busy };
        // Within the window: hold, and say why.
        for t in [10, 100, 299] {
            let d = decide(&idle, &mut h, secs(t));
            assert_eq!((d.replicas, d.desired), (10, 1), "t={t}");
            assert_eq!(d.why, Why::Stabilizing { lowest: 1 });
        }
        // At 300 s the busy desire is still inside the window; past it, only
        // low desires remain and the scale-down happens.
        assert_eq!(decide(&idle, &mut h, secs(300)).replicas, 10);
        let d = decide(&idle, &mut h, secs(301));
        assert_eq!((d.replicas, d.why), (1, Why::Lag));
    }

    #[test]
    fn scale_down_takes_the_highest_desire_in_the_window() {
        let s = spec(1, 20, 1000, 60, false);
        let mut h = History::default();
        let at =
            |total: i64| Input { spec: &s, partitions: 12, current: Some(10), lag: Ok(lag(total, 12)), paused: false };
        decide(&at(2_000), &mut h, secs(0));
        decide(&at(5_000), &mut h, secs(30));
        let d = decide(&at(1_000), &mut h, secs(60));
        assert_eq!((d.replicas, d.desired), (5, 1), "highest desire within the last 60 s was 5");
        assert_eq!(d.why, Why::Stabilizing { lowest: 1 });
    }

    #[test]
    fn a_fresh_history_waits_a_whole_window() {
        // After an operator restart there is no history: it must not scale
        // down on the first low sample.
        let s = spec(1, 20, 1000, 60, false);
        let mut h = History::default();
        let idle = Input { spec: &s, partitions: 12, current: Some(8), lag: Ok(lag(0, 0)), paused: false };
        assert_eq!(decide(&idle, &mut h, secs(1000)).replicas, 8);
        assert_eq!(decide(&idle, &mut h, secs(1059)).replicas, 8);
        assert_eq!(decide(&idle, &mut h, secs(1060)).replicas, 1);
    }

    #[test]
    fn zero_window_scales_down_at_once() {
        let s = spec(1, 20, 1000, 0, false);
        let mut h = History::default();
        let input = Input { spec: &s, partitions: 12, current: Some(8), lag: Ok(lag(0, 0)), paused: false };
        assert_eq!(decide(&input, &mut h, secs(5)).replicas, 1);
    }

    #[test]
    fn pause_and_missing_lag_hold_replicas() {
        let s = spec(1, 20, 1000, 0, false);
        let mut h = History::default();
        let paused = Input { spec: &s, partitions: 12, current: Some(7), lag: Ok(lag(0, 0)), paused: true };
        let d = decide(&paused, &mut h, secs(0));
        assert_eq!((d.replicas, d.why.clone()), (7, Why::Paused));
        assert!(d.reason(None, 12, 1000).contains("paused"));
        let down = std::io::Error::other("all brokers down");
        let unknown = Input { paused: false, lag: Err(&down), ..paused };
        let d = decide(&unknown, &mut h, secs(1));
        assert_eq!(d.replicas, 7, "never scale on missing data");
        assert!(d.reason(None, 12, 1000).contains("all brokers down"));
        let fresh = Input { current: None, ..unknown };
        assert_eq!(decide(&fresh, &mut h, secs(2)).replicas, 1, "a new Deployment starts at minReplicas");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(5_800), "5,800");
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(group(-1_000), "-1,000");
    }
}

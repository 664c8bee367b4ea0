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
//!
//! With `targetDelay` set, the age of the oldest message the group has not
//! consumed asks for replicas too, as the HorizontalPodAutoscaler treats a
//! target value: `ceil(ready × age / targetDelay)` within the same bounds,
//! and while the age is over the target never fewer than run now. Ready
//! replicas, not the Deployment's count: every scale-up triggers another
//! reconcile at once, and counting pods that have not started yet would
//! compound the same age into the cap within a poll. The larger of the two
//! desires wins.
//!
//! Two exceptions. A role at zero replicas (`minReplicas: 0`) stays there
//! while its lag is at or below `activationLagThreshold`. And lag on
//! partitions that are not draining ([`Progress`]: ready consumers, lag,
//! a committed offset that stands still) adds no replicas: whatever holds
//! those partitions back, more consumers would sit behind it too.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
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

/// One partition of a group's topics.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl fmt::Display for TopicPartition {
    /// `topic-partition`, as Kafka's own tools and logs name it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A partition's offsets as one lag poll read them.
pub type Reading = (TopicPartition, PartitionOffsets);

/// Where the group goes on in one partition: its committed offset, or
/// where `reset` starts it (also when retention removed what it committed).
pub fn position(p: PartitionOffsets, reset: OffsetReset) -> i64 {
    match (p.committed, reset) {
        (Some(c), _) => c.max(p.low),
        (None, OffsetReset::Earliest) => p.low,
        (None, OffsetReset::Latest) => p.high,
    }
}

/// Messages the group has yet to consume in one partition.
pub fn partition_lag(p: PartitionOffsets, reset: OffsetReset) -> i64 {
    (p.high - position(p, reset)).max(0)
}

/// Lag of one consumer group over the topic-partitions it consumes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupLag {
    pub total: i64,
    pub partitions_with_lag: i32,
}

impl GroupLag {
    /// This lag without `part` (a subset of it).
    pub fn without(self, part: GroupLag) -> GroupLag {
        GroupLag {
            total: self.total.saturating_sub(part.total).max(0),
            partitions_with_lag: (self.partitions_with_lag - part.partitions_with_lag).max(0),
        }
    }
}

pub fn group_lag<'a>(partitions: impl IntoIterator<Item = &'a PartitionOffsets>, reset: OffsetReset) -> GroupLag {
    partitions.into_iter().fold(GroupLag::default(), |acc, p| {
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
    /// At zero replicas with lag at or below `activationLagThreshold`.
    BelowActivation { threshold: i64 },
    /// Lag asks for `wanted`, but `partitions` of the partitions with lag are
    /// not draining, and replicas are not added for their lag.
    NotDraining { wanted: i32, partitions: i32 },
    /// The oldest unconsumed message's age asks for more than lag does.
    Delay { age: Duration, target: Duration, from_lag: i32 },
}

/// The oldest unconsumed message of a group, for `targetDelay`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OldestAge {
    /// No (draining) partition has lag: nothing waits.
    Nothing,
    Known(Duration),
    /// Could not be read (why); replicas follow lag alone.
    Unknown(String),
}

/// Age of the oldest message waiting, from the timestamps (ms since the
/// epoch) of the first unconsumed record of each partition with lag;
/// `None` when nothing waits. A clock behind the producers' reads as 0.
pub fn oldest_age(now_ms: i64, first_unconsumed_ms: impl IntoIterator<Item = i64>) -> Option<Duration> {
    let oldest = first_unconsumed_ms.into_iter().min()?;
    Some(Duration::from_millis(u64::try_from(now_ms.saturating_sub(oldest)).unwrap_or(0)))
}

/// An age as the status and reasons show it: seconds with one decimal.
pub fn age_words(age: Duration) -> String {
    format!("{:.1}s", age.as_secs_f64())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Replicas to run.
    pub replicas: i32,
    /// What lag (and `targetDelay`, the larger) asks for, after bounds and
    /// without what is not draining (what status calls desired).
    pub desired: i32,
    pub why: Why,
    /// Said after the reason: why `targetDelay` could not take part.
    pub note: Option<String>,
}

impl Decision {
    /// Human-readable reason for status and Events.
    pub fn reason(&self, lag: Option<GroupLag>, partitions: i32, threshold: i64) -> String {
        let words = self.why_words(lag, partitions, threshold);
        match &self.note {
            Some(note) => format!("{words}; {note}"),
            None => words,
        }
    }

    fn why_words(&self, lag: Option<GroupLag>, partitions: i32, threshold: i64) -> String {
        match &self.why {
            Why::Paused => format!("autoscaling paused by annotation; holding {} replicas", self.replicas),
            Why::LagUnknown(err) => format!("lag unknown ({err}); holding {} replicas", self.replicas),
            Why::Stabilizing { lowest } => format!(
                "lag asks for {} (lowest {lowest}); scale-down waits for the stabilization window",
                self.desired
            ),
            Why::Lag => lag_words(lag.unwrap_or_default(), partitions, threshold),
            Why::BelowActivation { threshold: activation } => format!(
                "lag {} at or below activationLagThreshold {}; staying at zero replicas",
                group(lag.unwrap_or_default().total),
                group(*activation)
            ),
            Why::NotDraining { wanted, partitions: stuck } => format!(
                "{}; {stuck} of them not draining, so their lag adds no replicas (lag alone asks for {wanted})",
                lag_words(lag.unwrap_or_default(), partitions, threshold)
            ),
            Why::Delay { age, target, from_lag } => format!(
                "oldest message {} old {} targetDelay {}: {} replicas (lag alone asks for {from_lag})",
                age_words(*age),
                if age > target { ">" } else { "<=" },
                kube::core::Duration::from(*target),
                self.desired
            ),
        }
    }
}

fn lag_words(lag: GroupLag, partitions: i32, threshold: i64) -> String {
    format!(
        "lag {} over {} partitions ({} with lag), threshold {}",
        group(lag.total),
        partitions,
        lag.partitions_with_lag,
        group(threshold)
    )
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

/// Committed offsets of partitions with lag over recent lag polls, to find
/// the ones that are not draining: lag stays and the role has ready
/// replicas, yet the committed offset stands still (a poison message, a
/// database refusing writes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Per partition with lag: its committed offset at the last poll, and
    /// when a poll first read it there.
    still: BTreeMap<TopicPartition, (Option<i64>, Duration)>,
}

impl Progress {
    /// Record one poll's `readings` at `now`, with `ready` replicas of the
    /// role ready; return the partitions whose committed offset has stood
    /// still with lag for at least `window` (`stuckAfterPolls` lag polls).
    pub fn observe(
        &mut self,
        readings: &[Reading],
        reset: OffsetReset,
        ready: i32,
        now: Duration,
        window: Duration,
    ) -> Vec<TopicPartition> {
        if ready <= 0 {
            // Nobody consumes: an offset standing still says nothing about consumers.
            self.forget();
            return Vec::new();
        }
        let mut still = BTreeMap::new();
        for (tp, offsets) in readings {
            if partition_lag(*offsets, reset) == 0 {
                continue;
            }
            let since = match self.still.get(tp) {
                Some(&(committed, since)) if committed == offsets.committed => since,
                _ => now,
            };
            still.insert(tp.clone(), (offsets.committed, since));
        }
        self.still = still;
        self.still
            .iter()
            .filter(|(_, (_, since))| now.saturating_sub(*since) >= window)
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// Start over: nobody consumed, so no offset could have moved.
    fn forget(&mut self) {
        self.still.clear();
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

/// Replicas that the oldest message's `age` asks for against `target`:
/// `ceil(ready × age / target)` (one replica's worth when none is ready),
/// never below `current` while the age is over the target (messages that
/// wait are no reason to stop consumers that are starting), within the
/// bounds lag has.
pub fn desired_from_delay(
    spec: &ConsumerSpec,
    partitions: i32,
    current: i32,
    ready: i32,
    partitions_with_lag: i32,
    age: Duration,
    target: Duration,
) -> i32 {
    let min = spec.min_replicas.max(0);
    let cap = spec.max_replicas.min(partitions).max(min);
    let target_ms = target.as_millis().max(1);
    let base = u128::try_from(ready.max(1)).unwrap_or(1);
    let mut wanted = i32::try_from((base * age.as_millis()).div_ceil(target_ms)).unwrap_or(i32::MAX);
    if age > target {
        wanted = wanted.max(current);
    }
    let useful = partitions_with_lag.max(min);
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
    /// Of those, the ones whose pods are ready (consuming).
    pub ready: i32,
    /// `Err` when Kafka could not be asked: why, for the reason shown. Only
    /// the standard trait, so this module stays free of the I/O types.
    pub lag: Result<GroupLag, &'a dyn std::error::Error>,
    /// The part of `lag` on partitions that are not draining ([`Progress`]).
    pub not_draining: GroupLag,
    /// The oldest waiting message on draining partitions; `None` when the
    /// role has no `targetDelay` (its age is then not read).
    pub age: Option<&'a OldestAge>,
    pub paused: bool,
}

/// Decide replicas; records the desire in `history`.
pub fn decide(input: &Input, history: &mut History, now: Duration) -> Decision {
    let spec = input.spec;
    let window: Duration = spec.scale_down_stabilization.into();
    let start = spec.min_replicas.max(0);
    let current = input.current.unwrap_or(start);
    if input.paused {
        return Decision { replicas: current, desired: current, why: Why::Paused, note: None };
    }
    let lag = match &input.lag {
        Ok(lag) => *lag,
        // Never act on missing data: a blind scale-down could stop consumers
        // exactly when Kafka comes back with a backlog.
        Err(err) => {
            return Decision { replicas: current, desired: current, why: Why::LagUnknown(err.to_string()), note: None };
        }
    };
    // A few stray messages do not start a pod from zero.
    let activation = spec.activation_lag_threshold;
    if start == 0 && current == 0 && lag.total > 0 && lag.total <= activation {
        history.record(now, 0, window);
        return Decision { replicas: 0, desired: 0, why: Why::BelowActivation { threshold: activation }, note: None };
    }
    let wanted = desired_from_lag(spec, input.partitions, lag);
    let from_lag = if input.not_draining.partitions_with_lag > 0 {
        let draining = desired_from_lag(spec, input.partitions, lag.without(input.not_draining));
        // Lag that is not draining may keep replicas where they are, never add any.
        draining.max(wanted.min(current))
    } else {
        wanted
    };
    let (from_delay, note) = match (input.age, spec.target_delay) {
        (Some(OldestAge::Known(age)), Some(target)) => {
            let draining = lag.without(input.not_draining).partitions_with_lag;
            let target: Duration = target.into();
            let n = desired_from_delay(spec, input.partitions, current, input.ready, draining, *age, target);
            (Some((n, *age, target)), None)
        }
        (Some(OldestAge::Unknown(why)), Some(_)) => {
            (None, Some(format!("oldest message age unknown ({why}), so targetDelay is not applied")))
        }
        _ => (None, None),
    };
    let desired = from_delay.map_or(from_lag, |(n, _, _)| n.max(from_lag));
    history.record(now, desired, window);
    let by_lag = || {
        if from_lag < wanted {
            Why::NotDraining { wanted, partitions: input.not_draining.partitions_with_lag }
        } else {
            Why::Lag
        }
    };
    let why_now = match from_delay {
        Some((n, age, target)) if n > from_lag => Why::Delay { age, target, from_lag },
        _ => by_lag(),
    };
    if desired >= current {
        return Decision { replicas: desired, desired, why: why_now, note };
    }
    let (highest, full_window) = history.max_over(now, window);
    if full_window || window.is_zero() {
        let replicas = highest.min(current).max(desired);
        let why = if replicas == desired { why_now } else { Why::Stabilizing { lowest: desired } };
        Decision { replicas, desired, why, note }
    } else {
        Decision { replicas: current, desired, why: Why::Stabilizing { lowest: desired }, note }
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

    const NONE: GroupLag = GroupLag { total: 0, partitions_with_lag: 0 };

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
        let input = Input {
            spec: &s,
            partitions: 12,
            current: Some(2),
            ready: 0,
            lag: Ok(lag(5_800, 12)),
            not_draining: NONE,
            age: None,
            paused: false,
        };
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
        let busy = Input {
            spec: &s,
            partitions: 12,
            current: Some(10),
            ready: 0,
            lag: Ok(lag(10_000, 12)),
            not_draining: NONE,
            age: None,
            paused: false,
        };
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
        let at = |total: i64| Input {
            spec: &s,
            partitions: 12,
            current: Some(10),
            ready: 0,
            lag: Ok(lag(total, 12)),
            not_draining: NONE,
            age: None,
            paused: false,
        };
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
        let idle = Input {
            spec: &s,
            partitions: 12,
            current: Some(8),
            ready: 0,
            lag: Ok(lag(0, 0)),
            not_draining: NONE,
            age: None,
            paused: false,
        };
        assert_eq!(decide(&idle, &mut h, secs(1000)).replicas, 8);
        assert_eq!(decide(&idle, &mut h, secs(1059)).replicas, 8);
        assert_eq!(decide(&idle, &mut h, secs(1060)).replicas, 1);
    }

    #[test]
    fn zero_window_scales_down_at_once() {
        let s = spec(1, 20, 1000, 0, false);
        let mut h = History::default();
        let input = Input {
            spec: &s,
            partitions: 12,
            current: Some(8),
            ready: 0,
            lag: Ok(lag(0, 0)),
            not_draining: NONE,
            age: None,
            paused: false,
        };
        assert_eq!(decide(&input, &mut h, secs(5)).replicas, 1);
    }

    #[test]
    fn pause_and_missing_lag_hold_replicas() {
        let s = spec(1, 20, 1000, 0, false);
        let mut h = History::default();
        let paused = Input {
            spec: &s,
            partitions: 12,
            current: Some(7),
            ready: 0,
            lag: Ok(lag(0, 0)),
            not_draining: NONE,
            age: None,
            paused: true,
        };
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
    fn at_zero_lag_up_to_the_activation_threshold_stays_at_zero() {
        let s = ConsumerSpec { activation_lag_threshold: 50, ..spec(0, 20, 1000, 300, false) };
        let mut h = History::default();
        let at_zero = |total| Input {
            spec: &s,
            partitions: 12,
            current: Some(0),
            ready: 0,
            lag: Ok(lag(total, 3)),
            not_draining: NONE,
            age: None,
            paused: false,
        };
        for total in [1, 30, 50] {
            let d = decide(&at_zero(total), &mut h, secs(0));
            assert_eq!((d.replicas, d.desired), (0, 0), "lag {total}");
            assert_eq!(d.why, Why::BelowActivation { threshold: 50 });
            assert_eq!(
                d.reason(Some(lag(total, 3)), 12, 1000),
                format!("lag {total} at or below activationLagThreshold 50; staying at zero replicas")
            );
        }
        let d = decide(&at_zero(51), &mut h, secs(1));
        assert_eq!((d.replicas, d.why), (1, Why::Lag), "above it, lag decides as usual");
        let d = decide(&at_zero(3_000), &mut h, secs(2));
        assert_eq!(d.replicas, 3, "ceil(3,000 / 1,000), as usual");
        let fresh = Input { current: None, ..at_zero(10) };
        assert_eq!(decide(&fresh, &mut h, secs(3)).replicas, 0, "a new Deployment at minReplicas 0 too");
    }

    #[test]
    fn the_activation_threshold_only_holds_a_role_that_is_at_zero() {
        // Running replicas drain lag below the threshold too; they leave
        // through the stabilization window as ever.
        let s = ConsumerSpec { activation_lag_threshold: 50, ..spec(0, 20, 1000, 0, false) };
        let mut h = History::default();
        let running = Input {
            spec: &s,
            partitions: 12,
            current: Some(1),
            ready: 0,
            lag: Ok(lag(30, 1)),
            not_draining: NONE,
            age: None,
            paused: false,
        };
        assert_eq!(decide(&running, &mut h, secs(0)), Decision { replicas: 1, desired: 1, why: Why::Lag, note: None });
        let idle = Input { lag: Ok(lag(0, 0)), ..running };
        assert_eq!(decide(&idle, &mut h, secs(1)).replicas, 0);
        // With minReplicas 1 a Deployment found at zero goes back to 1.
        let s = ConsumerSpec { activation_lag_threshold: 50, ..spec(1, 20, 1000, 0, false) };
        let below_min = Input {
            spec: &s,
            partitions: 12,
            current: Some(0),
            ready: 0,
            lag: Ok(lag(30, 1)),
            not_draining: NONE,
            age: None,
            paused: false,
        };
        assert_eq!(decide(&below_min, &mut h, secs(2)).replicas, 1);
    }

    #[test]
    fn lag_that_is_not_draining_adds_no_replicas_but_keeps_them() {
        let s = spec(1, 20, 100, 0, false);
        let mut h = History::default();
        // 1,000 on 2 partitions, both not draining: lag alone asks for 2.
        let stuck = Input {
            spec: &s,
            partitions: 12,
            current: Some(1),
            ready: 0,
            lag: Ok(lag(1_000, 2)),
            not_draining: lag(1_000, 2),
            age: None,
            paused: false,
        };
        let d = decide(&stuck, &mut h, secs(0));
        assert_eq!((d.replicas, d.desired), (1, 1));
        assert_eq!(d.why, Why::NotDraining { wanted: 2, partitions: 2 });
        assert_eq!(
            d.reason(Some(lag(1_000, 2)), 12, 100),
            "lag 1,000 over 12 partitions (2 with lag), threshold 100; \
             2 of them not draining, so their lag adds no replicas (lag alone asks for 2)"
        );
        // Running above what the draining lag asks for: held there, not
        // scaled down (the zero window would allow it).
        let held = Input { current: Some(2), ..stuck };
        assert_eq!(decide(&held, &mut h, secs(1)).replicas, 2);
        // Draining partitions still scale: 400 more on 4 draining ones.
        let mixed = Input { lag: Ok(lag(1_400, 6)), ..stuck };
        let d = decide(&mixed, &mut h, secs(2));
        assert_eq!((d.replicas, d.why), (4, Why::NotDraining { wanted: 6, partitions: 2 }));
        // Draining again: lag decides alone.
        let drained = Input { not_draining: NONE, ..stuck };
        assert_eq!(decide(&drained, &mut h, secs(3)), Decision { replicas: 2, desired: 2, why: Why::Lag, note: None });
        // Lag below current replicas scales down as ever.
        let low = Input { current: Some(5), lag: Ok(lag(150, 1)), not_draining: lag(150, 1), ..stuck };
        assert_eq!(decide(&low, &mut h, secs(4)).replicas, 1);
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_oldest_age_is_from_the_oldest_first_unconsumed_record() {
        assert_eq!(oldest_age(10_000, [8_000, 4_000, 9_999]), Some(ms(6_000)));
        assert_eq!(oldest_age(10_000, []), None, "nothing waits");
        assert_eq!(oldest_age(10_000, [10_500]), Some(ms(0)), "a producer clock ahead reads as 0");
        assert_eq!(age_words(ms(5_240)), "5.2s");
        assert_eq!(age_words(ms(0)), "0.0s");
    }

    #[test]
    fn desired_from_delay_table() {
        // (min, max, partitions, current, ready, partitions with lag, age ms, target ms, even) -> desired
        let cases = [
            ((1, 4, 12, 1, 1, 12, 5_200, 2_000, false), 3),  // ceil(1 x 2.6)
            ((1, 20, 12, 3, 3, 12, 5_200, 2_000, false), 8), // ceil(3 x 2.6)
            ((1, 4, 12, 3, 3, 12, 5_200, 2_000, false), 4),  // capped at maxReplicas
            ((1, 20, 6, 4, 4, 6, 9_000, 2_000, false), 6),   // capped at partitions
            ((1, 20, 12, 4, 4, 2, 9_000, 2_000, false), 2),  // only 2 partitions have lag
            ((1, 20, 12, 2, 2, 12, 2_000, 2_000, false), 2), // at the target: hold
            ((1, 20, 12, 4, 4, 12, 1_000, 2_000, false), 2), // half the target: half the replicas
            ((1, 20, 12, 4, 4, 12, 10, 2_000, false), 1),    // never below min
            ((0, 20, 12, 0, 0, 12, 3_000, 2_000, false), 2), // from zero: one replica's worth
            ((1, 20, 12, 3, 1, 12, 2_800, 2_000, false), 3), // 2 pods starting: not counted, not stopped
            ((1, 20, 12, 3, 0, 12, 9_000, 2_000, false), 5), // none ready yet: one replica's worth
            ((1, 20, 12, 1, 1, 12, 5_000, 2_000, true), 3),  // 3 is a divisor of 12
            ((1, 20, 12, 2, 2, 12, 5_000, 2_000, true), 6),  // 5 -> 6
        ];
        for ((min, max, partitions, current, ready, with_lag, age, target, even), want) in cases {
            let s = spec(min, max, 1_000, 300, even);
            let got = desired_from_delay(&s, partitions, current, ready, with_lag, ms(age), ms(target));
            assert_eq!(got, want, "min {min} max {max} partitions {partitions} current {current}/{ready} age {age}");
        }
    }

    fn with_target(s: ConsumerSpec, target: &str) -> ConsumerSpec {
        ConsumerSpec { target_delay: Some(serde_json::from_value(serde_json::json!(target)).unwrap()), ..s }
    }

    #[test]
    fn the_larger_of_lag_and_delay_decides_and_the_reason_says_which() {
        let s = with_target(spec(1, 4, 1_000_000, 0, false), "2s");
        let mut h = History::default();
        let old = Input {
            spec: &s,
            partitions: 4,
            current: Some(1),
            ready: 1,
            lag: Ok(lag(400, 4)),
            not_draining: NONE,
            age: Some(&OldestAge::Known(ms(5_200))),
            paused: false,
        };
        let d = decide(&old, &mut h, secs(0));
        assert_eq!((d.replicas, d.desired), (3, 3));
        assert_eq!(d.why, Why::Delay { age: ms(5_200), target: secs(2), from_lag: 1 });
        assert_eq!(
            d.reason(Some(lag(400, 4)), 4, 1_000_000),
            "oldest message 5.2s old > targetDelay 2s: 3 replicas (lag alone asks for 1)"
        );
        // At 3 replicas, still older than the target: grows again, to the cap.
        // Scaled to 3, none of the 2 new ones ready: the same age neither
        // adds more nor takes them away.
        let starting = Input { current: Some(3), age: Some(&OldestAge::Known(ms(5_300))), ..old };
        assert_eq!(decide(&starting, &mut h, secs(1)).replicas, 3);
        // All 3 ready, still older than the target: grows again, to the cap.
        let older = Input { current: Some(3), ready: 3, age: Some(&OldestAge::Known(ms(3_000))), ..old };
        assert_eq!(decide(&older, &mut h, secs(1)).replicas, 4);
        // Lag asks for more than the age: lag decides.
        let t = with_target(spec(1, 20, 100, 0, false), "2s");
        let busy = Input { spec: &t, partitions: 12, lag: Ok(lag(1_000, 12)), ..older };
        let d = decide(&busy, &mut h, secs(2));
        assert_eq!((d.replicas, d.why), (10, Why::Lag));
        // Young messages: the age asks for fewer, lag for 1; the window (0) lets it go.
        let young = Input { current: Some(4), ready: 4, age: Some(&OldestAge::Known(ms(500))), ..old };
        let d = decide(&young, &mut h, secs(3));
        assert_eq!((d.replicas, d.why.clone()), (1, Why::Lag));
        // Below the target but asking for more than lag: it holds, and says so.
        let near = Input { current: Some(3), ready: 3, age: Some(&OldestAge::Known(ms(1_900))), ..old };
        let d = decide(&near, &mut h, secs(4));
        assert_eq!(d.replicas, 3);
        assert_eq!(
            d.reason(Some(lag(400, 4)), 4, 1_000_000),
            "oldest message 1.9s old <= targetDelay 2s: 3 replicas (lag alone asks for 1)"
        );
    }

    #[test]
    fn without_target_or_age_lag_decides_and_an_unknown_age_is_said() {
        let mut h = History::default();
        let plain = spec(1, 4, 1_000_000, 0, false);
        let input = Input {
            spec: &plain,
            partitions: 4,
            current: Some(1),
            ready: 0,
            lag: Ok(lag(400, 4)),
            not_draining: NONE,
            age: Some(&OldestAge::Known(secs(60))),
            paused: false,
        };
        assert_eq!(decide(&input, &mut h, secs(0)).replicas, 1, "no targetDelay: the age is ignored");
        let s = with_target(plain.clone(), "2s");
        let nothing = Input { spec: &s, age: Some(&OldestAge::Nothing), ..input };
        assert_eq!(decide(&nothing, &mut h, secs(1)), Decision { replicas: 1, desired: 1, why: Why::Lag, note: None });
        let unreadable = OldestAge::Unknown("not readable over TLS or SASL".into());
        let unknown = Input { age: Some(&unreadable), ..nothing };
        let d = decide(&unknown, &mut h, secs(2));
        assert_eq!((d.replicas, d.why.clone()), (1, Why::Lag));
        assert_eq!(
            d.reason(Some(lag(400, 4)), 4, 1_000_000),
            "lag 400 over 4 partitions (4 with lag), threshold 1,000,000; \
             oldest message age unknown (not readable over TLS or SASL), so targetDelay is not applied"
        );
    }

    #[test]
    fn partitions_not_draining_add_no_replicas_through_their_age() {
        // The adapter leaves their age out; all that waits is on them, and
        // the draining partitions (none) bound what the age may ask for.
        let s = with_target(spec(1, 4, 1_000_000, 0, false), "2s");
        let mut h = History::default();
        let stuck = Input {
            spec: &s,
            partitions: 4,
            current: Some(1),
            ready: 0,
            lag: Ok(lag(1_000, 2)),
            not_draining: lag(1_000, 2),
            age: Some(&OldestAge::Known(secs(30))),
            paused: false,
        };
        assert_eq!(decide(&stuck, &mut h, secs(0)).replicas, 1);
        // One draining partition with an old message besides: one replica's worth at most.
        let one = Input { lag: Ok(lag(1_100, 3)), age: Some(&OldestAge::Known(secs(30))), ..stuck };
        assert_eq!(decide(&one, &mut h, secs(1)).replicas, 1);
        let two = Input { lag: Ok(lag(1_200, 4)), ..stuck };
        assert_eq!(decide(&two, &mut h, secs(2)).replicas, 2);
    }

    #[test]
    fn a_delay_desire_comes_down_through_the_window() {
        let s = with_target(spec(1, 4, 1_000_000, 60, false), "2s");
        let mut h = History::default();
        let old = Input {
            spec: &s,
            partitions: 4,
            current: Some(1),
            ready: 0,
            lag: Ok(lag(400, 4)),
            not_draining: NONE,
            age: Some(&OldestAge::Known(secs(8))),
            paused: false,
        };
        assert_eq!(decide(&old, &mut h, secs(0)).replicas, 4);
        let drained = Input { current: Some(4), lag: Ok(lag(0, 0)), age: Some(&OldestAge::Nothing), ..old };
        let d = decide(&drained, &mut h, secs(30));
        assert_eq!((d.replicas, d.why), (4, Why::Stabilizing { lowest: 1 }));
        assert_eq!(decide(&drained, &mut h, secs(61)).replicas, 1);
    }

    fn reading(partition: i32, high: i64, committed: Option<i64>) -> Reading {
        (TopicPartition { topic: "p.chat-messages".into(), partition }, PartitionOffsets { low: 0, high, committed })
    }

    fn names(stuck: &[TopicPartition]) -> Vec<String> {
        stuck.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_partition_is_not_draining_once_its_offset_stood_still_with_lag_for_the_window() {
        let mut p = Progress::default();
        let window = secs(30); // 3 polls of 10 s
        let poll = |p: &mut Progress, t, readings: &[Reading]| {
            names(&p.observe(readings, OffsetReset::Earliest, 1, secs(t), window))
        };
        // Partition 0 drains, 1 stands still at 5 with lag, 2 has no lag.
        let at = |moving: i64, high1: i64| {
            [reading(0, 100, Some(moving)), reading(1, high1, Some(5)), reading(2, 9, Some(9))]
        };
        assert!(poll(&mut p, 0, &at(10, 50)).is_empty());
        assert!(poll(&mut p, 10, &at(20, 60)).is_empty(), "more lag is not progress, but one poll is not enough");
        assert!(poll(&mut p, 20, &at(30, 70)).is_empty());
        assert_eq!(poll(&mut p, 30, &at(40, 80)), ["p.chat-messages-1"]);
        assert_eq!(poll(&mut p, 40, &at(50, 80)), ["p.chat-messages-1"]);
        // It moves: draining again, and the count starts over.
        let moved = [reading(1, 80, Some(6))];
        assert!(poll(&mut p, 50, &moved).is_empty());
        assert!(poll(&mut p, 70, &moved).is_empty());
        assert_eq!(poll(&mut p, 80, &moved), ["p.chat-messages-1"]);
        // Its lag consumed (committed at the end): nothing to drain.
        assert!(poll(&mut p, 90, &[reading(1, 80, Some(80))]).is_empty());
        assert!(poll(&mut p, 200, &[reading(1, 90, Some(80))]).is_empty(), "new lag starts a new count");
    }

    #[test]
    fn a_partition_never_committed_can_be_not_draining_and_a_first_commit_is_progress() {
        let mut p = Progress::default();
        let window = secs(20);
        let observe =
            |p: &mut Progress, t, r: Reading| names(&p.observe(&[r], OffsetReset::Earliest, 2, secs(t), window));
        assert!(observe(&mut p, 0, reading(3, 40, None)).is_empty());
        assert_eq!(observe(&mut p, 20, reading(3, 40, None)), ["p.chat-messages-3"]);
        assert!(observe(&mut p, 30, reading(3, 40, Some(1))).is_empty(), "None to 1 is a move");
    }

    #[test]
    fn without_ready_replicas_nothing_is_not_draining_and_a_missed_poll_keeps_the_count() {
        let mut p = Progress::default();
        let window = secs(20);
        let stuck = [reading(0, 50, Some(5))];
        let observe =
            |p: &mut Progress, t, ready| names(&p.observe(&stuck, OffsetReset::Earliest, ready, secs(t), window));
        assert!(observe(&mut p, 0, 1).is_empty());
        assert!(observe(&mut p, 10, 0).is_empty(), "no consumer ready: standing still is expected");
        assert!(observe(&mut p, 20, 1).is_empty(), "the count starts again when they are ready");
        assert!(observe(&mut p, 30, 1).is_empty());
        assert_eq!(observe(&mut p, 40, 1), ["p.chat-messages-0"]);
        // Polls at 50 and 60 could not be read: the offset, unchanged at 70,
        // stood still through them.
        assert_eq!(observe(&mut p, 70, 1), ["p.chat-messages-0"], "a gap is no progress");
        let moved = [reading(0, 50, Some(6))];
        assert!(names(&p.observe(&moved, OffsetReset::Earliest, 1, secs(90), window)).is_empty(), "a move is");
    }

    #[test]
    fn partitions_are_named_as_kafka_names_them_and_lag_subtracts() {
        let tp = TopicPartition { topic: "ns.chat.chat-messages".into(), partition: 11 };
        assert_eq!(tp.to_string(), "ns.chat.chat-messages-11");
        assert_eq!(lag(1_000, 4).without(lag(300, 1)), lag(700, 3));
        assert_eq!(lag(10, 1).without(lag(300, 2)), NONE, "never below zero");
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

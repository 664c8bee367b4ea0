//! Where the time after the gateway's accept goes, by stage of the data
//! path: read from the gateway's `parley_gateway_publish_seconds` (stage
//! `acked`: the send durable in Kafka) and the consumers'
//! `parley_consumer_message_age_seconds` histograms (storage: received,
//! stored, published; push: fetched, pushed), differenced over the timed
//! phase so warm-up is left out.
//! Quantiles are interpolated inside the 1.5×-wide buckets, so they are
//! estimates, good for telling which stage grows, not for a goal.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

const BUCKET: &str = "parley_consumer_message_age_seconds_bucket{";
const GATEWAY_BUCKET: &str = "parley_gateway_publish_seconds_bucket{";
const GATEWAY_STAGE: &str = "acked";

/// Cumulative bucket counts per stage: (upper bound in seconds, count).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot(BTreeMap<String, Vec<(f64, u64)>>);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StageAge {
    pub stage: String,
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The order messages pass the stages in.
const ORDER: [&str; 6] = [GATEWAY_STAGE, "received", "stored", "published", "fetched", "pushed"];

impl Snapshot {
    /// Parse the bucket lines of one or more `/metrics` texts.
    pub fn parse(texts: &[String]) -> Self {
        let mut out: BTreeMap<String, Vec<(f64, u64)>> = BTreeMap::new();
        for line in texts.iter().flat_map(|t| t.lines()) {
            let (rest, mut stage) = match (line.strip_prefix(BUCKET), line.strip_prefix(GATEWAY_BUCKET)) {
                (Some(rest), _) => (rest, None),
                (None, Some(rest)) => (rest, Some(GATEWAY_STAGE.to_owned())),
                (None, None) => continue,
            };
            let Some((labels, count)) = rest.split_once("} ") else { continue };
            let mut le = None;
            for pair in labels.split(',') {
                match pair.split_once('=').map(|(k, v)| (k, v.trim_matches('"'))) {
                    Some(("le", v)) => le = if v == "+Inf" { Some(f64::INFINITY) } else { v.parse().ok() },
                    Some(("stage", v)) => stage = Some(v.to_owned()),
                    _ => {}
                }
            }
            let count = count.split_whitespace().next().and_then(|c| c.parse::<f64>().ok());
            if let (Some(le), Some(stage), Some(count)) = (le, stage, count) {
                out.entry(stage).or_default().push((le, count as u64));
            }
        }
        for buckets in out.values_mut() {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        Snapshot(out)
    }

    /// What was observed after `before` was taken, stage by stage, in path order.
    pub fn since(&self, before: &Snapshot) -> Vec<StageAge> {
        let mut stages: Vec<&String> = self.0.keys().collect();
        stages.sort_by_key(|s| ORDER.iter().position(|o| o == s).unwrap_or(ORDER.len()));
        stages
            .into_iter()
            .filter_map(|stage| {
                let earlier = before.0.get(stage);
                let delta: Vec<(f64, u64)> = self.0[stage]
                    .iter()
                    .map(|&(le, n)| {
                        let was = earlier.and_then(|b| b.iter().find(|(l, _)| *l == le)).map_or(0, |(_, c)| *c);
                        (le, n.saturating_sub(was))
                    })
                    .collect();
                let count = delta.last().map_or(0, |(_, n)| *n);
                (count > 0).then(|| StageAge {
                    stage: stage.clone(),
                    count,
                    p50_ms: quantile_ms(&delta, 0.5),
                    p99_ms: quantile_ms(&delta, 0.99),
                })
            })
            .collect()
    }
}

/// Prometheus-style `histogram_quantile`: linear inside the bucket that
/// holds the rank; a rank in the +Inf bucket reports the last finite bound.
fn quantile_ms(cumulative: &[(f64, u64)], q: f64) -> f64 {
    let total = cumulative.last().map_or(0, |(_, n)| *n);
    let rank = q * total as f64;
    let (mut lower, mut below): (f64, u64) = (0.0, 0);
    for &(le, n) in cumulative {
        if n as f64 >= rank {
            if le.is_infinite() {
                return ms(lower);
            }
            let within = (n - below).max(1) as f64;
            return ms(lower + (le - lower) * ((rank - below as f64) / within));
        }
        (lower, below) = (le, n);
    }
    ms(lower)
}

/// Seconds as milliseconds to one decimal.
fn ms(seconds: f64) -> f64 {
    (seconds * 10_000.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(stage: &str, counts: &[(&str, u64)]) -> String {
        counts
            .iter()
            .map(|(le, n)| format!("parley_consumer_message_age_seconds_bucket{{le=\"{le}\",stage=\"{stage}\"}} {n}\n"))
            .collect()
    }

    #[test]
    fn quantiles_come_from_the_difference_of_two_snapshots() {
        let before = Snapshot::parse(&[text("stored", &[("0.01", 100), ("0.02", 100), ("+Inf", 100)])]);
        // 100 new observations, all between 10 and 20 ms.
        let after = Snapshot::parse(&[
            text("stored", &[("0.01", 100), ("0.02", 200), ("+Inf", 200)]),
            text("received", &[("0.01", 50), ("0.02", 50), ("+Inf", 50)]),
        ]);
        let ages = after.since(&before);
        assert_eq!(ages.iter().map(|a| a.stage.as_str()).collect::<Vec<_>>(), ["received", "stored"]);
        let stored = &ages[1];
        assert_eq!(stored.count, 100);
        assert_eq!(stored.p50_ms, 15.0);
        assert_eq!(stored.p99_ms, 19.9);
        assert_eq!(ages[0].p50_ms, 5.0, "a stage absent before counts from zero");
    }

    #[test]
    fn the_gateway_publish_histogram_is_the_first_stage() {
        let gateway = "parley_gateway_publish_seconds_bucket{le=\"0.01\"} 4\n\
                       parley_gateway_publish_seconds_bucket{le=\"+Inf\"} 4\n";
        let s = Snapshot::parse(&[text("pushed", &[("0.02", 4), ("+Inf", 4)]), gateway.to_owned()]);
        let ages = s.since(&Snapshot::default());
        assert_eq!(ages.iter().map(|a| a.stage.as_str()).collect::<Vec<_>>(), ["acked", "pushed"]);
        assert_eq!((ages[0].count, ages[0].p50_ms), (4, 5.0));
    }

    #[test]
    fn nothing_new_means_no_figures_and_other_lines_are_ignored() {
        let t = text("pushed", &[("0.01", 3), ("+Inf", 3)]) + "parley_consumer_messages_stored_total 9\n# EOF\n";
        let s = Snapshot::parse(&[t]);
        assert!(s.since(&s).is_empty());
        assert_eq!(s.since(&Snapshot::default())[0].count, 3);
    }

    #[test]
    fn a_rank_beyond_the_last_bound_reports_that_bound() {
        let s = Snapshot::parse(&[text("fetched", &[("0.5", 1), ("+Inf", 10)])]);
        assert_eq!(s.since(&Snapshot::default())[0].p50_ms, 500.0);
    }
}

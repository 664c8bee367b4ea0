//! Verdicts over every run of the same code: one run can land on either
//! side of a goal at its edge, so a goal is judged on the median of the
//! runs and the worst run is shown beside it.

use serde::Serialize;

/// Which way a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

/// A figure over runs: how many, their median and the worst of them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub runs: usize,
    pub median: f64,
    pub worst: f64,
}

impl Spread {
    /// None without runs. A run that has no figure (it gave up) should be
    /// passed as the worst possible value (infinity for `Lower`), so it
    /// counts against the median instead of being left out.
    pub fn of(values: &[f64], better: Better) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        let worst = match better {
            Better::Lower => v[n - 1],
            Better::Higher => v[0],
        };
        Some(Spread { runs: n, median, worst })
    }

    /// The median within the goal (inclusive).
    pub fn meets(&self, goal: f64, better: Better) -> bool {
        match better {
            Better::Lower => self.median <= goal,
            Better::Higher => self.median >= goal,
        }
    }

    /// "53.1 s" for one run, "median 56.6 s, worst 64.7 s" for more
    /// (`runs` says how many); `fmt` formats one value with its unit.
    pub fn text(&self, fmt: impl Fn(f64) -> String) -> String {
        if self.runs == 1 {
            fmt(self.median)
        } else {
            format!("median {}, worst {}", fmt(self.median), fmt(self.worst))
        }
    }

    /// How many runs, after a row's figures; nothing for one run.
    pub fn runs_note(&self) -> String {
        if self.runs == 1 { String::new() } else { format!("; {} runs", self.runs) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts_and_the_worst_by_direction() {
        let s = Spread::of(&[64.7, 53.1, 56.6, 57.3], Better::Lower).unwrap();
        assert_eq!((s.runs, s.median, s.worst), (4, (56.6 + 57.3) / 2.0, 64.7));
        let s = Spread::of(&[3.0, 1.0, 2.0], Better::Higher).unwrap();
        assert_eq!((s.runs, s.median, s.worst), (3, 2.0, 1.0));
        assert_eq!(Spread::of(&[], Better::Lower), None);
    }

    #[test]
    fn the_verdict_follows_the_median_not_the_latest_or_best_run() {
        // The operator's 1,000 ChatClusters: met by the median although
        // one run missed 60 s.
        let s = Spread::of(&[64.7, 53.1, 56.6, 57.3], Better::Lower).unwrap();
        assert!(s.meets(60.0, Better::Lower));
        // Two of three runs over the goal: missed, whichever came last.
        let s = Spread::of(&[61.0, 62.0, 53.1], Better::Lower).unwrap();
        assert!(!s.meets(60.0, Better::Lower));
        let s = Spread::of(&[49_000.0, 51_000.0, 52_000.0], Better::Higher).unwrap();
        assert!(s.meets(50_000.0, Better::Higher));
        assert!(!s.meets(51_500.0, Better::Higher));
        assert!(Spread::of(&[50.0], Better::Lower).unwrap().meets(50.0, Better::Lower), "the goal is inclusive");
    }

    #[test]
    fn a_run_that_gave_up_counts_as_the_worst() {
        let s = Spread::of(&[50.0, f64::INFINITY, 55.0], Better::Lower).unwrap();
        assert_eq!((s.median, s.worst), (55.0, f64::INFINITY));
        assert!(s.meets(60.0, Better::Lower));
        let s = Spread::of(&[50.0, f64::INFINITY], Better::Lower).unwrap();
        assert!(!s.meets(60.0, Better::Lower), "half the runs gave up");
    }

    #[test]
    fn text_shows_the_worst_only_beside_a_median() {
        let s = |v: &[f64]| Spread::of(v, Better::Lower).unwrap().text(|x| format!("{x:.1} s"));
        assert_eq!(s(&[53.1]), "53.1 s");
        assert_eq!(s(&[64.7, 53.1, 56.6]), "median 56.6 s, worst 64.7 s");
    }
}

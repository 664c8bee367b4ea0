//! The readers' figures merged into the run's: one histogram per latency,
//! one timeline, and the acks and receipts the ledger checks.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use hdrhistogram::Histogram;

use super::GOAL_P99_DELIVER_MS;
use super::read::Seen;
use crate::error::Result;
use crate::latency;
use crate::ledger::{Acked, Received};
use crate::timeline::Timeline;

pub(super) struct Tally {
    pub(super) ack: Histogram<u64>,
    pub(super) deliver: Histogram<u64>,
    pub(super) to_accept: Histogram<u64>,
    pub(super) from_accept: Histogram<u64>,
    pub(super) timeline: Timeline,
    pub(super) acked: Vec<Acked>,
    /// User → what it received, in order.
    pub(super) received: HashMap<String, Vec<Received>>,
    /// Error code → count; ordered, so the result file is stable.
    pub(super) error_frames: BTreeMap<String, u64>,
    pub(super) closed_early: u32,
}

impl Tally {
    pub(super) fn of(seen: Vec<Seen>, length: Duration) -> Result<Self> {
        let mut t = Tally {
            ack: latency::histogram(),
            deliver: latency::histogram(),
            to_accept: latency::histogram(),
            from_accept: latency::histogram(),
            timeline: Timeline::new(GOAL_P99_DELIVER_MS, length),
            acked: Vec::new(),
            received: HashMap::new(),
            error_frames: BTreeMap::new(),
            closed_early: 0,
        };
        for s in seen {
            latency::merge(&mut t.ack, &s.ack)?;
            latency::merge(&mut t.deliver, &s.deliver)?;
            latency::merge(&mut t.to_accept, &s.to_accept)?;
            latency::merge(&mut t.from_accept, &s.from_accept)?;
            t.timeline.merge(&s.timeline);
            t.acked.extend(s.acks);
            for (code, n) in s.errors {
                *t.error_frames.entry(code).or_default() += n;
            }
            t.closed_early += u32::from(s.closed_early);
            t.received.insert(s.user, s.received);
        }
        Ok(t)
    }
}

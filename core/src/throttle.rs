//! At most one log line per interval for an event that can repeat without
//! bound (a flood of slow clients, say), the line saying how many it stands
//! for: the log stays readable and its size bounded whatever the load.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Throttle {
    interval: Duration,
    /// When the last line was allowed, and the events since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    pub const fn new(interval: Duration) -> Self {
        Self { interval, state: Mutex::new((None, 0)) }
    }

    /// Count one event at `now`. `Some(n)` when a line is due: it stands for
    /// `n` events (this one and those held back since the last line).
    pub fn due(&self, now: Instant) -> Option<u64> {
        // A poisoned lock only means a holder panicked; the counts are still usable.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (last, held) = &mut *state;
        *held += 1;
        if last.is_some_and(|at| now.saturating_duration_since(at) < self.interval) {
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_counting_what_it_held_back() {
        let t = Throttle::new(Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(t.due(start), Some(1), "the first event is logged at once");
        for i in 1..=500 {
            assert_eq!(t.due(start + Duration::from_millis(i)), None);
        }
        assert_eq!(t.due(start + Duration::from_millis(1000)), Some(501), "the next line counts the 500 held back");
        assert_eq!(t.due(start + Duration::from_millis(1001)), None);
        assert_eq!(t.due(start + Duration::from_secs(5)), Some(2));
    }
}

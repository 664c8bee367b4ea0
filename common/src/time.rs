//! Wall-clock helpers. Timestamps on the wire and in storage are Unix
//! milliseconds, which JavaScript's `Date` reads directly.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

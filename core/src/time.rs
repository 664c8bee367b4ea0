//! Wall-clock helpers. Timestamps on the wire and in storage are Unix
//! milliseconds, which JavaScript's `Date` reads directly.

use std::time::{SystemTime, UNIX_EPOCH};

use thiserror::Error;

pub fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// Why a text is not a duration (a flag's value; clap shows the message).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DurationError {
    #[error("`{0}` is not a duration like 10s, 5m or 24h")]
    NotADuration(String),
    #[error("`{0}` is too long")]
    TooLong(String),
    #[error("unknown duration unit `{unit}` in `{text}`")]
    UnknownUnit { unit: String, text: String },
}

/// Parse `250ms`, `10s`, `5m`, `24h`, `2d` (a bare number means seconds).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, DurationError> {
    use std::time::Duration;
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| DurationError::NotADuration(s.to_owned()))?;
    let secs =
        |mult: u64| n.checked_mul(mult).map(Duration::from_secs).ok_or_else(|| DurationError::TooLong(s.to_owned()));
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86400),
        _ => Err(DurationError::UnknownUnit { unit: unit.to_owned(), text: s.to_owned() }),
    }
}

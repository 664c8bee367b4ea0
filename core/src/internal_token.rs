//! The shared secret of the gateways' internal stream: push consumers
//! present it as `Authorization: Bearer <token>` when they open
//! `/internal/stream`, so no other pod can push frames to connected users.
//! In a cluster the operator creates it (a random token in a Secret of the
//! ChatCluster's own) and hands it to the gateway and push pods.

use thiserror::Error;

/// Environment variable (and flag `--internal-token`) of both sides.
pub const ENV: &str = "PARLEY_INTERNAL_TOKEN";
/// Shorter tokens are refused at start: guessable.
pub const MIN_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("the internal stream token must be at least {MIN_LEN} bytes (it has {len})")]
pub struct TooShort {
    pub len: usize,
}

/// A token a process may start with.
pub fn validate(token: &str) -> Result<(), TooShort> {
    if token.len() < MIN_LEN {
        return Err(TooShort { len: token.len() });
    }
    Ok(())
}

/// The `Authorization` header value a push consumer sends.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Does an `Authorization` header value carry `expected`? Compared in time
/// independent of where the bytes differ, so the answer's timing does not
/// spell the token out a byte at a time.
pub fn authorizes(header: Option<&str>, expected: &str) -> bool {
    let Some(presented) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    let (a, b) = (presented.as_bytes(), expected.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (x, y) in a.iter().zip(b.iter().cycle()) {
        diff |= usize::from(x ^ y);
    }
    diff == 0 && !b.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_authorizes() {
        let t = "0123456789abcdef0123";
        assert!(authorizes(Some(&bearer(t)), t));
        assert!(!authorizes(None, t));
        assert!(!authorizes(Some(t), t), "the scheme is required");
        assert!(!authorizes(Some("Bearer 0123456789abcdef012"), t), "a prefix is not the token");
        assert!(!authorizes(Some("Bearer 0123456789abcdef01234"), t), "nor a longer one");
        assert!(!authorizes(Some("Bearer 0123456789abcdef0124"), t));
        assert!(!authorizes(Some("Bearer "), ""), "an empty token authorizes nothing");
    }

    #[test]
    fn short_tokens_are_refused() {
        assert_eq!(validate("short"), Err(TooShort { len: 5 }));
        assert!(validate(&"x".repeat(MIN_LEN)).is_ok());
        assert!(TooShort { len: 5 }.to_string().contains("at least 16 bytes"));
    }
}

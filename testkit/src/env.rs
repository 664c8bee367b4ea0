//! Where the environment is: read from the variables `scripts/env/up.sh`
//! writes to `$PARLEY_RUN/env.sh`.

/// The value of `name`, or a panic telling how to start the environment.
pub fn require(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{name} is not set: these tests need the real environment; \
             run them with scripts/test.sh (or `source $PARLEY_RUN/env.sh` after scripts/env/up.sh)"
        ),
    }
}

pub fn kafka_bootstrap() -> String {
    require("KAFKA_BOOTSTRAP_SERVERS")
}

pub fn kubeconfig() -> String {
    require("KUBECONFIG")
}

pub fn database_url() -> String {
    require("DATABASE_URL")
}

/// A name unique to this test run, so reruns against a long-lived
/// environment never collide with leftovers.
pub fn unique(prefix: &str) -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos();
    format!("{prefix}-{:x}-{:x}", std::process::id(), nanos & 0xffff_ffff)
}

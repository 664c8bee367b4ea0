//! Readiness as data: a process names the conditions it needs to do its
//! job (Kafka reachable, database reachable, group joined, ...) and
//! `/readyz` answers 200 only while every one holds; otherwise 503 with the
//! ones that do not and why, which the kubelet records in the pod's events.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Named conditions, each holding or not (with the reason).
#[derive(Debug)]
pub struct Readiness {
    checks: Mutex<BTreeMap<&'static str, Result<(), String>>>,
}

/// What `/readyz` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub ready: bool,
    pub body: String,
}

impl Report {
    /// The HTTP status for a probe: 200 or 503.
    pub fn status(&self) -> u16 {
        if self.ready { 200 } else { 503 }
    }
}

/// How often a process checks its conditions again, and how long one check
/// may take before it counts as failed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a condition says before anything has been checked.
pub const NOT_CHECKED: &str = "not checked yet";

impl Readiness {
    /// A process that needs `names`, none of them known to hold yet; with no
    /// names it is ready at once.
    pub fn new(names: &[&'static str]) -> Arc<Self> {
        let checks = names.iter().map(|n| (*n, Err(NOT_CHECKED.to_owned()))).collect();
        Arc::new(Self { checks: Mutex::new(checks) })
    }

    /// Record the outcome of checking `name` (a name not given to `new` is
    /// added: it then counts too).
    pub fn set(&self, name: &'static str, outcome: Result<(), String>) {
        let mut checks = self.checks.lock().unwrap_or_else(|e| e.into_inner());
        let before = checks.insert(name, outcome.clone());
        // Log changes only: probes run every few seconds.
        if before.as_ref() != Some(&outcome) {
            match &outcome {
                Ok(()) => tracing::info!(check = name, "ready: {name} holds"),
                Err(why) => tracing::warn!(check = name, reason = %why, "not ready: {name}"),
            }
        }
    }

    pub fn report(&self) -> Report {
        report(&self.checks.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Check `name` now and then every `interval` until `shutdown`; `check`
    /// is given `timeout` (one that takes longer counts as failed).
    pub fn probe_every<F, Fut>(
        self: &Arc<Self>,
        name: &'static str,
        interval: Duration,
        timeout: Duration,
        shutdown: CancellationToken,
        check: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send,
    {
        let readiness = self.clone();
        tokio::spawn(async move {
            loop {
                let outcome = match tokio::time::timeout(timeout, check()).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(format!("no answer within {timeout:?}")),
                };
                readiness.set(name, outcome);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(interval) => {}
                }
            }
        })
    }
}

/// The answer for these conditions: "ready", or "not ready" and one line per
/// condition that does not hold.
pub fn report(checks: &BTreeMap<&'static str, Result<(), String>>) -> Report {
    let failing: Vec<String> =
        checks.iter().filter_map(|(name, c)| c.as_ref().err().map(|why| format!("{name}: {why}"))).collect();
    if failing.is_empty() {
        Report { ready: true, body: "ready".to_owned() }
    } else {
        Report { ready: false, body: format!("not ready\n{}\n", failing.join("\n")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_condition_holds() {
        let r = Readiness::new(&["database", "kafka"]);
        let first = r.report();
        assert!(!first.ready);
        assert_eq!(first.status(), 503);
        assert_eq!(first.body, format!("not ready\ndatabase: {NOT_CHECKED}\nkafka: {NOT_CHECKED}\n"));

        r.set("database", Ok(()));
        assert_eq!(r.report().body, format!("not ready\nkafka: {NOT_CHECKED}\n"));
        r.set("kafka", Ok(()));
        assert_eq!(r.report(), Report { ready: true, body: "ready".to_owned() });
        assert_eq!(r.report().status(), 200);

        // A condition that stops holding makes the process unready again.
        r.set("database", Err("connection refused".to_owned()));
        let report = r.report();
        assert!(!report.ready);
        assert_eq!(report.body, "not ready\ndatabase: connection refused\n");
    }

    #[test]
    fn nothing_to_check_is_ready() {
        assert!(Readiness::new(&[]).report().ready);
    }

    #[tokio::test]
    async fn a_probe_that_hangs_counts_as_failed() {
        let r = Readiness::new(&["kafka"]);
        let shutdown = CancellationToken::new();
        let task = r.probe_every("kafka", Duration::from_secs(60), Duration::from_millis(50), shutdown.clone(), || {
            std::future::pending::<Result<(), String>>()
        });
        for _ in 0..200 {
            if r.report().body.contains("no answer") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(r.report().body, "not ready\nkafka: no answer within 50ms\n");
        shutdown.cancel();
        task.await.unwrap();
    }
}

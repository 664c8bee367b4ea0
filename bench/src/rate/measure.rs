//! What the system spent over the timed phase and the drain: CPU of each
//! process and of the load tool, memory, and the stage histograms
//! (differenced, so warm-up is left out); and the bounded drain itself.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::ProcessFigures;
use super::read::Progress;
use crate::idle::round2;
use crate::stages::{Snapshot, StageAge};
use crate::target::Target;
use parley_testkit::procfs;

/// Counters taken just before the timed phase.
pub(super) struct Usage {
    stages: Snapshot,
    /// CPU seconds of each of the target's processes, in its order.
    cpu: Vec<f64>,
    load_tool_cpu: f64,
}

/// The difference since `Usage::take`.
pub(super) struct Spent {
    pub(super) stages: Vec<StageAge>,
    pub(super) processes: Vec<ProcessFigures>,
    pub(super) load_tool_cpu_seconds: f64,
}

impl Usage {
    pub(super) fn take(target: &Target) -> Self {
        let stages = target.stage_snapshot();
        let cpu = target.processes.iter().map(|(_, p)| procfs::cpu_seconds(*p)).collect();
        Usage { stages, cpu, load_tool_cpu: procfs::cpu_seconds(std::process::id()) }
    }

    pub(super) fn since(self, target: &Target) -> Spent {
        let stages = target.stage_snapshot().since(&self.stages);
        let processes = target
            .processes
            .iter()
            .zip(self.cpu)
            .map(|((role, pid), before)| ProcessFigures {
                role: role.clone(),
                cpu_seconds: round2(procfs::cpu_seconds(*pid) - before),
                rss_kib: procfs::rss_kib(*pid),
            })
            .collect();
        let load_tool_cpu_seconds = round2(procfs::cpu_seconds(std::process::id()) - self.load_tool_cpu);
        Spent { stages, processes, load_tool_cpu_seconds }
    }
}

/// Wait (at most `limit`) for every ack and every expected delivery;
/// returns the seconds waited.
pub(super) async fn drain(progress: &Progress, sent: u64, limit: Duration) -> f64 {
    let drain_start = Instant::now();
    while drain_start.elapsed() < limit {
        if progress.acked.load(Ordering::Relaxed) >= sent
            && progress.delivered.load(Ordering::Relaxed) >= progress.expected.load(Ordering::Relaxed)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drain_start.elapsed().as_secs_f64()
}

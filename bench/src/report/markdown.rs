//! The report page: a header, the goals table, per rate mode a latency
//! table with its notes, the plot, then the other scenarios' details. Each
//! section is one function that appends to the page, in page order.

use std::fmt::Write;

use super::goals::rows;
use super::{PLOT, Results, series};
use crate::fanout::GroupsResult;
use crate::idle::IdleResult;
use crate::rate::{RateResult, RateRun};
use crate::runs::Runs;
use crate::storage::StorageResult;
use crate::storm::StormResult;

pub fn markdown(r: &Results) -> String {
    let mut s = String::from("# Benchmark report\n\n");
    header(&mut s, r);
    goals(&mut s, r);
    for (name, result) in [("Kafka mode", &r.rate_kafka), ("Standalone", &r.rate_standalone)] {
        let Some(result) = result.as_ref().map(Runs::latest) else { continue };
        let _ = writeln!(s, "\n## {name}: latency by offered rate\n");
        rate_table(&mut s, result);
        accept_split(&mut s, result);
        stage_ages(&mut s, result);
        slow_seconds(&mut s, result);
    }
    if !series(r).is_empty() {
        let _ = writeln!(s, "\n![send→deliver latency by offered rate]({PLOT})");
    }
    if let Some(i) = &r.idle {
        idle(&mut s, i.latest());
    }
    if let Some(st) = &r.storage {
        storage(&mut s, st.latest());
    }
    if let Some(st) = &r.storm {
        storm(&mut s, st.latest());
    }
    if let Some(g) = &r.groups {
        peer(&mut s, &g.results);
    }
    if r.operator.is_some() {
        s.push_str("\n## Operator\n\nSee [operator.md](operator.md).\n");
    }
    s.push_str("\nProfiles of the misses and what was changed: [profile.md](profile.md).\n");
    s
}

/// The machine (from the first result that names it) and where it all ran.
fn header(s: &mut String, r: &Results) {
    let machine = r
        .idle
        .as_ref()
        .map(|x| x.latest().machine.to_string())
        .or_else(|| r.rate_kafka.as_ref().map(|x| x.latest().machine.to_string()))
        .or_else(|| r.rate_standalone.as_ref().map(|x| x.latest().machine.to_string()))
        .or_else(|| r.storage.as_ref().map(|x| x.latest().machine.to_string()))
        .or_else(|| r.storm.as_ref().map(|x| x.latest().machine.to_string()))
        .or_else(|| r.groups.as_ref().map(|x| x.latest().machine.to_string()))
        .unwrap_or_else(|| "unknown".into());
    let _ = writeln!(
        s,
        "Machine: {machine}. Everything (Kafka 3 brokers, PostgreSQL, the system under test and the load tool) \
         runs on this one machine, over loopback. Written by `scripts/bench.sh report` from the result files \
         next to this page; each scenario's command adds a run to its own file, which keeps every run of \
         the same code. A goal is judged on the median of those runs, the worst shown beside it; the \
         sections below show the latest run.\n"
    );
}

fn goals(s: &mut String, r: &Results) {
    s.push_str("## Goals\n\n| scenario | goal | measured | verdict | command |\n| --- | --- | --- | --- | --- |\n");
    for row in rows(r) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | `{}` |",
            row.scenario,
            row.goal,
            row.measured,
            row.verdict.text(),
            row.command
        );
    }
}

/// One line per run, by offered rate.
fn rate_table(s: &mut String, result: &RateResult) {
    s.push_str(
        "| offered msg/s | achieved | users | s | send→ack p50 / p99 / p99.9 / max (ms) | send→deliver p50 / p99 / p99.9 / max (ms) | lost | dup | out of order | unacked | CPU s (process) |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let mut runs: Vec<&RateRun> = result.runs.iter().collect();
    runs.sort_by_key(|x| x.target_rate);
    for x in runs {
        let cpu: Vec<String> = x.processes.iter().map(|p| format!("{} {}", p.role, p.cpu_seconds)).collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} / {} / {} / {} | {} / {} / {} / {} | {} | {} | {} | {} | {}; load tool {} |",
            x.target_rate,
            x.achieved_rate,
            x.users,
            x.duration_seconds,
            x.send_to_ack.p50_ms,
            x.send_to_ack.p99_ms,
            x.send_to_ack.p999_ms,
            x.send_to_ack.max_ms,
            x.send_to_deliver.p50_ms,
            x.send_to_deliver.p99_ms,
            x.send_to_deliver.p999_ms,
            x.send_to_deliver.max_ms,
            x.completeness.lost,
            x.completeness.duplicated,
            x.completeness.out_of_order,
            x.unacked,
            cpu.join(", "),
            x.load_tool_cpu_seconds
        );
    }
}

// The notes below are left out when no run has their figures (result
// files older than the figures), and list runs in file order.

fn accept_split(s: &mut String, result: &RateResult) {
    let split: Vec<String> = result
        .runs
        .iter()
        .filter_map(|x| {
            let (a, b) = (x.send_to_accept?, x.accept_to_deliver?);
            Some(format!("{} msg/s: {} / {} then {} / {}", x.target_rate, a.p50_ms, a.p99_ms, b.p50_ms, b.p99_ms))
        })
        .collect();
    if !split.is_empty() {
        let _ = writeln!(
            s,
            "\nsend→deliver split at the gateway's accept stamp (whole ms), p50 / p99 ms before it, then after it: {}.",
            split.join("; ")
        );
    }
}

fn stage_ages(s: &mut String, result: &RateResult) {
    let staged: Vec<String> = result
        .runs
        .iter()
        .filter(|x| !x.stages.is_empty())
        .map(|x| {
            let each: Vec<String> =
                x.stages.iter().map(|g| format!("{} {} / {}", g.stage, g.p50_ms, g.p99_ms)).collect();
            format!("{} msg/s: {}", x.target_rate, each.join(", "))
        })
        .collect();
    if !staged.is_empty() {
        let _ = writeln!(
            s,
            "\nAge since the accept stamp at each stage, p50 / p99 ms, estimated from the processes' histograms \
             (buckets 1.5× wide): acked = the gateway's send durable in Kafka; received, stored, published = \
             the storage consumer took it, committed it, had its delivery acknowledged; fetched, pushed = the \
             push consumer took the delivery, streamed it to the gateway. {}.",
            staged.join("; ")
        );
    }
}

fn slow_seconds(s: &mut String, result: &RateResult) {
    let timed: Vec<String> = result
        .runs
        .iter()
        .filter_map(|x| Some(format!("{} msg/s: {}", x.target_rate, x.timeline.as_ref()?.line())))
        .collect();
    if !timed.is_empty() {
        let _ = writeln!(s, "\nSlow deliveries by the second they were sent in: {}.", timed.join("; "));
    }
}

fn idle(s: &mut String, i: &IdleResult) {
    let _ = writeln!(
        s,
        "\n## Idle connections\n\n{} connections in {} s; gateway RSS {} KiB → {} KiB ({} B per connection); \
         {} still open after the settle time; open-files limit {}.{}",
        i.connected,
        i.connect_seconds,
        i.gateway_rss_before_kib,
        i.gateway_rss_after_kib,
        i.gateway_rss_per_connection_bytes,
        i.open_after_settle,
        i.open_files_limit,
        i.first_error.as_ref().map(|e| format!(" First error: {e}.")).unwrap_or_default()
    );
}

fn storage(s: &mut String, st: &StorageResult) {
    let _ = writeln!(
        s,
        "\n## Storage consumer\n\n{} messages over {} conversations, {} partitions: topic filled in {} s; \
         the consumer stored {} rows in {} s after a {} s start ({} msg/s), using {} CPU s, RSS {} KiB.",
        st.messages,
        st.conversations,
        st.partitions,
        st.prefill_seconds,
        st.stored,
        st.store_seconds,
        st.startup_seconds,
        st.messages_per_second,
        st.consumer_cpu_seconds,
        st.consumer_rss_kib
    );
}

fn storm(s: &mut String, st: &StormResult) {
    let c = &st.connect_latency;
    let _ = writeln!(
        s,
        "\n## Connect storm\n\n{} groups of {} members, {} handshakes in flight: {} of {} connected in {} s \
         (connect p50 / p99 {} / {} ms); every member had seen each contact online after {}; {} presence frames \
         ({} needed, {} repeating one); server CPU {} s, load tool CPU {} s.{}{}",
        st.groups,
        st.members_per_group,
        st.concurrency,
        st.connected,
        st.users,
        st.hello_seconds,
        c.p50_ms,
        c.p99_ms,
        st.presence_seconds.map_or_else(|| "the settle time: incomplete".into(), |x| format!("{x} s")),
        st.presence_frames,
        st.presence_needed,
        st.presence_repeated,
        st.server_cpu_seconds.map_or_else(|| "unknown".into(), |x| x.to_string()),
        st.load_tool_cpu_seconds,
        st.first_error.as_ref().map(|e| format!(" First error: {e}.")).unwrap_or_default(),
        st.note.as_ref().map(|n| format!(" Note: {n}.")).unwrap_or_default()
    );
}

/// Every run of the comparison, in the order they ran (alternated).
fn peer(s: &mut String, runs: &[GroupsResult]) {
    s.push_str(
        "\n## Cost per delivery against Centrifugo\n\n\
         Members of groups sending at a total rate from random members, every other member receiving; the \
         server pinned to CPU 0, the load tool to CPU 1 (when `pinned`). Parley acks a send once it is \
         stored (SQLite); Centrifugo runs its memory engine without history. Server CPU is user + system \
         from the first timed send to the end of the drain; `lost` is what had not reached its member when \
         the drain ended (at most 15 s after the last send).\n\n\
         | server | load | pinned | sent | acked | delivered / expected | lost | send→ack p50 / p99 (ms) | \
         send→deliver p50 / p99 (ms) | server CPU s | deliveries per CPU-s | server RSS MiB | load tool CPU s |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for x in runs {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} / {} | {} | {} / {} | {} / {} | {} | {} | {} | {} |",
            x.server.name(),
            x.label,
            if x.pinned { "yes" } else { "no" },
            x.sent,
            x.acked,
            x.delivered,
            x.expected_deliveries,
            x.lost,
            x.send_to_ack.p50_ms,
            x.send_to_ack.p99_ms,
            x.send_to_deliver.p50_ms,
            x.send_to_deliver.p99_ms,
            x.server_cpu_seconds.map_or_else(|| "unknown".into(), |c| c.to_string()),
            x.deliveries_per_server_cpu_second.map_or_else(|| "unknown".into(), |d| format!("{d:.0}")),
            x.server_rss_kib.map_or_else(|| "unknown".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
            x.load_tool_cpu_seconds
        );
    }
}

//! Accuracy: the agent's per-safepoint durations (`--events`) against
//! HotSpot's own `-Xlog:safepoint` `Total`.

use std::{path::Path, time::Duration};

use anyhow::{Context, Result};
use serde::Deserialize;

use super::{
    Plan,
    procs::{Tracer, free_port, run_args},
    report::{Figure, Report},
};
use crate::util::step;
use xtask::{
    groundtruth::hotspot::{self, SafepointRecord, exact_quantile_ns},
    workloads::{JavaWorkload, monotonic_now_ns},
};

/// The fields of an `--events` line the comparison needs.
#[derive(Deserialize)]
struct Event {
    kind: String,
    cause: String,
    start_ns: u64,
    duration_ns: u64,
}

/// Pairs each safepoint event with its log line: the first line stamped at
/// or after the event's start (HotSpot stamps a safepoint's line after the
/// safepoint ends and before the next one begins, on the VM thread), which
/// must name the same operation. Returns (|agent - Total| per pair in ns,
/// unpaired events).
fn pair(events: &[Event], records: &[SafepointRecord]) -> (Vec<u64>, usize) {
    let mut errors = Vec::new();
    let mut unpaired = 0;
    for e in events.iter().filter(|e| e.kind == "safepoint") {
        let i = records.partition_point(|r| r.logged_at_ns < e.start_ns);
        match records.get(i) {
            Some(r) if r.op == e.cause => errors.push(e.duration_ns.abs_diff(r.total_ns)),
            _ => unpaired += 1,
        }
    }
    (errors, unpaired)
}

/// Runs GcHeavy with its safepoint log and the agent with `--events`.
pub fn accuracy(plan: &Plan, agent: &Path, report: &mut Report) -> Result<()> {
    step(format!(
        "accuracy: agent --events against -Xlog:safepoint on GcHeavy, {} s",
        plan.accuracy_secs
    ));
    let log = std::env::temp_dir().join(format!(
        "pausewatch-bench-{}-{}.log",
        std::process::id(),
        monotonic_now_ns()
    ));
    let mut jvm = JavaWorkload::jdk(17)?
        .duration_secs(plan.accuracy_secs)
        .gate(true)
        .stack_traces_every_ms(20)
        .system_gc_every_ms(1000)
        .log_path(&log)
        .spawn()?;
    jvm.wait_ready(Duration::from_secs(60))?;
    let mut a = Tracer::agent(agent, &run_args(&[jvm.pid()], free_port()?, &["--events"]))?;
    a.wait_armed(Duration::from_secs(60))?;
    let armed_ns = monotonic_now_ns();
    jvm.open_gate()?;
    jvm.wait_started(Duration::from_secs(30))?;
    jvm.wait_done(Duration::from_secs(plan.accuracy_secs + 60))?;
    std::thread::sleep(Duration::from_millis(500));
    let lines = a.stop()?;
    // HotSpot's memory-pool lines (`"kind":"pool_gc"`) come with the
    // pauses; they carry no cause or duration.
    let events: Vec<Event> = lines
        .iter()
        .filter(|l| !l.trim().is_empty() && !l.contains(r#""kind":"pool_gc""#))
        .map(|l| serde_json::from_str(l).with_context(|| format!("bad --events line {l:?}")))
        .collect::<Result<_>>()?;
    let events: Vec<Event> = events
        .into_iter()
        .filter(|e| e.start_ns >= armed_ns)
        .collect();
    let mut records = hotspot::read_log(&log)?.safepoints;
    records.sort_by_key(|r| r.logged_at_ns);
    let _ = std::fs::remove_file(&log);
    let (errors, unpaired) = pair(&events, &records);
    if errors.is_empty() {
        anyhow::bail!(
            "accuracy: none of {} agent events paired with any of {} -Xlog:safepoint lines",
            events.len(),
            records.len()
        );
    }
    let method = format!(
        "JDK 17 GcHeavy (young GCs, a thread dump every 20 ms, System.gc() every second) for {} s; \
         each `agent run --events` safepoint event paired with the -Xlog:safepoint line of the same \
         operation stamped first after the event's start; |agent duration - Total|. {} events paired, \
         {unpaired} unpaired",
        plan.accuracy_secs,
        errors.len()
    );
    let us = |q: f64| exact_quantile_ns(&errors, q) as f64 / 1e3;
    report.push(Figure::new(
        "accuracy_abs_error_p50",
        "µs",
        vec![us(0.5)],
        method.clone(),
    )?);
    report.push(Figure::new(
        "accuracy_abs_error_p99",
        "µs",
        vec![us(0.99)],
        method,
    )?);
    if unpaired > 0 {
        report.note(format!(
            "accuracy: {unpaired} safepoint events found no log line of the same operation"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(op: &str, logged_at_ns: u64, total_ns: u64) -> SafepointRecord {
        SafepointRecord {
            op: op.to_string(),
            logged_at_ns,
            reaching_ns: 0,
            cleanup_ns: None,
            leaving_ns: None,
            at_safepoint_ns: total_ns,
            total_ns,
        }
    }

    fn event(kind: &str, cause: &str, start_ns: u64, duration_ns: u64) -> Event {
        Event {
            kind: kind.to_string(),
            cause: cause.to_string(),
            start_ns,
            duration_ns,
        }
    }

    #[test]
    fn pairs_each_event_with_the_next_line_of_its_operation() {
        let records = [
            record("ThreadDump", 1_000, 100),
            record("G1CollectForAllocation", 2_000, 500),
        ];
        let events = [
            event("safepoint", "ThreadDump", 900, 104),
            event("gc", "minor", 1_600, 300),
            event("safepoint", "G1CollectForAllocation", 1_500, 490),
            // Names another operation than the line that follows it.
            event("safepoint", "ThreadDump", 1_800, 100),
            // After the last line.
            event("safepoint", "ThreadDump", 3_000, 100),
        ];
        let (errors, unpaired) = pair(&events, &records);
        assert_eq!(errors, [4, 10]);
        assert_eq!(unpaired, 2);
    }
}

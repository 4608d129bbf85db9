//! End to end: safepoint stragglers on a real JVM (JDK 17).
//!
//! GcHeavy runs three allocating workers (young collections every few tens
//! of ms, `ThreadDump` safepoints on a timer) and one thread named
//! `slowpoke` that runs counted loops of ~5 ms with no safepoint poll in
//! them (`-XX:-UseCountedLoopSafepoints -XX:LoopStripMiningIter=0`): every
//! safepoint requested while it is inside a loop waits for the loop to end,
//! so it is the thread that reaches those safepoints last. The agent's
//! `--events` safepoints are matched to HotSpot's `-Xlog:safepoint` lines
//! (same CLOCK_MONOTONIC clock) and checked:
//! - of the safepoints whose `Reaching safepoint` exceeds 1 ms, at least
//!   [`MIN_SLOWPOKE_SHARE`] name `slowpoke` as the straggler (the issue's
//!   acceptance);
//! - a `slowpoke` straggler arrived no later than HotSpot saw every thread
//!   stopped: `late_ns` <= Reaching + [`LATE_TOLERANCE_NS`] (the begin
//!   probe fires right after HotSpot's begin timestamp, and the arrival,
//!   the thread's futex sleep, comes before the VM thread's next check);
//! - `/metrics` agrees with the events exactly:
//!   `pausewatch_safepoint_stragglers_total{thread="slowpoke"}` is the
//!   number of events naming it, and
//!   `pausewatch_safepoint_straggler_seconds_total` their summed time to
//!   safepoint.
//!
//! Needs root (BPF) and JDK 17; fails, never skips, without them.

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use support::events::{Event, parse_events};
use support::hotspot::Jvm;
use support::scenario::observe;
use support::{Checks, ms, require_root, sum_of};
use xtask::groundtruth::hotspot;
use xtask::workloads::{JavaWorkload, find_java, monotonic_now_ns};

/// Heavy phase of the workload: ~300 safepoints, most of them long.
const HEAVY_SECS: u64 = 5;
/// Length of one of slowpoke's loops.
const SLOWPOKE_LOOP_US: u64 = 5_000;
/// The bar.
const MIN_SLOWPOKE_SHARE: f64 = 0.90;
/// Fewest long safepoints for the share to mean anything.
const MIN_LONG_SAFEPOINTS: usize = 30;
/// A safepoint is "long" above this `Reaching safepoint`.
const LONG_NS: u64 = 1_000_000;
/// How far past Reaching a straggler's arrival may be measured: the begin
/// probe runs a few µs after HotSpot's timestamp (measured offsets with
/// bpftrace: down to −7 µs).
const LATE_TOLERANCE_NS: u64 = 100_000;

#[test]
fn e2e_straggler_jdk17() {
    require_root("e2e_straggler_jdk17");
    let java = find_java(17).unwrap_or_else(|e| panic!("the straggler test needs JDK 17: {e:#}"));
    let log_path = std::env::temp_dir().join(format!(
        "pausewatch-e2e-straggler-{}-{}.log",
        std::process::id(),
        monotonic_now_ns()
    ));
    let mut jvm = JavaWorkload::new(&java)
        .heap_mb(128)
        .young_mb(Some(16))
        .live_mb(8)
        .threads(3)
        .alloc_mb_per_sec(150)
        .stack_traces_every_ms(25)
        .duration_secs(HEAVY_SECS)
        .gate(true)
        .workload_arg("--slowpoke-loop-us")
        .workload_arg(SLOWPOKE_LOOP_US.to_string())
        .jvm_arg("-XX:-UseCountedLoopSafepoints")
        .jvm_arg("-XX:LoopStripMiningIter=0")
        .log_path(&log_path)
        .spawn()
        .unwrap_or_else(|e| panic!("starting GcHeavy on JDK 17: {e:#}"));
    jvm.wait_ready(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mut jvm = Jvm {
        label: "JDK 17 slowpoke".into(),
        jvm,
        log: log_path.clone(),
        armed: "hotspot 17.".into(),
        started_within: Some(Duration::from_secs(10)),
        done_within: Duration::from_secs(HEAVY_SECS + 30),
    };
    let pid = jvm.jvm.pid();
    let o = observe(
        &mut jvm,
        &["--events", "--summary", "0"],
        Duration::from_secs(5),
    );
    assert!(
        o.status.is_some_and(|s| s.success()),
        "the agent did not exit 0 (status {:?}); stderr:\n{}",
        o.status,
        o.stderr
    );
    let events = parse_events(&o.events);
    let log = hotspot::read_log(&log_path).unwrap_or_else(|e| panic!("{e:#}"));

    let mut c = Checks::new();
    let mut table = String::new();
    // Every safepoint event, with the log record of the same safepoint: the
    // first line logged at or after the event's begin probe (the VM thread
    // logs each safepoint before it begins the next).
    let records = &log.safepoints;
    let mut safepoints: Vec<&Event> = events
        .iter()
        .filter(|e| e.pid == pid && e.kind == "safepoint" && e.cause != "unknown")
        .collect();
    safepoints.sort_by_key(|e| e.start_ns);
    let mut long = 0usize;
    let mut long_slowpoke = 0usize;
    let mut misses: BTreeMap<String, usize> = BTreeMap::new();
    let mut late_over: Vec<(u64, u64)> = Vec::new();
    let mut slowpoke_late = Vec::new();
    let mut runnable = 0usize;
    let mut unmatched = 0usize;
    for e in &safepoints {
        let i = records.partition_point(|r| r.logged_at_ns < e.start_ns);
        let Some(r) = records.get(i).filter(|r| r.op == e.cause) else {
            unmatched += 1;
            continue;
        };
        let name = e.straggler.as_ref().map(|s| s.thread.as_str());
        if r.reaching_ns > LONG_NS {
            long += 1;
            if name == Some("slowpoke") {
                long_slowpoke += 1;
            } else {
                *misses
                    .entry(name.unwrap_or("(none)").to_string())
                    .or_default() += 1;
            }
        }
        if let Some(s) = e.straggler.as_ref().filter(|s| s.thread == "slowpoke") {
            slowpoke_late.push(r.reaching_ns as i64 - s.late_ns as i64);
            runnable += usize::from(s.state == "runnable");
            if s.late_ns > r.reaching_ns + LATE_TOLERANCE_NS {
                late_over.push((s.late_ns, r.reaching_ns));
            }
        }
    }
    let share = long_slowpoke as f64 / long.max(1) as f64;
    slowpoke_late.sort_unstable();
    let median_gap = slowpoke_late
        .get(slowpoke_late.len() / 2)
        .copied()
        .unwrap_or(0);
    let _ = writeln!(
        table,
        "{} safepoint events ({unmatched} without a log line), {long} with Reaching > 1 ms: \
         {long_slowpoke} name slowpoke ({:.1}%); others {misses:?}",
        safepoints.len(),
        share * 100.0
    );
    let _ = writeln!(
        table,
        "slowpoke stragglers: {} ({runnable} runnable); Reaching - late_ns median {}",
        slowpoke_late.len(),
        ms(median_gap as f64)
    );
    c.check(long >= MIN_LONG_SAFEPOINTS, || {
        format!(
            "only {long} safepoints with Reaching > 1 ms: the workload did not stall safepoints"
        )
    });
    c.check(share >= MIN_SLOWPOKE_SHARE, || {
        format!(
            "{long_slowpoke} of {long} long safepoints name slowpoke ({:.1}%, want >= {:.0}%)",
            share * 100.0,
            MIN_SLOWPOKE_SHARE * 100.0
        )
    });
    c.check(late_over.is_empty(), || {
        format!(
            "{} slowpoke arrivals after HotSpot saw all threads stopped (late_ns, Reaching): {:?}",
            late_over.len(),
            &late_over[..late_over.len().min(10)]
        )
    });
    c.check(unmatched * 100 <= safepoints.len(), || {
        format!(
            "{unmatched} of {} events matched no log line",
            safepoints.len()
        )
    });

    // /metrics against the events, exactly.
    let pid_s = pid.to_string();
    let sel = [("pid", pid_s.as_str()), ("thread", "slowpoke")];
    let named: Vec<&&Event> = safepoints
        .iter()
        .filter(|e| e.straggler.as_ref().is_some_and(|s| s.thread == "slowpoke"))
        .collect();
    let metric_count = sum_of(&o.samples, "pausewatch_safepoint_stragglers_total", &sel);
    let metric_s = sum_of(
        &o.samples,
        "pausewatch_safepoint_straggler_seconds_total",
        &sel,
    );
    let events_ns: u64 = named.iter().filter_map(|e| e.time_to_safepoint_ns).sum();
    let _ = writeln!(
        table,
        "metrics: {metric_count} slowpoke safepoints, {metric_s:.6} s; events: {}, {:.6} s",
        named.len(),
        events_ns as f64 / 1e9
    );
    c.eq(
        "pausewatch_safepoint_stragglers_total{thread=\"slowpoke\"}",
        metric_count,
        named.len() as f64,
    );
    c.within(
        "pausewatch_safepoint_straggler_seconds_total{thread=\"slowpoke\"} (s)",
        metric_s,
        events_ns as f64 / 1e9,
        1e-9,
    );
    let lost = sum_of(&o.samples, "pausewatch_lost_events_total", &[]);
    c.eq("lost events", lost, 0.0);
    // The time_to_safepoint finding holds and its advice names the thread.
    let pid_s = pid.to_string();
    let advice: Vec<String> = support::select(
        &o.samples,
        "pausewatch_recommendation_info",
        &[("pid", pid_s.as_str()), ("rule", "time_to_safepoint")],
    )
    .iter()
    .map(|s| s.label("advice").to_string())
    .collect();
    let _ = writeln!(table, "time_to_safepoint advice: {advice:?}");
    c.check(advice.iter().any(|a| a.contains("\"slowpoke\"")), || {
        format!("the time_to_safepoint finding does not name slowpoke: {advice:?}")
    });
    eprintln!("{table}");
    c.finish(&format!(
        "{table}\nHotSpot log at {}\nagent stderr:\n{}",
        log_path.display(),
        o.stderr
    ));
}

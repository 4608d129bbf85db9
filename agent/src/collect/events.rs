//! Pause events from the ring buffer, printed as JSON lines (`--events`).

use serde::Serialize;

/// One pause as printed on stdout.
#[derive(Debug, Serialize)]
pub struct EventLine<'a> {
    /// Process id.
    pub pid: u32,
    /// Thread that ran the pause (the VM thread for HotSpot).
    pub tid: u32,
    /// Runtime label.
    pub runtime: &'a str,
    /// `safepoint`, `gc`, ...
    pub kind: &'a str,
    /// The cause, as in the `cause` label.
    pub cause: &'a str,
    /// CLOCK_MONOTONIC nanoseconds at the pause's start (comparable with
    /// HotSpot's `-Xlog` `timenanos` decoration and `System.nanoTime()`).
    pub start_ns: u64,
    /// Duration in nanoseconds.
    pub duration_ns: u64,
    /// Time to safepoint in nanoseconds, for HotSpot safepoints; for Go
    /// 1.23+ stop-the-world pauses their stopping time (the runtime's
    /// `/sched/pauses/stopping`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_safepoint_ns: Option<u64>,
    /// For pauses with anatomy: how the driving thread spent the pause.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<ThreadTimes>,
}

/// A thread's time in a pause, by scheduler state; the three sum to the
/// pause's `duration_ns`.
#[derive(Debug, Serialize)]
pub struct ThreadTimes {
    /// On a CPU.
    pub running_ns: u64,
    /// Ready to run, waiting for a CPU.
    pub runnable_ns: u64,
    /// Sleeping or waiting.
    pub blocked_ns: u64,
}

impl ThreadTimes {
    /// The times of a BPF per-state array, or `None` when it is all zero
    /// (no anatomy for this pause).
    pub fn of(state_ns: &[u64; pausewatch_common::THREAD_STATES]) -> Option<ThreadTimes> {
        let [running_ns, runnable_ns, blocked_ns] = *state_ns;
        (running_ns | runnable_ns | blocked_ns != 0).then_some(ThreadTimes {
            running_ns,
            runnable_ns,
            blocked_ns,
        })
    }
}

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
    /// For HotSpot safepoints: the thread that reached it last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub straggler: Option<Straggler>,
}

/// The last thread to reach a safepoint (see `ebpf/src/straggler.rs`).
#[derive(Debug, Serialize)]
pub struct Straggler {
    /// Its thread id.
    pub tid: u32,
    /// Its name as the kernel has it (HotSpot names native threads after
    /// Java threads: the first 15 bytes), not normalised.
    pub thread: String,
    /// `running` or `runnable`: where it spent most of its wait.
    pub state: &'static str,
    /// Nanoseconds from the safepoint's begin to its arrival.
    pub late_ns: u64,
}

impl Straggler {
    /// The straggler of a BPF pause event, or `None` when it has none.
    pub fn of(e: &pausewatch_common::PauseEvent) -> Option<Straggler> {
        use pausewatch_common::ThreadState;
        (e.straggler_tid != 0).then(|| Straggler {
            tid: e.straggler_tid,
            thread: super::stragglers::comm_text(&e.straggler_comm),
            state: if e.straggler_state == ThreadState::Runnable as u32 {
                ThreadState::Runnable.label()
            } else {
                ThreadState::Running.label()
            },
            late_ns: e.straggler_late_ns,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use pausewatch_common::{PauseEvent, ThreadState};

    #[test]
    fn a_straggler_decodes_from_the_event() {
        let mut e = PauseEvent::default();
        assert!(Straggler::of(&e).is_none());
        e.straggler_tid = 42;
        e.straggler_state = ThreadState::Runnable as u32;
        e.straggler_late_ns = 1_500_000;
        e.straggler_comm[..8].copy_from_slice(b"slowpoke");
        let s = Straggler::of(&e).unwrap();
        assert_eq!(
            (s.tid, s.thread.as_str(), s.state, s.late_ns),
            (42, "slowpoke", "runnable", 1_500_000)
        );
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"{"tid":42,"thread":"slowpoke","state":"runnable","late_ns":1500000}"#
        );
    }
}

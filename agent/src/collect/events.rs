//! Pause events from the ring buffer, printed as JSON lines (`--events`),
//! and HotSpot's memory pools at the end of each collection, one line per
//! pool ([`PoolLine`], told apart by its `kind`, `pool_gc`).

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

/// The `kind` of a [`PoolLine`]: no pause kind has it, so a reader that
/// selects pauses by kind skips these lines.
pub const POOL_GC_KIND: &str = "pool_gc";

/// One memory pool at the end of one collection (HotSpot's
/// `mem__pool__gc__end`), as printed on stdout.
#[derive(Debug, Serialize)]
pub struct PoolLine<'a> {
    /// Always [`POOL_GC_KIND`].
    pub kind: &'static str,
    /// Process id.
    pub pid: u32,
    /// Runtime label.
    pub runtime: &'a str,
    /// The memory manager, e.g. `G1 Young Generation`.
    pub manager: &'a str,
    /// The pool, e.g. `G1 Eden Space` or `Metaspace`.
    pub pool: &'a str,
    /// This manager's collections of this pool since the agent attached,
    /// this one included: the lines of one collection share it.
    pub collection: u64,
    /// Used bytes at the collection's begin; absent when the begin was not
    /// seen (the collection began before the agent attached).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_before_bytes: Option<u64>,
    /// Used bytes at its end.
    pub used_after_bytes: u64,
    /// Committed bytes at its end.
    pub committed_bytes: u64,
    /// The pool's maximum; absent when HotSpot leaves it undefined (G1's
    /// eden and survivor pools).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// CLOCK_MONOTONIC nanoseconds at the end probe, as pause events' times.
    pub end_ns: u64,
}

impl<'a> PoolLine<'a> {
    /// The line of a BPF pool event, with its names and runtime resolved.
    pub fn of(
        e: &pausewatch_common::heap::PoolEvent,
        runtime: &'a str,
        manager: &'a str,
        pool: &'a str,
    ) -> PoolLine<'a> {
        PoolLine {
            kind: POOL_GC_KIND,
            pid: e.pid,
            runtime,
            manager,
            pool,
            collection: e.collection,
            used_before_bytes: (e.has_before != 0).then_some(e.used_before),
            used_after_bytes: e.used_after,
            committed_bytes: e.committed,
            // HotSpot's `(size_t)-1` for "undefined".
            max_bytes: (e.max != u64::MAX).then_some(e.max),
            end_ns: e.end_ns,
        }
    }
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

    #[test]
    fn a_pool_line_prints_its_kind_and_leaves_out_what_is_unknown() {
        let mut e = pausewatch_common::heap::PoolEvent {
            pid: 7,
            collection: 3,
            used_after: 1024,
            committed: 4096,
            max: u64::MAX,
            end_ns: 99,
            ..Default::default()
        };
        let json =
            serde_json::to_string(&PoolLine::of(&e, "hotspot", "Copy", "Eden Space")).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"pool_gc","pid":7,"runtime":"hotspot","manager":"Copy","pool":"Eden Space","collection":3,"used_after_bytes":1024,"committed_bytes":4096,"end_ns":99}"#
        );
        e.has_before = 1;
        e.used_before = 2048;
        e.max = 8192;
        let line = PoolLine::of(&e, "hotspot", "Copy", "Eden Space");
        assert_eq!(
            (line.used_before_bytes, line.max_bytes),
            (Some(2048), Some(8192))
        );
    }
}

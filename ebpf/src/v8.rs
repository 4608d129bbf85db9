//! V8 (Node.js) probes, attached to the entries of V8 heap functions found
//! by demangled name (see the agent's `discovery/v8.rs` for why these).
//!
//! ```text
//! GCTracer::StartObservablePause   returns      v8_pause_begin (uretprobe)
//!   Heap::PerformGarbageCollection(collector, ...)   v8_collector (uprobe)
//! GCTracer::StopObservablePause    returns      v8_pause_end (uretprobe)
//! ```
//!
//! Both ends are return probes, so each timestamp is taken just after the
//! one V8 takes for `--trace-gc`. A uprobe trap is a point where the kernel
//! may preempt the thread on its way back to user space; with entry probes
//! such a preemption fell between our timestamp and V8's, outside one
//! interval and inside the other (measured: up to 5 ms per collection on
//! a loaded machine). After a return probe it falls inside both.
//!
//! The collector (V8's `GarbageCollector` enum: scavenger, mark-compactor,
//! minor mark-compactor) is stored plus one, so that 0 means "not seen".

use aya_ebpf::{
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use pausewatch_common::Kind;

use crate::intervals::{begin, emit, end, open_mut, record, thread};

#[uretprobe]
pub fn v8_pause_begin(_ctx: RetProbeContext) -> u32 {
    begin(Kind::GcPause, 0, 0);
    0
}

/// `Heap::PerformGarbageCollection(this, collector, reason, collector_reason)`.
#[uprobe]
pub fn v8_collector(ctx: ProbeContext) -> u32 {
    let Some(collector) = ctx.arg::<u32>(1) else {
        return 0;
    };
    if let Some(t) = thread()
        && let Some(open) = open_mut(t, Kind::GcPause, 0)
    {
        open.cause = u64::from(collector) + 1;
    }
    0
}

#[uretprobe]
pub fn v8_pause_end(_ctx: RetProbeContext) -> u32 {
    if let Some(c) = end(Kind::GcPause, 0) {
        record(Kind::GcPause, c.open.cause, c.ns, &c.states);
        emit(Kind::GcPause, c.open.cause, &c);
    }
    0
}

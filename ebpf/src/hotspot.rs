//! HotSpot (OpenJDK) probes, attached to USDT notes of `libjvm.so`.
//!
//! Nesting on the VM thread, as HotSpot runs a safepointed VM operation:
//!
//! ```text
//! hs_private:safepoint__begin          SafepointTracing::begin, right after its timestamp
//!   hotspot:vmops__begin(name,len,mode)   VMThread::evaluate_operation, before doit()
//!     hotspot:gc__begin(full)             SvcGCMarker, inside a collecting VM op
//!     hotspot:gc__end
//!   hotspot:vmops__end
//! hs_private:safepoint__end            SafepointTracing::end, after its timestamp and its -Xlog line
//! ```
//!
//! Time to safepoint is safepoint begin to the first VM operation's begin,
//! and that operation's name is the safepoint's cause. `gc__begin` also
//! fires around concurrent cycles (ZGC, Shenandoah, G1 concurrent mark use
//! `SvcGCMarker(CONCURRENT)` on their own threads): only a collection that
//! begins inside an open safepoint on the same thread stops Java threads, so
//! only that one is a [`Kind::GcPause`].

use aya_ebpf::{macros::uprobe, programs::ProbeContext};
use pausewatch_common::{Kind, LostReason};

use crate::{
    args::read_arg,
    intervals::{
        NO_STATES, anatomy_on, begin_in, emit, end, end_in, is_open_in, now, open_mut, record,
        record_workers, thread, thread_or_new,
    },
    maps::count_lost,
    straggler,
};

#[uprobe]
pub fn hotspot_safepoint_begin(_ctx: ProbeContext) -> u32 {
    let Some(t) = thread_or_new() else { return 0 };
    let now = now();
    begin_in(t, Kind::Safepoint, 0, 0, now);
    // After `begin_in`, which tracks this thread: the anatomy gate that the
    // straggler's scheduler code runs behind is open from here on.
    if anatomy_on() {
        straggler::open(now);
    }
    0
}

#[uprobe]
pub fn hotspot_safepoint_end(_ctx: ProbeContext) -> u32 {
    if anatomy_on() {
        straggler::end();
    }
    if let Some(c) = end(Kind::Safepoint, 0) {
        record(Kind::Safepoint, c.open.cause, c.ns, &c.states);
        if c.open.cause != 0 {
            record(
                Kind::TimeToSafepoint,
                c.open.cause,
                c.open.tts_ns,
                &NO_STATES,
            );
        }
        emit(Kind::Safepoint, c.open.cause, &c);
    }
    0
}

/// `vmops__begin(name, len, mode)`; the cookie's spec locates `name`.
#[uprobe]
pub fn hotspot_vmop_begin(ctx: ProbeContext) -> u32 {
    let Some(name) = read_arg(&ctx) else {
        count_lost(LostReason::ArgRead);
        return 0;
    };
    let Some(t) = thread_or_new() else { return 0 };
    let now = now();
    if let Some(sp) = open_mut(t, Kind::Safepoint, 0)
        && sp.cause == 0
    {
        sp.cause = name;
        sp.tts_ns = now.saturating_sub(sp.start_ns);
        if anatomy_on() {
            straggler::close(sp.tts_ns);
        }
    }
    begin_in(t, Kind::VmOperation, name, name, now);
    0
}

#[uprobe]
pub fn hotspot_vmop_end(ctx: ProbeContext) -> u32 {
    let Some(name) = read_arg(&ctx) else {
        count_lost(LostReason::ArgRead);
        return 0;
    };
    if let Some(c) = end(Kind::VmOperation, name) {
        record(Kind::VmOperation, name, c.ns, &NO_STATES);
    }
    0
}

/// `gc__begin(full)`; the cookie's spec locates `full`.
#[uprobe]
pub fn hotspot_gc_begin(ctx: ProbeContext) -> u32 {
    let full = read_arg(&ctx).unwrap_or(0) & 1;
    let Some(t) = thread_or_new() else { return 0 };
    let now = now();
    if is_open_in(t, Kind::Safepoint, 0) {
        begin_in(t, Kind::GcPause, 0, full, now);
        if anatomy_on() {
            crate::anatomy::gc_open(now);
        }
    } else {
        begin_in(t, Kind::GcConcurrent, 0, full, now);
    }
    0
}

#[uprobe]
pub fn hotspot_gc_end(_ctx: ProbeContext) -> u32 {
    let Some(t) = thread() else { return 0 };
    for kind in [Kind::GcPause, Kind::GcConcurrent] {
        if let Some(c) = end_in(t, kind, 0) {
            record(kind, c.open.cause, c.ns, &c.states);
            if kind == Kind::GcPause {
                if anatomy_on()
                    && let Some(workers) = crate::anatomy::gc_close()
                {
                    record_workers(kind, c.open.cause, &workers);
                }
                emit(kind, c.open.cause, &c);
            }
            break;
        }
    }
    0
}

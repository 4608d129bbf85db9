//! CPython probes, attached to the interpreter's USDT notes.
//!
//! `python:gc__start(generation)` and `python:gc__done(collected)` bracket
//! one run of `gc_collect_main`, the whole collection, with the GIL held:
//! no Python code runs in the process meanwhile, so it is a pause. The
//! generation is the cause (`gen0`, `gen1`, `gen2` in userspace).
//!
//! Interpreters built without the probes get the fallback pair instead:
//! the entry of `gc_collect_main(tstate, generation, ...)` and its return
//! (see the agent's `discovery/cpython.rs` for the caveat).

use aya_ebpf::{
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use pausewatch_common::{Kind, LostReason};

use crate::{
    args::read_arg,
    intervals::{begin, emit, end, record},
    maps::count_lost,
};

/// `gc__start(generation)`; the cookie's spec locates `generation`.
#[uprobe]
pub fn cpython_gc_start(ctx: ProbeContext) -> u32 {
    let Some(generation) = read_arg(&ctx) else {
        count_lost(LostReason::ArgRead);
        return 0;
    };
    begin(Kind::GcPause, 0, generation);
    0
}

#[uprobe]
pub fn cpython_gc_done(_ctx: ProbeContext) -> u32 {
    if let Some(c) = end(Kind::GcPause, 0) {
        record(Kind::GcPause, c.open.cause, c.ns, &c.states);
        emit(Kind::GcPause, c.open.cause, &c);
    }
    0
}

/// Entry of `gc_collect_main(tstate, generation, ...)`.
#[uprobe]
pub fn cpython_fallback_start(ctx: ProbeContext) -> u32 {
    let Some(generation) = ctx.arg::<u32>(1) else {
        count_lost(LostReason::ArgRead);
        return 0;
    };
    begin(Kind::GcPause, 0, u64::from(generation));
    0
}

/// Return of `gc_collect_main`.
#[uretprobe]
pub fn cpython_fallback_done(_ctx: RetProbeContext) -> u32 {
    if let Some(c) = end(Kind::GcPause, 0) {
        record(Kind::GcPause, c.open.cause, c.ns, &c.states);
        emit(Kind::GcPause, c.open.cause, &c);
    }
    0
}

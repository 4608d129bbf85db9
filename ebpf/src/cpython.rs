//! CPython probes, attached to the interpreter's USDT notes.
//!
//! `python:gc__start(generation)` and `python:gc__done(collected)` bracket
//! one run of `gc_collect_main`, the whole collection, with the GIL held:
//! no Python code runs in the process meanwhile, so it is a pause. The
//! generation is the cause (`gen0`, `gen1`, `gen2` in userspace).

use aya_ebpf::{macros::uprobe, programs::ProbeContext};
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
    if let Some((open, ns)) = end(Kind::GcPause, 0) {
        record(Kind::GcPause, open.cause, ns);
        emit(Kind::GcPause, open.cause, &open, ns);
    }
    0
}

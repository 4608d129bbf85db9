//! Ruby (CRuby 3.1) probes, attached to `libruby`'s USDT notes.
//!
//! Where Ruby 3.1's `gc.c` fires them (`docs/design.md`, "Ruby"):
//!
//! ```text
//! gc_start                              gc_enter .. gc_exit: a pause
//!   gc_marks:  gc__mark__begin
//!              gc_marks_start (roots; sets minor or major)
//!              unless incremental: gc_marks_rest
//!                mark everything, then gc_sweep:
//!                  gc_sweep_step: gc__sweep__begin .. gc__sweep__end  (one or all steps)
//!              gc__mark__end
//! later, on allocation                  gc_enter .. gc_exit: a pause each
//!   gc_sweep_continue / gc_rest:  gc_sweep_step: gc__sweep__begin .. gc__sweep__end
//!   gc_marks_continue (incremental major marking step): no probe
//! ```
//!
//! So a mark interval is a pause on the thread holding the GVL, and the
//! sweep steps inside it are part of it: they are not recorded again
//! (`stall_ratio` would count them twice). A sweep step outside a mark
//! interval is a pause of its own (`RUBY_CAUSE_SWEEP`). The probes carry no
//! argument, and whether a collection is minor or major is decided inside
//! the mark interval: `gc__mark__end` reads it from `objspace->flags` where
//! the agent found them, else the cause is `RUBY_CAUSE_MARK` for both.
//!
//! At the front edge, an agent that attaches inside a marking misses its
//! `gc__mark__begin`: that marking is not recorded, and its nested sweep
//! steps are recorded as lazy ones (at most one collection's worth).

use aya_ebpf::{helpers::bpf_probe_read_user, macros::uprobe, programs::ProbeContext};
use pausewatch_common::{
    Kind, LostReason, RUBY_CAUSE_MAJOR, RUBY_CAUSE_MARK, RUBY_CAUSE_MINOR, RUBY_CAUSE_SWEEP,
    RUBY31_FLAG_DURING_GC, RUBY31_FLAG_MINOR,
};

use crate::{
    args::read_arg,
    intervals::{begin, emit, end, is_open, record},
    maps::count_lost,
};

/// In-flight nesting slot of a mark interval.
const NEST_MARK: u64 = 1;
/// In-flight nesting slot of a sweep step outside a mark interval.
const NEST_SWEEP: u64 = 2;

/// `ruby:gc__mark__begin()`.
#[uprobe]
pub fn ruby_mark_begin(_ctx: ProbeContext) -> u32 {
    begin(Kind::GcPause, NEST_MARK, RUBY_CAUSE_MARK);
    0
}

/// `ruby:gc__mark__end()`. Where the agent found `objspace->flags` (Ruby
/// 3.1, `agent/src/runtimes/ruby/layout.rs`), the cookie's constant is its
/// address, and the flags say minor or major; otherwise the cause stays
/// `RUBY_CAUSE_MARK`.
#[uprobe]
pub fn ruby_mark_end(ctx: ProbeContext) -> u32 {
    if let Some(c) = end(Kind::GcPause, NEST_MARK) {
        let cause = match read_arg(&ctx) {
            Some(addr) if addr != 0 => classify(addr),
            _ => c.open.cause,
        };
        record(Kind::GcPause, cause, c.ns, &c.states);
        emit(Kind::GcPause, cause, &c);
    }
    0
}

/// Minor or major, from the flags word at `addr`, which must have
/// `during_gc` set (it is throughout a collection); else `RUBY_CAUSE_MARK`
/// and a lost-argument count.
#[inline(always)]
fn classify(addr: u64) -> u64 {
    // SAFETY: a faulting user read returns an error, never crashes.
    match unsafe { bpf_probe_read_user(addr as *const u32) } {
        Ok(w) if w & RUBY31_FLAG_DURING_GC != 0 => {
            if w & RUBY31_FLAG_MINOR != 0 {
                RUBY_CAUSE_MINOR
            } else {
                RUBY_CAUSE_MAJOR
            }
        }
        _ => {
            count_lost(LostReason::ArgRead);
            RUBY_CAUSE_MARK
        }
    }
}

/// `ruby:gc__sweep__begin()`: opens a sweep step unless it runs inside a
/// mark interval, which already times it.
#[uprobe]
pub fn ruby_sweep_begin(_ctx: ProbeContext) -> u32 {
    if !is_open(Kind::GcPause, NEST_MARK) {
        begin(Kind::GcPause, NEST_SWEEP, RUBY_CAUSE_SWEEP);
    }
    0
}

/// `ruby:gc__sweep__end()`.
#[uprobe]
pub fn ruby_sweep_end(_ctx: ProbeContext) -> u32 {
    if let Some(c) = end(Kind::GcPause, NEST_SWEEP) {
        record(Kind::GcPause, c.open.cause, c.ns, &c.states);
        emit(Kind::GcPause, c.open.cause, &c);
    }
    0
}

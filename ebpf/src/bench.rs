//! Empty programs for `cargo xtask bench`, attached by `agent bench-attach`
//! and never by `agent run`:
//! - [`bench_empty`], at the same probes as the real programs, measures the
//!   floor any uprobe-based tool pays per probe hit (trap, uprobe dispatch,
//!   BPF entry and exit) and nothing else;
//! - [`bench_switch`] and [`bench_waking`], on the scheduler's raw
//!   tracepoints the pause anatomy uses, measure what any program there
//!   costs a context switch and a wake-up, so that the anatomy's own share
//!   can be told from the kernel's dispatch (and from the run-time
//!   statistics' clock reads, which slow both alike).

use aya_ebpf::{
    macros::{raw_tracepoint, uprobe},
    programs::{ProbeContext, RawTracePointContext},
};

#[uprobe]
pub fn bench_empty(_ctx: ProbeContext) -> u32 {
    0
}

#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn bench_switch(_ctx: RawTracePointContext) -> u32 {
    0
}

#[raw_tracepoint(tracepoint = "sched_waking")]
pub fn bench_waking(_ctx: RawTracePointContext) -> u32 {
    0
}

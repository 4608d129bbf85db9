//! An empty program for `cargo xtask bench`: attached by `agent
//! bench-attach` at the same probes as the real programs, it measures the
//! floor any uprobe-based tool pays per probe hit (trap, uprobe dispatch,
//! BPF entry and exit) and nothing else. Never attached by `agent run`.

use aya_ebpf::{macros::uprobe, programs::ProbeContext};

#[uprobe]
pub fn bench_empty(_ctx: ProbeContext) -> u32 {
    0
}

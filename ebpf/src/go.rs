//! Go runtime probes: stop-the-world pauses, attached by function address
//! (from `.symtab` or `.gopclntab`), never with uretprobes (Go moves stacks).
//!
//! ```text
//! runtime.stopTheWorld(reason string)   Go 1.19 only: go_stw_reason notes the reason
//! runtime.stopTheWorldWithSema(...)     go_stw_begin: the world starts stopping
//!   runtime.gcMarkTermination / ...     Go 1.19 only: go_stw_cause names GC phases
//! startTheWorldWithSema: CALL wakep     go_stw_end: the world runs again
//! ```
//!
//! The goroutine that stops the world keeps its M (OS thread) until it starts
//! the world again, so begin and end meet on one thread. Go 1.21+ passes the
//! `stwReason` number in AL; the begin program reads it through the cookie's
//! [`pausewatch_common::ArgSpec`]. Go 1.19's `stopTheWorld` passes a string
//! (pointer in RAX, length in RBX) one call level up; GC phases stop the world
//! without one and are named by a marker function that runs only while they
//! hold the world stopped (cookie: a constant cause).

use aya_ebpf::{
    macros::{map, uprobe},
    maps::HashMap,
    programs::ProbeContext,
};
use pausewatch_common::{GO_CAUSE_LEN_SHIFT, GO_CAUSE_MAX_LEN, GO_CAUSE_STRING, Kind};

use crate::{
    args::read_arg,
    intervals::{begin, emit, end, key},
    maps::INFLIGHT,
};

/// Go 1.19: the reason string passed to `stopTheWorld` on a thread, until
/// that thread's `stopTheWorldWithSema` takes it. Keyed by pid_tgid.
#[map]
static GO_PENDING_REASON: HashMap<u64, u64> = HashMap::with_max_entries(4096, 0);

/// Entry of `runtime.stopTheWorldWithSema`.
#[uprobe]
pub fn go_stw_begin(ctx: ProbeContext) -> u32 {
    let cause = match read_arg(&ctx) {
        Some(reason) => reason,
        None => {
            let id = aya_ebpf::helpers::bpf_get_current_pid_tgid();
            // SAFETY: the value is copied out before the entry is removed.
            let pending = unsafe { GO_PENDING_REASON.get(&id) }.copied();
            if pending.is_some() {
                let _ = GO_PENDING_REASON.remove(&id);
            }
            pending.unwrap_or(0)
        }
    };
    begin(Kind::Stw, 0, cause);
    0
}

/// Go 1.19: entry of `runtime.stopTheWorld(reason string)`.
#[uprobe]
pub fn go_stw_reason(ctx: ProbeContext) -> u32 {
    // SAFETY: fixed-offset reads of the probe's own register context.
    let (ptr, len) = unsafe { ((*ctx.regs).rax, (*ctx.regs).rbx) };
    if len == 0 || len > GO_CAUSE_MAX_LEN || ptr >> GO_CAUSE_LEN_SHIFT != 0 {
        return 0;
    }
    let id = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    let cause = GO_CAUSE_STRING | (len << GO_CAUSE_LEN_SHIFT) | ptr;
    let _ = GO_PENDING_REASON.insert(&id, &cause, 0);
    0
}

/// Go 1.19: a function that runs only inside one kind of stop-the-world;
/// the cookie's constant is that kind's `stwReason` number.
#[uprobe]
pub fn go_stw_cause(ctx: ProbeContext) -> u32 {
    let Some(cause) = read_arg(&ctx) else {
        return 0;
    };
    if let Some(open) = INFLIGHT.get_ptr_mut(&key(Kind::Stw, 0)) {
        // SAFETY: entry of the calling thread; only this thread writes it.
        unsafe { (*open).cause = cause };
    }
    0
}

/// The call of `wakep()` in `runtime.startTheWorldWithSema`.
#[uprobe]
pub fn go_stw_end(_ctx: ProbeContext) -> u32 {
    if let Some((open, ns)) = end(Kind::Stw, 0) {
        crate::intervals::record(Kind::Stw, open.cause, ns);
        emit(Kind::Stw, open.cause, &open, ns);
    }
    0
}

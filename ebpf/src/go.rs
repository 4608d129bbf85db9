//! Go runtime probes: stop-the-world pauses, attached by function address
//! (from `.symtab` or `.gopclntab`), never with uretprobes (Go moves stacks).
//!
//! ```text
//! runtime.stopTheWorld(reason string)   Go 1.19 only: go_stw_reason notes the reason
//!   runtime.stopTheWorld.func1          Go 1.19 only: go_stw_reason_here moves it to this thread
//! runtime.stopTheWorldWithSema(...)     go_stw_begin: the world starts stopping
//!   runtime.gcMarkTermination / ...     Go 1.19 only: go_stw_cause names GC phases
//! runtime.startTheWorldWithSema(now, w)  Go 1.23+: go_stw_stopped reads w's stopping clocks
//!   startTheWorldWithSema: CALL wakep   go_stw_end: the world runs again
//! ```
//!
//! The goroutine that stops the world keeps its M (OS thread) until it starts
//! the world again, so begin and end meet on one thread. Go 1.21+ passes the
//! `stwReason` number in AL; the begin program reads it through the cookie's
//! [`pausewatch_common::ArgSpec`]. Go 1.19's `stopTheWorld` passes a string
//! (pointer in RAX, length in RBX) one call level up, noted per goroutine and
//! handed to the thread that runs the stopping closure; GC phases stop the
//! world without one and are named by a marker function that runs only
//! while they hold the world stopped (cookie: a constant cause).
//!
//! From Go 1.23, `stopTheWorldWithSema` returns a `worldStop` holding the
//! runtime's own `nanotime()` readings from the request to stop
//! (`startedStopping`) and from the moment every P stopped
//! (`finishedStopping`), and `startTheWorldWithSema(now int64, w worldStop)`
//! receives it in registers; their difference is exactly what the runtime
//! records in `/sched/pauses/stopping/{gc,other}:seconds`.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::{map, uprobe},
    maps::HashMap,
    programs::ProbeContext,
};
use pausewatch_common::{GO_CAUSE_LEN_SHIFT, GO_CAUSE_MAX_LEN, GO_CAUSE_STRING, Kind, LostReason};

use crate::{
    args::read_arg,
    intervals::{NO_STATES, begin, emit, end, open_mut, record, thread},
    maps::count_lost,
};

/// Go 1.19: the reason string passed to `stopTheWorld`, keyed by the
/// calling goroutine, until the closure that stops the world picks it up.
/// The goroutine may wait for `worldsema` and resume on another thread, so
/// the thread that called `stopTheWorld` is not necessarily the one that
/// stops the world.
#[map]
static GO_REASON_BY_G: HashMap<GoroutineKey, u64> = HashMap::with_max_entries(4096, 0);

/// Go 1.19: the reason for the thread about to call `stopTheWorldWithSema`,
/// keyed by pid_tgid.
#[map]
static GO_REASON_BY_THREAD: HashMap<u64, u64> = HashMap::with_max_entries(4096, 0);

/// A goroutine of a process: (tgid, address of its `g`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GoroutineKey {
    tgid: u64,
    g: u64,
}

/// Entry of `runtime.stopTheWorldWithSema`.
#[uprobe]
pub fn go_stw_begin(ctx: ProbeContext) -> u32 {
    let cause = match read_arg(&ctx) {
        Some(reason) => reason,
        None => {
            let id = bpf_get_current_pid_tgid();
            // SAFETY: the value is copied out before the entry is removed.
            let pending = unsafe { GO_REASON_BY_THREAD.get(&id) }.copied();
            if pending.is_some() {
                let _ = GO_REASON_BY_THREAD.remove(&id);
            }
            pending.unwrap_or(0)
        }
    };
    begin(Kind::Stw, 0, cause);
    0
}

/// Go 1.19: entry of `runtime.stopTheWorld(reason string)`: the string is
/// (RAX, RBX) and the current goroutine's `g` is R14 (register ABI).
#[uprobe]
pub fn go_stw_reason(ctx: ProbeContext) -> u32 {
    // SAFETY: fixed-offset reads of the probe's own register context.
    let (ptr, len, g) = unsafe { ((*ctx.regs).rax, (*ctx.regs).rbx, (*ctx.regs).r14) };
    if len == 0 || len > GO_CAUSE_MAX_LEN || ptr >> GO_CAUSE_LEN_SHIFT != 0 {
        return 0;
    }
    let key = GoroutineKey {
        tgid: bpf_get_current_pid_tgid() >> 32,
        g,
    };
    let cause = GO_CAUSE_STRING | (len << GO_CAUSE_LEN_SHIFT) | ptr;
    let _ = GO_REASON_BY_G.insert(&key, &cause, 0);
    0
}

/// Go 1.19: entry of `runtime.stopTheWorld.func1`, the closure that
/// `stopTheWorld` runs on the system stack of the thread that will stop the
/// world. RDX is the closure, whose one captured variable (after the code
/// pointer) is the calling goroutine's `g`.
#[uprobe]
pub fn go_stw_reason_here(ctx: ProbeContext) -> u32 {
    // SAFETY: a fixed-offset read of the probe's own register context.
    let closure = unsafe { (*ctx.regs).rdx };
    // SAFETY: a faulting user read returns an error, never crashes.
    let Ok(g) = (unsafe { bpf_probe_read_user((closure + 8) as *const u64) }) else {
        return 0;
    };
    let id = bpf_get_current_pid_tgid();
    let key = GoroutineKey { tgid: id >> 32, g };
    // SAFETY: the value is copied out before the entry is removed.
    if let Some(cause) = unsafe { GO_REASON_BY_G.get(&key) }.copied() {
        let _ = GO_REASON_BY_G.remove(&key);
        let _ = GO_REASON_BY_THREAD.insert(&id, &cause, 0);
    }
    0
}

/// Go 1.19: a function that runs only inside one kind of stop-the-world;
/// the cookie's constant is that kind's `stwReason` number.
#[uprobe]
pub fn go_stw_cause(ctx: ProbeContext) -> u32 {
    let Some(cause) = read_arg(&ctx) else {
        return 0;
    };
    if let Some(t) = thread()
        && let Some(open) = open_mut(t, Kind::Stw, 0)
    {
        open.cause = cause;
    }
    0
}

/// Go 1.23+: `runtime.startTheWorldWithSema(now int64, w worldStop)`, at its
/// entry or right after its stack check (which writes no register),
/// attached only on releases whose `worldStop` is
/// `{reason stwReason; startedStopping, finishedStopping, stoppingCPUTime int64}`.
/// Under the register ABI (amd64 ABIInternal) `now` is RAX and the struct's
/// fields follow one register each: `reason` in BL, `startedStopping` in
/// RCX, `finishedStopping` in RDI.
///
/// Records the stopping time (`finishedStopping - startedStopping`, the
/// value the runtime itself records) as [`Kind::TimeToSafepoint`] under the
/// open stop-the-world's cause, and keeps it in that interval so its event
/// carries it. Only a stop whose begin was seen is counted, like its pause;
/// the readings must lie between that begin and now on the same clock
/// (`nanotime` is CLOCK_MONOTONIC, as `bpf_ktime_get_ns`) and the reason
/// must be the one the begin read, or the registers are not what the
/// layout says and nothing is recorded (counted as an argument read lost).
#[uprobe]
pub fn go_stw_stopped(ctx: ProbeContext) -> u32 {
    // SAFETY: fixed-offset reads of the probe's own register context.
    let (reason, started, finished) =
        unsafe { ((*ctx.regs).rbx & 0xff, (*ctx.regs).rcx, (*ctx.regs).rdi) };
    let Some(t) = thread() else { return 0 };
    let Some(open) = open_mut(t, Kind::Stw, 0) else {
        return 0;
    };
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if reason != open.cause || started < open.start_ns || finished < started || finished > now {
        count_lost(LostReason::ArgRead);
        return 0;
    }
    let ns = finished - started;
    open.tts_ns = ns;
    record(Kind::TimeToSafepoint, open.cause, ns, &NO_STATES);
    0
}

/// The call of `wakep()` in `runtime.startTheWorldWithSema`.
#[uprobe]
pub fn go_stw_end(_ctx: ProbeContext) -> u32 {
    if let Some(c) = end(Kind::Stw, 0) {
        record(Kind::Stw, c.open.cause, c.ns, &c.states);
        emit(Kind::Stw, c.open.cause, &c);
    }
    0
}

//! Pause anatomy: where a pause's driving thread spent the pause's wall
//! time, running, runnable (preempted, throttled, or woken and waiting for
//! a CPU) or blocked.
//!
//! The thread that runs a pause's begin probe is tracked from that probe
//! to the matching end probe. Its state changes come from two scheduler
//! tracepoints, and every change closes a segment of time into the
//! thread's accumulator:
//!
//! ```text
//! begin probe            track: state = running (it is running the probe)
//! sched_switch (prev)    running -> runnable if preempted (or still TASK_RUNNING), else blocked
//! sched_waking           blocked -> runnable (being woken, not yet on a CPU)
//! sched_switch (next)    runnable/blocked -> running
//! end probe              untrack; the pause's share is the accumulator's growth
//! ```
//!
//! The begin probe stores the accumulator in the pause's interval slot
//! and the end probe subtracts it, so nested pauses on one thread (a
//! HotSpot GC pause inside its safepoint) each get their own share from the
//! one tracked thread, and the three states of a pause sum exactly to its
//! duration: both ends use the same clock readings as the duration.
//!
//! Both tracepoints fire on every context switch of the host, so they
//! first read [`TRACKED_COUNT`], the number of tracked threads, and return
//! at once when it is zero: the cost outside pauses is one array lookup.
//! They are raw tracepoints: the kernel hands over its own arguments (the
//! `task_struct` pointers) instead of first formatting a trace record,
//! which a classic tracepoint does on every switch whether the program
//! needs it or not (measured: docs/design.md, "Pause anatomy"). Threads are
//! therefore keyed by their `task_struct` address, which the begin probes
//! get from `bpf_get_current_task`; the address is unique while the task
//! lives, and its entry goes at the task's exit. The entry is the thread's
//! one per-thread value (`maps::THREAD_ENTRIES`), which also holds its open
//! intervals (`intervals.rs`), so a probe looks the thread up once.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_task},
    macros::{map, raw_tracepoint, tracepoint},
    maps::{Array, LruHashMap},
    programs::{RawTracePointContext, TracePointContext},
};
use pausewatch_common::{THREAD_STATES, ThreadEntry, ThreadState};

use crate::{
    intervals::current,
    maps::{add_to_gate, gate},
    threads,
};

/// [`ThreadEntry::role`]: the thread runs begin probes and drives its
/// pauses (every entry but a worker's, tracked or not).
pub const DRIVER: u32 = 0;
/// [`ThreadEntry::role`]: a HotSpot GC worker, woken by the VM thread during
/// a GC pause. Worker entries stay between pauses (they are not counted in
/// [`TRACKED_COUNT`]: the gate is the drivers') and go at the thread's exit.
const WORKER: u32 = 1;

/// A HotSpot process's GC pause, as its workers' time is charged to it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GcWindow {
    /// Incremented at each GC pause; a worker whose epoch differs has not
    /// been seen in this pause yet.
    epoch: u64,
    /// The pause's begin.
    start_ns: u64,
    /// 1 from `gc__begin` to `gc__end`.
    open: u64,
    /// The workers' time in this pause, by state, added atomically (workers
    /// on several CPUs charge the same window).
    acc_ns: [u64; THREAD_STATES],
}

/// GC pause windows by tgid. LRU: a process that is gone ages out.
#[map]
static GC_WINDOWS: LruHashMap<u32, GcWindow> = LruHashMap::with_max_entries(4096, 0);

/// The name HotSpot gives the workers of G1's and Parallel's pauses.
const WORKER_PREFIX: &[u8; 10] = b"GC Thread#";

/// Set to 1 by the agent (before load) on kernels whose `sched_switch`
/// passes `prev_state` as a fourth argument (Linux 5.18 and later). The
/// program may read that argument only then: the kernel refuses to attach
/// a raw tracepoint program that reads past the tracepoint's arguments,
/// and with this 0 the verifier never sees the read.
#[unsafe(no_mangle)]
static SWITCH_HAS_STATE: u8 = 0;

/// Number of open GC windows ([`GC_WINDOWS`]) host-wide: the gate of the
/// workers' registration at their switch-outs.
#[map]
static OPEN_GC_WINDOWS: Array<u64> = Array::with_max_entries(1, 0);

/// Number of active drivers in `maps::THREAD_ENTRIES` (threads inside a pause),
/// updated atomically by the begin and end probes, so the scheduler
/// tracepoints can skip all work when no pause is open anywhere.
#[map]
static TRACKED_COUNT: Array<u64> = Array::with_max_entries(1, 0);

/// Starts tracking thread `t` (the calling thread's entry; or adds one
/// more open pause to it) at `now`, and returns its accumulated per-state
/// time for the pause's slot. `None` for a GC worker, whose time belongs to
/// its process's GC window.
#[inline(always)]
pub fn track(t: &mut ThreadEntry, now: u64) -> Option<[u64; THREAD_STATES]> {
    if t.role != DRIVER {
        return None;
    }
    if t.refs == 0 {
        // Inactive since its previous pause: active again from now.
        t.state = ThreadState::Running as u32;
        t.since_ns = now;
        add_count(1);
    } else {
        close_segment(t, now, ThreadState::Running);
    }
    t.refs += 1;
    Some(t.acc_ns)
}

/// The accumulated per-state time of thread `t`, tracked already, at `now`
/// (a pause begun again before its end was seen keeps its reference).
#[inline(always)]
pub fn snapshot(t: &mut ThreadEntry, now: u64) -> [u64; THREAD_STATES] {
    close_segment(t, now, ThreadState::Running);
    t.acc_ns
}

/// Ends one open pause of thread `t` (the calling thread's entry) at `now`
/// and returns its accumulated per-state time, or `None` if it was not
/// tracked.
#[inline(always)]
pub fn untrack(t: &mut ThreadEntry, now: u64) -> Option<[u64; THREAD_STATES]> {
    if t.role != DRIVER || t.refs == 0 {
        return None;
    }
    close_segment(t, now, ThreadState::Running);
    t.refs -= 1;
    if t.refs == 0 {
        add_count(-1);
    }
    Some(t.acc_ns)
}

/// Uncounts thread `t` if it is an active driver (its entry is being reset
/// or removed), so the gate cannot stay open.
#[inline(always)]
pub fn drop_driver(t: &mut ThreadEntry) {
    if t.role == DRIVER && t.refs > 0 {
        add_count(-1);
    }
    t.refs = 0;
}

/// `sched:sched_process_exit`, once per exiting thread: forgets a thread
/// that exits inside a pause (a process that ends mid-collection), so it
/// does not keep the scheduler tracepoints busy.
#[tracepoint]
pub fn anatomy_exit(_ctx: TracePointContext) -> u32 {
    // Workers stay tracked between pauses, so an exit is looked at even
    // with no pause open: one lookup per thread exit, which is rare.
    if tracked_count() != 0 {
        crate::straggler::on_exit();
    }
    forget(current_task());
    0
}

/// Frees `task`'s entry (its open intervals with it), keeping the
/// drivers' count right.
#[inline(always)]
fn forget(task: u64) {
    if let Some(t) = threads::lookup(task) {
        drop_driver(t);
        threads::free(t);
    }
}

/// `sched:sched_switch(preempt, prev, next[, prev_state])`: `prev` (the
/// current task) leaves its CPU, `next` takes it.
#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn anatomy_switch(ctx: RawTracePointContext) -> u32 {
    if tracked_count() == 0 {
        return 0;
    }
    let now = now();
    let preempt = ctx.arg::<u64>(0) & 0xff != 0;
    let prev: u64 = ctx.arg(1);
    let next: u64 = ctx.arg(2);
    // Preempted, or switched out while still TASK_RUNNING (a yield, a
    // `cond_resched`): ready to run. Kernels before 5.18 do not pass the
    // state; there a voluntary switch counts as blocked.
    // SAFETY: a plain read of a global the loader may have rewritten.
    let runnable = preempt
        || (unsafe { core::ptr::read_volatile(&SWITCH_HAS_STATE) } != 0
            && ctx.arg::<u64>(3) & 0xffff_ffff == 0);
    let to = if runnable {
        ThreadState::Runnable
    } else {
        ThreadState::Blocked
    };
    // Only this CPU switches `prev` and `next` now.
    match threads::lookup(prev) {
        Some(t) => change(t, now, ThreadState::Running, to),
        None => maybe_worker(prev, now, to),
    }
    if let Some(t) = threads::lookup(next) {
        change(t, now, ThreadState::Runnable, ThreadState::Running);
    }
    // The safepoint straggler rule shares this program rather than add a
    // second one on the host's busiest tracepoint.
    crate::straggler::on_switch(now, prev, !runnable, next);
    0
}

/// `sched:sched_waking(p)`, in the waker's context before the wakee can
/// run: a sleeping task is being woken. From here until it is switched in,
/// it waits for a CPU, which is what a CPU quota or a busy host lengthens.
/// (`sched_wakeup`, a few µs later when the task is on a run queue, would
/// say the same at the cost of one more program on every wake-up of the
/// host.) The straggler rule's exclusions share it.
#[raw_tracepoint(tracepoint = "sched_waking")]
pub fn anatomy_waking(ctx: RawTracePointContext) -> u32 {
    let task: u64 = ctx.arg(0);
    if tracked_count() != 0
        && let Some(t) = threads::lookup(task)
    {
        // A wake-up of a thread that is not blocked (a spurious or racing
        // one) changes nothing.
        if t.state == ThreadState::Blocked as u32 {
            change(t, now(), ThreadState::Blocked, ThreadState::Runnable);
        }
    }
    crate::straggler::on_waking(task);
    0
}

/// A switch-out of an untracked task while some GC window is open: a
/// `GC Thread#N` of a process with its GC pause open is one of that
/// pause's workers (the current task is `prev`, so its name and process
/// are at hand). It is tracked from here on, in every later pause from its
/// wake-up; in this, its first, only from now: what it did before in this
/// pause is not known, and is not guessed.
#[inline(always)]
fn maybe_worker(task: u64, now: u64, to: ThreadState) {
    if open_gc_windows() == 0 {
        return;
    }
    let (tgid, _) = current();
    let Some(w) = GC_WINDOWS.get_ptr(&tgid) else {
        return;
    };
    // SAFETY: a live map value, only read here.
    let w = unsafe { &*w };
    if w.open == 0 {
        return;
    }
    let Ok(comm) = bpf_get_current_comm() else {
        return;
    };
    if comm[..WORKER_PREFIX.len()] != WORKER_PREFIX[..] {
        return;
    }
    // No room only costs this pause its worker's share.
    let (_, tid) = current();
    let Some(t) = threads::claim(task, tgid, tid, WORKER) else {
        return;
    };
    t.state = to as u32;
    t.since_ns = now;
    t.epoch = w.epoch;
}

/// `gc__begin` of a stop-the-world collection, on the VM thread: opens its
/// process's window for the workers.
#[inline(always)]
pub fn gc_open(now: u64) {
    let (tgid, _) = current();
    if let Some(w) = GC_WINDOWS.get_ptr_mut(&tgid) {
        // SAFETY: a live map value; workers read it, only this thread writes
        // anything but `acc_ns`.
        let w = unsafe { &mut *w };
        w.epoch += 1;
        w.start_ns = now;
        w.acc_ns = [0; THREAD_STATES];
        if w.open == 0 {
            add_gc_windows(1);
        }
        w.open = 1;
        return;
    }
    let fresh = GcWindow {
        epoch: 1,
        start_ns: now,
        open: 1,
        acc_ns: [0; THREAD_STATES],
    };
    if GC_WINDOWS.insert(&tgid, &fresh, 0).is_ok() {
        add_gc_windows(1);
    }
}

/// `gc__end` on the VM thread: closes the window and returns the workers'
/// time in the pause (`None` without a window: the begin was missed).
#[inline(always)]
pub fn gc_close() -> Option<[u64; THREAD_STATES]> {
    let (tgid, _) = current();
    let w = GC_WINDOWS.get_ptr_mut(&tgid)?;
    // SAFETY: a live map value.
    let w = unsafe { &mut *w };
    if w.open == 0 {
        return None;
    }
    w.open = 0;
    add_gc_windows(-1);
    Some(w.acc_ns)
}

/// A state change of a tracked thread at `now`: a driver closes its
/// segment into its own accumulator; a worker charges its segment to its
/// process's open GC window. `implied` is the state the event proves the
/// thread was in (a switch-out: running; a switch-in: runnable; a
/// wake-up: blocked), used for a worker's first event of a pause, whose
/// state before the pause is unknown.
#[inline(always)]
fn change(t: &mut ThreadEntry, now: u64, implied: ThreadState, to: ThreadState) {
    if t.role == DRIVER {
        // An inactive driver (between its pauses) is not accounted.
        if t.refs > 0 {
            close_segment(t, now, to);
        }
        return;
    }
    if let Some(w) = GC_WINDOWS.get_ptr_mut(&t.pid) {
        // SAFETY: a live map value; `acc_ns` only changes by atomic adds.
        let w = unsafe { &mut *w };
        if w.open != 0 {
            if t.epoch != w.epoch {
                // First seen in this pause: in `implied` since its begin.
                t.epoch = w.epoch;
                t.state = implied as u32;
                t.since_ns = w.start_ns;
            }
            let from = t.since_ns.max(w.start_ns);
            if let Some(a) = w.acc_ns.get_mut(t.state as usize) {
                // SAFETY: an 8-byte aligned map value shared by all CPUs.
                unsafe {
                    atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(
                        a,
                        now.saturating_sub(from),
                    )
                };
            }
        }
    }
    t.state = to as u32;
    t.since_ns = now;
}

/// Adds the time since the last change to the state it was spent in, and
/// enters `to`.
#[inline(always)]
fn close_segment(t: &mut ThreadEntry, now: u64, to: ThreadState) {
    let spent = now.saturating_sub(t.since_ns);
    if let Some(a) = t.acc_ns.get_mut(t.state as usize) {
        *a += spent;
    }
    t.state = to as u32;
    t.since_ns = now;
}

#[inline(always)]
fn tracked_count() -> u64 {
    gate(&TRACKED_COUNT)
}

#[inline(always)]
fn open_gc_windows() -> u64 {
    gate(&OPEN_GC_WINDOWS)
}

#[inline(always)]
fn add_gc_windows(delta: i64) {
    add_to_gate(&OPEN_GC_WINDOWS, delta);
}

/// The calling thread's `task_struct` address, which finds its entry.
#[inline(always)]
pub fn current_task() -> u64 {
    // SAFETY: no preconditions.
    unsafe { bpf_get_current_task() }
}

#[inline(always)]
fn add_count(delta: i64) {
    add_to_gate(&TRACKED_COUNT, delta);
}

#[inline(always)]
fn now() -> u64 {
    // SAFETY: no preconditions.
    unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() }
}
